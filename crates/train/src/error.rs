//! Errors of the training crate.

use std::path::PathBuf;

/// Errors from data preparation, training and checkpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model crate failed.
    #[error(transparent)]
    Model(#[from] voxswap_model::Error),
    /// The audio frontend failed.
    #[error(transparent)]
    Audio(#[from] voxswap_audio::Error),
    /// The recipe is invalid (found before any work).
    #[error("{}: {detail}", path.display())]
    Recipe {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A file or folder could not be read or written.
    #[error("{}: {detail}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The corpus cannot be trained on.
    #[error("corpus {}: {detail}", path.display())]
    Corpus {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The training device computes gradients that differ from the CPU's (see
    /// [`crate::selfcheck`]).
    #[error(
        "{device} computes gradients that differ from the CPU's (largest relative difference {worst:.2e} in `{param}`, \
         over {gradients} gradients): training there would be wrong; train on the CPU (--device cpu)"
    )]
    DeviceMismatch {
        /// The device.
        device: String,
        /// The largest relative difference of a gradient.
        worst: f64,
        /// The parameter it belongs to.
        param: String,
        /// Gradients compared.
        gradients: usize,
    },
    /// The loss stopped being a finite number.
    #[error("training diverged at step {step}: loss is {loss}; the last good checkpoint is kept ({checkpoint})")]
    Diverged {
        /// The step reached.
        step: u64,
        /// The loss that diverged.
        loss: f32,
        /// The last good checkpoint.
        checkpoint: String,
    },
}

/// Result with the training crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn file_err(path: &std::path::Path, detail: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}
