//! The causal model one frame at a time in plain loops ([`FrameModel`]): what
//! [`crate::StreamingConverter`] computes, for presets without subsampling, upsampling or
//! reference attention (the shipped `stream` preset), with every buffer allocated when it is
//! built. A real-time thread can run it: a frame costs no allocation, no lock and no tensor
//! bookkeeping (candle spends more on a one-frame tensor's shapes and buffers than on its
//! arithmetic).
//!
//! Weights are rearranged once so that each output channel of a convolution is one dot product
//! of its taps with the layer's window of the last `k` input frames (frame-major, oldest first).

use crate::adain_vc::{AdaInVc, WARMUP_FRAMES, WARMUP_MARGIN_DB};
use crate::config::Temporal;
use crate::kernels::{matvec, push_frame, Matrix};
use crate::layers::{PadConv, CAUSAL_NORM_EPS};
use crate::{Error, Result, SpeakerEmbedding};

/// A causal convolution's weights: `w[o]` holds output channel `o`'s taps, oldest frame first,
/// each tap's `c_in` input channels together (`[c_out][k][c_in]`).
#[derive(Debug, Clone)]
struct Conv {
    k: usize,
    c_in: usize,
    c_out: usize,
    w: Matrix,
    b: Vec<f32>,
}

impl Conv {
    fn new(conv: &PadConv) -> Result<Self> {
        let w = conv.conv_weight().to_dtype(candle_core::DType::F32)?.to_vec3::<f32>()?;
        let (c_out, c_in, k) = (w.len(), w[0].len(), conv.kernel());
        let mut flat = Vec::with_capacity(c_out * k * c_in);
        for row in &w {
            for j in 0..k {
                flat.extend(row.iter().map(|taps| taps[j]));
            }
        }
        let b = match conv.conv_bias() {
            Some(b) => b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?,
            None => vec![0.0; c_out],
        };
        Ok(Self {
            k,
            c_in,
            c_out,
            w: Matrix::new(flat),
            b,
        })
    }

    /// `y = W · window + b`, `window` the last `k` input frames (`k · c_in`, oldest first);
    /// the same for a second pass's window and output when given.
    fn apply(&self, window: &[f32], y: &mut [f32], second: Option<(&[f32], &mut [f32])>) {
        let c = self.c_out;
        matvec(
            &self.w,
            window,
            &self.b,
            &mut y[..c],
            second.map(|(x, y)| (x, &mut y[..c])),
        );
    }
}

/// A convolution's window of its last `k` input frames (zeros before the stream's start).
#[derive(Debug, Clone)]
struct Window(Vec<f32>);

impl Window {
    fn new(conv: &Conv) -> Self {
        Self(vec![0.0; conv.k * conv.c_in])
    }

    /// Shifts in frame `x` (`c_in` values) and returns the window.
    fn push(&mut self, x: &[f32]) -> &[f32] {
        push_frame(&mut self.0, x);
        &self.0
    }

    fn reset(&mut self) {
        self.0.fill(0.0);
    }
}

/// A causal instance norm's running statistics per channel, as [`crate::layers::causal_norm_continue`]
/// keeps them: the stream's first frame (the shift), the frame count, the sums of `x − shift`
/// and of its square.
#[derive(Debug, Clone)]
struct Norm {
    count: usize,
    shift: Vec<f32>,
    sum: Vec<f32>,
    sum_sq: Vec<f32>,
}

impl Norm {
    fn new(c: usize) -> Self {
        Self {
            count: 0,
            shift: vec![0.0; c],
            sum: vec![0.0; c],
            sum_sq: vec![0.0; c],
        }
    }

    /// Normalises frame `x` in place with the statistics of the frames so far and it.
    fn apply(&mut self, x: &mut [f32]) {
        if self.count == 0 {
            self.shift.copy_from_slice(x);
        }
        self.count += 1;
        let inv_n = 1.0 / self.count as f32;
        let eps = CAUSAL_NORM_EPS as f32;
        for (((x, shift), sum), sum_sq) in x.iter_mut().zip(&self.shift).zip(&mut self.sum).zip(&mut self.sum_sq) {
            let d = *x - shift;
            *sum += d;
            *sum_sq += d * d;
            let m = *sum * inv_n;
            let v = (*sum_sq * inv_n - m * m).max(0.0);
            *x = (d - m) / (v + eps).sqrt();
        }
    }

