//! AdaIN-VC (Chou, Yeh & Lee, Interspeech 2019, arXiv 1904.05742), following the authors'
//! reference code (github.com/jjery2243542/adaptive_voice_conversion, `model.py`): a speaker
//! encoder that pools an utterance into one vector, a content encoder whose instance norm
//! removes per-utterance statistics (with a VAE head), and a decoder that puts the speaker
//! back through adaptive instance normalisation.

use candle_core::{Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use crate::config::{ContentEncoderConfig, DecoderConfig, ModelConfig, SpeakerEncoderConfig};
use crate::layers::{
    adain, avg_pool2, check_mel, instance_norm, linear, pixel_shuffle, upsample_nearest, ConvBank,
    PadConv,
};
use crate::Result;

/// The residual convolution blocks of an encoder: two convolutions per block, the second
/// possibly strided, the shortcut average-pooled to match.
#[derive(Debug, Clone)]
struct ConvBlocks {
    first: Vec<PadConv>,
    second: Vec<PadConv>,
    subsample: Vec<usize>,
    norm: bool,
}

impl ConvBlocks {
    fn new(c_h: usize, k: usize, subsample: &[usize], norm: bool, vb: &VarBuilder) -> Result<Self> {
        let mut first = Vec::new();
        let mut second = Vec::new();
        for (l, &s) in subsample.iter().enumerate() {
            first.push(PadConv::new(
                c_h,
                c_h,
                k,
                1,
                vb.pp(format!("first_conv_layers.{l}")),
            )?);
            second.push(PadConv::new(
                c_h,
                c_h,
                k,
                s,
                vb.pp(format!("second_conv_layers.{l}")),
            )?);
        }
        Ok(Self {
            first,
            second,
            subsample: subsample.to_vec(),
            norm,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = x.clone();
        for ((a, b), &s) in self.first.iter().zip(&self.second).zip(&self.subsample) {
            let mut y = a.forward(&out)?;
            if self.norm {
                y = instance_norm(&y)?;
            }
            y = y.relu()?;
            y = b.forward(&y)?;
            if self.norm {
                y = instance_norm(&y)?;
            }
            y = y.relu()?;
            if s > 1 {
                out = avg_pool2(&out)?;
            }
            out = (y + out)?;
        }
        Ok(out)
    }
}

/// Summarises an utterance's voice into one vector.
#[derive(Debug, Clone)]
pub struct SpeakerEncoder {
    bank: ConvBank,
    in_conv: PadConv,
    blocks: ConvBlocks,
    dense_first: Vec<Linear>,
    dense_second: Vec<Linear>,
    output: Linear,
}

impl SpeakerEncoder {
    /// Builds the encoder; tensor names mirror the reference code's module tree.
    pub fn new(cfg: &SpeakerEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let s = &cfg.stack;
        let mut dense_first = Vec::new();
        let mut dense_second = Vec::new();
        for l in 0..cfg.n_dense_blocks {
            dense_first.push(linear(
                s.c_h,
                s.c_h,
                vb.pp(format!("first_dense_layers.{l}")),
            )?);
            dense_second.push(linear(
                s.c_h,
                s.c_h,
                vb.pp(format!("second_dense_layers.{l}")),
            )?);
        }
        Ok(Self {
            bank: ConvBank::new(s.c_in, s.c_bank, &s.bank_kernels(), vb.pp("conv_bank"))?,
            in_conv: PadConv::new(s.bank_out(), s.c_h, 1, 1, vb.pp("in_conv_layer"))?,
            blocks: ConvBlocks::new(s.c_h, s.kernel_size, &s.subsample, false, &vb)?,
            dense_first,
            dense_second,
            output: linear(s.c_h, cfg.c_out, vb.pp("output_layer"))?,
        })
    }

    /// `[B, n_mels, T]` → `[B, c_out]`.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let out = self.bank.forward(mel)?;
        let out = self.in_conv.forward(&out)?.relu()?;
        let out = self.blocks.forward(&out)?;
        let mut out = out.mean(D::Minus1)?;
        for (a, b) in self.dense_first.iter().zip(&self.dense_second) {
            let y = a.forward(&out)?.relu()?;
            let y = b.forward(&y)?.relu()?;
            out = (y + out)?;
        }
        Ok(self.output.forward(&out)?)
    }
}

/// Encodes what is said, with speaker statistics normalised away.
#[derive(Debug, Clone)]
pub struct ContentEncoder {
    bank: ConvBank,
    in_conv: PadConv,
    blocks: ConvBlocks,
    mean: PadConv,
    log_var: PadConv,
}

impl ContentEncoder {
    /// Builds the encoder.
    pub fn new(cfg: &ContentEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let s = &cfg.stack;
        Ok(Self {
            bank: ConvBank::new(s.c_in, s.c_bank, &s.bank_kernels(), vb.pp("conv_bank"))?,
            in_conv: PadConv::new(s.bank_out(), s.c_h, 1, 1, vb.pp("in_conv_layer"))?,
            blocks: ConvBlocks::new(s.c_h, s.kernel_size, &s.subsample, true, &vb)?,
            mean: PadConv::new(s.c_h, cfg.c_out, 1, 1, vb.pp("mean_layer"))?,
            log_var: PadConv::new(s.c_h, cfg.c_out, 1, 1, vb.pp("std_layer"))?,
        })
    }

    /// `[B, n_mels, T]` → (mean, log-variance) of the content code, each `[B, c_out, T / s]`.
    pub fn forward(&self, mel: &Tensor) -> Result<(Tensor, Tensor)> {
        let out = self.bank.forward(mel)?;
        let out = instance_norm(&self.in_conv.forward(&out)?)?.relu()?;
        let out = self.blocks.forward(&out)?;
        Ok((self.mean.forward(&out)?, self.log_var.forward(&out)?))
    }
}

/// Rebuilds a mel from a content code and a speaker vector.
#[derive(Debug, Clone)]
pub struct Decoder {
    in_conv: PadConv,
    first: Vec<PadConv>,
    second: Vec<PadConv>,
    affine: Vec<Linear>,
    upsample: Vec<usize>,
    out_conv: PadConv,
}

impl Decoder {
    /// Builds the decoder for content codes of `c_in` channels, speaker vectors of `c_cond`,
    /// and `c_out` mel bands.
    pub fn new(
        cfg: &DecoderConfig,
        c_in: usize,
        c_cond: usize,
        c_out: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (c_h, k) = (cfg.c_h, cfg.kernel_size);
        let mut first = Vec::new();
        let mut second = Vec::new();
        let mut affine = Vec::new();
        for (l, &u) in cfg.upsample.iter().enumerate() {
            first.push(PadConv::new(
                c_h,
                c_h,
                k,
                1,
                vb.pp(format!("first_conv_layers.{l}")),
            )?);
            second.push(PadConv::new(
                c_h,
                c_h * u,
                k,
                1,
                vb.pp(format!("second_conv_layers.{l}")),
            )?);
        }
        for i in 0..cfg.upsample.len() * 2 {
            affine.push(linear(
                c_cond,
                2 * c_h,
                vb.pp(format!("conv_affine_layers.{i}")),
            )?);
        }
        Ok(Self {
            in_conv: PadConv::new(c_in, c_h, 1, 1, vb.pp("in_conv_layer"))?,
            first,
            second,
            affine,
            upsample: cfg.upsample.clone(),
            out_conv: PadConv::new(c_h, c_out, 1, 1, vb.pp("out_conv_layer"))?,
        })
    }

    /// Content code `[B, c_in, T']` and speaker vector `[B, c_cond]` → mel `[B, c_out, T' · up]`.
    pub fn forward(&self, code: &Tensor, speaker: &Tensor) -> Result<Tensor> {
        let mut out = instance_norm(&self.in_conv.forward(code)?)?.relu()?;
        for (l, ((a, b), &u)) in self
            .first
            .iter()
            .zip(&self.second)
            .zip(&self.upsample)
            .enumerate()
        {
            let y = instance_norm(&a.forward(&out)?)?;
            let y = adain(&y, &self.affine[2 * l].forward(speaker)?)?.relu()?;
            let mut y = b.forward(&y)?;
            if u > 1 {
                y = pixel_shuffle(&y, u)?;
            }
            let y = instance_norm(&y)?;
            let y = adain(&y, &self.affine[2 * l + 1].forward(speaker)?)?.relu()?;
            out = if u > 1 {
                (y + upsample_nearest(&out, u)?)?
            } else {
                (y + out)?
            };
        }
        Ok(self.out_conv.forward(&out)?)
    }
}

/// The whole auto-encoder.
#[derive(Debug, Clone)]
pub struct AdaInVc {
    cfg: ModelConfig,
    /// Speaker encoder.
    pub speaker: SpeakerEncoder,
    /// Content encoder.
    pub content: ContentEncoder,
    /// Decoder.
    pub decoder: Decoder,
}

/// What one training forward pass produces.
#[derive(Debug, Clone)]
pub struct AeOutput {
    /// Content code mean.
    pub mu: Tensor,
    /// Content code log-variance.
    pub log_var: Tensor,
    /// Speaker vectors.
    pub speaker: Tensor,
    /// Reconstructed mel.
    pub mel: Tensor,
}

impl AdaInVc {
    /// Builds the model from a configuration; weights come from `vb` (a `VarMap` for training,
    /// safetensors for inference).
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an inconsistent configuration; a missing or mis-shaped tensor.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            speaker: SpeakerEncoder::new(&cfg.speaker, vb.pp("speaker_encoder"))?,
            content: ContentEncoder::new(&cfg.content, vb.pp("content_encoder"))?,
            decoder: Decoder::new(
                &cfg.decoder,
                cfg.content.c_out,
                cfg.speaker.c_out,
                cfg.frontend.n_mels,
                vb.pp("decoder"),
            )?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Training forward pass: encode `mel` (`[B, n_mels, T]`), sample the content code as
    /// `mu + exp(log_var / 2) · noise` (`noise` standard normal, shaped like `mu`; pass zeros for
    /// the mean), decode with the utterance's own speaker vector.
    ///
    /// # Errors
    /// [`crate::Error::Input`] for a wrongly shaped batch.
    pub fn forward(&self, mel: &Tensor, noise: &Tensor) -> Result<AeOutput> {
        check_mel(mel, self.cfg.frontend.n_mels, self.cfg.frame_multiple())?;
        let speaker = self.speaker.forward(mel)?;
        let (mu, log_var) = self.content.forward(mel)?;
        let code = (&mu + (&log_var / 2.0)?.exp()?.mul(noise)?)?;
        let out = self.decoder.forward(&code, &speaker)?;
        Ok(AeOutput {
            mu,
            log_var,
            speaker,
            mel: out,
        })
    }

    /// Conversion: the content of `source` (`[B, n_mels, T]`, code mean, no sampling) in the
    /// voice of `speaker` (`[B, c_out]`).
    ///
    /// # Errors
    /// [`crate::Error::Input`] for wrongly shaped inputs.
    pub fn convert(&self, source: &Tensor, speaker: &Tensor) -> Result<Tensor> {
        check_mel(source, self.cfg.frontend.n_mels, self.cfg.frame_multiple())?;
        let (mu, _) = self.content.forward(source)?;
        self.decoder.forward(&mu, speaker)
    }
}
