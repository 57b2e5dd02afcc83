//! Building blocks shared by the encoders and the decoder, written so that autograd works on
//! candle's CPU backend (no `conv_transpose1d`, no `upsample_nearest1d`, average pooling only as
//! a reshape and a mean).

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, Linear, VarBuilder};

use crate::Result;

/// Pads time symmetrically by reflection, as PyTorch's `F.pad(mode="reflect")`: a kernel of
/// size `k` gets `k/2` on the left and `k/2` (odd `k`) or `k/2 − 1` (even `k`) on the right.
pub fn reflect_pad(x: &Tensor, k: usize) -> Result<Tensor> {
    let left = k / 2;
    let right = if k % 2 == 0 { (k / 2).saturating_sub(1) } else { k / 2 };
    if left == 0 && right == 0 {
        return Ok(x.clone());
    }
    let t = x.dim(D::Minus1)?;
    if left >= t || right >= t {
        return Err(crate::Error::Input(format!(
            "{t} frames are too few for a kernel of {k} (reflect padding)"
        )));
    }
    // index_select wants a contiguous input (a narrowed mel is not).
    let x = &x.contiguous()?;
    let dev = x.device();
    let li: Vec<u32> = (1..=left).rev().map(|i| i as u32).collect();
    let ri: Vec<u32> = (0..right).map(|i| (t - 2 - i) as u32).collect();
    let mut parts = Vec::with_capacity(3);
    if left > 0 {
        parts.push(x.index_select(&Tensor::new(li.as_slice(), dev)?, D::Minus1)?);
    }
    parts.push(x.clone());
    if right > 0 {
        parts.push(x.index_select(&Tensor::new(ri.as_slice(), dev)?, D::Minus1)?);
    }
    Ok(Tensor::cat(&parts, D::Minus1)?)
}

/// How a convolution pads time so that its output is as long as its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Symmetric reflection (the paper's model).
    Reflect,
    /// `k − 1` zeros on the left: output frame `t` sees input frames `t − k + 1 ..= t` only.
    Causal,
}

/// A 1-d convolution with "same" padding (stride may subsample), computed by
/// [`crate::conv::conv1d`].
#[derive(Debug, Clone)]
pub struct PadConv {
    conv: Conv1d,
    kernel: usize,
    stride: usize,
    padding: Padding,
}

impl PadConv {
    /// `c_in → c_out` channels, kernel `k`, stride `stride`; weights at `vb` (`weight`, `bias`).
    pub fn new(c_in: usize, c_out: usize, k: usize, stride: usize, padding: Padding, vb: VarBuilder) -> Result<Self> {
        let cfg = Conv1dConfig {
            stride,
            ..Default::default()
        };
        Ok(Self {
            conv: candle_nn::conv1d(c_in, c_out, k, cfg, vb)?,
            kernel: k,
            stride,
            padding,
        })
    }

    /// Kernel size.
    pub fn kernel(&self) -> usize {
        self.kernel
    }

    /// The convolution's weight `[c_out, c_in, k]`.
    pub fn conv_weight(&self) -> &Tensor {
        self.conv.weight()
    }

    /// The convolution's bias `[c_out]`.
    pub fn conv_bias(&self) -> Option<&Tensor> {
        self.conv.bias()
    }

    /// The convolution without padding ("valid"): `T` frames in, `T − k + 1` out.
    pub fn forward_valid(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_padded(x, 0)
    }

    /// After `pad_left` zero frames (inside the op, no padded copy).
    fn forward_padded(&self, x: &Tensor, pad_left: usize) -> candle_core::Result<Tensor> {
        crate::conv::conv1d_full(x, self.conv.weight(), self.conv.bias(), self.stride, pad_left)
    }
}

impl Module for PadConv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.padding {
            Padding::Reflect => {
                self.forward_valid(&reflect_pad(x, self.kernel).map_err(|e| candle_core::Error::Msg(e.to_string()))?)
            }
            Padding::Causal => self.forward_padded(x, self.kernel - 1),
        }
    }
}

