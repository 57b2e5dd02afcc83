//! A neural vocoder for voxswap's log-mels: Vocos (Siuzdiak 2023, arXiv 2306.00814) made causal.
//! ConvNeXt blocks at the frame rate (100 frames a second) predict, for each frame, the
//! magnitude and phase of an `n_fft`-point spectrum; an inverse real FFT of each, a
//! power-complementary window (the square root of a periodic Hann) and overlap-add give the
//! audio. Every convolution looks only at past frames, and with `n_fft = 2 · hop` a frame
//! completes the audio up to its own centre: no look-ahead beyond the frontend's own window.
//!
//! With [`PhaseMode::Source`] the head gives no phases but the gains of a source-filter
//! synthesis (a harmonic excitation at an F0 and white noise, [`crate::excitation`]), the F0 from
//! the head or from an F0 network of its own (`f0_net`): periodic by construction, the design
//! that resynthesises best so far (BENCHMARKS.md, "A source-filter vocoder").
//!
//! Per second of 16 kHz audio the default size costs about 0.15 G multiply-accumulates, against
//! 1.37 G for HiFi-GAN V2 (BENCHMARKS.md, "Neural vocoder: choosing the design").

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use voxswap_audio::FrontendConfig;

use crate::excitation::{decode_f0, f0_from_head, Excitation, F0_REF};
use crate::kernels::Matrix;
use crate::layers::{PadConv, Padding};
use crate::stream::{Ctx, Stream};
use crate::{Error, Result};

/// The vocoder's shape; saved as `vocoder.json` beside `vocoder.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VocoderConfig {
    /// The features it reads (the model's frontend) and the rate it writes.
    pub frontend: FrontendConfig,
    /// Channels of the ConvNeXt blocks.
    pub channels: usize,
    /// ConvNeXt blocks.
    pub blocks: usize,
    /// Width of each block's pointwise layer, in multiples of `channels`.
    pub mult: usize,
    /// Kernel of the input convolution and of each block's depthwise convolution (frames).
    pub kernel: usize,
    /// Points of each frame's synthesis FFT: a multiple of the hop, even.
    pub n_fft: usize,
    /// What the head's phase outputs mean.
    #[serde(default)]
    pub phase: PhaseMode,
    /// [`PhaseMode::Source`]: a network of its own for the F0 (a classifier over pitch bins),
    /// trained on the F0 alone; without it the head gives `ln(F0 / F0_REF)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f0_net: Option<F0NetConfig>,
}

/// The F0 network of a source-filter vocoder: ConvNeXt blocks of its own over the log-mels (the
/// kernel and pointwise width the vocoder's), a classifier over `bins` pitch bins spaced evenly
/// in log-frequency from [`crate::excitation::F0_BIN_LO`] to [`crate::excitation::F0_BIN_HI`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct F0NetConfig {
    /// Channels of its blocks.
    pub channels: usize,
    /// Its blocks.
    pub blocks: usize,
    /// Pitch bins.
    pub bins: usize,
}

/// How the vocoder's head gives each frame's phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseMode {
    /// The phases themselves (Vocos): nothing ties a frame's phases to the previous frame's.
    #[default]
    Absolute,
    /// Each bin's advance since the previous frame, beyond its centre frequency's; the phases
    /// are their running sum (a phase vocoder's synthesis), so that a partial whose frequency
    /// the head gets right stays coherent from frame to frame. Any synthesis width: bin `k`'s
    /// carrier turns `k / hops` of a turn a frame.
    Integrated,
    /// No phases: a source-filter synthesis (see [`crate::excitation`]). The head gives each
    /// bin's log-gain for a harmonic excitation and for white noise, and `ln(F0 / F0_REF)`;
    /// the frame's spectrum is the two sources' spectra times their gains. The harmonics' phases
    /// advance with the F0 from frame to frame, so a steady vowel is periodic by construction.
    Source,
}

impl VocoderConfig {
    /// The shipped size: 192 channels, 6 blocks, pointwise ×3, kernel 7, `n_fft` = 2 hops.
    pub fn small(frontend: &FrontendConfig) -> Self {
        Self {
            frontend: frontend.clone(),
            channels: 192,
            blocks: 6,
            mult: 3,
            kernel: 7,
            n_fft: 2 * frontend.hop_length,
            phase: PhaseMode::Absolute,
            f0_net: None,
        }
    }

    /// A few thousand parameters of the same shape, for tests.
    pub fn tiny(frontend: &FrontendConfig) -> Self {
        Self {
            frontend: frontend.clone(),
            channels: 16,
            blocks: 2,
            mult: 2,
            kernel: 3,
            n_fft: 2 * frontend.hop_length,
            phase: PhaseMode::Absolute,
            f0_net: None,
        }
    }

    /// Hops each synthesis frame spans (`n_fft / hop`).
    pub fn hops(&self) -> usize {
        self.n_fft / self.frontend.hop_length
    }

    /// Frequency bins of the synthesis spectrum.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Outputs of the head per frame: two per bin (log-magnitude and phase, or the two
    /// sources' log-gains), and the F0 for [`PhaseMode::Source`] without an F0 network.
    pub fn head_outputs(&self) -> usize {
        2 * self.n_bins() + usize::from(self.phase == PhaseMode::Source && self.f0_net.is_none())
    }

