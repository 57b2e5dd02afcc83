//! voxswap's conversion pipeline, the same for files and for live audio: push input samples at
//! any rate, pull converted samples at the output rate ([`Engine`]), with every stage's latency
//! accounted for, voices switched with a glide, the voice adapted to the talker's from the past
//! ([`adapt`]), any [`Vocoder`] behind one trait, and the compute time per step measured; and
//! the file pipelines `voxswap convert` runs ([`file`]: offline in blocks, or through the
//! engine). No audio devices here: `voxswap` wires this crate to files and to sound cards, so
//! that everything here is tested from files.
//!
//! ```no_run
//! use voxswap_stream::{Engine, EngineConfig, StreamingGl};
//! use voxswap_model::VoiceConverter;
//! let conv = VoiceConverter::load("pretrained".as_ref(), &candle_core::Device::Cpu)?;
//! let reference = vec![0.0f32; 48_000]; // a few seconds of the target voice, 16 kHz
//! let voice = conv.speaker_vector(&[voxswap_audio::LogMel::new(&conv.config().frontend)?.compute(&reference)])?;
//! let vocoder = Box::new(StreamingGl::new(&conv.config().frontend, 2, 8)?);
//! let mut engine = Engine::new(&conv, &voice, vocoder, EngineConfig::live(48_000, 48_000))?;
//! let mut out = Vec::new();
//! engine.push(&[0.0; 480], &mut out)?; // 10 ms in, 10 ms out
//! assert_eq!(out.len(), 480);
//! println!("latency {:.1} ms", engine.latency_ms());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod adapt;
pub mod engine;
mod error;
pub mod features;
pub mod file;
pub mod stats;
pub mod vocoder;

pub use adapt::Adaptation;
pub use engine::{Engine, EngineConfig, StageLatency};
pub use error::{Error, Result};
pub use stats::ComputeStats;
pub use vocoder::{BlockGl, Neural, NeuralFrames, StreamingGl, Vocoder};
