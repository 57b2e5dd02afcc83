//! voxswap's integration tests: they run the binary on real audio.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod commands;
mod convert;
mod decoding;
mod hardening;
mod live;
mod recipes;
mod stream;
mod train_cli;
mod util;