    fn reset(&mut self) {
        self.count = 0;
        self.sum.fill(0.0);
        self.sum_sq.fill(0.0);
    }
}

fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// Every layer's weights.
#[derive(Debug, Clone)]
struct Weights {
    n_mels: usize,
    c_h: usize,
    bank: Vec<Conv>,
    c_bank: usize,
    in_conv: Conv,
    /// Content encoder blocks: (first, second) convolutions.
    blocks: Vec<(Conv, Conv)>,
    mean: Conv,
    /// The vector quantiser's entries `[K][c_out]`, scaled to length 1, if any.
    codebook: Option<Vec<f32>>,
    dec_in: Conv,
    dec_blocks: Vec<(Conv, Conv)>,
    dec_out: Conv,
    /// The decoder's AdaIN affine layers: `[2·c_h][c_cond]` and `[2·c_h]`.
    affine: Vec<(Matrix, Vec<f32>)>,
    c_cond: usize,
}

/// One pass's state: every convolution's window and every norm's statistics, in the order the
/// pass meets them.
#[derive(Debug, Clone)]
struct State {
    bank: Vec<Window>,
    norms: Vec<Norm>,
    windows: Vec<Window>,
}

impl State {
    fn new(w: &Weights) -> Self {
        let blocks = w.blocks.iter().chain(&w.dec_blocks);
        Self {
            bank: w.bank.iter().map(Window::new).collect(),
            norms: (0..2 + 2 * (w.blocks.len() + w.dec_blocks.len()))
                .map(|_| Norm::new(w.c_h))
                .collect(),
            windows: blocks.flat_map(|(a, b)| [Window::new(a), Window::new(b)]).collect(),
        }
    }

    fn reset(&mut self) {
        self.bank.iter_mut().for_each(Window::reset);
        self.norms.iter_mut().for_each(Norm::reset);
        self.windows.iter_mut().for_each(Window::reset);
    }
}

/// Buffers of one frame's pass.
#[derive(Debug, Clone)]
struct Scratch {
    cat: Vec<f32>,
    h: Vec<f32>,
    y: Vec<f32>,
    code: Vec<f32>,
}

/// The causal model frame by frame, allocation-free after it is built: the same conversion as
/// [`crate::StreamingConverter`] (its refresh period, spectrum offset and warm-up gate
/// included) up to float rounding, for causal presets without subsampling, upsampling or
/// reference attention.
#[derive(Debug, Clone)]
pub struct FrameModel {
    w: Weights,
    /// Pass 0, and pass 1 with a refresh period (see [`crate::StreamingConverter`]).
    passes: [State; 2],
    refresh: Option<usize>,
    scratch: [Scratch; 2],
    /// Each AdaIN's shift and scale for the voice of the moment (`2·c_h` each).
    cond: Vec<Vec<f32>>,
    offset: Vec<f32>,
    has_offset: bool,
    gate: bool,
    frames: usize,
    out_b: Vec<f32>,
    /// Buffers of [`Self::set_mix`].
    mixed: Vec<f32>,
    mixed_offset: Vec<f32>,
}

