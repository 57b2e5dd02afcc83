//! 1-d convolution on the CPU as a candle custom op, forward and backward.
//!
//! candle 0.11's CPU conv1d lays its im2col buffer out time-major, so every convolution ends in a
//! transposing copy, and its backward pass computes the input gradient with a direct
//! (dot-product-per-output) transposed convolution: a fifth of a training step went to that
//! alone. Here the three products a convolution needs are each one matrix product per batch
//! item, in the layout the tensors already have:
//!
//! - forward: `Y = W · col(X)` with `W` as `[C_out, C_in·K]` and `col(X)` as `[C_in·K, B·T_out]`;
//! - weight gradient: `dW = G · col(X)ᵀ`;
//! - input gradient: `dX = col⁻¹(Wᵀ · G)` (overlapping columns added back).
//!
//! Valid convolution (no padding; [`crate::layers::PadConv`] pads), any stride, dilation 1,
//! contiguous f32 on the CPU; anything else goes to candle's `conv1d`. The batch items sit side
//! by side in one wide matrix (`[C, B·T_out]`), so each product is a single large one, which the
//! matrix kernel runs far more efficiently than one small product per item, and in parallel.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;

use crate::par::{self, SendPtr};

/// `x [B, C_in, T] ⊛ w [C_out, C_in, K]` with stride `stride`, no padding: `[B, C_out, T_out]`,
/// `T_out = (T − K) / stride + 1`.
pub fn conv1d(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    conv1d_full(x, w, None, stride, 0)
}

/// [`conv1d`] after `pad_left` zero frames in front of the input, plus `bias [C_out]` per
/// output channel: `T_out = (T + pad_left − K) / stride + 1`. The padding and the bias live
/// inside the op (no padded copy of the input; the bias gradient is one pass over the output
/// gradient instead of candle's strided reduction of a broadcast).
pub fn conv1d_full(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, stride: usize, pad_left: usize) -> Result<Tensor> {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if f32_cpu(x) && f32_cpu(w) && bias.is_none_or(f32_cpu) {
        let op = Conv1d { stride, pad: pad_left };
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        match bias {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
            None => x.apply_op2(&w, op),
        }
    } else {
        let x = if pad_left > 0 {
            x.pad_with_zeros(2, pad_left, 0)?
        } else {
            x.clone()
        };
        let y = x.conv1d(w, 0, stride, 1, 1)?;
        match bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    c_in: usize,
    t: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    /// Zero frames in front of the input.
    pad: usize,
    t_out: usize,
}

impl Dims {
    fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[b, c_in, t], &[c_out, c_in_w, k]) = (x, w) else {
            candle_core::bail!("voxswap conv1d: expected [B, C, T] and [C_out, C_in, K], got {x:?} and {w:?}");
        };
        if c_in != c_in_w || k == 0 || stride == 0 || t + pad < k {
            candle_core::bail!(
                "voxswap conv1d: input {x:?} does not fit kernel {w:?} (stride {stride}, padding {pad})"
            );
        }
        Ok(Self {
            b,
            c_in,
            t,
            c_out,
            k,
            stride,
            pad,
            t_out: (t + pad - k) / stride + 1,
        })
    }

    /// For kernel tap `j`: the first output frame whose input frame `t·stride + j − pad` is
    /// inside the input (earlier ones read the zero padding), and that input frame.
    fn first_inside(&self, j: usize) -> (usize, usize) {
        let t0 = self.pad.saturating_sub(j).div_ceil(self.stride);
        (t0, t0 * self.stride + j - self.pad)
    }

    fn ck(&self) -> usize {
        self.c_in * self.k
    }

    /// Columns of the wide matrices: every batch item's output frames side by side.
    fn n(&self) -> usize {
        self.b * self.t_out
    }

    /// `col[(c·K + j), b·T_out + t] = x[b, c, t·stride + j − pad]` (zero in the padding): all
    /// batch items side by side, so that each product below is one large matrix product, not
    /// one small one per item.
    fn im2col(&self, x: &[f32]) -> Vec<f32> {
        let n = self.n();
        let fill = |c_row: usize, chunk: &mut [MaybeUninit<f32>]| {
            for b in 0..self.b {
                let row = &x[(b * self.c_in + c_row) * self.t..][..self.t];
                for j in 0..self.k {
                    let dst = &mut chunk[j * n + b * self.t_out..][..self.t_out];
                    // Frames before t0 read the zero padding.
                    let (t0, s0) = self.first_inside(j);
                    let t0 = t0.min(self.t_out);
                    let (pad, inside) = dst.split_at_mut(t0);
                    pad.fill(MaybeUninit::new(0.0));
                    if self.stride == 1 {
                        // (`write_copy_of_slice` does this safely from Rust 1.93; the MSRV is 1.85.)
                        let src = &row[s0.min(self.t)..][..inside.len()];
                        // SAFETY: `inside` has room for `src.len()` values; no overlap.
                        unsafe {
                            std::ptr::copy_nonoverlapping(src.as_ptr(), inside.as_mut_ptr().cast::<f32>(), src.len());
                        }
                    } else {
                        for (d, s) in inside.iter_mut().zip(row[s0.min(self.t)..].iter().step_by(self.stride)) {
                            d.write(*s);
                        }
                    }
                }
            }
        };
        // SAFETY: `fill` writes every element of its channel's K·n piece: for each batch item
        // and tap, the t0 padding frames and the T_out − t0 frames inside the input (the input
        // holds them: see `first_inside`).
        unsafe { par::filled(self.ck() * n, self.k * n, fill) }
    }

    /// `x[b, c, t·stride + j − pad] += col[(c·K + j), b·T_out + t]` into a zeroed `x` (the
    /// padding's share dropped).
    fn col2im(&self, col: &[f32], x: &mut [f32]) {
        let n = self.n();
        par::for_each_chunk_mut(x, self.t, |bc, row| {
            let (b, c) = (bc / self.c_in, bc % self.c_in);
            for j in 0..self.k {
                let (t0, s0) = self.first_inside(j);
                if t0 >= self.t_out {
                    continue;
                }
                let src = &col[(c * self.k + j) * n + b * self.t_out..][t0..self.t_out];
                if self.stride == 1 {
                    for (d, s) in row[s0..s0 + src.len()].iter_mut().zip(src) {
                        *d += s;
                    }
                } else {
                    for (d, s) in row[s0..].iter_mut().step_by(self.stride).zip(src) {
                        *d += s;
                    }
                }
            }
        });
    }

    /// `[C, B·T_out]` → `[B, C, T_out]`, plus `bias[c]` if given.
    fn narrow_batch(&self, w: &[f32], c: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let mut y = vec![0f32; w.len()];
        par::for_each_chunk_mut(&mut y, self.t_out, |bo, dst| {
            let (b, o) = (bo / c, bo % c);
            let src = &w[o * self.n() + b * self.t_out..][..self.t_out];
            match bias {
                Some(bias) => {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = s + bias[o];
                    }
                }
                None => dst.copy_from_slice(src),
            }
        });
        y
    }

    /// The output gradient must come widened: `[C_out, B·T_out]`.
    fn check_gradient(&self, gl: &Layout) -> Result<()> {
        if gl.dims() != [self.c_out, self.n()] {
            candle_core::bail!(
                "voxswap conv1d backward: widened gradient {:?} for {} channels × {} columns",
                gl.dims(),
                self.c_out,
                self.n()
            );
        }
        Ok(())
    }
}

