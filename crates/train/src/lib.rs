//! Training for voxswap: corpora and the feature cache ([`data`]), corpus checks ([`check`]), the loss ([`loss`]), Adam
//! with AMSGrad ([`optim`]), checkpoints ([`checkpoint`]), recipes ([`recipe`]), the loop
//! ([`trainer`]) and loss curves ([`plot`]).
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use voxswap_train::{recipe::Recipe, trainer};
//! let recipe = Recipe::load("recipes/synth/config_tiny.toml".as_ref())?;
//! let stop = AtomicBool::new(false);
//! trainer::train(&recipe, &candle_core::Device::Cpu, &stop, &mut trainer::Quiet, &|_, _| {})?;
//! # Ok::<(), voxswap_train::Error>(())
//! ```

pub mod check;
pub mod checkpoint;
pub mod data;
mod error;
pub mod loss;
pub mod optim;
pub mod plot;
pub mod recipe;
pub mod trainer;

pub use error::{Error, Result};