    /// Checks that the parts fit together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the problem.
    pub fn validate(&self) -> Result<()> {
        self.frontend.validate().map_err(|e| Error::Config(e.to_string()))?;
        let hop = self.frontend.hop_length;
        if self.channels == 0 || self.blocks == 0 || self.mult == 0 || self.kernel == 0 {
            return Err(Error::Config(
                "vocoder channels, blocks, mult and kernel must be positive".into(),
            ));
        }
        if let Some(f) = &self.f0_net {
            if self.phase != PhaseMode::Source {
                return Err(Error::Config("an F0 network needs phase = \"source\"".into()));
            }
            if f.channels == 0 || f.blocks == 0 || f.bins < 2 {
                return Err(Error::Config(
                    "the F0 network's channels and blocks must be positive, its bins at least 2".into(),
                ));
            }
        }
        if self.n_fft == 0 || self.n_fft % hop != 0 || self.n_fft % 2 != 0 {
            return Err(Error::Config(format!(
                "vocoder n_fft {} must be an even multiple of the hop ({hop})",
                self.n_fft
            )));
        }
        Ok(())
    }

    /// How far the audio stays behind the newest frame's centre, in samples (see
    /// `voxswap_stream::Vocoder::latency_samples`): `n_fft / 2 − hop`, 0 at the default size.
    pub fn latency_samples(&self) -> usize {
        (self.n_fft / 2).saturating_sub(self.frontend.hop_length)
    }
}

/// Layer norm over the last dimension with a learnt scale and shift, from differentiable
/// tensor operations (candle_nn's fused layer norm has no backward pass).
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(c: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(c, "weight")?,
            bias: vb.get(c, "bias")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let d = x.broadcast_sub(&mean)?;
        let var = d.sqr()?.mean_keepdim(D::Minus1)?;
        let y = d.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

/// One ConvNeXt block: a depthwise causal convolution over time, layer norm, a pointwise
/// expansion with GELU, back to `channels`, scaled, added to the input.
#[derive(Debug, Clone)]
struct Block {
    /// Depthwise kernel `[C, 1, K]` and its bias `[C]`.
    dw_weight: Tensor,
    dw_bias: Tensor,
    kernel: usize,
    norm: LayerNorm,
    p1: Linear,
    p2: Linear,
    /// Layer scale `[C]`.
    gamma: Tensor,
}

impl Block {
    fn new(c: usize, mult: usize, k: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dw_weight: vb.get((c, 1, k), "dw.weight")?,
            dw_bias: vb.get(c, "dw.bias")?,
            kernel: k,
            norm: LayerNorm::new(c, 1e-6, vb.pp("norm"))?,
            p1: candle_nn::linear(c, mult * c, vb.pp("p1"))?,
            p2: candle_nn::linear(mult * c, c, vb.pp("p2"))?,
            gamma: vb.get(c, "gamma")?,
        })
    }

    /// `[B, C, T]` → `[B, C, T]`.
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let t = x.dim(2)?;
        // The past k − 1 frames (zeros before the start, or the stream's last ones) and x.
        let buf = ctx.history(x, self.kernel)?;
        let mut y = self
            .dw_bias
            .unsqueeze(0)?
            .unsqueeze(2)?
            .broadcast_as(x.shape())?
            .contiguous()?;
        for j in 0..self.kernel {
            let w = self.dw_weight.narrow(2, j, 1)?.squeeze(1)?.unsqueeze(0)?; // [1, C, 1]
            y = (y + buf.narrow(2, j, t)?.broadcast_mul(&w)?)?;
        }
        let y = y.transpose(1, 2)?.contiguous()?; // [B, T, C]
        let y = self
            .p2
            .forward(&self.p1.forward(&self.norm.forward(&y)?)?.gelu_erf()?)?;
        let y = y.broadcast_mul(&self.gamma)?.transpose(1, 2)?;
        Ok((x + y)?)
    }
}

/// A causal input convolution, ConvNeXt blocks, a layer norm and a linear head: log-mels
/// `[B, n_mels, T]` → `[B, T, outputs]`.
#[derive(Debug, Clone)]
struct Trunk {
    pre: PadConv,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
}

impl Trunk {
    fn new(cfg: &VocoderConfig, channels: usize, blocks: usize, outputs: usize, vb: VarBuilder) -> Result<Self> {
        let c = channels;
        Ok(Self {
            pre: PadConv::new(cfg.frontend.n_mels, c, cfg.kernel, 1, Padding::Causal, vb.pp("pre"))?,
            blocks: (0..blocks)
                .map(|i| Block::new(c, cfg.mult, cfg.kernel, vb.pp(format!("blocks.{i}"))))
                .collect::<Result<Vec<_>>>()?,
            norm: LayerNorm::new(c, 1e-6, vb.pp("norm"))?,
            head: candle_nn::linear(c, outputs, vb.pp("head"))?,
        })
    }

    fn forward(&self, mel: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut x = ctx.conv(&self.pre, mel)?;
        for b in &self.blocks {
            x = b.forward(&x, ctx)?;
        }
        Ok(self
            .head
            .forward(&self.norm.forward(&x.transpose(1, 2)?.contiguous()?)?)?)
    }
}

/// The vocoder (see the module docs).
#[derive(Debug, Clone)]
pub struct NeuralVocoder {
    cfg: VocoderConfig,
    trunk: Trunk,
    /// The F0 network (`f0_net`): weights under `f0.`.
    f0: Option<Trunk>,
    /// Inverse real DFT with the synthesis window folded in: `[n_bins, n_fft]` for the real and
    /// the imaginary parts.
    basis_re: Tensor,
    basis_im: Tensor,
}