/// Products with fewer multiply-adds than this run on one thread.
const PAR_MIN_WORK: usize = 1 << 21;

/// `lhs [m, k] · rhs [k, n]` (operands given as (row stride, column stride)) into a new
/// buffer, row-major or, with `column_major`, column-major (the transposed product's layout).
///
/// With several threads, the longer of `m` and `n` is cut into one block per thread and each
/// block is an independent single-threaded product, run on candle's own worker pool (the one
/// its elementwise ops use, with the calling thread taking a block). The matrix crate's rayon
/// threading gained nothing here: its workers competed for the cores with candle's pool
/// workers, which spin between ops.
fn matmul(
    (m, n, k): (usize, usize, usize),
    column_major: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) -> Vec<f32> {
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    let (dst_rs, dst_cs) = if column_major { (1, m) } else { (n, 1) };
    // No zeroing pass: the product writes every element (gemm with `read_dst` false never
    // reads the destination).
    let mut out = Vec::<f32>::with_capacity(m * n);
    let (dst, lhs, rhs) = (
        SendPtr(out.spare_capacity_mut().as_mut_ptr().cast::<f32>()),
        SendPtr(lhs.as_ptr().cast_mut()),
        SendPtr(rhs.as_ptr().cast_mut()),
    );
    // SAFETY: the slices hold every element the strides address (asserted above), `out` has
    // room for m·n; dst does not alias lhs or rhs; gemm only reads lhs and rhs.
    let product = |(m, n): (usize, usize), dst: *mut f32, lhs: *const f32, rhs: *const f32| unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            false,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    };
    let threads = par::threads();
    let long = m.max(n);
    if k == 0 {
        out.resize(m * n, 0.0);
        return out;
    }
    if threads <= 1 || m * n * k < PAR_MIN_WORK || long < 64 {
        product((m, n), dst.at(0), lhs.at(0), rhs.at(0));
    } else {
        // One block per thread, a multiple of 16 rows or columns (whole vector registers).
        let block = long.div_ceil(threads).next_multiple_of(16);
        par::for_each_thread(|tid| {
            let start = tid * block;
            if start >= long {
                return;
            }
            let len = block.min(long - start);
            if n >= m {
                // Columns start..start+len: of dst and of rhs.
                product((m, len), dst.at(start * dst_cs), lhs.at(0), rhs.at(start * rhs_cs));
            } else {
                // Rows start..start+len: of dst and of lhs.
                product((len, n), dst.at(start * dst_rs), lhs.at(start * lhs_rs), rhs.at(0));
            }
        });
    }
    // SAFETY: every one of the m·n elements was written above.
    unsafe { out.set_len(m * n) };
    out
}

