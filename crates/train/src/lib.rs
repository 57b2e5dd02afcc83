#![warn(missing_docs)]
//! Training for voxswap: corpora and the feature cache ([`data`]), corpus checks ([`check`]), the loss ([`loss`]), Adam
//! with AMSGrad ([`optim`]), checkpoints ([`checkpoint`]), recipes ([`recipe`]), the loop
//! ([`trainer`]), one step sharded across threads ([`step`]), loss curves (`voxswap_audio::plot`) and the
//! device self-check that runs before training on a GPU ([`selfcheck`]).
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use voxswap_train::{recipe::Recipe, trainer};
//! let recipe = Recipe::load("recipes/synth/config_tiny.toml".as_ref())?;
//! let stop = AtomicBool::new(false);
//! trainer::train(&recipe, &candle_core::Device::Cpu, &stop, &mut trainer::Quiet, &|_, _| {})?;
//! # Ok::<(), voxswap_train::Error>(())
//! ```

pub mod adversary;
pub mod augment;
pub mod check;
pub mod checkpoint;
pub mod data;
pub mod discriminator;
mod error;
pub mod loss;
pub mod optim;
pub mod phonetic;
pub mod recipe;
pub mod selfcheck;
pub mod step;
pub mod store;
pub mod trainer;
pub mod vocoder_gan;
pub mod vocoder_loss;
pub mod vocoder_train;

pub use error::{Error, Result};

/// Keeps freed memory in the process for reuse (glibc only; elsewhere does nothing). A training
/// step allocates and frees hundreds of megabytes of tensors; by default glibc returns large
/// blocks to the kernel at once, and the next step faults them back in page by page, each page
/// zeroed by the kernel: 20% of a step's time went to system time. Call once at start-up.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before the heavy allocations.
    unsafe {
        // Blocks up to 32 MiB (glibc's maximum) from the heap instead of fresh mappings, keep up to
        // 1 GiB free at the top of the heap, and grow it 64 MiB at a time.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