impl FrameModel {
    /// The model's weights rearranged, converting to `speaker` (the global vector, `c_cond`
    /// values).
    ///
    /// # Errors
    /// [`Error::Config`] for a preset that is not causal or that subsamples, upsamples or
    /// attends (use [`crate::StreamingConverter`]); [`Error::Input`] for a speaker vector of
    /// the wrong width.
    pub fn new(model: &AdaInVc, speaker: &[f32]) -> Result<Self> {
        let cfg = model.config();
        let unsupported = |why: &str| {
            Err(Error::Config(format!(
                "preset `{}` {why}: frame-by-frame conversion needs a causal preset without subsampling, upsampling or reference attention",
                cfg.preset
            )))
        };
        if cfg.temporal != Temporal::Causal {
            return unsupported("is not causal");
        }
        let (enc, dec) = (&model.content, &model.decoder);
        if enc.blocks.subsample.iter().any(|&s| s != 1) {
            return unsupported("subsamples");
        }
        if dec.upsample.iter().any(|&u| u != 1) {
            return unsupported("upsamples");
        }
        if !dec.attention.is_empty() {
            return unsupported("attends to its references");
        }
        if enc.blocks.norm.is_none() {
            return unsupported("has no norms in its content encoder");
        }
        let convs = |v: &[PadConv]| v.iter().map(Conv::new).collect::<Result<Vec<_>>>();
        let pairs = |a: &[PadConv], b: &[PadConv]| -> Result<Vec<(Conv, Conv)>> {
            convs(a)?.into_iter().zip(convs(b)?).map(Ok).collect()
        };
        let bank = convs(enc.bank.convs())?;
        let affine = dec
            .affine
            .iter()
            .map(|l| -> Result<(Matrix, Vec<f32>)> {
                let w = l.weight().flatten_all()?.to_vec1::<f32>()?;
                let b = match l.bias() {
                    Some(b) => b.to_vec1::<f32>()?,
                    None => vec![0.0; l.weight().dim(0)?],
                };
                Ok((Matrix::new(w), b))
            })
            .collect::<Result<Vec<_>>>()?;
        let in_conv = Conv::new(&enc.in_conv)?;
        let c_h = in_conv.c_out;
        let w = Weights {
            n_mels: cfg.frontend.n_mels,
            c_h,
            c_bank: bank.first().map_or(0, |c| c.c_out),
            bank,
            in_conv,
            blocks: pairs(&enc.blocks.first, &enc.blocks.second)?,
            mean: Conv::new(&enc.mean)?,
            // Entries scaled to length 1, as the quantiser compares them.
            codebook: enc
                .codebook
                .as_ref()
                .map(|b| -> Result<Vec<f32>> {
                    let b = b.to_dtype(candle_core::DType::F32)?;
                    let n = (b.sqr()?.sum_keepdim(1)?.sqrt()? + crate::adain_vc::VQ_EPS)?;
                    Ok(b.broadcast_div(&n)?.flatten_all()?.to_vec1::<f32>()?)
                })
                .transpose()?,
            dec_in: Conv::new(&dec.in_conv)?,
            dec_blocks: pairs(&dec.first, &dec.second)?,
            dec_out: Conv::new(&dec.out_conv)?,
            affine,
            c_cond: dec.c_cond,
        };
        let scratch = Scratch {
            cat: vec![0.0; w.in_conv.c_in],
            h: vec![0.0; c_h],
            y: vec![0.0; c_h],
            // The code, then the pitch channels the decoder reads beside it (if any).
            code: vec![0.0; w.dec_in.c_in],
        };
        let mut m = Self {
            passes: [State::new(&w), State::new(&w)],
            refresh: cfg.norm_refresh,
            scratch: [scratch.clone(), scratch],
            cond: vec![vec![0.0; 2 * c_h]; w.affine.len()],
            offset: vec![0.0; w.n_mels],
            has_offset: false,
            gate: false,
            frames: 0,
            out_b: vec![0.0; w.n_mels],
            mixed: Vec::with_capacity(w.c_cond),
            mixed_offset: Vec::with_capacity(w.n_mels),
            w,
        };
        m.set_voice(speaker, None)?;
        Ok(m)
    }

    /// Mel bands in and out.
    pub fn n_mels(&self) -> usize {
        self.w.n_mels
    }

    /// Whether every weight matrix is read in half precision (the weights are exactly halves, as
    /// `voxswap export --half` writes them).
    pub fn half_precision(&self) -> bool {
        let w = &self.w;
        let pairs = w
            .blocks
            .iter()
            .chain(&w.dec_blocks)
            .all(|(a, b)| a.w.is_half() && b.w.is_half());
        let convs = [&w.in_conv, &w.mean, &w.dec_in, &w.dec_out]
            .iter()
            .all(|c| c.w.is_half());
        pairs && convs && w.bank.iter().all(|c| c.w.is_half()) && w.affine.iter().all(|(m, _)| m.is_half())
    }

