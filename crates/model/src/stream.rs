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
    /// (`[B, T, F]`), continuing the stream's sum, plus each bin's carrier advance: `2π · k / m`
    /// a frame for bin `k` when the synthesis FFT spans `m` hops (half a turn per bin at 2
    /// hops). The stream keeps its sum reduced to one turn.
    pub fn integrate_phase(&mut self, x: &Tensor, m: usize) -> Result<Tensor> {
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
        // Carrier: bin k advances by 2π·k/m a frame; after frame `start + i` (counted from 0)
        // it stands at 2π·(k·(start + i + 1) mod m)/m.
        let carrier: Vec<f32> = (0..t)
            .flat_map(|i| (0..f).map(move |k| carrier(k, start + i, m)))
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

/// The carrier phase of bin `k` after frame `frame` (counted from 0) of integrated phases whose
/// synthesis FFT spans `m` hops: `2π · (k · (frame + 1) mod m) / m` (bin `k` is centred on `k / m`
/// turns a hop), exactly, whatever the frame count.
pub fn carrier(k: usize, frame: usize, m: usize) -> f32 {
    let r = ((k % m) * ((frame + 1) % m)) % m;
    (2.0 * std::f64::consts::PI * r as f64 / m as f64) as f32
}

#[cfg(test)]
mod tests {
    /// The carrier is `2π·k·(frame + 1)/m` reduced to one turn, exactly even after a billion
    /// frames (where a running product in floats would have drifted).
    #[test]
    fn carrier_turns_by_k_over_m_a_frame() {
        let turn = 2.0 * std::f64::consts::PI;
        for m in [2usize, 3, 4] {
            for k in 0..9 {
                for frame in [0usize, 1, 2, 5, 1_000_000_007] {
                    let want = (turn * ((k * (frame + 1)) % m) as f64 / m as f64) as f32;
                    assert_eq!(super::carrier(k, frame, m), want, "k {k}, frame {frame}, m {m}");
                }
            }
            // One frame later, bin k has turned by k/m of a turn.
            let a = f64::from(super::carrier(1, 10, m)) - f64::from(super::carrier(1, 9, m));
            assert!(((a / turn).rem_euclid(1.0) - 1.0 / m as f64).abs() < 1e-6);
        }
        assert_eq!(super::carrier(1, 0, 2), std::f32::consts::PI);
    }
}
