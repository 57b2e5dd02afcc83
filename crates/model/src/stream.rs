//! Streaming state for the causal model: one code path serves offline and streaming passes
//! ([`Ctx`]); in a stream, each convolution keeps its last `k − 1` input frames and each causal
//! instance norm its running count, sum and sum of squares, so chunk after chunk reproduces the
//! offline pass.

use candle_core::{Tensor, D};

use crate::layers::{causal_instance_norm, causal_sums, instance_norm, PadConv, Padding};
use crate::Result;

#[derive(Debug, Clone)]
enum Slot {
    Empty,
    Conv(Tensor),
    Norm {
        count: usize,
        shift: Tensor,
        sum: Tensor,
        sum_sq: Tensor,
    },
}

/// The state of every stateful layer, in the order the forward pass meets them.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    slots: Vec<Slot>,
    next: usize,
}

impl Stream {
    /// Starts a pass over the next chunk.
    pub fn begin(&mut self) {
        self.next = 0;
    }

    /// Forgets everything: the next chunk starts a new stream.
    pub fn reset(&mut self) {
        self.slots.clear();
        self.next = 0;
    }

    fn slot(&mut self) -> &mut Slot {
        if self.next == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        self.next += 1;
        &mut self.slots[self.next - 1]
    }
}

/// How a forward pass sees time: the whole input at once, or the next chunk of a stream.
#[derive(Debug)]
pub enum Ctx<'a> {
    /// The whole input.
    Offline,
    /// The next chunk of a stream (causal layers only).
    Stream(&'a mut Stream),
}

impl Ctx<'_> {
    /// A convolution with "same" padding offline; in a stream, the chunk after the convolution's
    /// remembered last `k − 1` frames (zeros at the start), without padding.
    pub fn conv(&mut self, conv: &PadConv, x: &Tensor) -> Result<Tensor> {
        use candle_core::Module;
        let Ctx::Stream(s) = self else {
            return Ok(conv.forward(x)?);
        };
        let k = conv.kernel();
        if k == 1 {
            return Ok(conv.forward_valid(x)?);
        }
        let slot = s.slot();
        let hist = match slot {
            Slot::Conv(h) => h.clone(),
            _ => x.narrow(D::Minus1, 0, 1)?.zeros_like()?.repeat((1, 1, k - 1))?,
        };
        let buf = Tensor::cat(&[&hist, x], D::Minus1)?;
        let n = buf.dim(D::Minus1)?;
        *slot = Slot::Conv(buf.narrow(D::Minus1, n - (k - 1), k - 1)?.contiguous()?);
        Ok(conv.forward_valid(&buf)?)
    }

    /// Instance norm: over the whole input (reflect-padded models), over the frames so far
    /// (causal models), or continuing the running statistics in a stream.
    pub fn norm(&mut self, padding: Padding, x: &Tensor) -> Result<Tensor> {
        let s = match (self, padding) {
            (Ctx::Offline, Padding::Reflect) => return instance_norm(x),
            (Ctx::Offline, Padding::Causal) => return causal_instance_norm(x),
            (Ctx::Stream(s), _) => s,
        };
        let slot = s.slot();
        let (count, shift, carry) = match slot {
            Slot::Norm {
                count,
                shift,
                sum,
                sum_sq,
            } => (*count, shift.clone(), Some((sum.clone(), sum_sq.clone()))),
            _ => (0, x.narrow(D::Minus1, 0, 1)?.contiguous()?, None),
        };
        let d = x.broadcast_sub(&shift)?;
        let (cs, cs2) = causal_sums(&d, carry.as_ref().map(|(a, b)| (a, b)))?;
        let t = x.dim(D::Minus1)?;
        let inv_n: Vec<f32> = (count + 1..=count + t).map(|n| 1.0 / n as f32).collect();
        let inv_n = Tensor::from_vec(inv_n, (1, 1, t), x.device())?.to_dtype(x.dtype())?;
        let mean = cs.broadcast_mul(&inv_n)?;
        let var = (cs2.broadcast_mul(&inv_n)? - mean.sqr()?)?.relu()?;
        *slot = Slot::Norm {
            count: count + t,
            shift,
            sum: cs.narrow(D::Minus1, t - 1, 1)?.contiguous()?,
            sum_sq: cs2.narrow(D::Minus1, t - 1, 1)?.contiguous()?,
        };
        Ok((d - mean)?.div(&(var + crate::layers::CAUSAL_NORM_EPS)?.sqrt()?)?)
    }
}