/// `max(x, 0)`. On the CPU in f32 a custom op whose backward is one pass (`g` where the output
/// is positive), instead of candle's five (zeros, compare, cast, multiply, add); elsewhere
/// candle's.
pub fn relu(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}

/// Elements per piece of work in the elementwise ops spread over threads.
const ELEMENTWISE_CHUNK: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Relu;

impl candle_core::CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "voxswap-relu"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let data = crate::conv::f32_slice(storage, layout, "voxswap-relu input")?;
        let mut out = vec![0f32; data.len()];
        crate::par::for_each_chunk_mut(&mut out, ELEMENTWISE_CHUNK, |i, o| {
            for (o, v) in o.iter_mut().zip(&data[i * ELEMENTWISE_CHUNK..]) {
                *o = v.max(0.0);
            }
        });
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        grad_res
            .contiguous()?
            .apply_op2_no_bwd(&res.contiguous()?, &ReluGrad)
            .map(Some)
    }
}

/// `(g, y) → g · [y > 0]`.
#[derive(Debug, Clone, Copy)]
struct ReluGrad;

impl candle_core::CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "voxswap-relu-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &candle_core::CpuStorage,
        gl: &candle_core::Layout,
        ys: &candle_core::CpuStorage,
        yl: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let g = crate::conv::f32_slice(gs, gl, "voxswap-relu gradient")?;
        let y = crate::conv::f32_slice(ys, yl, "voxswap-relu output")?;
        let mut out = vec![0f32; g.len()];
        crate::par::for_each_chunk_mut(&mut out, ELEMENTWISE_CHUNK, |i, o| {
            let (g, y) = (&g[i * ELEMENTWISE_CHUNK..], &y[i * ELEMENTWISE_CHUNK..]);
            for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
                *o = if y > 0.0 { g } else { 0.0 };
            }
        });
        Ok((candle_core::CpuStorage::F32(out), gl.shape().clone()))
    }
}

/// Instance normalisation without affine parameters over time (`[B, C, T]`, per `(b, c)`),
/// biased variance and eps 1e-5, as `nn.InstanceNorm1d(affine=False)`.
pub fn instance_norm(x: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?)
}

/// Added to the variance in the causal instance norm. Larger than the paper's 1e-5: at the
/// start of a stream, and in silence, a channel's variance is near zero, and 1/√1e-5 ≈ 316
/// amplified float rounding layer after layer (a chunk of one frame and the whole input then
/// differed by 1e-3 of the output's scale in the first silent frames).
pub const CAUSAL_NORM_EPS: f64 = 1e-3;

/// Causal instance normalisation: frame `t` is normalised with the mean and (biased) variance
/// of frames `0..=t` of its channel, eps [`CAUSAL_NORM_EPS`]. The sums run over `x − x₀` (the first frame,
/// which changes neither statistic): without the shift, `E[x²] − E[x]²` of a near-constant
/// channel (silence sits at the log floor, −11.5) loses all its digits to cancellation. A
/// stream keeps the same sums exactly ([`crate::stream::Ctx::norm`]).
pub fn causal_instance_norm(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 3 {
        return Ok(x.contiguous()?.apply_op1(CausalNorm)?);
    }
    Ok(causal_norm_continue(x, None)?.0)
}

/// [`causal_instance_norm`] from the start of a stream, fused into one pass forward and one
/// backward per `(b, c)` row (contiguous f32 `[B, C, T]` on the CPU). The same arithmetic as
/// [`causal_norm_continue`] (which stays the reference, and the path of streams and other
/// devices), without its dozen intermediate tensors: the shift `x₀` is not differentiated
/// through, as there.
#[derive(Debug, Clone, Copy)]
struct CausalNorm;

