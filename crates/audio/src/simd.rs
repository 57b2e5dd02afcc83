//! Run-time selection of wider vector instructions for the frontend's inner loops.
//!
//! The crate is compiled for the x86_64 baseline (SSE2), which any user's CPU runs. The loops
//! that dominate the log-mel (windowing, magnitudes, the filterbank, the log) are written once
//! as `#[inline(always)]` functions, each with a `#[target_feature(enable = "avx2,fma")]` copy
//! that the caller picks when [`has_avx2`] says so, so the compiler vectorises four or eight
//! lanes wide. Both
//! copies compute the same operations in the same order, so results do not depend on the CPU
//! (Rust never contracts a multiply and an add into an FMA on its own).

/// Whether the AVX2 + FMA copies may run (the check is cached by std).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}