    /// Converts to `speaker` (`c_cond` values) with the log-mel correction `offset` (`n_mels`
    /// values) added to every output frame, from the next frame on. No allocation.
    ///
    /// # Errors
    /// [`Error::Input`] for a vector or an offset of the wrong width (the voice is then kept).
    pub fn set_voice(&mut self, speaker: &[f32], offset: Option<&[f32]>) -> Result<()> {
        if speaker.len() != self.w.c_cond {
            return Err(Error::Input(format!(
                "speaker embedding has {} values, the model uses {}",
                speaker.len(),
                self.w.c_cond
            )));
        }
        if offset.is_some_and(|o| o.len() != self.w.n_mels || o.iter().any(|v| !v.is_finite())) {
            return Err(Error::Input(format!(
                "a spectrum correction needs {} finite values",
                self.w.n_mels
            )));
        }
        for ((w, b), cond) in self.w.affine.iter().zip(&mut self.cond) {
            matvec(w, speaker, b, cond, None);
        }
        self.has_offset = offset.is_some();
        if let Some(o) = offset {
            self.offset.copy_from_slice(o);
        }
        Ok(())
    }

    /// Converts to the embedding `e` (its values and spectrum correction) from the next frame
    /// on. No allocation.
    ///
    /// # Errors
    /// [`Error::Input`] for an embedding of the wrong size (the voice is then kept).
    pub fn set_embedding(&mut self, e: &SpeakerEmbedding) -> Result<()> {
        self.set_voice(e.values(), e.spectrum())
    }

    /// Converts to the mix `(1 − w)·a + w·b` of two embeddings (as [`SpeakerEmbedding::mix`]:
    /// the spectrum correction mixed when both have one, none otherwise) from the next frame
    /// on, without making the mix: no allocation (a glide sets one every frame).
    ///
    /// # Errors
    /// [`Error::Input`] for a weight outside 0..=1 or embeddings of the wrong sizes (the voice
    /// is then kept).
    pub fn set_mix(&mut self, a: &SpeakerEmbedding, b: &SpeakerEmbedding, w: f32) -> Result<()> {
        if !(0.0..=1.0).contains(&w) {
            return Err(Error::Input(format!("mix weight {w} is not within 0..=1")));
        }
        let (va, vb) = (a.values(), b.values());
        if va.len() != vb.len() {
            return Err(Error::Input(format!(
                "embeddings of sizes {} and {} cannot mix",
                va.len(),
                vb.len()
            )));
        }
        let mut mixed = std::mem::take(&mut self.mixed);
        let mut offset = std::mem::take(&mut self.mixed_offset);
        mixed.clear();
        mixed.extend(va.iter().zip(vb).map(|(x, y)| (1.0 - w) * x + w * y));
        let off = match (a.spectrum(), b.spectrum()) {
            (Some(x), Some(y)) if x.len() == y.len() => {
                offset.clear();
                offset.extend(x.iter().zip(y).map(|(x, y)| (1.0 - w) * x + w * y));
                Some(offset.as_slice())
            }
            _ => None,
        };
        let r = self.set_voice(&mixed, off);
        self.mixed = mixed;
        self.mixed_offset = offset;
        r
    }

    /// Holds the level of the stream's first frames near their input's (as
    /// [`crate::StreamingConverter::set_warmup_gate`]).
    pub fn set_warmup_gate(&mut self, on: bool) {
        self.gate = on;
    }

    /// Forgets the stream's past.
    pub fn reset(&mut self) {
        self.passes.iter_mut().for_each(State::reset);
        self.frames = 0;
    }

    /// Converts the next frame `x` (`n_mels` log-mel values) into `out` (`n_mels`).
    ///
    /// # Errors
    /// [`Error::Input`] for slices of the wrong length; a model that reads the source's pitch
    /// (use [`step_pitched`](Self::step_pitched)).
    pub fn step(&mut self, x: &[f32], out: &mut [f32]) -> Result<()> {
        self.step_pitched(x, &[], out)
    }

    /// Pitch values a frame reads besides its mel bands: [`crate::config::PITCH_CHANNELS`] for a
    /// model with `decoder.f0`, else 0.
    pub fn pitch_channels(&self) -> usize {
        self.w.dec_in.c_in - self.w.mean.c_out
    }

