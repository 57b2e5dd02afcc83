//! Errors of the audio frontend.
//!
//! Every variant that comes from a file carries its path, so that the one-line message a user
//! sees names the file and the problem.

use std::path::PathBuf;

/// Errors from decoding, writing, resampling and the spectral transforms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{}: cannot read", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        #[source]
        /// The system's error.
        source: std::io::Error,
    },
    /// The path names a directory (or something else that is not a regular file).
    #[error("{}: is a directory, not an audio file", path.display())]
    NotAFile {
        /// The file or folder.
        path: PathBuf,
    },
    /// The file has zero bytes.
    #[error("{}: file is empty (0 bytes)", path.display())]
    EmptyFile {
        /// The file or folder.
        path: PathBuf,
    },
    /// The header or container is malformed or cut short.
    #[error("{}: malformed or truncated audio file: {detail}", path.display())]
    Malformed {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The container or codec is recognised but not supported.
    #[error("{}: unsupported audio format: {detail}", path.display())]
    Unsupported {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file is valid but holds no samples.
    #[error("{}: no audio data (0 samples)", path.display())]
    NoAudio {
        /// The file or folder.
        path: PathBuf,
    },
    /// A floating-point sample is NaN or infinite.
    #[error("{}: sample {frame} of channel {channel} is not a finite number ({value})", path.display())]
    NonFinite {
        /// The file or folder.
        path: PathBuf,
        /// The frame, counted from 0.
        frame: u64,
        /// The channel, counted from 0.
        channel: usize,
        /// The value found.
        value: f32,
    },
    /// The sample rate is outside what any real recording uses.
    #[error("{}: sample rate {rate} Hz is outside the supported range {min}..={max} Hz", path.display())]
    SampleRate {
        /// The file or folder.
        path: PathBuf,
        /// The rate found, Hz.
        rate: u32,
        /// The lowest rate accepted, Hz.
        min: u32,
        /// The most accepted.
        max: u32,
    },
    /// More channels than voxswap reads.
    #[error("{}: {channels} channels; voxswap reads 1 to {max}", path.display())]
    Channels {
        /// The file or folder.
        path: PathBuf,
        /// The channels the file has.
        channels: usize,
        /// The most accepted.
        max: usize,
    },
    /// `--channel N` names a channel the file does not have.
    #[error("{}: channel {channel} requested but the file has {channels} (channels count from 0)", path.display())]
    ChannelOutOfRange {
        /// The file or folder.
        path: PathBuf,
        /// The channel, counted from 0.
        channel: usize,
        /// The channels the file has.
        channels: usize,
    },
    /// Writing an output file failed; nothing is left at `path`.
    #[error("{}: cannot write", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        #[source]
        /// The system's error.
        source: std::io::Error,
    },
    /// A picture could not be drawn or written; nothing is left at `path`.
    #[error("{}: {detail}", path.display())]
    Picture {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Samples handed to a writer or transform are NaN or infinite.
    #[error("sample {index} is not a finite number ({value})")]
    NonFiniteInput {
        /// The sample, counted from 0.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A configuration value is invalid (found while building, before any work).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The resampler failed.
    #[error("resampling failed: {0}")]
    Resample(String),
}

/// Result with the audio frontend's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