/// `f` of a tensor's values as f32: read in place where the tensor is contiguous f32 on the
/// CPU, else from a copy (one pass over the tensor either way, with no copy in training).
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&v[a..b]));
        }
    }
    Ok(f(&t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?))
}

/// The f32 data of a contiguous CPU storage, or an error naming `what`.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("voxswap: {what} must be f32");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("voxswap: {what} must be contiguous");
    };
    Ok(&data[a..b])
}

/// The forward op, with a bias (`CustomOp3`) or without (`CustomOp2`); its backward uses
/// [`InputGrad`], [`WeightGrad`] and [`BiasGrad`].
#[derive(Debug, Clone, Copy)]
struct Conv1d {
    stride: usize,
    pad: usize,
}

impl Conv1d {
    fn forward(
        &self,
        (xs, xl): (&CpuStorage, &Layout),
        (ws, wl): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(xl.dims(), wl.dims(), self.stride, self.pad)?;
        let (x, w) = (f32_slice(xs, xl, "input")?, f32_slice(ws, wl, "kernel")?);
        let bias = match bias {
            Some((bs, bl)) => {
                let b = f32_slice(bs, bl, "bias")?;
                if b.len() != d.c_out {
                    candle_core::bail!("voxswap conv1d: bias {:?} for {} output channels", bl.dims(), d.c_out);
                }
                Some(b)
            }
            None => None,
        };
        // Y [C_out, B·T_out] = W [C_out, C_in·K] · col [C_in·K, B·T_out]
        let col = d.im2col(x);
        let wide = matmul((d.c_out, d.n(), d.ck()), false, w, (d.ck(), 1), &col, (d.n(), 1));
        let y = d.narrow_batch(&wide, d.c_out, bias);
        Ok((CpuStorage::F32(y), Shape::from((d.b, d.c_out, d.t_out))))
    }

    /// The input gradient (only where something upstream wants it: not for the mel itself)
    /// and the kernel gradient.
    /// `g` is the output gradient widened to `[C_out, B·T_out]` ([`Widen`]), once for all
    /// three gradients.
    fn grads(&self, x: &Tensor, w: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Tensor)> {
        let gx = if !x.track_op() {
            None
        } else {
            Some(g.apply_op2_no_bwd(
                w,
                &InputGrad {
                    stride: self.stride,
                    pad: self.pad,
                    b: x.dim(0)?,
                    t: x.dim(2)?,
                },
            )?)
        };
        let gw = x.apply_op2_no_bwd(
            g,
            &WeightGrad {
                stride: self.stride,
                pad: self.pad,
                k: w.dim(2)?,
            },
        )?;
        Ok((gx, gw))
    }
}

impl CustomOp2 for Conv1d {
    fn name(&self) -> &'static str {
        "voxswap-conv1d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        self.forward((xs, xl), (ws, wl), None)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = self.grads(x, w, &g.contiguous()?.apply_op1_no_bwd(&Widen)?)?;
        Ok((gx, Some(gw)))
    }
}

impl CustomOp3 for Conv1d {
    fn name(&self) -> &'static str {
        "voxswap-conv1d-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((xs, xl), (ws, wl), Some((bs, bl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?.apply_op1_no_bwd(&Widen)?;
        let (gx, gw) = self.grads(x, w, &g)?;
        let gb = g.apply_op1_no_bwd(&BiasGrad)?;
        Ok((gx, Some(gw), Some(gb)))
    }
}