impl NeuralVocoder {
    /// Builds the vocoder; weights from `vb`.
    ///
    /// # Errors
    /// [`Error::Config`] for an inconsistent configuration; a missing or mis-shaped tensor.
    pub fn new(cfg: &VocoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let (n, f) = (cfg.n_fft, cfg.n_bins());
        // x[n] = (1/N) Σ_k w_k (Re X_k cos(2πkn/N) − Im X_k sin(2πkn/N)), w_k = 1 at DC and
        // Nyquist, 2 elsewhere; times the synthesis window (with its 1/N).
        let win = synthesis_window(n);
        let mut re = vec![0f32; f * n];
        let mut im = vec![0f32; f * n];
        for k in 0..f {
            let wk = if k == 0 || 2 * k == n { 1.0 } else { 2.0 };
            for j in 0..n {
                let phase = 2.0 * std::f64::consts::PI * (k * j % n) as f64 / n as f64;
                re[k * n + j] = (wk * phase.cos() * win[j]) as f32;
                im[k * n + j] = (-wk * phase.sin() * win[j]) as f32;
            }
        }
        let dev = vb.device();
        let dtype = vb.dtype();
        Ok(Self {
            trunk: Trunk::new(cfg, cfg.channels, cfg.blocks, cfg.head_outputs(), vb.clone())?,
            f0: match &cfg.f0_net {
                Some(f0) => Some(Trunk::new(cfg, f0.channels, f0.blocks, f0.bins, vb.pp("f0"))?),
                None => None,
            },
            basis_re: Tensor::from_vec(re, (f, n), dev)?.to_dtype(dtype)?,
            basis_im: Tensor::from_vec(im, (f, n), dev)?.to_dtype(dtype)?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VocoderConfig {
        &self.cfg
    }

    /// Log-mels `[B, n_mels, T]` → windowed synthesis frames `[B, T, n_fft]` (frame `t` covers
    /// samples `t·hop − n_fft/2 ..` of the output); `exc` holds each item's sources
    /// ([`PhaseMode::Source`]).
    fn frames(&self, mel: &Tensor, ctx: &mut Ctx, exc: &mut [Excitation]) -> Result<Tensor> {
        if self.cfg.phase == PhaseMode::Source {
            let h = self.head(mel, ctx)?;
            let logits = self.f0_logits(mel, ctx)?;
            let (f0, _) = self.own_f0(&h, logits.as_ref())?;
            return self.source_frames(&h, &f0, exc);
        }
        let (log_mag, phase) = self.spectrum(mel, ctx)?;
        self.synthesis_frames(&log_mag, &phase)
    }

    /// Log-mels `[B, n_mels, T]` → the head's outputs `[B, T, head_outputs]`.
    fn head(&self, mel: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.trunk.forward(mel, ctx)
    }

    /// The F0 network's logits `[B, T, bins]`, if the vocoder has one.
    fn f0_logits(&self, mel: &Tensor, ctx: &mut Ctx) -> Result<Option<Tensor>> {
        self.f0.as_ref().map(|t| t.forward(mel, ctx)).transpose()
    }

    /// The vocoder's own F0 (Hz, per item and frame) and its `ln(F0 / F0_REF)` `[B, T]`: from
    /// the F0 network's `logits` when it has one (decoded, so not differentiable), else the
    /// head's last output.
    fn own_f0(&self, h: &Tensor, logits: Option<&Tensor>) -> Result<(Vec<Vec<f32>>, Tensor)> {
        match logits {
            Some(l) => {
                let f0: Vec<Vec<f32>> = l
                    .to_dtype(DType::F32)?
                    .to_vec3::<f32>()?
                    .into_iter()
                    .map(|item| item.iter().map(|frame| decode_f0(frame)).collect())
                    .collect();
                let (b, t) = (f0.len(), l.dim(1)?);
                let z: Vec<f32> = f0.iter().flatten().map(|f| (f / F0_REF).ln()).collect();
                Ok((f0, Tensor::from_vec(z, (b, t), l.device())?.to_dtype(l.dtype())?))
            }
            None => {
                let f = self.cfg.n_bins();
                let z = h.narrow(D::Minus1, 2 * f, 1)?.squeeze(D::Minus1)?;
                let f0 = z
                    .to_dtype(DType::F32)?
                    .to_vec2::<f32>()?
                    .into_iter()
                    .map(|r| r.into_iter().map(f0_from_head).collect())
                    .collect();
                Ok((f0, z))
            }
        }
    }

    /// [`PhaseMode::Source`]: the head's outputs `h` → windowed synthesis frames `[B, T, n_fft]`,
    /// the sources at `f0` (Hz, per item and frame); `exc` holds each item's sources, continued
    /// from their last frame.
    fn source_frames(&self, h: &Tensor, f0: &[Vec<f32>], exc: &mut [Excitation]) -> Result<Tensor> {
        let (b, t, _) = h.dims3()?;
        let f = self.cfg.n_bins();
        if exc.len() != b || f0.len() != b || f0.iter().any(|v| v.len() != t) {
            return Err(Error::Input(format!(
                "the source-filter vocoder needs an excitation and F0s for each of its {b} items of {t} frames"
            )));
        }
        let gain_h = h.narrow(D::Minus1, 0, f)?.clamp(f32::MIN, 10f32)?.exp()?;
        let gain_n = h.narrow(D::Minus1, f, f)?.clamp(f32::MIN, 10f32)?.exp()?;
        let n = b * t * f;
        let (mut hr, mut hi, mut nr, mut ni) = (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let zero = realfft::num_complex::Complex::<f32>::default();
        let (mut hs, mut ns) = (vec![zero; f], vec![zero; f]);
        for (i, (e, f0)) in exc.iter_mut().zip(f0).enumerate() {
            for (j, &v) in f0.iter().enumerate() {
                e.frame(v, &mut hs, &mut ns);
                let o = (i * t + j) * f;
                for k in 0..f {
                    hr[o + k] = hs[k].re;
                    hi[o + k] = hs[k].im;
                    nr[o + k] = ns[k].re;
                    ni[o + k] = ns[k].im;
                }
            }
        }
        let (dev, dt) = (h.device(), h.dtype());
        let ten = |v: Vec<f32>| -> Result<Tensor> { Ok(Tensor::from_vec(v, (b, t, f), dev)?.to_dtype(dt)?) };
        let re = ((&gain_h * ten(hr)?)? + (&gain_n * ten(nr)?)?)?;
        let im = ((&gain_h * ten(hi)?)? + (&gain_n * ten(ni)?)?)?;
        Ok((re.broadcast_matmul(&self.basis_re)? + im.broadcast_matmul(&self.basis_im)?)?)
    }

    /// Fresh sources for `b` items.
    fn excitations(&self, b: usize) -> Vec<Excitation> {
        let fe = &self.cfg.frontend;
        vec![Excitation::new(fe.sample_rate, fe.hop_length, self.cfg.n_fft); b]
    }

    /// [`PhaseMode::Source`]: log-mels `[B, n_mels, T]` → audio `[B, T · hop]` (aligned as
    /// [`Self::forward`]'s) and the vocoder's own F0 (see [`SourceOutput`]). The sources run at
    /// `f0` (Hz, per item and frame) when given, as in training on the F0 measured on the target
    /// audio; else at the vocoder's own F0, as [`Self::forward`] does.
    ///
    /// # Errors
    /// Another phase mode; a wrongly shaped batch or `f0`.
    pub fn forward_source(&self, mel: &Tensor, f0: Option<&[Vec<f32>]>) -> Result<SourceOutput> {
        crate::layers::check_mel(mel, self.cfg.frontend.n_mels, 1)?;
        if self.cfg.phase != PhaseMode::Source {
            return Err(Error::Config("not a source-filter vocoder (phase = \"source\")".into()));
        }
        let ctx = &mut Ctx::Offline;
        let h = self.head(mel, ctx)?;
        let f0_logits = self.f0_logits(mel, ctx)?;
        let (own, log_f0) = self.own_f0(&h, f0_logits.as_ref())?;
        let mut exc = self.excitations(mel.dim(0)?);
        let frames = self.source_frames(&h, f0.unwrap_or(&own), &mut exc)?;
        Ok(SourceOutput {
            audio: self.overlap_add(&frames)?,
            log_f0,
            f0_logits,
        })
    }

    /// Log-mels `[B, n_mels, T]` → the log-magnitudes and phases `[B, T, n_bins]` of the
    /// synthesis frames (not for [`PhaseMode::Source`], which has none).
    fn spectrum(&self, mel: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Tensor)> {
        let h = self.head(mel, ctx)?;
        let f = self.cfg.n_bins();
        let log_mag = h.narrow(D::Minus1, 0, f)?.clamp(f32::MIN, 10f32)?;
        let phase = h.narrow(D::Minus1, f, f)?;
        let phase = match self.cfg.phase {
            PhaseMode::Absolute => phase,
            PhaseMode::Integrated => ctx.integrate_phase(&phase.contiguous()?, self.cfg.hops())?,
            PhaseMode::Source => return Err(Error::Config("a source-filter vocoder has no phases".into())),
        };
        Ok((log_mag, phase))
    }

    /// Windowed synthesis frames `[B, T, n_fft]` from log-magnitudes and phases.
    fn synthesis_frames(&self, log_mag: &Tensor, phase: &Tensor) -> Result<Tensor> {
        let mag = log_mag.exp()?;
        let re = (&mag * phase.cos()?)?;
        let im = (&mag * phase.sin()?)?;
        Ok((re.broadcast_matmul(&self.basis_re)? + im.broadcast_matmul(&self.basis_im)?)?)
    }

    /// Log-mels `[B, n_mels, T]` → audio `[B, T · hop]`: sample 0 is the time of frame 0's
    /// centre minus nothing (the output is aligned with the audio the mels came from).
    ///
    /// # Errors
    /// [`Error::Input`] for a wrongly shaped batch.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        if self.cfg.phase == PhaseMode::Source {
            return Ok(self.forward_source(mel, None)?.audio);
        }
        Ok(self.forward_with_phase(mel)?.0)
    }

    /// [`Self::forward`], and the phases `[B, T, n_bins]` of the synthesis frames (frame `t`
    /// centred on sample `t · hop`, phase relative to the frame's first sample, as a centred
    /// STFT of `n_fft` points measures it), for training with phase losses.
    ///
    /// # Errors
    /// [`Error::Input`] for a wrongly shaped batch; [`Error::Config`] for
    /// [`PhaseMode::Source`], which has no phases.
    pub fn forward_with_phase(&self, mel: &Tensor) -> Result<(Tensor, Tensor)> {
        crate::layers::check_mel(mel, self.cfg.frontend.n_mels, 1)?;
        let (log_mag, phase) = self.spectrum(mel, &mut Ctx::Offline)?;
        Ok((self.from_spectrum(&log_mag, &phase)?, phase))
    }

    /// The audio `[B, T · hop]` of synthesis frames given by their log-magnitudes and phases
    /// `[B, T, n_bins]` (the head's output; frame `t` centred on sample `t · hop`).
    ///
    /// # Errors
    /// Wrongly shaped inputs.
    pub fn from_spectrum(&self, log_mag: &Tensor, phase: &Tensor) -> Result<Tensor> {
        let frames = self.synthesis_frames(log_mag, phase)?;
        self.overlap_add(&frames)
    }

    /// Windowed synthesis frames `[B, T, n_fft]` (frame `t` centred on sample `t · hop`) → audio
    /// `[B, T · hop]` from the first frame's centre.
    fn overlap_add(&self, frames: &Tensor) -> Result<Tensor> {
        let (b, t, n) = frames.dims3()?;
        let hop = self.cfg.frontend.hop_length;
        let m = n / hop;
        // Overlap-add: the i-th hop-long piece of every frame lands i hops after the frame's start.
        let mut out: Option<Tensor> = None;
        for i in 0..m {
            let piece = frames.narrow(2, i * hop, hop)?.reshape((b, t * hop))?;
            let placed = piece.pad_with_zeros(1, i * hop, (m - 1 - i) * hop)?;
            out = Some(match out {
                Some(o) => (o + placed)?,
                None => placed,
            });
        }
        let out = out.ok_or_else(|| Error::Config("n_fft must hold at least one hop".into()))?;
        Ok(out.narrow(1, n / 2, t * hop)?)
    }

    /// A stream over this vocoder (see [`VocoderStream`]).
    pub fn stream(&self) -> VocoderStream {
        VocoderStream {
            vocoder: self.clone(),
            state: Stream::default(),
            exc: self.excitations(1),
            acc: vec![0.0; self.cfg.n_fft],
            skip: self.cfg.n_fft / 2,
        }
    }
}

/// What [`NeuralVocoder::forward_source`] gives.
#[derive(Debug, Clone)]
pub struct SourceOutput {
    /// Audio `[B, T · hop]`.
    pub audio: Tensor,
    /// The vocoder's own `ln(F0 / F0_REF)` `[B, T]`: differentiable when the head gives it,
    /// decoded from `f0_logits` (and not) with an F0 network.
    pub log_f0: Tensor,
    /// The F0 network's logits over its pitch bins `[B, T, bins]`, if it has one.
    pub f0_logits: Option<Tensor>,
}

/// Frame-by-frame synthesis equal to [`NeuralVocoder::forward`]: each convolution keeps its
/// last frames, and the overlap-add keeps the part of the output later frames still add to.
#[derive(Debug, Clone)]
pub struct VocoderStream {
    vocoder: NeuralVocoder,
    state: Stream,
    /// The sources of a [`PhaseMode::Source`] vocoder (one item).
    exc: Vec<Excitation>,
    /// Overlap-add accumulator: `acc[0]` is the first sample the next frame adds to.
    acc: Vec<f32>,
    /// Samples before time 0 still to drop.
    skip: usize,
}

impl VocoderStream {
    /// Adds frames `[1, n_mels, T]`; the audio they complete is appended to `out`.
    ///
    /// # Errors
    /// [`Error::Input`] for a wrongly shaped chunk.
    pub fn step(&mut self, mel: &Tensor, out: &mut Vec<f32>) -> Result<()> {
        crate::layers::check_mel(mel, self.vocoder.cfg.frontend.n_mels, 1)?;
        if mel.dim(0)? != 1 {
            return Err(Error::Input("a vocoder stream takes one item at a time".into()));
        }
        self.state.begin();
        let frames = self
            .vocoder
            .frames(mel, &mut Ctx::Stream(&mut self.state), &mut self.exc)?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        let hop = self.vocoder.cfg.frontend.hop_length;
        for f in frames {
            for (a, v) in self.acc.iter_mut().zip(&f) {
                *a += v;
            }
            self.emit(hop, out);
            self.acc.drain(..hop);
            self.acc.resize(self.vocoder.cfg.n_fft, 0.0);
        }
        Ok(())
    }

    /// The rest of the audio: everything the frames so far add to.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let n = self.vocoder.cfg.n_fft - self.vocoder.cfg.frontend.hop_length;
        self.emit(n, out);
        self.reset();
    }

    fn emit(&mut self, n: usize, out: &mut Vec<f32>) {
        let drop = self.skip.min(n);
        self.skip -= drop;
        out.extend_from_slice(&self.acc[drop..n]);
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        self.state.reset();
        self.exc.iter_mut().for_each(Excitation::reset);
        self.acc.iter_mut().for_each(|v| *v = 0.0);
        self.skip = self.vocoder.cfg.n_fft / 2;
    }

    /// The vocoder.
    pub fn vocoder(&self) -> &NeuralVocoder {
        &self.vocoder
    }
}

/// File names of a vocoder in a model folder.
pub const CONFIG_FILE: &str = "vocoder.json";
/// See [`CONFIG_FILE`].
pub const WEIGHTS_FILE: &str = "vocoder.safetensors";

impl NeuralVocoder {
    /// The vocoder of model folder `dir`, if it has one (`vocoder.json` and
    /// `vocoder.safetensors`).
    ///
    /// # Errors
    /// A vocoder whose files are unreadable, inconsistent or missing tensors.
    pub fn load(dir: &std::path::Path, device: &Device) -> Result<Option<Self>> {
        let cfg_path = dir.join(CONFIG_FILE);
        if !cfg_path.is_file() {
            return Ok(None);
        }
        let bad = |what: String| Error::Config(format!("{}: {what}", cfg_path.display()));
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let cfg: VocoderConfig = serde_json::from_str(&text).map_err(|e| bad(format!("invalid: {e}")))?;
        let weights = dir.join(WEIGHTS_FILE);
        // SAFETY: the file is mapped read-only for the vocoder's lifetime; voxswap never writes
        // model files in place (they are replaced by renaming).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(|e| Error::Config(format!("{}: {e}", weights.display())))?;
        Ok(Some(Self::new(&cfg, vb)?))
    }

