//! Kernels of the frame-by-frame paths ([`crate::frame::FrameModel`],
//! [`crate::FrameVocoder`]): one frame through a layer is a matrix-vector product whose weights
//! must come from memory each time, so these are written to keep several vector accumulators
//! busy and to read each weight row once for every vector that needs it, and they read weights
//! stored in half precision when that loses nothing ([`Matrix`]).

use half::f16;

/// A weight matrix of the frame-by-frame paths, row-major. Held in half precision when every
/// weight is exactly a half-precision number (a model folder written by `voxswap export --half`),
/// which halves the bytes a frame reads from memory and changes no value; otherwise in single
/// precision.
#[derive(Debug, Clone)]
pub(crate) enum Matrix {
    Full(Vec<f32>),
    Half(Vec<f16>),
}

impl Matrix {
    /// `w` in half precision if that is exact for every value, else as it is.
    pub(crate) fn new(w: Vec<f32>) -> Self {
        let exact = w.iter().all(|&v| f16::from_f32(v).to_f32().to_bits() == v.to_bits());
        if exact && !w.is_empty() {
            Self::Half(w.iter().map(|&v| f16::from_f32(v)).collect())
        } else {
            Self::Full(w)
        }
    }

    /// Whether the weights are held in half precision.
    pub(crate) fn is_half(&self) -> bool {
        matches!(self, Self::Half(_))
    }
}

/// `y[o] = b[o] + Σ_i w[o·n + i] · x[i]` with `n = x.len()`, and the same for `x2` into `y2`
/// when given, reading each weight row once for both (a frame's passes are bound by reading
/// the weights from memory, not by the arithmetic). Several independent vectors of partial sums
/// per row (one would wait on the adder's latency at every step), fused multiply-adds where the
/// CPU has them. Half-precision weights are widened as they are read, in the same order of
/// operations, so that the result is the very one of the same values held in single precision.
pub(crate) fn matvec(w: &Matrix, x: &[f32], b: &[f32], y: &mut [f32], second: Option<(&[f32], &mut [f32])>) {
    match w {
        Matrix::Full(w) => matvec_f32(w, x, b, y, second),
        Matrix::Half(w) => matvec_f16(w, x, b, y, second),
    }
}

#[inline(always)]
fn fold(mut acc: [f32; L]) -> f32 {
    let mut half = L;
    while half > 1 {
        half /= 2;
        for l in 0..half {
            acc[l] += acc[l + half];
        }
    }
    acc[0]
}

/// The portable row loop of [`matvec`] (the AVX2 one is in `mod avx2`) for weights of type `W`:
/// `widen` turns `L` of them into `f32`s, `scalar` one.
#[inline(always)]
fn rows<W: Copy>(
    w: &[W],
    x: &[f32],
    b: &[f32],
    y: &mut [f32],
    second: Option<(&[f32], &mut [f32])>,
    widen: impl Fn(&[W]) -> [f32; L],
    scalar: impl Fn(W) -> f32,
) {
    let n = x.len();
    let split = n - n % L;
    let (xs, rest_x) = x.split_at(split);
    match second {
        None => {
            for (o, (yo, row)) in y.iter_mut().zip(w.chunks_exact(n)).enumerate() {
                let mut acc = [0f32; L];
                let (ws, rest_w) = row.split_at(split);
                for (a, c) in ws.chunks_exact(L).zip(xs.chunks_exact(L)) {
                    let a = widen(a);
                    for l in 0..L {
                        acc[l] += a[l] * c[l];
                    }
                }
                let mut s = 0f32;
                for (&a, c) in rest_w.iter().zip(rest_x) {
                    s += scalar(a) * c;
                }
                *yo = b[o] + (fold(acc) + s);
            }
        }
        Some((x2, y2)) => {
            let (xs2, rest_x2) = x2.split_at(split);
            for (o, ((yo, yo2), row)) in y.iter_mut().zip(y2.iter_mut()).zip(w.chunks_exact(n)).enumerate() {
                let (mut acc, mut acc2) = ([0f32; L], [0f32; L]);
                let (ws, rest_w) = row.split_at(split);
                for ((a, c), c2) in ws.chunks_exact(L).zip(xs.chunks_exact(L)).zip(xs2.chunks_exact(L)) {
                    let a = widen(a);
                    for l in 0..L {
                        acc[l] += a[l] * c[l];
                        acc2[l] += a[l] * c2[l];
                    }
                }
                let (mut s, mut s2) = (0f32, 0f32);
                for ((&a, c), c2) in rest_w.iter().zip(rest_x).zip(rest_x2) {
                    let a = scalar(a);
                    s += a * c;
                    s2 += a * c2;
                }
                *yo = b[o] + (fold(acc) + s);
                *yo2 = b[o] + (fold(acc2) + s2);
            }
        }
    }
}

fn matvec_f32(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32], second: Option<(&[f32], &mut [f32])>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above), all that `rows_f32` requires.
        return unsafe { avx2::rows_f32(w, x, b, y, second) };
    }
    rows::<f32>(
        w,
        x,
        b,
        y,
        second,
        |a| a.try_into().expect("a chunk of L weights"),
        |v| v,
    );
}

fn matvec_f16(w: &[f16], x: &[f32], b: &[f32], y: &mut [f32], second: Option<(&[f32], &mut [f32])>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above), all that `rows_f16`
        // requires.
        return unsafe { avx2::rows_f16(w, x, b, y, second) };
    }
    rows::<f16>(
        w,
        x,
        b,
        y,
        second,
        |a| std::array::from_fn(|l| a[l].to_f32()),
        f16::to_f32,
    );
}

