//! Streaming state for the causal model: one code path serves offline and streaming passes
//! ([`Ctx`]); in a stream, each convolution keeps its last `k − 1` input frames and each causal
//! instance norm its running count, sum and sum of squares, so chunk after chunk reproduces the
//! offline pass.

use candle_core::{Tensor, D};

use crate::layers::{causal_instance_norm, causal_norm_continue, instance_norm, CausalStats, PadConv, Padding};
use crate::Result;

#[derive(Debug, Clone)]
enum Slot {
    Empty,
    Conv(Tensor),
    Norm(CausalStats),
    /// A running sum over time (its last value, `[B, 1, F]`) and the frames summed so far.
    Sum(Tensor, usize),
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
        let k = conv.kernel();
        match self {
            Ctx::Offline => Ok(conv.forward(x)?),
            Ctx::Stream(_) if k == 1 => Ok(conv.forward_valid(x)?),
            Ctx::Stream(_) => Ok(conv.forward_valid(&self.history(x, k)?)?),
        }
    }

    /// `x` after the `k − 1` frames before it, for a causal layer of kernel `k` to read without
    /// padding: zeros offline and at a stream's start, the stream's last frames otherwise.
    /// `[B, C, k − 1 + T]`.
    pub fn history(&mut self, x: &Tensor, k: usize) -> Result<Tensor> {
        if k <= 1 {
            return Ok(x.clone());
        }
        let Ctx::Stream(s) = self else {
            return Ok(x.pad_with_zeros(D::Minus1, k - 1, 0)?);
        };
        let slot = s.slot();
        let hist = match slot {
            Slot::Conv(h) => h.clone(),
            _ => x.narrow(D::Minus1, 0, 1)?.zeros_like()?.repeat((1, 1, k - 1))?,
        };
        let buf = Tensor::cat(&[&hist, x], D::Minus1)?;
        let n = buf.dim(D::Minus1)?;
        *slot = Slot::Conv(buf.narrow(D::Minus1, n - (k - 1), k - 1)?.contiguous()?);
        Ok(buf)
    }

    /// Integrated phases: the cumulative sum over time (dimension 1) of the increments `x`
    /// (`[B, T, F]`), continuing the stream's sum, plus each bin's carrier advance of half a turn
    /// per frame and bin (`π · k` a frame: a hop of half the synthesis FFT). The stream keeps its
    /// sum reduced to one turn.
    pub fn integrate_phase(&mut self, x: &Tensor) -> Result<Tensor> {
        let (_, t, f) = x.dims3()?;
        let turn = 2.0 * std::f64::consts::PI;
        let (start, before) = match self {
            Ctx::Offline => (0, None),
            Ctx::Stream(s) => match s.slot() {
                Slot::Sum(acc, n) => (*n, Some(acc.clone())),
                _ => (0, None),
            },
        };
        let mut sum = x.cumsum(1)?;
        if let Some(acc) = &before {
            sum = sum.broadcast_add(acc)?;
        }
        // Carrier: bin k advances by π·k a frame; after frame `start + i` (counted from 0) it
        // stands at π·k·(start + i + 1), i.e. π when k·(start + i + 1) is odd, else 0.
        let carrier: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..f).map(move |k| {
                    if (k * (start + i + 1)) % 2 == 1 {
                        std::f32::consts::PI
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let carrier = Tensor::from_vec(carrier, (1, t, f), x.device())?.to_dtype(x.dtype())?;
        if let Ctx::Stream(s) = self {
            let last = sum.narrow(1, t - 1, 1)?.detach();
            let wrapped = (&last - (&last / turn)?.floor()?.affine(turn, 0.0)?)?;
            let idx = s.next - 1;
            s.slots[idx] = Slot::Sum(wrapped.contiguous()?, start + t);
        }
        Ok(sum.broadcast_add(&carrier)?)
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
        let before = match slot {
            Slot::Norm(stats) => Some(&*stats),
            _ => None,
        };
        let (y, after) = causal_norm_continue(x, before)?;
        *slot = Slot::Norm(after);
        Ok(y)
    }
}