    /// Writes `vocoder.json` and `vocoder.safetensors` (the weights in `vars`) into `dir`.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(dir: &std::path::Path, cfg: &VocoderConfig, vars: &VarMap) -> Result<()> {
        let text = serde_json::to_string_pretty(cfg).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(dir.join(CONFIG_FILE), text)
            .map_err(|e| Error::Config(format!("{}: cannot write: {e}", dir.join(CONFIG_FILE).display())))?;
        vars.save(dir.join(WEIGHTS_FILE))
            .map_err(|e| Error::Config(format!("{}: cannot write: {e}", dir.join(WEIGHTS_FILE).display())))
    }
}

/// Copies the vocoder of folder or checkpoint `src` (`vocoder.json`, `vocoder.safetensors`)
/// into model folder `dst`, after loading it as [`NeuralVocoder::load`] does, in half precision
/// when `half` (see [`crate::io::save_tensors`]). Files are replaced atomically.
///
/// # Errors
/// `src` without a vocoder, or one that does not load; a weight out of half precision's range;
/// a file that cannot be written.
pub fn export_vocoder(src: &std::path::Path, dst: &std::path::Path, half: bool) -> Result<()> {
    if NeuralVocoder::load(src, &Device::Cpu)?.is_none() {
        return Err(Error::Config(format!(
            "{}: no vocoder here ({CONFIG_FILE})",
            src.display()
        )));
    }
    let weights = src.join(WEIGHTS_FILE);
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
        .map_err(|e| Error::Config(format!("{}: {e}", weights.display())))?;
    std::fs::create_dir_all(dst).map_err(|e| crate::io::file_err(dst, format!("cannot create folder: {e}")))?;
    crate::io::save_tensors(&dst.join(WEIGHTS_FILE), &tensors, half)?;
    let text = std::fs::read(src.join(CONFIG_FILE)).map_err(|e| crate::io::file_err(&src.join(CONFIG_FILE), e))?;
    crate::io::write_atomic(&dst.join(CONFIG_FILE), |tmp| {
        std::fs::write(tmp, &text).map_err(|e| crate::io::file_err(tmp, format!("cannot write: {e}")))
    })
}

