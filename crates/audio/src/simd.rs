//! Run-time selection of wider vector instructions for the frontend's inner loops.
//!
//! The crate is compiled for the x86_64 baseline (SSE2), which any user's CPU runs. The loops
//! that dominate the log-mel (windowing, magnitudes, the filterbank, the log) are written once
//! once inside [`multiversion!`], which compiles them twice, plainly and with
//! `#[target_feature(enable = "avx2,fma")]`, and calls the second when [`has_avx2`] says so, so
//! the compiler vectorises four or eight lanes wide. Both
//! copies compute the same operations in the same order, so results do not depend on the CPU
//! (Rust never contracts a multiply and an add into an FMA on its own).

/// Whether the AVX2 + FMA copies may run (the check is cached by std).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Defines `fn $name` whose body is compiled twice (baseline and AVX2+FMA) and picks the copy
/// the CPU can run. At most one generic parameter, written `<T: Bound>`.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident $(<$g:ident : $bound:path>)? ($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name $(<$g: $bound>)? ($($arg: $ty),*) {
            #[inline(always)]
            fn inner $(<$g: $bound>)? ($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2 $(<$g: $bound>)? ($($arg: $ty),*) {
                inner($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if $crate::simd::has_avx2() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above), all that `avx2`
                // requires.
                return unsafe { avx2($($arg),*) };
            }
            inner($($arg),*)
        }
    };
}
pub(crate) use multiversion;