impl CausalNorm {
    /// Per row: `(d, mean, 1/σ)` at every frame, where `d = x − x₀`. The running sums first
    /// (a serial chain of additions), then the statistics from them (independent per frame,
    /// so the compiler vectorises the divisions and square roots).
    fn stats(row: &[f32], d: &mut [f32], mean: &mut [f32], inv_sd: &mut [f32], var_pos: &mut [bool]) {
        let x0 = row[0];
        let (mut s, mut q) = (0f32, 0f32);
        for t in 0..row.len() {
            let dt = row[t] - x0;
            s += dt;
            q += dt * dt;
            d[t] = dt;
            mean[t] = s;
            inv_sd[t] = q;
        }
        for t in 0..row.len() {
            let inv_n = 1.0 / (t + 1) as f32;
            let m = mean[t] * inv_n;
            let v = inv_sd[t] * inv_n - m * m;
            var_pos[t] = v > 0.0;
            mean[t] = m;
            inv_sd[t] = 1.0 / (v.max(0.0) + CAUSAL_NORM_EPS as f32).sqrt();
        }
    }
}

impl candle_core::CustomOp1 for CausalNorm {
    fn name(&self) -> &'static str {
        "voxswap-causal-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let data = crate::conv::f32_slice(storage, layout, "voxswap-causal-norm input")?;
        let t = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; data.len()];
        crate::par::for_each_rows_mut(&mut out, t, |first, rows| {
            let (mut d, mut m, mut r, mut p) = (vec![0f32; t], vec![0f32; t], vec![0f32; t], vec![false; t]);
            for (row, o) in data[first * t..].chunks_exact(t).zip(rows.chunks_exact_mut(t)) {
                Self::stats(row, &mut d, &mut m, &mut r, &mut p);
                for i in 0..t {
                    o[i] = (d[i] - m[i]) * r[i];
                }
            }
        });
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let x = arg.contiguous()?;
        let g = grad_res.contiguous()?;
        let t = x.dim(D::Minus1)?;
        let dx = crate::conv::with_f32(&x, |xs| crate::conv::with_f32(&g, |gs| Self::backward(xs, gs, t)))??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

impl CausalNorm {
    /// The input gradient from the input `xs` and the output gradient `gs`, rows of `t` frames.
    fn backward(xs: &[f32], gs: &[f32], t: usize) -> Vec<f32> {
        let mut dx = vec![0f32; xs.len()];
        crate::par::for_each_rows_mut(&mut dx, t, |first, rows| {
            let (mut d, mut m, mut r, mut p) = (vec![0f32; t], vec![0f32; t], vec![0f32; t], vec![false; t]);
            let (mut gs_sum, mut gq_sum) = (vec![0f32; t], vec![0f32; t]);
            let (xs, gs) = (&xs[first * t..], &gs[first * t..]);
            for ((row, gr), out) in xs.chunks_exact(t).zip(gs.chunks_exact(t)).zip(rows.chunks_exact_mut(t)) {
                Self::stats(row, &mut d, &mut m, &mut r, &mut p);
                // y = (d − m)·r with m = S/n, v = Q/n − m², r = (max(v, 0) + eps)^(−1/2).
                for i in 0..t {
                    let inv_n = 1.0 / (i + 1) as f32;
                    let (g, c, ri) = (gr[i], d[i] - m[i], r[i]);
                    // ∂L/∂v (zero where the variance was clamped), then ∂L/∂m and the sums.
                    let gv = if p[i] { -0.5 * g * c * ri * ri * ri } else { 0.0 };
                    let gm = -g * ri - 2.0 * m[i] * gv;
                    gs_sum[i] = gm * inv_n;
                    gq_sum[i] = gv * inv_n;
                    out[i] = g * ri;
                }
                // S_t = Σ_{u≤t} d_u and Q_t = Σ_{u≤t} d_u²: gradients are reverse cumulative sums.
                let (mut acc_s, mut acc_q) = (0f32, 0f32);
                for i in (0..t).rev() {
                    acc_s += gs_sum[i];
                    acc_q += gq_sum[i];
                    out[i] += acc_s + 2.0 * d[i] * acc_q;
                }
            }
        });
        dx
    }
}