/// Sets every parameter of a vocoder's `vars` as its training starts: convolutions and linear
/// layers as PyTorch initialises them (uniform in ±1/√fan_in, seeded), layer norms to the
/// identity, and each block's layer scale to `1 / blocks` (so that the blocks start near the
/// identity and the input convolution's features reach the head).
///
/// # Errors
/// A tensor that cannot be set.
pub fn init_vocoder(vars: &VarMap, cfg: &VocoderConfig, seed: u64) -> Result<()> {
    crate::init::init_pytorch_like(vars, seed)?;
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::Config("parameter map lock poisoned".into()))?;
    for (name, var) in data.iter() {
        let value = if name.ends_with("norm.weight") {
            Some(1.0)
        } else if name.ends_with("norm.bias") {
            Some(0.0)
        } else if name.ends_with("gamma") {
            let blocks = match (&cfg.f0_net, name.starts_with("f0.")) {
                (Some(f0), true) => f0.blocks,
                _ => cfg.blocks,
            };
            Some(1.0 / blocks as f64)
        } else {
            None
        };
        if let Some(v) = value {
            var.set(&Tensor::full(v, var.dims(), var.device())?.to_dtype(var.dtype())?)?;
        }
    }
    Ok(())
}

/// A vocoder with freshly initialised weights in `vars` (training), on `device`.
///
/// # Errors
/// As [`NeuralVocoder::new`].
pub fn new_trainable(cfg: &VocoderConfig, vars: &VarMap, seed: u64, device: &Device) -> Result<NeuralVocoder> {
    let v = NeuralVocoder::new(cfg, VarBuilder::from_varmap(vars, DType::F32, device))?;
    init_vocoder(vars, cfg, seed)?;
    Ok(v)
}

