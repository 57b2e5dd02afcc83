//! Errors of the model crate.

use std::path::PathBuf;

/// Errors from building, loading and running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The configuration is inconsistent (found while building, before any work).
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// A file of a model folder could not be read or written.
    #[error("{}: {detail}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint tensor is missing or has the wrong shape.
    #[error("{}: tensor `{name}`: {detail}", path.display())]
    Tensor {
        /// The file or folder.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// An input has the wrong shape or values.
    #[error("{0}")]
    Input(String),
}

/// Result with the model crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
