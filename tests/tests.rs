//! voxswap's integration tests: they run the binary on real audio.

mod bad_input;
mod commands;
mod decoding;
mod util;