    /// [`step`](Self::step) with the frame's pitch values (see
    /// [`voxswap_audio::pitch::PitchNormalizer`]; [`pitch_channels`](Self::pitch_channels) of
    /// them, none for a model without `decoder.f0`). No allocation.
    ///
    /// # Errors
    /// [`Error::Input`] for slices of the wrong length.
    pub fn step_pitched(&mut self, x: &[f32], pitch: &[f32], out: &mut [f32]) -> Result<()> {
        let n = self.w.n_mels;
        if x.len() != n || out.len() != n {
            return Err(Error::Input(format!(
                "a frame has {n} mel bands, got {} in and {} out",
                x.len(),
                out.len()
            )));
        }
        if pitch.len() != self.pitch_channels() {
            return Err(Error::Input(format!(
                "this model reads {} pitch values a frame, got {}",
                self.pitch_channels(),
                pitch.len()
            )));
        }
        let c = self.w.mean.c_out;
        for sc in &mut self.scratch {
            sc.code[c..].copy_from_slice(pitch);
        }
        let f = self.frames;
        match self.refresh {
            None => pass(&self.w, &mut self.passes, &mut self.scratch, &self.cond, x, out, None),
            Some(r) => {
                // Segment j = f / r starts afresh at frame j·r in pass j % 2 and runs 2r frames;
                // frame f is w·S_j + (1 − w)·S_{j−1}, w = (f − j·r) / r (S_0 alone in block 0).
                let j = f / r;
                if f % r == 0 {
                    self.passes[j % 2].reset();
                }
                if j == 0 {
                    pass(&self.w, &mut self.passes, &mut self.scratch, &self.cond, x, out, None);
                } else {
                    let b = &mut self.out_b;
                    pass(
                        &self.w,
                        &mut self.passes,
                        &mut self.scratch,
                        &self.cond,
                        x,
                        out,
                        Some(b),
                    );
                    // `out` holds pass 0, `out_b` pass 1: fresh is pass j % 2.
                    let wt = (f - j * r) as f32 / r as f32;
                    let (w0, w1) = if j % 2 == 0 { (wt, 1.0 - wt) } else { (1.0 - wt, wt) };
                    for (o, b) in out.iter_mut().zip(&self.out_b) {
                        *o = *o * w0 + *b * w1;
                    }
                }
            }
        }
        if self.has_offset {
            out.iter_mut().zip(&self.offset).for_each(|(o, v)| *o += v);
        }
        if self.gate && f < WARMUP_FRAMES {
            // ln Σ_b exp(2·v_b): the frame's power on the log-magnitude scale.
            let log_power = |m: &[f32]| -> f32 {
                let top = m.iter().map(|v| 2.0 * v).fold(f32::NEG_INFINITY, f32::max);
                top + m.iter().map(|v| (2.0 * v - top).exp()).sum::<f32>().ln()
            };
            let margin = WARMUP_MARGIN_DB / 10.0 * std::f32::consts::LN_10;
            let shift = (0.5 * (log_power(x) + margin - log_power(out))).min(0.0);
            out.iter_mut().for_each(|o| *o += shift);
        }
        self.frames += 1;
        Ok(())
    }
}