/// `(g [C_out, B·T_out] widened, w) → dx [B, C_in, T]`.
struct InputGrad {
    stride: usize,
    pad: usize,
    b: usize,
    t: usize,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "voxswap-conv1d-input-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[_, c_in, _] = wl.dims() else {
            candle_core::bail!("voxswap conv1d backward: bad kernel shape {:?}", wl.dims());
        };
        let d = Dims::new(&[self.b, c_in, self.t], wl.dims(), self.stride, self.pad)?;
        let (g, w) = (f32_slice(gs, gl, "gradient")?, f32_slice(ws, wl, "kernel")?);
        d.check_gradient(gl)?;
        // dcol [C_in·K, B·T_out] = Wᵀ [C_in·K, C_out] · G [C_out, B·T_out]
        let dcol = matmul((d.ck(), d.n(), d.c_out), false, w, (1, d.ck()), g, (d.n(), 1));
        let mut dx = vec![0f32; d.b * d.c_in * d.t];
        d.col2im(&dcol, &mut dx);
        Ok((CpuStorage::F32(dx), Shape::from((d.b, d.c_in, d.t))))
    }
}

/// `(x [B, C_in, T], g [C_out, B·T_out] widened) → dw [C_out, C_in, K]`.
struct WeightGrad {
    stride: usize,
    pad: usize,
    k: usize,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "voxswap-conv1d-weight-grad"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (&[_, c_in, _], &[c_out, _]) = (xl.dims(), gl.dims()) else {
            candle_core::bail!("voxswap conv1d backward: bad shapes {:?} {:?}", xl.dims(), gl.dims());
        };
        let d = Dims::new(xl.dims(), &[c_out, c_in, self.k], self.stride, self.pad)?;
        let (x, g) = (f32_slice(xs, xl, "input")?, f32_slice(gs, gl, "gradient")?);
        d.check_gradient(gl)?;
        // dW [C_out, C_in·K] = G [C_out, B·T_out] · colᵀ [B·T_out, C_in·K]. Both operands are
        // contiguous along the sum, so one of them must be transposed while the matrix kernel
        // packs it: written column-major, the product packs G (C_out rows) rather than col
        // (C_in·K rows, up to 1,104), then the small result is transposed.
        let col = d.im2col(x);
        let dw_t = matmul((d.c_out, d.ck(), d.n()), true, g, (d.n(), 1), &col, (1, d.n()));
        let mut dw = vec![0f32; dw_t.len()];
        par::for_each_chunk_mut(&mut dw, d.ck(), |o, row| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = dw_t[j * d.c_out + o];
            }
        });
        Ok((CpuStorage::F32(dw), Shape::from((d.c_out, d.c_in, d.k))))
    }
}

/// `g [B, C, T] → [C, B·T]`: the output gradient with every batch item's frames side by side,
/// the layout all three gradient products read (widened once per backward pass).
struct Widen;

impl CustomOp1 for Widen {
    fn name(&self) -> &'static str {
        "voxswap-conv1d-widen"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[b, c, t] = gl.dims() else {
            candle_core::bail!("voxswap conv1d backward: bad gradient shape {:?}", gl.dims());
        };
        let g = f32_slice(gs, gl, "gradient")?;
        let mut w = vec![0f32; g.len()];
        par::for_each_chunk_mut(&mut w, b * t, |o, row| {
            for (bi, dst) in row.chunks_exact_mut(t).enumerate() {
                dst.copy_from_slice(&g[(bi * c + o) * t..][..t]);
            }
        });
        Ok((CpuStorage::F32(w), Shape::from((c, b * t))))
    }
}