/// [`rows`] in AVX2 intrinsics: the `L = 32` lanes as four registers of eight, folded in the
/// same order as [`fold`], weights widened from half precision by F16C as they are loaded.
/// (Left to the compiler, the generic loop spilled its lanes to the stack.)
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::L;

    /// `fold` of four registers holding lanes 0–7, 8–15, 16–23 and 24–31.
    #[inline(always)]
    unsafe fn fold(a: [__m256; 4]) -> f32 {
        let v = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
        let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let h = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
    }

    macro_rules! rows {
        ($name:ident, $t:ty, $features:literal, $load:expr, $scalar:expr) => {
            /// # Safety
            /// The CPU must have the features this function is compiled for.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(
                w: &[$t],
                x: &[f32],
                b: &[f32],
                y: &mut [f32],
                second: Option<(&[f32], &mut [f32])>,
            ) {
                let load: unsafe fn(*const $t) -> __m256 = $load;
                let scalar: fn($t) -> f32 = $scalar;
                let n = x.len();
                let split = n - n % L;
                let zero = [_mm256_setzero_ps(); 4];
                match second {
                    None => {
                        for (o, (yo, row)) in y.iter_mut().zip(w.chunks_exact(n)).enumerate() {
                            let mut acc = zero;
                            for i in (0..split).step_by(L) {
                                for (q, a) in acc.iter_mut().enumerate() {
                                    let k = i + 8 * q;
                                    let wv = load(row.as_ptr().add(k));
                                    *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(k)), *a);
                                }
                            }
                            let mut s = 0f32;
                            for (&a, c) in row[split..].iter().zip(&x[split..]) {
                                s += scalar(a) * c;
                            }
                            *yo = b[o] + (fold(acc) + s);
                        }
                    }
                    Some((x2, y2)) => {
                        assert_eq!(x2.len(), n);
                        for (o, ((yo, yo2), row)) in y.iter_mut().zip(y2.iter_mut()).zip(w.chunks_exact(n)).enumerate()
                        {
                            let (mut acc, mut acc2) = (zero, zero);
                            for i in (0..split).step_by(L) {
                                for q in 0..4 {
                                    let k = i + 8 * q;
                                    let wv = load(row.as_ptr().add(k));
                                    acc[q] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(k)), acc[q]);
                                    acc2[q] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2.as_ptr().add(k)), acc2[q]);
                                }
                            }
                            let (mut s, mut s2) = (0f32, 0f32);
                            for ((&a, c), c2) in row[split..].iter().zip(&x[split..]).zip(&x2[split..]) {
                                let a = scalar(a);
                                s += a * c;
                                s2 += a * c2;
                            }
                            *yo = b[o] + (fold(acc) + s);
                            *yo2 = b[o] + (fold(acc2) + s2);
                        }
                    }
                }
            }
        };
    }

    // SAFETY (of the loads): `k + 8 <= split <= n` for every load, within the row and `x`.
    rows!(rows_f32, f32, "avx2,fma", |p| _mm256_loadu_ps(p), |v| v);
    rows!(
        rows_f16,
        f16,
        "avx2,fma,f16c",
        |p| _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())),
        f16::to_f32
    );
}

/// Lanes of partial sums in [`matvec`].
const L: usize = 32;

/// Drops the oldest frame of a history of frames (`[K · n]`, oldest first) and appends `frame`
/// (`n` values).
pub(crate) fn push_frame(hist: &mut [f32], frame: &[f32]) {
    let n = frame.len();
    hist.copy_within(n.., 0);
    let k = hist.len();
    hist[k - n..].copy_from_slice(frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn half_only_when_exact() {
        let w = values(100, 1);
        assert!(!Matrix::new(w.clone()).is_half(), "random f32 values are not halves");
        let rounded: Vec<f32> = w.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        assert!(Matrix::new(rounded.clone()).is_half());
        let mut one_off = rounded;
        one_off[57] += 1e-6;
        assert!(
            !Matrix::new(one_off).is_half(),
            "one inexact value keeps the matrix in f32"
        );
        assert!(!Matrix::new(Vec::new()).is_half());
    }

    #[test]
    fn half_weights_give_the_single_precision_result_exactly() {
        // Widths with and without a remainder past the lanes.
        for (rows, n) in [(7, 96), (5, 80), (3, 13), (4, 32)] {
            let w: Vec<f32> = values(rows * n, 2).iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            let (x, x2, b) = (values(n, 3), values(n, 4), values(rows, 5));
            let (full, half) = (Matrix::Full(w.clone()), Matrix::new(w.clone()));
            assert!(half.is_half());
            let (mut y_f, mut y2_f, mut y_h, mut y2_h) =
                (vec![0f32; rows], vec![0f32; rows], vec![0f32; rows], vec![0f32; rows]);
            matvec(&full, &x, &b, &mut y_f, Some((&x2, &mut y2_f)));
            matvec(&half, &x, &b, &mut y_h, Some((&x2, &mut y2_h)));
            assert_eq!(y_f, y_h, "{rows}×{n}");
            assert_eq!(y2_f, y2_h, "{rows}×{n}, second vector");
            let mut y1 = vec![0f32; rows];
            matvec(&half, &x, &b, &mut y1, None);
            assert_eq!(y1, y_h, "{rows}×{n}, one vector");
            // And the products are right.
            for o in 0..rows {
                let want: f64 = b[o] as f64 + (0..n).map(|i| w[o * n + i] as f64 * x[i] as f64).sum::<f64>();
                assert!(
                    (y1[o] as f64 - want).abs() < 1e-4,
                    "{rows}×{n} row {o}: {} vs {want}",
                    y1[o]
                );
            }
        }
    }
}