/// The running statistics of a causal instance norm after some frames: the first frame (the
/// shift), the frame count, and the sums of `x − shift` and of its square per channel.
#[derive(Debug, Clone)]
pub struct CausalStats {
    shift: Tensor,
    count: usize,
    sum: Tensor,
    sum_sq: Tensor,
}

/// Causal instance norm of `x`, continuing from the statistics of earlier frames (`None`: `x`
/// starts the sequence); also returns the statistics after `x`. Offline and streaming passes
/// both go through here, so they compute the same thing.
pub fn causal_norm_continue(x: &Tensor, before: Option<&CausalStats>) -> Result<(Tensor, CausalStats)> {
    let (shift, count) = match before {
        Some(b) => (b.shift.clone(), b.count),
        None => (x.narrow(D::Minus1, 0, 1)?.detach().contiguous()?, 0),
    };
    let d = x.broadcast_sub(&shift)?;
    let mut cs = cumsum_time(&d)?;
    let mut cs2 = cumsum_time(&d.sqr()?)?;
    if let Some(b) = before {
        cs = cs.broadcast_add(&b.sum)?;
        cs2 = cs2.broadcast_add(&b.sum_sq)?;
    }
    let t = x.dim(D::Minus1)?;
    let inv_n: Vec<f32> = (count + 1..=count + t).map(|n| 1.0 / n as f32).collect();
    let inv_n = Tensor::from_vec(inv_n, (1, 1, t), x.device())?.to_dtype(x.dtype())?;
    let mean = cs.broadcast_mul(&inv_n)?;
    let var = (cs2.broadcast_mul(&inv_n)? - mean.sqr()?)?.relu()?;
    let y = (d - mean)?.div(&(var + CAUSAL_NORM_EPS)?.sqrt()?)?;
    let after = CausalStats {
        shift,
        count: count + t,
        sum: cs.narrow(D::Minus1, t - 1, 1)?.contiguous()?,
        sum_sq: cs2.narrow(D::Minus1, t - 1, 1)?.contiguous()?,
    };
    Ok((y, after))
}

/// Cumulative sum over the last dimension. On the CPU it accumulates frame after frame (a
/// [`SeqCumsum`] custom op), so a stream that carries the sum forward computes bit for bit what
/// the offline pass computes; candle's own `cumsum` is a matrix product, whose summation order
/// depends on the length. Elsewhere it is candle's.
pub fn cumsum_time(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        Ok(x.contiguous()?.apply_op1(SeqCumsum { reverse: false })?)
    } else {
        Ok(x.cumsum(D::Minus1)?)
    }
}

/// Sequential cumulative sum over the last dimension of a contiguous f32 tensor (from the end
/// when `reverse`, which is its gradient).
#[derive(Debug, Clone, Copy)]
pub struct SeqCumsum {
    /// Sum from the last element backwards.
    pub reverse: bool,
}

impl candle_core::CustomOp1 for SeqCumsum {
    fn name(&self) -> &'static str {
        "voxswap-seq-cumsum"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let data = crate::conv::f32_slice(storage, layout, "voxswap-seq-cumsum input")?;
        let t = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0.0f32; data.len()];
        for (row, o) in data.chunks_exact(t).zip(out.chunks_exact_mut(t)) {
            let mut acc = 0.0f32;
            if self.reverse {
                for (v, r) in row.iter().zip(o.iter_mut()).rev() {
                    acc += v;
                    *r = acc;
                }
            } else {
                for (v, r) in row.iter().zip(o.iter_mut()) {
                    acc += v;
                    *r = acc;
                }
            }
        }
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // d/dx_s of Σ_t g_t · (Σ_{u≤t} x_u) = Σ_{t≥s} g_t: the reverse cumulative sum.
        Ok(Some(
            grad_res.contiguous()?.apply_op1(SeqCumsum { reverse: !self.reverse })?,
        ))
    }
}