/// One frame through pass 0 (into `out`) and, with `out2`, pass 1 (into `out2`) side by side,
/// each weight row read once for both: the content encoder (bank, input layer, blocks, mean),
/// then the decoder with the voice's AdaIN conditions.
#[allow(clippy::too_many_arguments)]
fn pass(
    w: &Weights,
    passes: &mut [State; 2],
    sc: &mut [Scratch; 2],
    cond: &[Vec<f32>],
    x: &[f32],
    out: &mut [f32],
    out2: Option<&mut [f32]>,
) {
    let dual = out2.is_some();
    let [s0, s1] = passes;
    let [c0, c1] = sc;
    // Runs `$body` for pass 0, then for pass 1 if it runs.
    macro_rules! each {
        (|$s:ident, $c:ident| $body:expr) => {{
            {
                let ($s, $c) = (&mut *s0, &mut *c0);
                $body;
            }
            if dual {
                let ($s, $c) = (&mut *s1, &mut *c1);
                $body;
            }
        }};
    }
    let (cb, c_h) = (w.c_bank, w.c_h);
    // The content encoder: the bank's ReLUs and the frame itself, concatenated.
    for (i, conv) in w.bank.iter().enumerate() {
        let r = i * cb..(i + 1) * cb;
        let x0 = s0.bank[i].push(x);
        let second = match dual {
            true => Some((s1.bank[i].push(x), &mut c1.cat[r.clone()])),
            false => None,
        };
        conv.apply(x0, &mut c0.cat[r.clone()], second);
        each!(|_s, c| relu(&mut c.cat[r.clone()]));
    }
    let nb = w.bank.len() * cb;
    each!(|_s, c| c.cat[nb..nb + x.len()].copy_from_slice(x));
    w.in_conv
        .apply(&c0.cat, &mut c0.h, dual.then_some((&c1.cat[..], &mut c1.h[..])));
    let mut norm = 0;
    let mut window = 0;
    each!(|s, c| {
        s.norms[norm].apply(&mut c.h);
        relu(&mut c.h)
    });
    norm += 1;
    // A windowed convolution from `$from` into `y` of both passes.
    macro_rules! conv_y {
        ($conv:expr, $from:ident) => {{
            let x0 = s0.windows[window].push(&c0.$from);
            let second = match dual {
                true => Some((s1.windows[window].push(&c1.$from), &mut c1.y[..])),
                false => None,
            };
            $conv.apply(x0, &mut c0.y, second);
            window += 1;
        }};
    }
    for (a, b) in &w.blocks {
        conv_y!(a, h);
        each!(|s, c| {
            s.norms[norm].apply(&mut c.y);
            relu(&mut c.y)
        });
        norm += 1;
        conv_y!(b, y);
        each!(|s, c| {
            s.norms[norm].apply(&mut c.y);
            relu(&mut c.y);
            c.h.iter_mut().zip(&c.y).for_each(|(h, y)| *h += y)
        });
        norm += 1;
    }
    w.mean
        .apply(&c0.h, &mut c0.code, dual.then_some((&c1.h[..], &mut c1.code[..])));
    if let Some(book) = &w.codebook {
        let n = w.mean.c_out;
        each!(|_s, c| quantize(book, &mut c.code[..n]));
    }
    // The decoder.
    w.dec_in
        .apply(&c0.code, &mut c0.h, dual.then_some((&c1.code[..], &mut c1.h[..])));
    each!(|s, c| {
        s.norms[norm].apply(&mut c.h);
        relu(&mut c.h)
    });
    norm += 1;
    let adain = |y: &mut [f32], c: &[f32]| {
        for (i, v) in y.iter_mut().enumerate() {
            *v = (*v * c[c_h + i] + c[i]).max(0.0);
        }
    };
    for (l, (a, b)) in w.dec_blocks.iter().enumerate() {
        conv_y!(a, h);
        each!(|s, c| {
            s.norms[norm].apply(&mut c.y);
            adain(&mut c.y, &cond[2 * l])
        });
        norm += 1;
        conv_y!(b, y);
        each!(|s, c| {
            s.norms[norm].apply(&mut c.y);
            adain(&mut c.y, &cond[2 * l + 1]);
            c.h.iter_mut().zip(&c.y).for_each(|(h, y)| *h += y)
        });
        norm += 1;
    }
    w.dec_out.apply(&c0.h, out, out2.map(|o| (&c1.h[..], o)));
}

