//! AdaIN-VC (Chou, Yeh & Lee, Interspeech 2019, arXiv 1904.05742), following the authors'
//! reference code (github.com/jjery2243542/adaptive_voice_conversion, `model.py`): a speaker
//! encoder that pools an utterance into one vector, a content encoder whose instance norm
//! removes per-utterance statistics (with a VAE head), and a decoder that puts the speaker
//! back through adaptive instance normalisation.

use candle_core::{Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use crate::config::{
    AttentionConfig, ContentEncoderConfig, DecoderConfig, ModelConfig, SpeakerEncoderConfig, Temporal,
};
use crate::layers::{
    adain, adain_frames, avg_pool2, check_mel, linear, pixel_shuffle, relu, upsample_nearest, ConvBank, PadConv,
    Padding,
};
use crate::stream::{Ctx, Stream};
use crate::Result;

/// The residual convolution blocks of an encoder: two convolutions per block, the second
/// possibly strided, the shortcut average-pooled to match.
#[derive(Debug, Clone)]
pub(crate) struct ConvBlocks {
    pub(crate) first: Vec<PadConv>,
    pub(crate) second: Vec<PadConv>,
    pub(crate) subsample: Vec<usize>,
    /// Instance norm after each convolution (content encoder), with this padding's statistics.
    pub(crate) norm: Option<Padding>,
}

impl ConvBlocks {
    fn new(c_h: usize, k: usize, subsample: &[usize], padding: Padding, norm: bool, vb: &VarBuilder) -> Result<Self> {
        let mut first = Vec::new();
        let mut second = Vec::new();
        for (l, &s) in subsample.iter().enumerate() {
            first.push(PadConv::new(
                c_h,
                c_h,
                k,
                1,
                padding,
                vb.pp(format!("first_conv_layers.{l}")),
            )?);
            second.push(PadConv::new(
                c_h,
                c_h,
                k,
                s,
                padding,
                vb.pp(format!("second_conv_layers.{l}")),
            )?);
        }
        Ok(Self {
            first,
            second,
            subsample: subsample.to_vec(),
            norm: norm.then_some(padding),
        })
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut out = x.clone();
        for ((a, b), &s) in self.first.iter().zip(&self.second).zip(&self.subsample) {
            let mut y = ctx.conv(a, &out)?;
            if let Some(p) = self.norm {
                y = ctx.norm(p, &y)?;
            }
            y = ctx.conv(b, &relu(&y)?)?;
            if let Some(p) = self.norm {
                y = ctx.norm(p, &y)?;
            }
            y = relu(&y)?;
            if s > 1 {
                out = avg_pool2(&out)?;
            }
            out = (y + out)?;
        }
        Ok(out)
    }
}

/// Summarises an utterance's voice into one vector. Reads whole references, so it is never
/// causal.
#[derive(Debug, Clone)]
pub struct SpeakerEncoder {
    bank: ConvBank,
    in_conv: PadConv,
    blocks: ConvBlocks,
    dense_first: Vec<Linear>,
    dense_second: Vec<Linear>,
    output: Linear,
    pool: Option<TokenPool>,
}

/// Reference attention's first half (see [`AttentionConfig`]): learned queries attend over a
/// reference's frame features, giving a fixed number of tokens whatever its length.
#[derive(Debug, Clone)]
struct TokenPool {
    /// `[tokens, dim]`.
    query: Tensor,
    key: Linear,
    value: Linear,
    tokens: usize,
    dim: usize,
}

impl TokenPool {
    fn new(c_h: usize, a: &AttentionConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: vb.get_with_hints((a.tokens, a.dim), "query", candle_nn::Init::Const(0.0))?,
            key: linear(c_h, a.dim, vb.pp("key"))?,
            value: linear(c_h, a.dim, vb.pp("value"))?,
            tokens: a.tokens,
            dim: a.dim,
        })
    }

    /// Frame features `[B, c_h, T]` → tokens `[B, tokens · dim]` (token-major).
    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let b = h.dim(0)?;
        let ht = h.transpose(1, 2)?.contiguous()?;
        let k = self.key.forward(&ht)?;
        let v = self.value.forward(&ht)?;
        let q = self
            .query
            .unsqueeze(0)?
            .broadcast_as((b, self.tokens, self.dim))?
            .contiguous()?;
        let scores = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? / (self.dim as f64).sqrt())?;
        let a = candle_nn::ops::softmax(&scores, D::Minus1)?;
        Ok(a.matmul(&v)?.flatten_from(1)?)
    }
}

/// Reference attention's second half (see [`AttentionConfig`]), at one AdaIN of the decoder:
/// each frame of the normalised hidden state queries the voice's tokens, and what it reads
/// becomes a per-frame addition to that AdaIN's shift and scale.
#[derive(Debug, Clone)]
pub(crate) struct TokenAttention {
    query: Linear,
    output: Linear,
    dim: usize,
}