/// `g [C, B·T] widened → [C]`: the sum over batch and time (a bias's gradient).
struct BiasGrad;

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "voxswap-conv1d-bias-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[c, n] = gl.dims() else {
            candle_core::bail!("voxswap conv1d backward: bad gradient shape {:?}", gl.dims());
        };
        let g = f32_slice(gs, gl, "gradient")?;
        let sums = g
            .chunks_exact(n.max(1))
            .take(c)
            .map(|row| row.iter().sum::<f32>())
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Direct sums in f64.
    fn reference(
        x: &[f32],
        w: &[f32],
        (b, c_in, t): (usize, usize, usize),
        (c_out, k): (usize, usize),
        s: usize,
    ) -> Vec<f64> {
        let t_out = (t - k) / s + 1;
        let mut y = vec![0f64; b * c_out * t_out];
        for bi in 0..b {
            for o in 0..c_out {
                for to in 0..t_out {
                    let mut acc = 0f64;
                    for c in 0..c_in {
                        for j in 0..k {
                            acc +=
                                f64::from(x[(bi * c_in + c) * t + to * s + j]) * f64::from(w[(o * c_in + c) * k + j]);
                        }
                    }
                    y[(bi * c_out + o) * t_out + to] = acc;
                }
            }
        }
        y
    }

    fn close(a: &[f32], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((f64::from(*x) - y).abs() <= tol * scale, "at {i}: {x} vs {y}");
        }
    }

    #[test]
    fn forward_and_gradients_match_direct_sums() {
        let dev = Device::Cpu;
        for (b, c_in, t, c_out, k, s) in [
            (3, 4, 17, 5, 3, 1),
            (2, 3, 20, 4, 5, 2),
            (4, 6, 9, 7, 1, 1),
            (1, 2, 8, 3, 8, 1),
            // Large enough for the products to be split across threads (when the machine has
            // several): by columns, and (the kernel gradient here) by rows.
            (2, 32, 602, 64, 3, 1),
            (2, 8, 600, 200, 3, 1),
        ] {
            let x = Var::randn(0f32, 1.0, (b, c_in, t), &dev).unwrap();
            let w = Var::randn(0f32, 1.0, (c_out, c_in, k), &dev).unwrap();
            let y = conv1d(&x, &w, s).unwrap();
            let (xv, wv) = (
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let want = reference(&xv, &wv, (b, c_in, t), (c_out, k), s);
            close(&y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &want, 1e-5);
            // candle's conv1d agrees too (same shapes).
            let c = x.conv1d(&w, 0, s, 1, 1).unwrap();
            assert_eq!(c.dims(), y.dims());

            // Gradients of Σ y·r: dW and dx by direct sums.
            let t_out = (t - k) / s + 1;
            let r = Tensor::randn(0f32, 1.0, (b, c_out, t_out), &dev).unwrap();
            let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let rv = r.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (mut dx, mut dw) = (vec![0f64; xv.len()], vec![0f64; wv.len()]);
            for bi in 0..b {
                for o in 0..c_out {
                    for to in 0..t_out {
                        let g = f64::from(rv[(bi * c_out + o) * t_out + to]);
                        for c in 0..c_in {
                            for j in 0..k {
                                let xi = (bi * c_in + c) * t + to * s + j;
                                let wi = (o * c_in + c) * k + j;
                                dx[xi] += g * f64::from(wv[wi]);
                                dw[wi] += g * f64::from(xv[xi]);
                            }
                        }
                    }
                }
            }
            let gx = grads
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let gw = grads
                .get(w.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            close(&gx, &dx, 1e-5);
            close(&gw, &dw, 1e-5);
        }
    }

    /// Zero padding and bias inside the op against candle's own pad, convolution and broadcast
    /// add: output and the gradients of input, kernel and bias.
    #[test]
    fn padding_and_bias_match_candle() {
        let dev = Device::Cpu;
        for (b, c_in, t, c_out, k, s, pad) in [
            (2, 3, 11, 4, 5, 1, 4),
            (3, 2, 9, 3, 3, 2, 2),
            (2, 4, 6, 5, 4, 1, 1),
            (1, 3, 2, 2, 5, 1, 4),
            (2, 2, 10, 3, 1, 1, 0),
            (2, 3, 13, 2, 4, 3, 3),
        ] {
            let x = Var::randn(0f32, 1.0, (b, c_in, t), &dev).unwrap();
            let w = Var::randn(0f32, 1.0, (c_out, c_in, k), &dev).unwrap();
            let bias = Var::randn(0f32, 1.0, c_out, &dev).unwrap();
            let ours = conv1d_full(&x, &w, Some(&bias), s, pad).unwrap();
            let theirs = x
                .pad_with_zeros(2, pad, 0)
                .unwrap()
                .conv1d(&w, 0, s, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, (), 1)).unwrap())
                .unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let to64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
            close(&flat(&ours), &to64(flat(&theirs)), 1e-5);
            let g_ours = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g_theirs = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [x.as_tensor(), w.as_tensor(), bias.as_tensor()] {
                let (a, e) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert_eq!(a.dims(), e.dims());
                close(&flat(a), &to64(flat(e)), 1e-5);
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let x = Tensor::zeros((1, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((2, 3, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(conv1d(&x, &w, 1).is_err());
        let w = Tensor::zeros((2, 4, 1), DType::F32, &Device::Cpu).unwrap();
        assert!(conv1d(&x, &w, 1).is_err());
    }
}