/// Replaces `code` by its nearest entry of `book` on the unit sphere (`[K][code.len()]`, each
/// entry already scaled to length 1), as [`crate::adain_vc::ContentEncoder::quantize`] does
/// (the first of equally near ones).
fn quantize(book: &[f32], code: &mut [f32]) {
    let c = code.len();
    let mut best = (f32::NEG_INFINITY, 0);
    for (k, e) in book.chunks_exact(c).enumerate() {
        let dot: f32 = code.iter().zip(e).map(|(a, b)| a * b).sum();
        if dot > best.0 {
            best = (dot, k);
        }
    }
    code.copy_from_slice(&book[best.1 * c..(best.1 + 1) * c]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{init, ModelConfig, StreamingConverter};
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    fn model(cfg: &ModelConfig) -> AdaInVc {
        model_in(cfg, false)
    }

    /// With `half`, every weight rounded to half precision (as `voxswap export --half` does).
    fn model_in(cfg: &ModelConfig, half: bool) -> AdaInVc {
        let vars = VarMap::new();
        let m = AdaInVc::new(cfg, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
        init::init_pytorch_like(&vars, 7).unwrap();
        if half {
            for v in vars.all_vars() {
                v.set(
                    &v.as_tensor()
                        .to_dtype(DType::F16)
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap(),
                )
                .unwrap();
            }
        }
        m
    }

    /// A speech-like log-mel: a level contour with moving bands and a silent start.
    fn mel(t: usize) -> Tensor {
        let v: Vec<f32> = (0..80 * t)
            .map(|i| {
                let (b, f) = (i / t, i % t);
                if f < 3 {
                    -11.5
                } else {
                    -4.0 + 3.0 * ((b as f32 * 0.3 + f as f32 * 0.17).sin()) - 0.02 * b as f32
                }
            })
            .collect();
        Tensor::from_vec(v, (1, 80, t), &Device::Cpu).unwrap()
    }

    /// Runs `m` over a whole mel `[1, n_mels, T]` frame by frame.
    fn convert_frames(m: &mut FrameModel, mel: &Tensor) -> Result<Tensor> {
        let (_, n, t) = mel.dims3()?;
        let frames = mel.squeeze(0)?.t()?.contiguous()?.to_vec2::<f32>()?;
        let mut out = vec![0f32; t * n];
        for (i, f) in frames.iter().enumerate() {
            m.step(f, &mut out[i * n..(i + 1) * n])?;
        }
        Ok(Tensor::from_vec(out, (1, t, n), mel.device())?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Frame by frame equals the tensor stream (in chunks of one frame and of the whole input)
    /// to float rounding: without and with a refresh period, with a vector-quantised code, with
    /// a spectrum offset and the warm-up gate, before and after a voice change and a reset; and
    /// with weights in half precision, which it then reads as halves.
    #[test]
    fn equals_the_streaming_converter() {
        let cases = [
            (None, false, false),
            (Some(5), false, false),
            (Some(5), true, false),
            (Some(5), false, true),
        ];
        for (refresh, vq, half) in cases {
            let mut cfg = if vq {
                ModelConfig::tiny_vq()
            } else {
                ModelConfig::tiny_stream()
            };
            cfg.norm_refresh = refresh;
            let m = model_in(&cfg, half);
            let x = mel(23);
            let spk = m.speaker.forward(&x).unwrap();
            let spk2 = spk.affine(-0.5, 0.1).unwrap();
            let offset: Vec<f32> = (0..80).map(|b| 0.01 * b as f32 - 0.3).collect();
            let off_t = Tensor::from_slice(&offset, (1, 80, 1), &Device::Cpu).unwrap();
            let mut fm = FrameModel::new(&m, &spk.flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap();
            assert_eq!(fm.half_precision(), half);
            fm.set_warmup_gate(true);
            fm.set_voice(&spk.flatten_all().unwrap().to_vec1::<f32>().unwrap(), Some(&offset))
                .unwrap();
            let mut sc = StreamingConverter::new(m.clone(), spk.clone()).unwrap();
            sc.set_warmup_gate(true);
            sc.set_offset(Some(off_t));
            let whole = sc.step(&x).unwrap();
            let frames = convert_frames(&mut fm, &x).unwrap();
            let scale = whole.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(
                max_diff(&whole, &frames) < 1e-4 * scale.max(1.0),
                "{refresh:?}: {}",
                max_diff(&whole, &frames)
            );
            // Another voice, a reset, then one frame at a time on both sides.
            sc.reset();
            fm.reset();
            sc.set_speaker(spk2.clone()).unwrap();
            sc.set_offset(None);
            fm.set_voice(&spk2.flatten_all().unwrap().to_vec1::<f32>().unwrap(), None)
                .unwrap();
            let ones: Vec<Tensor> = (0..23).map(|t| sc.step(&x.narrow(2, t, 1).unwrap()).unwrap()).collect();
            let ones = Tensor::cat(&ones, 2).unwrap();
            let frames = convert_frames(&mut fm, &x).unwrap();
            assert!(
                max_diff(&ones, &frames) < 1e-4 * scale.max(1.0),
                "{refresh:?}: {}",
                max_diff(&ones, &frames)
            );
        }
    }

    /// A pitch input `[1, 2, t]` as the engine makes it: a rising and falling contour with
    /// unvoiced gaps, normalised by the source's running statistics.
    fn pitch(t: usize, semitones: f64) -> Tensor {
        let f0: Vec<f64> = (0..t)
            .map(|i| {
                if i % 7 == 3 {
                    0.0
                } else {
                    120.0 * 2f64.powf((semitones * (i as f64 * 0.4).sin()) / 12.0)
                }
            })
            .collect();
        let v = voxswap_audio::pitch::PitchNormalizer::normalize(&f0);
        Tensor::from_vec(v, (1, 2, t), &Device::Cpu).unwrap()
    }

    /// A model that reads the source's pitch: frame by frame equals the tensor stream (whole
    /// and one frame at a time, with a refresh period), the stream without refresh equals the
    /// offline conversion, the contour changes the output, and a missing pitch is refused.
    #[test]
    fn pitch_conditioned_model_streams_as_it_converts() {
        let t = 23;
        let (x, p) = (mel(t), pitch(t, 4.0));
        for refresh in [None, Some(5)] {
            let mut cfg = ModelConfig::tiny_f0();
            cfg.norm_refresh = refresh;
            let m = model(&cfg);
            let spk = m.speaker.forward(&x).unwrap();
            let spk_v = spk.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut sc = StreamingConverter::new(m.clone(), spk.clone()).unwrap();
            let whole = sc.step_pitched(&x, Some(&p)).unwrap();
            let scale = whole
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .max(1.0);
            sc.reset();
            let ones: Vec<Tensor> = (0..t)
                .map(|i| {
                    sc.step_pitched(&x.narrow(2, i, 1).unwrap(), Some(&p.narrow(2, i, 1).unwrap()))
                        .unwrap()
                })
                .collect();
            let ones = Tensor::cat(&ones, 2).unwrap();
            assert!(
                max_diff(&whole, &ones) < 1e-4 * scale,
                "{refresh:?}: {}",
                max_diff(&whole, &ones)
            );
            let mut fm = FrameModel::new(&m, &spk_v).unwrap();
            assert_eq!(fm.pitch_channels(), 2);
            let xs = x
                .squeeze(0)
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let ps = p
                .squeeze(0)
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let mut out = vec![0f32; t * 80];
            for i in 0..t {
                fm.step_pitched(&xs[i], &ps[i], &mut out[i * 80..(i + 1) * 80]).unwrap();
            }
            let frames = Tensor::from_vec(out, (1, t, 80), &Device::Cpu)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap();
            assert!(
                max_diff(&whole, &frames) < 1e-4 * scale,
                "{refresh:?}: {}",
                max_diff(&whole, &frames)
            );
            if refresh.is_none() {
                let offline = m.convert_pitched(&x, &spk, Some(&p)).unwrap();
                assert!(
                    max_diff(&whole, &offline) < 1e-4 * scale,
                    "{}",
                    max_diff(&whole, &offline)
                );
            }
            let flat = m.convert_pitched(&x, &spk, Some(&pitch(t, 0.0))).unwrap();
            assert!(max_diff(&flat, &whole) > 1e-3, "the contour changed nothing");
            assert!(fm.step(&xs[0], &mut [0.0; 80]).is_err());
            let err = m.convert(&x, &spk).unwrap_err().to_string();
            assert!(err.contains("pitch"), "{err}");
        }
    }

    /// Presets it cannot run, and wrong widths, are refused with a message.
    #[test]
    fn refuses_what_it_cannot_run() {
        let m = model(&ModelConfig::tiny());
        let err = FrameModel::new(&m, &[0.0; 8]).unwrap_err().to_string();
        assert!(err.contains("not causal"), "{err}");
        let m = model(&ModelConfig::tiny_attention());
        let err = FrameModel::new(&m, &[0.0; 8]).unwrap_err().to_string();
        assert!(err.contains("attends"), "{err}");
        let m = model(&ModelConfig::tiny_stream());
        let err = FrameModel::new(&m, &[0.0; 3]).unwrap_err().to_string();
        assert!(err.contains("3 values"), "{err}");
        let mut fm = FrameModel::new(&m, &[0.0; 8]).unwrap();
        assert!(fm.set_voice(&[0.0; 8], Some(&[0.0; 79])).is_err());
        assert!(fm.step(&[0.0; 80], &mut [0.0; 79]).is_err());
    }
}