impl TokenAttention {
    fn new(c_h: usize, a: &AttentionConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: linear(c_h, a.dim, vb.pp("query"))?,
            output: linear(a.dim, 2 * c_h, vb.pp("output"))?,
            dim: a.dim,
        })
    }

    /// What a voice's tokens `[B, tokens, dim]` make of this attention, folded so that a frame
    /// costs two products: the query layer folded into the keys (`tokens · W_q / √dim`,
    /// `[B, tokens, c_h]`, and `tokens · b_q / √dim`, `[B, tokens, 1]`), the output layer into
    /// the values (`W_o · tokensᵀ`, `[B, 2·c_h, tokens]`); its bias goes with the AdaIN's.
    fn prepare(&self, tokens: &Tensor) -> Result<PreparedAttention> {
        let scale = 1.0 / (self.dim as f64).sqrt();
        let keys = tokens.broadcast_matmul(self.query.weight())?.affine(scale, 0.0)?;
        let key_bias = match self.query.bias() {
            Some(b) => tokens.broadcast_matmul(&b.unsqueeze(1)?)?.affine(scale, 0.0)?,
            None => tokens.narrow(2, 0, 1)?.zeros_like()?,
        };
        let values = self
            .output
            .weight()
            .broadcast_matmul(&tokens.transpose(1, 2)?.contiguous()?)?;
        Ok(PreparedAttention { keys, key_bias, values })
    }
}

/// A voice's tokens prepared for one [`TokenAttention`] (see [`TokenAttention::prepare`]).
#[derive(Debug, Clone)]
struct PreparedAttention {
    keys: Tensor,
    key_bias: Tensor,
    values: Tensor,
}

impl PreparedAttention {
    /// Hidden state `[B, c_h, T]` → what each frame reads, `[B, 2·c_h, T]` (shift, then scale;
    /// without the output bias). Each frame on its own: no frame reads another.
    fn read(&self, y: &Tensor) -> Result<Tensor> {
        let scores = self.keys.matmul(y)?.broadcast_add(&self.key_bias)?;
        let a = candle_nn::ops::softmax(&scores, 1)?;
        Ok(self.values.matmul(&a)?)
    }
}

/// A voice as the decoder uses it, computed once per voice (see [`Decoder::prepare`]): each
/// AdaIN's shift and scale from the global vector, and the attention's keys and values.
#[derive(Debug, Clone)]
pub struct PreparedVoice {
    /// Per AdaIN: `[B, 2·c_h, 1]` (plus the attention's output bias).
    cond: Vec<Tensor>,
    attention: Vec<PreparedAttention>,
    batch: usize,
}

impl SpeakerEncoder {
    /// Builds the encoder; tensor names mirror the reference code's module tree.
    pub fn new(cfg: &SpeakerEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let s = &cfg.stack;
        let p = Padding::Reflect;
        let mut dense_first = Vec::new();
        let mut dense_second = Vec::new();
        for l in 0..cfg.n_dense_blocks {
            dense_first.push(linear(s.c_h, s.c_h, vb.pp(format!("first_dense_layers.{l}")))?);
            dense_second.push(linear(s.c_h, s.c_h, vb.pp(format!("second_dense_layers.{l}")))?);
        }
        Ok(Self {
            bank: ConvBank::new(s.c_in, s.c_bank, &s.bank_kernels(), p, vb.pp("conv_bank"))?,
            in_conv: PadConv::new(s.bank_out(), s.c_h, 1, 1, p, vb.pp("in_conv_layer"))?,
            blocks: ConvBlocks::new(s.c_h, s.kernel_size, &s.subsample, p, false, &vb)?,
            dense_first,
            dense_second,
            output: linear(s.c_h, cfg.c_out, vb.pp("output_layer"))?,
            pool: cfg
                .attention
                .as_ref()
                .map(|a| TokenPool::new(s.c_h, a, vb.pp("token_pool")))
                .transpose()?,
        })
    }

    /// `[B, n_mels, T]` → `[B, width]`: the global vector (`c_out`), then the reference
    /// attention's tokens (if the model has them; see [`SpeakerEncoderConfig::width`]).
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let h = self.frames(mel)?;
        let global = self.global(&h)?;
        match &self.pool {
            None => Ok(global),
            Some(p) => Ok(Tensor::cat(&[global, p.forward(&h)?], 1)?),
        }
    }

    /// The embedding of several references of one voice (`[1, n_mels, T_i]` each), `[1, width]`:
    /// the mean of their global vectors, and tokens pooled over all their frames together (the
    /// attention reads them as one longer reference).
    ///
    /// # Errors
    /// [`crate::Error::Input`] for no references.
    pub fn forward_many(&self, mels: &[Tensor]) -> Result<Tensor> {
        if mels.is_empty() {
            return Err(crate::Error::Input("no reference given".into()));
        }
        let hs = mels.iter().map(|m| self.frames(m)).collect::<Result<Vec<_>>>()?;
        let mut sum = self.global(&hs[0])?;
        for h in &hs[1..] {
            sum = (sum + self.global(h)?)?;
        }
        let global = (sum / hs.len() as f64)?;
        match &self.pool {
            None => Ok(global),
            Some(p) => Ok(Tensor::cat(&[global, p.forward(&Tensor::cat(&hs, 2)?)?], 1)?),
        }
    }

    /// The frame features the global vector averages and the tokens attend over, `[B, c_h, T']`.
    fn frames(&self, mel: &Tensor) -> Result<Tensor> {
        let out = self.bank.forward(mel)?;
        let out = relu(&self.in_conv.forward(&out)?)?;
        self.blocks.forward(&out, &mut Ctx::Offline)
    }

    fn global(&self, h: &Tensor) -> Result<Tensor> {
        let mut out = h.mean(D::Minus1)?;
        for (a, b) in self.dense_first.iter().zip(&self.dense_second) {
            let y = relu(&a.forward(&out)?)?;
            let y = relu(&b.forward(&y)?)?;
            out = (y + out)?;
        }
        Ok(self.output.forward(&out)?)
    }
}