/// `x · scale + shift` per channel, `scale` and `shift` the two halves of `cond` (`[B, 2C]`):
/// adaptive instance normalisation's affine step.
pub fn adain(x: &Tensor, cond: &Tensor) -> Result<Tensor> {
    let c = x.dim(1)?;
    let shift = cond.narrow(1, 0, c)?.unsqueeze(2)?;
    let scale = cond.narrow(1, c, c)?.unsqueeze(2)?;
    Ok(x.broadcast_mul(&scale)?.broadcast_add(&shift)?)
}

/// [`adain`] with a shift and scale per frame: `cond` is `[B, 2C, T]` (shift, then scale).
pub fn adain_frames(x: &Tensor, cond: &Tensor) -> Result<Tensor> {
    let c = x.dim(1)?;
    let shift = cond.narrow(1, 0, c)?;
    let scale = cond.narrow(1, c, c)?;
    Ok(((x * scale)? + shift)?)
}

/// Mean over non-overlapping windows of 2 in time, the last window shorter when the length is
/// odd (`F.avg_pool1d(kernel_size=2, ceil_mode=True)`).
pub fn avg_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, c, t) = x.dims3()?;
    let x = if t % 2 == 1 {
        // The lone last frame averages with itself.
        Tensor::cat(&[x.clone(), x.narrow(2, t - 1, 1)?], 2)?
    } else {
        x.clone()
    };
    let t2 = x.dim(2)? / 2;
    Ok(x.reshape((b, c, t2, 2))?.mean(3)?)
}

/// `[B, C·r, T] → [B, C, T·r]`: channel groups become consecutive time steps (pixel shuffle).
pub fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (b, c, t) = x.dims3()?;
    Ok(x.reshape((b, c / r, r, t))?
        .permute((0, 1, 3, 2))?
        .reshape((b, c / r, t * r))?)
}

/// Nearest-neighbour upsampling in time by `r`, as broadcast and reshape (candle's
/// `upsample_nearest1d` gradient is wrong when its input has another consumer).
pub fn upsample_nearest(x: &Tensor, r: usize) -> Result<Tensor> {
    let (b, c, t) = x.dims3()?;
    Ok(x.unsqueeze(3)?.broadcast_as((b, c, t, r))?.reshape((b, c, t * r))?)
}

/// Convolution bank: ReLU of convolutions of every kernel size, concatenated with the input.
#[derive(Debug, Clone)]
pub struct ConvBank {
    convs: Vec<PadConv>,
}

impl ConvBank {
    /// One convolution `c_in → c_bank` per kernel size, at `vb.pp(i)`.
    pub fn new(c_in: usize, c_bank: usize, kernels: &[usize], padding: Padding, vb: VarBuilder) -> Result<Self> {
        let convs = kernels
            .iter()
            .enumerate()
            .map(|(i, &k)| PadConv::new(c_in, c_bank, k, 1, padding, vb.pp(i.to_string())))
            .collect::<Result<_>>()?;
        Ok(Self { convs })
    }

    /// The convolutions.
    pub fn convs(&self) -> &[PadConv] {
        &self.convs
    }
}

