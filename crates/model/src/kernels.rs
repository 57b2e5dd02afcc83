//! Kernels of the frame-by-frame paths ([`crate::frame::FrameModel`],
//! [`crate::FrameVocoder`]): one frame through a layer is a matrix-vector product whose weights
//! must come from memory each time, so these are written to keep several vector accumulators
//! busy and to read each weight row once for every vector that needs it.

/// `y[o] = b[o] + Σ_i w[o·n + i] · x[i]` with `n = x.len()`, and the same for `x2` into `y2`
/// when given, reading each weight row once for both (a frame's passes are bound by reading
/// the weights from memory, not by the arithmetic). Four independent vectors of partial sums
/// per row (one would wait on the adder's latency at every step), fused multiply-adds where the
/// CPU has them.
pub(crate) fn matvec(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32], second: Option<(&[f32], &mut [f32])>) {
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
    #[inline(always)]
    fn one<const FMA: bool>(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32]) {
        let n = x.len();
        let split = n - n % L;
        let (xs, rest_x) = x.split_at(split);
        for (o, (yo, row)) in y.iter_mut().zip(w.chunks_exact(n)).enumerate() {
            let mut acc = [0f32; L];
            let (ws, rest_w) = row.split_at(split);
            for (a, c) in ws.chunks_exact(L).zip(xs.chunks_exact(L)) {
                for l in 0..L {
                    acc[l] = if FMA {
                        a[l].mul_add(c[l], acc[l])
                    } else {
                        acc[l] + a[l] * c[l]
                    };
                }
            }
            let mut s = 0f32;
            for (a, c) in rest_w.iter().zip(rest_x) {
                s += a * c;
            }
            *yo = b[o] + (fold(acc) + s);
        }
    }
    #[inline(always)]
    fn two<const FMA: bool>(w: &[f32], x: &[f32], x2: &[f32], b: &[f32], y: &mut [f32], y2: &mut [f32]) {
        let n = x.len();
        let split = n - n % L;
        let (xs, rest_x) = x.split_at(split);
        let (xs2, rest_x2) = x2.split_at(split);
        for (o, ((yo, yo2), row)) in y.iter_mut().zip(y2.iter_mut()).zip(w.chunks_exact(n)).enumerate() {
            let (mut acc, mut acc2) = ([0f32; L], [0f32; L]);
            let (ws, rest_w) = row.split_at(split);
            for ((a, c), c2) in ws.chunks_exact(L).zip(xs.chunks_exact(L)).zip(xs2.chunks_exact(L)) {
                for l in 0..L {
                    if FMA {
                        acc[l] = a[l].mul_add(c[l], acc[l]);
                        acc2[l] = a[l].mul_add(c2[l], acc2[l]);
                    } else {
                        acc[l] += a[l] * c[l];
                        acc2[l] += a[l] * c2[l];
                    }
                }
            }
            let (mut s, mut s2) = (0f32, 0f32);
            for ((a, c), c2) in rest_w.iter().zip(rest_x).zip(rest_x2) {
                s += a * c;
                s2 += a * c2;
            }
            *yo = b[o] + (fold(acc) + s);
            *yo2 = b[o] + (fold(acc2) + s2);
        }
    }
    #[inline(always)]
    fn both<const FMA: bool>(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32], second: Option<(&[f32], &mut [f32])>) {
        match second {
            None => one::<FMA>(w, x, b, y),
            Some((x2, y2)) => two::<FMA>(w, x, x2, b, y, y2),
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32], second: Option<(&[f32], &mut [f32])>) {
        both::<true>(w, x, b, y, second);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above), all that `avx2` requires.
        return unsafe { avx2(w, x, b, y, second) };
    }
    both::<false>(w, x, b, y, second);
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