/// Encodes what is said, with speaker statistics normalised away.
#[derive(Debug, Clone)]
pub struct ContentEncoder {
    pub(crate) bank: ConvBank,
    pub(crate) in_conv: PadConv,
    pub(crate) blocks: ConvBlocks,
    pub(crate) mean: PadConv,
    log_var: PadConv,
    padding: Padding,
    /// The vector quantiser's entries `[K, c_out]` (`content.vq_codes`).
    pub(crate) codebook: Option<Tensor>,
}

/// Weight of the commitment term in the VQ loss (VQ-VAE's β).
pub const VQ_COMMITMENT: f64 = 0.25;
/// Added to lengths before the vector quantiser scales by them.
pub const VQ_EPS: f64 = 1e-6;

impl ContentEncoder {
    /// Builds the encoder.
    pub fn new(cfg: &ContentEncoderConfig, padding: Padding, vb: VarBuilder) -> Result<Self> {
        let s = &cfg.stack;
        Ok(Self {
            bank: ConvBank::new(s.c_in, s.c_bank, &s.bank_kernels(), padding, vb.pp("conv_bank"))?,
            in_conv: PadConv::new(s.bank_out(), s.c_h, 1, 1, padding, vb.pp("in_conv_layer"))?,
            blocks: ConvBlocks::new(s.c_h, s.kernel_size, &s.subsample, padding, true, &vb)?,
            mean: PadConv::new(s.c_h, cfg.c_out, 1, 1, padding, vb.pp("mean_layer"))?,
            log_var: PadConv::new(s.c_h, cfg.c_out, 1, 1, padding, vb.pp("std_layer"))?,
            padding,
            codebook: cfg.vq_codes.map(|k| vb.get((k, cfg.c_out), "codebook")).transpose()?,
        })
    }

    /// `[B, n_mels, T]` → (mean, log-variance) of the content code, each `[B, c_out, T / s]`.
    pub fn forward(&self, mel: &Tensor) -> Result<(Tensor, Tensor)> {
        self.forward_ctx(mel, &mut Ctx::Offline)
    }

    /// The code the decoder reads for the code mean `mu` (`[B, c_out, T]`): `mu` itself, or
    /// with a codebook each frame's nearest entry on the unit sphere (frames and entries
    /// scaled to length 1, as improved VQGAN does: the encoder cannot run away from the entries
    /// by growing), passed through with the scaled frame's gradient (straight-through), and the
    /// VQ loss: `mean((sg(z) − q)²)` (moves the entries) plus [`VQ_COMMITMENT`] ·
    /// `mean((z − sg(q))²)` (keeps the encoder near them), `z` the scaled frames.
    ///
    /// # Errors
    /// A wrongly shaped code.
    pub fn quantize(&self, mu: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let Some(book) = &self.codebook else {
            return Ok((mu.clone(), None));
        };
        let (b, c, t) = mu.dims3()?;
        let unit = |x: &Tensor, dim: usize| -> Result<Tensor> {
            Ok(x.broadcast_div(&(x.sqr()?.sum_keepdim(dim)?.sqrt()? + VQ_EPS)?)?)
        };
        let z = unit(&mu.transpose(1, 2)?.reshape((b * t, c))?, 1)?;
        let book = unit(book, 1)?;
        // On the sphere the nearest entry is the one of largest dot product.
        let idx = z.matmul(&book.t()?)?.detach().argmax(1)?;
        let q = book.index_select(&idx, 0)?;
        let entries = (z.detach() - &q)?.sqr()?.mean_all()?;
        let commit = (&z - q.detach())?.sqr()?.mean_all()?;
        let loss = (entries + commit.affine(VQ_COMMITMENT, 0.0)?)?;
        let code = (&z + (q - &z)?.detach())?;
        let code = code.reshape((b, t, c))?.transpose(1, 2)?.contiguous()?;
        Ok((code, Some(loss)))
    }