/// The vocoder's streaming step written out frame by frame in plain loops over weights copied
/// out of the tensors: equal to [`VocoderStream`] (up to float rounding) and several times
/// faster on one frame, where each tensor operation's fixed cost outweighs its arithmetic. After
/// construction a frame allocates nothing (the caller's `out` aside). For live use; offline,
/// [`VocoderStream`] on many frames at once is faster still (a frame alone must read all 6 MB of
/// the shipped size's weights from memory: that, not arithmetic, bounds its speed).
#[derive(Debug, Clone)]
pub struct FrameVocoder {
    cfg: VocoderConfig,
    trunk: FrameTrunk,
    /// The F0 network, if the vocoder has one.
    f0: Option<FrameTrunk>,
    /// The synthesis frame's inverse real FFT (its plan, spectrum and scratch) and window
    /// ([`synthesis_window`], as the offline basis has it).
    ifft: Ifft,
    spec: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    window: Vec<f32>,
    frame: Vec<f32>,
    /// Overlap-add accumulator, as [`VocoderStream`]'s.
    acc: Vec<f32>,
    skip: usize,
    /// Integrated phases: each bin's running sum (one turn at most) and the frames so far.
    phase_sum: Vec<f32>,
    frames: usize,
    /// Source-filter synthesis: the sources and one frame of their spectra.
    exc: Excitation,
    src_h: Vec<realfft::num_complex::Complex<f32>>,
    src_n: Vec<realfft::num_complex::Complex<f32>>,
}

#[derive(Debug, Clone)]
struct FrameBlock {
    /// Depthwise kernel `[K][C]` (tap-major) and bias.
    dw_w: Vec<f32>,
    dw_b: Vec<f32>,
    norm_w: Vec<f32>,
    norm_b: Vec<f32>,
    /// `[mult · C][C]`, `[C][mult · C]`.
    p1_w: Matrix,
    p1_b: Vec<f32>,
    p2_w: Matrix,
    p2_b: Vec<f32>,
    gamma: Vec<f32>,
    /// The block's last `K` inputs, oldest first, `[K · C]`.
    hist: Vec<f32>,
}

