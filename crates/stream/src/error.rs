//! Errors of the conversion pipeline.

/// Errors from building or running an [`crate::Engine`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The audio frontend failed (a bad rate, a bad frame).
    #[error(transparent)]
    Audio(#[from] voxswap_audio::Error),
    /// The model failed (a voice of the wrong size, a non-causal model).
    #[error(transparent)]
    Model(#[from] voxswap_model::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The engine's settings are inconsistent (found while building, before any audio).
    #[error("invalid engine settings: {0}")]
    Config(String),
    /// A problem with the input (a silent source, a file without audio), or with a file beside
    /// the output; the message names the file.
    #[error("{0}")]
    Input(String),
    /// A live adaptation's measurement was lost (its thread panicked).
    #[error("live adaptation failed: {0}")]
    Adaptation(String),
}

/// Result with the pipeline's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