    fn forward_ctx(&self, mel: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Tensor)> {
        let mut outs = Vec::new();
        for c in self.bank.convs() {
            outs.push(relu(&ctx.conv(c, mel)?)?);
        }
        outs.push(mel.clone());
        let out = Tensor::cat(&outs, 1)?;
        let out = ctx.conv(&self.in_conv, &out)?;
        let out = relu(&ctx.norm(self.padding, &out)?)?;
        let out = self.blocks.forward(&out, ctx)?;
        Ok((ctx.conv(&self.mean, &out)?, ctx.conv(&self.log_var, &out)?))
    }
}

/// Rebuilds a mel from a content code and a speaker vector.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub(crate) in_conv: PadConv,
    pub(crate) first: Vec<PadConv>,
    pub(crate) second: Vec<PadConv>,
    pub(crate) affine: Vec<Linear>,
    pub(crate) upsample: Vec<usize>,
    pub(crate) out_conv: PadConv,
    padding: Padding,
    /// Reference attention at each AdaIN (two per block), with the global vector's width.
    pub(crate) attention: Vec<TokenAttention>,
    pub(crate) c_cond: usize,
    tokens: Option<(usize, usize)>,
}

impl Decoder {
    /// Builds the decoder for content codes of `c_in` channels, speaker vectors of `c_cond`
    /// (the global part), `c_out` mel bands, and reference attention if `attention` is given.
    pub fn new(
        cfg: &DecoderConfig,
        c_in: usize,
        c_cond: usize,
        c_out: usize,
        padding: Padding,
        attention: Option<&AttentionConfig>,
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
                padding,
                vb.pp(format!("first_conv_layers.{l}")),
            )?);
            second.push(PadConv::new(
                c_h,
                c_h * u,
                k,
                1,
                padding,
                vb.pp(format!("second_conv_layers.{l}")),
            )?);
        }
        let mut attend = Vec::new();
        for i in 0..cfg.upsample.len() * 2 {
            affine.push(linear(c_cond, 2 * c_h, vb.pp(format!("conv_affine_layers.{i}")))?);
            if let Some(a) = attention {
                attend.push(TokenAttention::new(c_h, a, vb.pp(format!("token_attention.{i}")))?);
            }
        }
        Ok(Self {
            in_conv: PadConv::new(c_in, c_h, 1, 1, padding, vb.pp("in_conv_layer"))?,
            first,
            second,
            affine,
            upsample: cfg.upsample.clone(),
            out_conv: PadConv::new(c_h, c_out, 1, 1, padding, vb.pp("out_conv_layer"))?,
            padding,
            attention: attend,
            c_cond,
            tokens: attention.map(|a| (a.tokens, a.dim)),
        })
    }

    /// A speaker embedding `[B, width]` (the global vector, then the tokens if the decoder
    /// attends) prepared for the decoder's passes: what depends on the voice alone,
    /// computed once rather than at every frame.
    ///
    /// # Errors
    /// [`crate::Error::Input`] for an embedding of the wrong width.
    pub fn prepare(&self, speaker: &Tensor) -> Result<PreparedVoice> {
        let width = self.c_cond + self.tokens.map_or(0, |(m, d)| m * d);
        if speaker.rank() != 2 || speaker.dim(1)? != width {
            return Err(crate::Error::Input(format!(
                "expected speaker embeddings [batch, {width}], got {:?}",
                speaker.dims()
            )));
        }
        let b = speaker.dim(0)?;
        let global = speaker.narrow(1, 0, self.c_cond)?;
        let tokens = match self.tokens {
            None => None,
            Some((m, d)) => Some(speaker.narrow(1, self.c_cond, m * d)?.reshape((b, m, d))?),
        };
        let mut cond = Vec::with_capacity(self.affine.len());
        let mut attention = Vec::new();
        for (i, affine) in self.affine.iter().enumerate() {
            let mut c = affine.forward(&global)?.unsqueeze(2)?;
            if let Some(t) = &tokens {
                let att = &self.attention[i];
                if let Some(bias) = att.output.bias() {
                    c = c.broadcast_add(&bias.unsqueeze(0)?.unsqueeze(2)?)?;
                }
                attention.push(att.prepare(t)?);
            }
            cond.push(c);
        }
        Ok(PreparedVoice {
            cond,
            attention,
            batch: b,
        })
    }

    /// AdaIN number `i` of `y` (`[B, c_h, T]`) for a prepared voice.
    fn adain_at(&self, i: usize, y: &Tensor, voice: &PreparedVoice) -> Result<Tensor> {
        match voice.attention.get(i) {
            None => adain(y, &voice.cond[i].squeeze(2)?),
            Some(a) => adain_frames(y, &a.read(y)?.broadcast_add(&voice.cond[i])?),
        }
    }

    /// Content code `[B, c_in, T']` and speaker embedding `[B, width]` (the global vector, then
    /// the tokens if the decoder attends) → mel `[B, c_out, T' · up]`.
    pub fn forward(&self, code: &Tensor, speaker: &Tensor) -> Result<Tensor> {
        self.forward_ctx(code, speaker, &mut Ctx::Offline)
    }

    fn forward_ctx(&self, code: &Tensor, speaker: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let voice = self.prepare(speaker)?;
        self.forward_prepared_ctx(code, &voice, ctx)
    }

    fn forward_prepared_ctx(&self, code: &Tensor, voice: &PreparedVoice, ctx: &mut Ctx) -> Result<Tensor> {
        if code.dim(0)? != voice.batch {
            return Err(crate::Error::Input(format!(
                "a content code of batch {} for voices prepared for {}",
                code.dim(0)?,
                voice.batch
            )));
        }
        let p = self.padding;
        let out = ctx.conv(&self.in_conv, code)?;
        let mut out = relu(&ctx.norm(p, &out)?)?;
        for (l, ((a, b), &u)) in self.first.iter().zip(&self.second).zip(&self.upsample).enumerate() {
            let y = ctx.conv(a, &out)?;
            let y = ctx.norm(p, &y)?;
            let y = relu(&self.adain_at(2 * l, &y, voice)?)?;
            let mut y = ctx.conv(b, &y)?;
            if u > 1 {
                y = pixel_shuffle(&y, u)?;
            }
            let y = ctx.norm(p, &y)?;
            let y = relu(&self.adain_at(2 * l + 1, &y, voice)?)?;
            out = if u > 1 {
                (y + upsample_nearest(&out, u)?)?
            } else {
                (y + out)?
            };
        }
        ctx.conv(&self.out_conv, &out)
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
    /// What the decoder read as the code's mean: `mu`, or its quantised form
    /// ([`ContentEncoder::quantize`]); conversions decode this.
    pub code: Tensor,
    /// The VQ loss (with a codebook).
    pub vq: Option<Tensor>,
    /// The pitch input the decoder read beside the code (a model with `decoder.f0`).
    pub pitch: Option<Tensor>,
}