/// The synthesis window of `n` points with the inverse DFT's `1/n` folded in: `sin(πj/n) / n`,
/// the square root of a periodic Hann (power-complementary at 2 hops and more).
pub(crate) fn synthesis_window(n: usize) -> Vec<f64> {
    (0..n)
        .map(|j| (std::f64::consts::PI * j as f64 / n as f64).sin() / n as f64)
        .collect()
}

/// A planned inverse real FFT (the plan has no `Debug` of its own).
#[derive(Clone)]
struct Ifft(std::sync::Arc<dyn realfft::ComplexToReal<f32>>);

impl std::fmt::Debug for Ifft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ifft({})", self.0.len())
    }
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// `out[o] = b[o] + W[o] · x` for `W` of `[out][in]`.
fn affine(w: &Matrix, b: &[f32], x: &[f32], out: &mut [f32]) {
    crate::kernels::matvec(w, x, b, out, None);
}

fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, w), b) in x.iter_mut().zip(w).zip(b) {
        *v = (*v - mean) * inv * w + b;
    }
}

/// A [`Trunk`] frame by frame in plain loops over weights copied out of its tensors; after
/// construction a frame allocates nothing.
#[derive(Debug, Clone)]
struct FrameTrunk {
    /// Input convolution `[C][K · n_mels]` (tap `j` of the kernel, then band) and its bias.
    pre_w: Matrix,
    pre_b: Vec<f32>,
    blocks: Vec<FrameBlock>,
    norm_w: Vec<f32>,
    norm_b: Vec<f32>,
    /// Head `[outputs][C]` and its bias.
    head_w: Matrix,
    head_b: Vec<f32>,
    /// The last `K` input frames, oldest first, `[K · n_mels]`.
    mel_hist: Vec<f32>,
    // Scratch of one frame.
    x: Vec<f32>,
    y: Vec<f32>,
    wide: Vec<f32>,
    /// The head's outputs for the last frame.
    out: Vec<f32>,
}