impl Module for ConvBank {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut outs = self
            .convs
            .iter()
            .map(|c| relu(&c.forward(x)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        outs.push(x.clone());
        Tensor::cat(&outs, 1)
    }
}

/// A linear layer (weights at `vb`).
pub fn linear(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(candle_nn::linear(c_in, c_out, vb)?)
}

/// Checks that a mel batch is `[B, n_mels, T]` in f32 with `T` a multiple of `multiple`.
pub fn check_mel(x: &Tensor, n_mels: usize, multiple: usize) -> Result<()> {
    let dims = x.dims();
    if dims.len() != 3 || dims[1] != n_mels {
        return Err(crate::Error::Input(format!(
            "expected a mel batch [batch, {n_mels}, frames], got {dims:?}"
        )));
    }
    if dims[2] == 0 || dims[2] % multiple != 0 {
        return Err(crate::Error::Input(format!(
            "frames ({}) must be a positive multiple of {multiple}",
            dims[2]
        )));
    }
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(crate::Error::Input(format!(
            "expected f32 or f64 mels, got {:?}",
            x.dtype()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: (usize, usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn reflect_pad_matches_pytorch() {
        // F.pad(arange(5), (2, 2), "reflect") = [2, 1, 0, 1, 2, 3, 4, 3, 2]
        let x = t(&[0., 1., 2., 3., 4.], (1, 1, 5));
        let y = reflect_pad(&x, 5)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(y, vec![2., 1., 0., 1., 2., 3., 4., 3., 2.]);
        // Even kernel 4: (2, 1).
        let y = reflect_pad(&x, 4)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(y, vec![2., 1., 0., 1., 2., 3., 4., 3.]);
        assert!(reflect_pad(&t(&[1., 2.], (1, 1, 2)), 5).is_err());
    }

    #[test]
    fn pooling_shuffle_and_upsampling() {
        let x = t(&[1., 2., 3., 4., 5.], (1, 1, 5));
        let p = avg_pool2(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(p, vec![1.5, 3.5, 5.0]);
        let u = upsample_nearest(&t(&[1., 2.], (1, 1, 2)), 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(u, vec![1., 1., 2., 2.]);
        // Channels [a0 a1 | b0 b1] → [a0 b0 a1 b1].
        let s = pixel_shuffle(&t(&[1., 2., 10., 20.], (1, 2, 2)), 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(s, vec![1., 10., 2., 20.]);
    }

    #[test]
    fn instance_norm_gives_zero_mean_unit_variance() {
        let x = t(&[1., 2., 3., 4., 10., 20., 30., 40.], (1, 2, 4));
        let y = instance_norm(&x).unwrap().to_vec3::<f32>().unwrap();
        for row in &y[0] {
            let mean: f32 = row.iter().sum::<f32>() / 4.0;
            let var: f32 = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
            assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4, "{row:?}");
        }
    }

    #[test]
    fn fused_causal_norm_equals_the_reference_forward_and_backward() {
        use candle_core::Var;
        let dev = Device::Cpu;
        // Includes a constant (silent) channel, where the variance is clamped.
        let mut data: Vec<f32> = (0..2 * 3 * 37)
            .map(|i| ((i * 7919 % 211) as f32 / 50.0).sin() * 3.0)
            .collect();
        data[37..74].fill(-11.5);
        let x = Var::from_vec(data, (2, 3, 37), &dev).unwrap();
        let r = Tensor::randn(0f32, 1.0, (2, 3, 37), &dev).unwrap();
        let fused = causal_instance_norm(&x).unwrap();
        let reference = causal_norm_continue(&x, None).unwrap().0;
        let diff = (&fused - &reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "forward differs by {diff}");
        let g1 = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff <= 1e-4 * scale, "gradient differs by {diff} (scale {scale})");
    }

    #[test]
    fn relu_op_equals_candle_forward_and_backward() {
        use candle_core::Var;
        let x = Var::randn(0f32, 1.0, (3, 4, 5), &Device::Cpu).unwrap();
        let r = Tensor::randn(0f32, 1.0, (3, 4, 5), &Device::Cpu).unwrap();
        let a = relu(&x).unwrap();
        let b = x.relu().unwrap();
        assert_eq!(a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
        let ga = (a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(
            ga.get(x.as_tensor()).unwrap().to_vec3::<f32>().unwrap(),
            gb.get(x.as_tensor()).unwrap().to_vec3::<f32>().unwrap()
        );
    }
}