impl AdaInVc {
    /// Builds the model from a configuration; weights come from `vb` (a `VarMap` for training,
    /// safetensors for inference).
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an inconsistent configuration; a missing or mis-shaped tensor.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let padding = match cfg.temporal {
            Temporal::Offline => Padding::Reflect,
            Temporal::Causal => Padding::Causal,
        };
        let (c_code, c_spk, n_mels) = (cfg.content.c_out, cfg.speaker.c_out, cfg.frontend.n_mels);
        Ok(Self {
            speaker: SpeakerEncoder::new(&cfg.speaker, vb.pp("speaker_encoder"))?,
            content: ContentEncoder::new(&cfg.content, padding, vb.pp("content_encoder"))?,
            decoder: Decoder::new(
                &cfg.decoder,
                c_code + cfg.decoder.pitch_channels(),
                c_spk,
                n_mels,
                padding,
                cfg.speaker.attention.as_ref(),
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
        self.forward_split(mel, mel, mel, noise)
    }

    /// [`forward`](Self::forward) with each encoder reading its own input: the content encoder
    /// `content_mel` (the same segment perturbed, say, shaped like `mel`), the speaker encoder
    /// `speaker_mel` (`mel` itself, or another segment of the same voice: the same batch size
    /// and bands, any length), while the loss asks for `mel`. The content code cannot carry what
    /// the perturbation changes, since the decoder must recover it from the speaker vector; a
    /// speaker vector from another segment cannot carry what that segment says.
    ///
    /// # Errors
    /// [`crate::Error::Input`] for wrongly or differently shaped batches.
    pub fn forward_split(
        &self,
        mel: &Tensor,
        content_mel: &Tensor,
        speaker_mel: &Tensor,
        noise: &Tensor,
    ) -> Result<AeOutput> {
        self.forward_pitched(mel, content_mel, speaker_mel, noise, None)
    }

    /// [`forward_split`](Self::forward_split) with the source's pitch (`[B, 2, T]`, see
    /// [`crate::config::DecoderConfig::f0`]; what [`crate::pitch`] computes), which a model with
    /// `decoder.f0` needs and others ignore.
    ///
    /// # Errors
    /// As [`forward_split`](Self::forward_split); [`crate::Error::Input`] for a missing or
    /// wrongly shaped pitch input.
    pub fn forward_pitched(
        &self,
        mel: &Tensor,
        content_mel: &Tensor,
        speaker_mel: &Tensor,
        noise: &Tensor,
        pitch: Option<&Tensor>,
    ) -> Result<AeOutput> {
        check_mel(mel, self.cfg.frontend.n_mels, self.cfg.frame_multiple())?;
        if content_mel.dims() != mel.dims() {
            return Err(crate::Error::Input(format!(
                "content input {:?} is not shaped like the input {:?}",
                content_mel.dims(),
                mel.dims()
            )));
        }
        check_mel(speaker_mel, self.cfg.frontend.n_mels, self.cfg.frame_multiple())?;
        if speaker_mel.dim(0)? != mel.dim(0)? {
            return Err(crate::Error::Input(format!(
                "speaker input {:?} does not have the batch size of the input {:?}",
                speaker_mel.dims(),
                mel.dims()
            )));
        }
        let speaker = self.speaker.forward(speaker_mel)?;
        let (mu, log_var) = self.content.forward(content_mel)?;
        // A quantised code is not sampled: its entries are the bottleneck.
        let (code, vq) = self.content.quantize(&mu)?;
        let sampled = match vq {
            Some(_) => code.clone(),
            None => (&mu + (&log_var / 2.0)?.exp()?.mul(noise)?)?,
        };
        let out = self.decoder.forward(&self.with_pitch(&sampled, pitch)?, &speaker)?;
        Ok(AeOutput {
            mu,
            log_var,
            speaker,
            mel: out,
            code,
            vq,
            pitch: pitch.filter(|_| self.uses_pitch()).cloned(),
        })
    }

    /// Conversion: the content of `source` (`[B, n_mels, T]`, code mean, no sampling) in the
    /// voice of `speaker` (`[B, c_out]`).
    ///
    /// # Errors
    /// [`crate::Error::Input`] for wrongly shaped inputs.
    pub fn convert(&self, source: &Tensor, speaker: &Tensor) -> Result<Tensor> {
        self.convert_pitched(source, speaker, None)
    }

    /// [`convert`](Self::convert) with the source's pitch (`[B, 2, T]`), which a model with
    /// `decoder.f0` needs and others ignore.
    ///
    /// # Errors
    /// As [`convert`](Self::convert); a missing or wrongly shaped pitch input.
    pub fn convert_pitched(&self, source: &Tensor, speaker: &Tensor, pitch: Option<&Tensor>) -> Result<Tensor> {
        check_mel(source, self.cfg.frontend.n_mels, self.cfg.frame_multiple())?;
        let (mu, _) = self.content.forward(source)?;
        let code = self.with_pitch(&self.content.quantize(&mu)?.0, pitch)?;
        self.decoder.forward(&code, speaker)
    }

    /// Whether the decoder reads the source's pitch ([`crate::config::DecoderConfig::f0`]).
    pub fn uses_pitch(&self) -> bool {
        self.cfg.decoder.f0
    }

    /// What the decoder reads: the content code `[B, c, T]`, with the pitch channels appended
    /// when the model has them.
    ///
    /// # Errors
    /// [`crate::Error::Input`] when the model reads pitch and `pitch` is missing or not
    /// `[B, 2, T]` like the code.
    pub fn with_pitch(&self, code: &Tensor, pitch: Option<&Tensor>) -> Result<Tensor> {
        if !self.cfg.decoder.f0 {
            return Ok(code.clone());
        }
        let Some(p) = pitch else {
            return Err(crate::Error::Input(
                "this model reads the source's pitch (decoder.f0) and none was given".into(),
            ));
        };
        let (b, _, t) = code.dims3()?;
        let want = [b, crate::config::PITCH_CHANNELS, t];
        if p.dims() != want {
            return Err(crate::Error::Input(format!(
                "pitch input {:?} does not match the content code's {want:?}",
                p.dims()
            )));
        }
        Ok(Tensor::cat(&[code, &p.to_dtype(code.dtype())?], 1)?)
    }
}

/// At most this many refreshed-pass segments run as one batch (bounds the memory of long chunks).
const MAX_BATCH_SEGMENTS: usize = 8;

/// Chunk-by-chunk conversion with a causal model: `step` takes the next mel frames and returns
/// as many converted frames, whatever the chunking (the same as one chunk of the whole input);
/// `reset` starts a new stream. The speaker can change between chunks.
///
/// Without a refresh period this is the model over the whole stream ([`AdaInVc::convert`]).
/// With one (`norm_refresh = N`), two passes run side by side, each starting afresh every `2N`
/// frames, one `N` frames after the other, and the output crossfades between them: frame `t`
/// is `w·a + (1 − w)·b`, `w` rising from 0 to 1 over the first `N` frames of pass `a`'s span
/// and falling back over the next `N` (pass `a` alone for the first `N` frames of the
/// stream). No output frame then rests on more than `2N` frames of history, nor mainly on a
/// cold start, as in training on segments of `2N` frames: over long inputs the model's running
/// instance-norm statistics otherwise drift away from anything it was trained on (the stream
/// preset lost 1.5 nats of level over 25 s, with loud frames left standing out). Costs two
/// model passes per frame; adds no latency.
#[derive(Debug)]
pub struct StreamingConverter {
    model: AdaInVc,
    speaker: Tensor,
    /// `speaker` as the decoder uses it, prepared once per voice.
    voice: PreparedVoice,
    offset: Option<Tensor>,
    state: Stream,
    /// The second pass (with a refresh period).
    second: Stream,
    /// Frames converted since the start or the last reset.
    frames: usize,
    /// Whether the first frames pass through [`warmup_gate`].
    gate: bool,
}

/// Frames at the start of a stream whose output level is held within 10 dB of the input's: the
/// causal instance norms start with no statistics, and without the hold their first frames come
/// out as speech at full level whatever the input holds (a click out of a silent start).
pub const WARMUP_FRAMES: usize = 8;
/// How far (dB) an output frame may rise above its input frame during the warm-up.
pub(crate) const WARMUP_MARGIN_DB: f32 = 10.0;

/// Holds the power of each of the stream's first [`WARMUP_FRAMES`] output frames (`y`, whose
/// first frame is frame `start` of the stream) within [`WARMUP_MARGIN_DB`] of its input frame's,
/// by lowering the whole frame.
///
/// The causal instance norms start with no statistics: over the first frames their output rests
/// on one or two frames of history, and the decoder renders it as speech at full level whatever
/// the input holds. Out of a silent start that was a click of about −10 dBFS a few milliseconds
/// into every converted file. After the warm-up the statistics carry the input's level and the
/// gate is off.
fn warmup_gate(x: &Tensor, y: Tensor, start: usize) -> Result<Tensor> {
    let n = y.dim(2)?.min(WARMUP_FRAMES - start);
    let xs = x
        .narrow(2, 0, n)?
        .squeeze(0)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?;
    let ys = y
        .narrow(2, 0, n)?
        .squeeze(0)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?;
    // ln Σ_b exp(2·v_b) per frame: the frame's power on the log-magnitude scale.
    let log_power = |m: &[Vec<f32>], t: usize| -> f32 {
        let top = m.iter().map(|b| 2.0 * b[t]).fold(f32::NEG_INFINITY, f32::max);
        top + m.iter().map(|b| (2.0 * b[t] - top).exp()).sum::<f32>().ln()
    };
    let margin = WARMUP_MARGIN_DB / 10.0 * std::f32::consts::LN_10;
    let shift: Vec<f32> = (0..n)
        .map(|t| (0.5 * (log_power(&xs, t) + margin - log_power(&ys, t))).min(0.0))
        .collect();
    if shift.iter().all(|&s| s == 0.0) {
        return Ok(y);
    }
    let total = y.dim(2)?;
    let mut all = shift;
    all.resize(total, 0.0);
    let s = Tensor::from_vec(all, (1, 1, total), y.device())?.to_dtype(y.dtype())?;
    Ok(y.broadcast_add(&s)?)
}

impl StreamingConverter {
    /// A stream converting to `speaker` (`[1, c_out]`).
    ///
    /// # Errors
    /// [`crate::Error::Config`] when the model is not causal.
    pub fn new(model: AdaInVc, speaker: Tensor) -> Result<Self> {
        if model.cfg.temporal != Temporal::Causal {
            return Err(crate::Error::Config(format!(
                "preset `{}` is not causal and cannot stream; use a streaming preset",
                model.cfg.preset
            )));
        }
        let voice = model.decoder.prepare(&speaker)?;
        Ok(Self {
            model,
            speaker,
            voice,
            offset: None,
            state: Stream::default(),
            second: Stream::default(),
            frames: 0,
            gate: false,
        })
    }

    /// Changes the target voice from the next chunk on.
    ///
    /// # Errors
    /// [`crate::Error::Input`] for an embedding of the wrong width (the voice is then kept).
    pub fn set_speaker(&mut self, speaker: Tensor) -> Result<()> {
        self.voice = self.model.decoder.prepare(&speaker)?;
        self.speaker = speaker;
        Ok(())
    }

    /// Holds the level of the stream's first [`WARMUP_FRAMES`] output frames near their input's
    /// (off by default: the model's own output; `VoiceConverter` turns it on).
    pub fn set_warmup_gate(&mut self, on: bool) {
        self.gate = on;
    }

    /// A log-mel correction `[1, n_mels, 1]` added to every output frame from the next chunk
    /// on (a voice's spectrum correction, see `VoiceConverter::embed`), or none.
    pub fn set_offset(&mut self, offset: Option<Tensor>) {
        self.offset = offset;
    }

    /// Converts the next chunk `[1, n_mels, frames]` (any number of frames ≥ 1).
    ///
    /// # Errors
    /// [`crate::Error::Input`] for a wrongly shaped chunk.
    pub fn step(&mut self, chunk: &Tensor) -> Result<Tensor> {
        self.step_pitched(chunk, None)
    }

    /// [`step`](Self::step) with the chunk's pitch frames (`[1, 2, T]`, see
    /// [`crate::pitch::PitchNormalizer`]), which a model with `decoder.f0` needs and others
    /// ignore.
    ///
    /// # Errors
    /// As [`step`](Self::step); a missing or wrongly shaped pitch chunk.
    pub fn step_pitched(&mut self, chunk: &Tensor, pitch: Option<&Tensor>) -> Result<Tensor> {
        check_mel(chunk, self.model.cfg.frontend.n_mels, 1)?;
        let pitch = if self.model.uses_pitch() { pitch } else { None };
        let start = self.frames;
        let y = match self.model.cfg.norm_refresh {
            None => {
                self.frames += chunk.dim(2)?;
                Self::pass(&self.model, &self.voice, &mut self.state, chunk, pitch)?
            }
            Some(n) => self.step_refreshed(chunk, pitch, n)?,
        };
        let y = match &self.offset {
            Some(o) => y.broadcast_add(o)?,
            None => y,
        };
        if self.gate && start < WARMUP_FRAMES {
            return warmup_gate(chunk, y, start);
        }
        Ok(y)
    }

    /// The model over the next frames of one pass.
    fn pass(
        model: &AdaInVc,
        voice: &PreparedVoice,
        state: &mut Stream,
        x: &Tensor,
        pitch: Option<&Tensor>,
    ) -> Result<Tensor> {
        state.begin();
        let mut ctx = Ctx::Stream(state);
        let (mu, _) = model.content.forward_ctx(x, &mut ctx)?;
        let code = model.with_pitch(&model.content.quantize(&mu)?.0, pitch)?;
        model.decoder.forward_prepared_ctx(&code, voice, &mut ctx)
    }

    /// Two passes refreshed every `2n` frames, `n` apart, crossfaded (see the type's docs).
    ///
    /// Segment `k` is the pass that starts afresh at frame `k·n` and runs for `2n` frames; frame
    /// `f` of block `j = f / n` is `w·S_j + (1 − w)·S_{j−1}` with `w = (f − j·n) / n` (`S_0`
    /// alone in block 0). Segments that start and end inside the chunk run together as one batch
    /// of plain passes (independent of any state); the ones that began in an earlier chunk
    /// continue from their kept state, and the ones that run past the chunk's end start a state
    /// that the next chunk continues (even segments in `state`, odd ones in `second`).
    fn step_refreshed(&mut self, chunk: &Tensor, pitch: Option<&Tensor>, n: usize) -> Result<Tensor> {
        let t = chunk.dim(2)?;
        let (g, e) = (self.frames, self.frames + t);
        let first = (g / n).saturating_sub(1);
        let last = (e - 1) / n;
        let mut batched: Vec<Option<Tensor>> = vec![None; last + 1 - first];
        let full: Vec<usize> = (first..=last).filter(|&k| k * n >= g && k * n + 2 * n <= e).collect();
        for group in full.chunks(MAX_BATCH_SEGMENTS) {
            let xs = group
                .iter()
                .map(|&k| chunk.narrow(2, k * n - g, 2 * n))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let ps = match pitch {
                Some(p) => Some(Tensor::cat(
                    &group
                        .iter()
                        .map(|&k| p.narrow(2, k * n - g, 2 * n))
                        .collect::<candle_core::Result<Vec<_>>>()?,
                    0,
                )?),
                None => None,
            };
            let spk = self.speaker.repeat((group.len(), 1))?;
            let y = self.model.convert_pitched(&Tensor::cat(&xs, 0)?, &spk, ps.as_ref())?;
            for (i, &k) in group.iter().enumerate() {
                batched[k - first] = Some(y.narrow(0, i, 1)?);
            }
        }
        // Each overlapping segment's output over [max(k·n, g), min(k·n + 2n, e)), by k − first.
        let mut seg = Vec::with_capacity(batched.len());
        for (k, done) in (first..=last).zip(batched) {
            if let Some(y) = done {
                seg.push(y);
                continue;
            }
            let state = if k % 2 == 0 { &mut self.state } else { &mut self.second };
            if k * n >= g {
                state.reset();
            }
            let (from, to) = ((k * n).max(g), (k * n + 2 * n).min(e));
            let x = chunk.narrow(2, from - g, to - from)?;
            let p = pitch.map(|p| p.narrow(2, from - g, to - from)).transpose()?;
            seg.push(Self::pass(&self.model, &self.voice, state, &x, p.as_ref())?);
        }
        // Segment k's output over [lo, hi) (within its span and the chunk).
        let part = |k: usize, lo: usize, hi: usize| -> Result<Tensor> {
            Ok(seg[k - first].narrow(2, lo - (k * n).max(g), hi - lo)?)
        };
        let mut outs = Vec::with_capacity(last + 1 - g / n);
        for j in g / n..=last {
            let (lo, hi) = ((j * n).max(g), (j * n + n).min(e));
            let fresh = part(j, lo, hi)?;
            if j == 0 {
                outs.push(fresh);
                continue;
            }
            let old = part(j - 1, lo, hi)?;
            let w: Vec<f32> = (lo..hi).map(|f| (f - j * n) as f32 / n as f32).collect();
            let w = Tensor::from_vec(w, (1, 1, hi - lo), fresh.device())?.to_dtype(fresh.dtype())?;
            outs.push((fresh.broadcast_mul(&w)? + old.broadcast_mul(&w.affine(-1.0, 1.0)?)?)?);
        }
        self.frames = e;
        Ok(Tensor::cat(&outs, 2)?)
    }

    /// Forgets the stream's past.
    pub fn reset(&mut self) {
        self.state.reset();
        self.second.reset();
        self.frames = 0;
    }
}