impl FrameTrunk {
    fn new(t: &Trunk, cfg: &VocoderConfig) -> Result<Self> {
        let (k, m) = (cfg.kernel, cfg.frontend.n_mels);
        // [C, n_mels, K] → [C][K · n_mels].
        let w = flat(t.pre.conv_weight())?;
        let c = w.len() / (m * k);
        let mut pre_w = vec![0f32; c * k * m];
        for o in 0..c {
            for i in 0..m {
                for j in 0..k {
                    pre_w[o * k * m + j * m + i] = w[(o * m + i) * k + j];
                }
            }
        }
        let pre_b = match t.pre.conv_bias() {
            Some(b) => flat(b)?,
            None => vec![0.0; c],
        };
        let blocks = t
            .blocks
            .iter()
            .map(|b| {
                let w = flat(&b.dw_weight)?; // [C, 1, K]
                let mut dw_w = vec![0f32; k * c];
                for ch in 0..c {
                    for j in 0..k {
                        dw_w[j * c + ch] = w[ch * k + j];
                    }
                }
                Ok(FrameBlock {
                    dw_w,
                    dw_b: flat(&b.dw_bias)?,
                    norm_w: flat(&b.norm.weight)?,
                    norm_b: flat(&b.norm.bias)?,
                    p1_w: Matrix::new(flat(b.p1.weight())?),
                    p1_b: b.p1.bias().map_or(Ok(vec![0.0; cfg.mult * c]), flat)?,
                    p2_w: Matrix::new(flat(b.p2.weight())?),
                    p2_b: b.p2.bias().map_or(Ok(vec![0.0; c]), flat)?,
                    gamma: flat(&b.gamma)?,
                    hist: vec![0.0; k * c],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let outputs = t.head.weight().dim(0)?;
        Ok(Self {
            pre_w: Matrix::new(pre_w),
            pre_b,
            blocks,
            norm_w: flat(&t.norm.weight)?,
            norm_b: flat(&t.norm.bias)?,
            head_w: Matrix::new(flat(t.head.weight())?),
            head_b: t.head.bias().map_or(Ok(vec![0.0; outputs]), flat)?,
            mel_hist: vec![0.0; k * m],
            x: vec![0.0; c],
            y: vec![0.0; c],
            wide: vec![0.0; cfg.mult * c],
            out: vec![0.0; outputs],
        })
    }

    fn half_precision(&self) -> bool {
        let blocks = self.blocks.iter().all(|b| b.p1_w.is_half() && b.p2_w.is_half());
        blocks && self.pre_w.is_half() && self.head_w.is_half()
    }

    /// One frame of `n_mels` values; the head's outputs land in `out`.
    fn step(&mut self, mel: &[f32]) {
        let c = self.x.len();
        crate::kernels::push_frame(&mut self.mel_hist, mel);
        affine(&self.pre_w, &self.pre_b, &self.mel_hist, &mut self.x);
        for b in &mut self.blocks {
            let k = b.hist.len() / c;
            crate::kernels::push_frame(&mut b.hist, &self.x);
            for ch in 0..c {
                let mut s = b.dw_b[ch];
                for j in 0..k {
                    s += b.hist[j * c + ch] * b.dw_w[j * c + ch];
                }
                self.y[ch] = s;
            }
            layer_norm(&mut self.y, &b.norm_w, &b.norm_b, 1e-6);
            affine(&b.p1_w, &b.p1_b, &self.y, &mut self.wide);
            for v in &mut self.wide {
                *v = (candle_core::cpu::erf::erf_f32(*v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * *v;
            }
            affine(&b.p2_w, &b.p2_b, &self.wide, &mut self.y);
            for ((x, y), g) in self.x.iter_mut().zip(&self.y).zip(&b.gamma) {
                *x += y * g;
            }
        }
        self.y.copy_from_slice(&self.x);
        layer_norm(&mut self.y, &self.norm_w, &self.norm_b, 1e-6);
        affine(&self.head_w, &self.head_b, &self.y, &mut self.out);
    }

    fn reset(&mut self) {
        self.mel_hist.iter_mut().for_each(|v| *v = 0.0);
        for b in &mut self.blocks {
            b.hist.iter_mut().for_each(|v| *v = 0.0);
        }
    }
}

impl FrameVocoder {
    /// The frame-by-frame form of `v`.
    ///
    /// # Errors
    /// Weights that cannot be read.
    pub fn new(v: &NeuralVocoder) -> Result<Self> {
        let cfg = v.cfg.clone();
        let f = cfg.n_bins();
        let n = cfg.n_fft;
        let ifft = realfft::RealFftPlanner::<f32>::new().plan_fft_inverse(n);
        let window = synthesis_window(n).into_iter().map(|w| w as f32).collect();
        Ok(Self {
            trunk: FrameTrunk::new(&v.trunk, &cfg)?,
            f0: v.f0.as_ref().map(|t| FrameTrunk::new(t, &cfg)).transpose()?,
            spec: ifft.make_input_vec(),
            scratch: ifft.make_scratch_vec(),
            ifft: Ifft(ifft),
            window,
            frame: vec![0.0; cfg.n_fft],
            acc: vec![0.0; cfg.n_fft],
            skip: cfg.n_fft / 2,
            phase_sum: vec![0.0; f],
            frames: 0,
            exc: Excitation::new(cfg.frontend.sample_rate, cfg.frontend.hop_length, n),
            src_h: vec![Default::default(); f],
            src_n: vec![Default::default(); f],
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VocoderConfig {
        &self.cfg
    }

    /// Whether every weight matrix is read in half precision (the weights are exactly halves, as
    /// `voxswap export --half` writes them).
    pub fn half_precision(&self) -> bool {
        self.trunk.half_precision() && self.f0.as_ref().is_none_or(FrameTrunk::half_precision)
    }

    /// Adds one frame of `n_mels` log-mel values; the audio it completes (a hop, less at the
    /// start) is appended to `out`.
    ///
    /// # Errors
    /// [`Error::Input`] for a frame of the wrong size.
    pub fn step(&mut self, mel: &[f32], out: &mut Vec<f32>) -> Result<()> {
        if mel.len() != self.cfg.frontend.n_mels {
            return Err(Error::Input(format!(
                "a vocoder frame has {} values, not {}",
                self.cfg.frontend.n_mels,
                mel.len()
            )));
        }
        self.trunk.step(mel);
        if let Some(t) = &mut self.f0 {
            t.step(mel);
        }
        let f = self.cfg.n_bins();
        let integrated = self.cfg.phase == PhaseMode::Integrated;
        let hops = self.cfg.hops();
        let h = &self.trunk.out;
        if self.cfg.phase == PhaseMode::Source {
            let f0 = match &self.f0 {
                Some(t) => decode_f0(&t.out),
                None => f0_from_head(h[2 * f]),
            };
            self.exc.frame(f0, &mut self.src_h, &mut self.src_n);
            for bin in 0..f {
                let gh = h[bin].min(10.0).exp();
                let gn = h[f + bin].min(10.0).exp();
                self.spec[bin] = self.src_h[bin] * gh + self.src_n[bin] * gn;
            }
        } else {
            for bin in 0..f {
                let mag = h[bin].min(10.0).exp();
                let phase = if integrated {
                    let turn = 2.0 * std::f32::consts::PI;
                    let sum = self.phase_sum[bin] + h[f + bin];
                    self.phase_sum[bin] = sum - (sum / turn).floor() * turn;
                    sum + crate::stream::carrier(bin, self.frames, hops)
                } else {
                    h[f + bin]
                };
                let (s, co) = phase.sin_cos();
                self.spec[bin] = realfft::num_complex::Complex::new(mag * co, mag * s);
            }
        }
        // A real signal's DC and Nyquist bins are real: the offline basis drops their imaginary
        // parts (its sines are zero there), and so does this.
        self.spec[0].im = 0.0;
        self.spec[f - 1].im = 0.0;
        self.ifft
            .0
            .process_with_scratch(&mut self.spec, &mut self.frame, &mut self.scratch)
            .map_err(|e| Error::Config(format!("vocoder inverse FFT: {e}")))?;
        for (v, w) in self.frame.iter_mut().zip(&self.window) {
            *v *= w;
        }
        for (a, v) in self.acc.iter_mut().zip(&self.frame) {
            *a += v;
        }
        self.frames += 1;
        let hop = self.cfg.frontend.hop_length;
        self.emit(hop, out);
        self.acc.copy_within(hop.., 0);
        let len = self.acc.len();
        self.acc[len - hop..].iter_mut().for_each(|v| *v = 0.0);
        Ok(())
    }

    fn emit(&mut self, n: usize, out: &mut Vec<f32>) {
        let drop = self.skip.min(n);
        self.skip -= drop;
        out.extend_from_slice(&self.acc[drop..n]);
    }

    /// The rest of the audio, then a reset.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let n = self.cfg.n_fft - self.cfg.frontend.hop_length;
        self.emit(n, out);
        self.reset();
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        self.trunk.reset();
        if let Some(t) = &mut self.f0 {
            t.reset();
        }
        self.acc.iter_mut().for_each(|v| *v = 0.0);
        self.skip = self.cfg.n_fft / 2;
        self.phase_sum.iter_mut().for_each(|v| *v = 0.0);
        self.frames = 0;
        self.exc.reset();
    }
}
