#![warn(missing_docs)]
//! voxswap's models in candle: AdaIN-VC ([`adain_vc`]) with its configuration ([`config`]), and
//! a neural vocoder ([`vocoder`]).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use voxswap_model::{AdaInVc, ModelConfig};
//! let cfg = ModelConfig::tiny();
//! let vars = candle_nn::VarMap::new();
//! let vb = candle_nn::VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
//! let model = AdaInVc::new(&cfg, vb)?;
//! let mel = Tensor::zeros((1, 80, 32), DType::F32, &Device::Cpu)?;
//! let speaker = model.speaker.forward(&mel)?;
//! let converted = model.convert(&mel, &speaker)?;
//! assert_eq!(converted.dims(), &[1, 80, 32]);
//! # Ok::<(), voxswap_model::Error>(())
//! ```

pub mod adain_vc;
pub mod bank;
pub mod config;
pub mod conv;
mod converter;
mod error;
pub mod excitation;
pub mod frame;
pub mod init;
pub mod io;
mod kernels;
pub mod layers;
pub mod par;
pub mod stream;
pub mod vocoder;

pub use adain_vc::{AdaInVc, AeOutput, PreparedVoice, StreamingConverter};
pub use config::{AttentionConfig, ModelConfig};
pub use converter::{SpeakerEmbedding, VoiceConverter};
pub use error::{Error, Result};
pub use frame::FrameModel;
pub use vocoder::{FrameVocoder, NeuralVocoder, VocoderConfig, VocoderStream};
