#![warn(missing_docs)]
//! voxswap's audio frontend: everything between a file and the model's features, and back.
//!
//! - [`decode`]: WAV (hound), FLAC, MP3 and Ogg Vorbis (Symphonia) to mono `f32`, chunked.
//! - [`write`]: atomic WAV output, 16-bit PCM with clipping counted, or 32-bit float.
//! - [`partial`]: the hidden files outputs are written to, removed on Ctrl-C.
//! - [`resample`]: rubato, offline and streaming with its delay reported.
//! - [`stft`], [`mel`], [`frontend`]: STFT/iSTFT, librosa-equal mel filterbanks, the log-mel
//!   features every voxswap model is trained with, offline and streaming.
//! - [`griffinlim`]: fast Griffin-Lim and mel-to-wave resynthesis; [`rtisi`]: its streaming
//!   form with a few frames of look-ahead.
//! - [`pitch`]: F0 by YIN.
//! - [`loudness`]: EBU R128 integrated loudness and a look-ahead peak limiter.
//!
//! ```
//! use voxswap_audio::{FrontendConfig, LogMel};
//! let cfg = FrontendConfig::speech_16k();
//! let tone: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.3).sin() * 0.5).collect();
//! let mel = LogMel::new(&cfg)?.compute(&tone);
//! assert_eq!((mel.n_mels, mel.frames), (80, 101));
//! # Ok::<(), voxswap_audio::Error>(())
//! ```

pub mod decode;
mod error;
pub mod frontend;
pub mod griffinlim;
pub mod loudness;
pub mod mel;
pub mod partial;
pub mod pitch;
pub mod plot;
pub mod resample;
pub mod rtisi;
mod simd;
pub mod stft;
pub mod write;

pub use decode::{read_mono, Audio, AudioInfo, AudioReader, ChannelMix};
pub use error::{Error, Result};
pub use frontend::{FrontendConfig, LogMel, Mel, StreamingLogMel};
pub use griffinlim::{
    griffin_lim, mel_to_audio, spectral_convergence, BlockVocoder, GlMethod, GriffinLimConfig, PhaseInit,
};
pub use loudness::{speech_level, Limiter, LoudnessMeter, SpeechLevel};
pub use mel::{MelFilterbank, MelNorm, MelScale, MelWarp};
pub use resample::{resample, ChunkResampler, StreamResampler};
pub use rtisi::StreamingGriffinLim;
pub use stft::{Spectrogram, Stft, StftConfig, StreamingStft};
pub use write::{write_wav, WavFormat, WavWriter, WriteReport};
