//! Model configuration: one serde struct per module, nested into [`ModelConfig`], saved as
//! `config.json` beside `model.safetensors`. The frontend is part of it, so a checkpoint always
//! carries the features it was trained on.

use serde::{Deserialize, Serialize};
use voxswap_audio::FrontendConfig;

use crate::{Error, Result};

/// How layers see time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Temporal {
    /// The paper's model: symmetric reflect padding and whole-utterance instance norm. Needs
    /// the future, so it cannot stream.
    Offline,
    /// Streamable: the content encoder and the decoder see only the past (convolutions padded
    /// on the left), and their instance norm uses statistics of the frames so far (cumulative
    /// mean and variance), which a stream keeps exactly. Trained exactly as it runs, so the
    /// stream equals the offline pass. The speaker encoder, which reads references, stays
    /// offline.
    Causal,
}

/// Convolution bank plus convolution blocks: the front of both encoders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvStackConfig {
    /// Input channels (mel bands).
    pub c_in: usize,
    /// Hidden channels.
    pub c_h: usize,
    /// Kernel size of the block convolutions.
    pub kernel_size: usize,
    /// Largest kernel of the convolution bank (kernels `bank_scale, 2·bank_scale, …`).
    pub bank_size: usize,
    /// Step between the bank's kernel sizes.
    pub bank_scale: usize,
    /// Channels of each bank convolution.
    pub c_bank: usize,
    /// Temporal subsampling factor of each block (1 or 2); its length is the block count.
    pub subsample: Vec<usize>,
}

impl ConvStackConfig {
    /// Kernel sizes of the convolution bank.
    pub fn bank_kernels(&self) -> Vec<usize> {
        (self.bank_scale..=self.bank_size)
            .step_by(self.bank_scale.max(1))
            .collect()
    }

    /// Channels after the bank (its outputs concatenated with the input).
    pub fn bank_out(&self) -> usize {
        self.c_bank * self.bank_kernels().len() + self.c_in
    }

    /// Total temporal subsampling.
    pub fn total_subsample(&self) -> usize {
        self.subsample.iter().product()
    }

    fn validate(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("{what}: {m}")));
        if self.c_in == 0 || self.c_h == 0 || self.c_bank == 0 {
            return bad("channel counts must be positive".into());
        }
        if self.kernel_size == 0 || self.bank_scale == 0 || self.bank_size < self.bank_scale {
            return bad(format!(
                "kernel_size {} and bank {}..{} step {} must be positive and ordered",
                self.kernel_size, self.bank_scale, self.bank_size, self.bank_scale
            ));
        }
        if self.subsample.iter().any(|&s| s != 1 && s != 2) {
            return bad(format!("subsample factors must be 1 or 2, got {:?}", self.subsample));
        }
        Ok(())
    }
}

/// The speaker encoder: conv stack, average over time, dense blocks, one vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeakerEncoderConfig {
    /// Convolution bank and blocks.
    pub stack: ConvStackConfig,
    /// Residual dense blocks after pooling.
    pub n_dense_blocks: usize,
    /// Size of the speaker vector.
    pub c_out: usize,
    /// Reference attention: besides the global vector, the encoder summarises the reference's
    /// frames into a fixed set of tokens that the decoder attends to frame by frame. Absent:
    /// the paper's single vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionConfig>,
}

/// Reference attention (see [`SpeakerEncoderConfig::attention`]): `tokens` learned queries pool
/// the reference's frame features into `tokens` vectors of `dim` values (attention over the
/// reference's frames, whatever its length), stored with the global vector; every AdaIN of the
/// decoder then adds to its per-channel scale and shift what the current frame's hidden state
/// reads from those tokens (attention over the tokens, one query per frame). Queries come from
/// the current frame alone and keys and values from the fixed reference, so the decoder stays
/// causal; and since the tokens have a fixed size, a voice is still one vector (banks, mixes
/// and glides handle it as before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionConfig {
    /// Tokens per voice.
    pub tokens: usize,
    /// Values per token (and per attention query and key).
    pub dim: usize,
}

impl SpeakerEncoderConfig {
    /// Values in a speaker embedding: the global vector, then the attention tokens (if any).
    pub fn width(&self) -> usize {
        self.c_out + self.attention.as_ref().map_or(0, |a| a.tokens * a.dim)
    }
}

/// The content encoder: conv stack with instance norm, then the VAE head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentEncoderConfig {
    /// Convolution bank and blocks.
    pub stack: ConvStackConfig,
    /// Channels of the content code.
    pub c_out: usize,
    /// A vector-quantised content code (VQ-VAE, as VQVC uses it): each frame of the code mean
    /// is replaced by the nearest of this many learnt vectors, so that the code can only name
    /// one of a few sounds a frame, not carry a voice's nuance. `None`: the VAE code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vq_codes: Option<usize>,
}

/// The decoder: convolution, instance norm, AdaIN from the speaker vector, upsampling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// Hidden channels.
    pub c_h: usize,
    /// Kernel size of the block convolutions.
    pub kernel_size: usize,
    /// Temporal upsampling factor of each block (1 or 2); its length is the block count.
    pub upsample: Vec<usize>,
    /// The source's intonation as a decoder input (AutoVC-F0, Qian et al., ICML 2020,
    /// arXiv 2004.07370): beside the content code the decoder reads [`PITCH_CHANNELS`] more
    /// channels per frame, the source's log-F0 normalised by the source's own mean and spread of
    /// voiced log-F0 (0 where unvoiced) and the voicing (1 or 0), so that the contour comes from
    /// the source and the register from the target's speaker vector. Causal models only (the
    /// contour is tracked as the audio streams).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub f0: bool,
}

/// Channels of the decoder's pitch input ([`DecoderConfig::f0`]): normalised log-F0, voicing.
pub const PITCH_CHANNELS: usize = 2;

impl DecoderConfig {
    /// Channels of the decoder's pitch input: [`PITCH_CHANNELS`] with `f0`, else 0.
    pub fn pitch_channels(&self) -> usize {
        if self.f0 {
            PITCH_CHANNELS
        } else {
            0
        }
    }
}

/// The whole model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Preset name, for people reading `config.json`.
    pub preset: String,
    /// The features the model reads and writes.
    pub frontend: FrontendConfig,
    /// How layers see time.
    pub temporal: Temporal,
    /// Speaker encoder.
    pub speaker: SpeakerEncoderConfig,
    /// Content encoder.
    pub content: ContentEncoderConfig,
    /// Decoder.
    pub decoder: DecoderConfig,
    /// Causal models: convert with two passes that each start afresh every `2 ·` this many
    /// frames, crossfaded (see `StreamingConverter`), so that no output frame rests on much
    /// more history than the training segments had; set it to half their length (recipes do).
    /// Absent: one pass over the whole input. Changes no weight, only inference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_refresh: Option<usize>,
}

impl ModelConfig {
    /// The paper's model at 16 kHz and 80 mels, as the reference implementation configures it
    /// (jjery2243542/adaptive_voice_conversion): 128 hidden channels, kernel 5, a bank of
    /// kernels 1..8, six blocks subsampling ×8 in the content encoder and upsampling ×8 in the
    /// decoder, six dense blocks, 128-dimensional speaker vector and content code.
    pub fn paper() -> Self {
        let stack = ConvStackConfig {
            c_in: 80,
            c_h: 128,
            kernel_size: 5,
            bank_size: 8,
            bank_scale: 1,
            c_bank: 128,
            subsample: vec![1, 2, 1, 2, 1, 2],
        };
        Self {
            preset: "paper".into(),
            frontend: FrontendConfig::speech_16k(),
            temporal: Temporal::Offline,
            speaker: SpeakerEncoderConfig {
                stack: stack.clone(),
                n_dense_blocks: 6,
                c_out: 128,
                attention: None,
            },
            content: ContentEncoderConfig {
                stack,
                c_out: 128,
                vq_codes: None,
            },
            decoder: DecoderConfig {
                c_h: 128,
                kernel_size: 5,
                upsample: vec![2, 1, 2, 1, 2, 1],
                f0: false,
            },
            norm_refresh: None,
        }
    }

    /// The streaming model: the paper's layer sizes, causal, without temporal subsampling (a
    /// subsampled code would hold a stream back by the subsampling factor), and a narrower
    /// content code (64 channels) to keep the bottleneck that subsampling gave the paper.
    pub fn stream() -> Self {
        let mut cfg = Self::paper();
        cfg.preset = "stream".into();
        cfg.temporal = Temporal::Causal;
        cfg.content.stack.subsample = vec![1; 6];
        cfg.content.c_out = 64;
        cfg.decoder.upsample = vec![1; 6];
        cfg
    }

    /// [`stream`](Self::stream) with reference attention (16 tokens of 64 values).
    pub fn stream_attention() -> Self {
        let mut cfg = Self::stream();
        cfg.preset = "stream-attn".into();
        cfg.speaker.attention = Some(AttentionConfig { tokens: 16, dim: 64 });
        cfg
    }

    /// [`tiny_stream`](Self::tiny_stream) with reference attention (4 tokens of 8 values).
    pub fn tiny_attention() -> Self {
        let mut cfg = Self::tiny_stream();
        cfg.preset = "tiny-attn".into();
        cfg.speaker.attention = Some(AttentionConfig { tokens: 4, dim: 8 });
        cfg
    }

    /// [`tiny`](Self::tiny), causal, for streaming tests.
    pub fn tiny_stream() -> Self {
        let mut cfg = Self::tiny();
        cfg.preset = "tiny-stream".into();
        cfg.temporal = Temporal::Causal;
        cfg.content.stack.subsample = vec![1, 1];
        cfg.decoder.upsample = vec![1, 1];
        cfg
    }

    /// [`tiny_stream`](Self::tiny_stream) with a vector-quantised content code of 8 entries.
    pub fn tiny_vq() -> Self {
        let mut cfg = Self::tiny_stream();
        cfg.preset = "tiny-vq".into();
        cfg.content.vq_codes = Some(8);
        cfg
    }

    /// [`tiny_stream`](Self::tiny_stream) with the source's intonation as a decoder input
    /// ([`DecoderConfig::f0`]).
    pub fn tiny_f0() -> Self {
        let mut cfg = Self::tiny_stream();
        cfg.preset = "tiny-f0".into();
        cfg.decoder.f0 = true;
        cfg
    }

    /// A small model of the same shape for tests (a few thousand parameters).
    pub fn tiny() -> Self {
        let stack = ConvStackConfig {
            c_in: 80,
            c_h: 16,
            kernel_size: 5,
            bank_size: 4,
            bank_scale: 1,
            c_bank: 4,
            subsample: vec![1, 2],
        };
        Self {
            preset: "tiny".into(),
            frontend: FrontendConfig::speech_16k(),
            temporal: Temporal::Offline,
            speaker: SpeakerEncoderConfig {
                stack: stack.clone(),
                n_dense_blocks: 2,
                c_out: 8,
                attention: None,
            },
            content: ContentEncoderConfig {
                stack,
                c_out: 8,
                vq_codes: None,
            },
            decoder: DecoderConfig {
                c_h: 16,
                kernel_size: 5,
                upsample: vec![2, 1],
                f0: false,
            },
            norm_refresh: None,
        }
    }

    /// The preset of that name.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown name.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "paper" => Ok(Self::paper()),
            "stream" => Ok(Self::stream()),
            "tiny" => Ok(Self::tiny()),
            "tiny-stream" => Ok(Self::tiny_stream()),
            "stream-attn" => Ok(Self::stream_attention()),
            "tiny-vq" => Ok(Self::tiny_vq()),
            "tiny-attn" => Ok(Self::tiny_attention()),
            "tiny-f0" => Ok(Self::tiny_f0()),
            other => Err(Error::Config(format!(
                "unknown preset `{other}` (known: paper, stream, stream-attn, tiny, tiny-stream, tiny-attn, tiny-vq, tiny-f0)"
            ))),
        }
    }

    /// Frames the input length must be a multiple of (the content encoder's subsampling).
    pub fn frame_multiple(&self) -> usize {
        self.content.stack.total_subsample()
    }

    /// Checks that the parts fit together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the mismatch.
    pub fn validate(&self) -> Result<()> {
        self.frontend.validate().map_err(|e| Error::Config(e.to_string()))?;
        self.speaker.stack.validate("speaker")?;
        self.content.stack.validate("content")?;
        if self.content.vq_codes.is_some_and(|k| k < 2) {
            return Err(Error::Config("content.vq_codes must be at least 2".into()));
        }
        for (what, c_in) in [
            ("speaker", self.speaker.stack.c_in),
            ("content", self.content.stack.c_in),
        ] {
            if c_in != self.frontend.n_mels {
                return Err(Error::Config(format!(
                    "{what} c_in {c_in} != frontend n_mels {}",
                    self.frontend.n_mels
                )));
            }
        }
        if self.decoder.upsample.iter().any(|&u| u != 1 && u != 2) {
            return Err(Error::Config(format!(
                "decoder upsample factors must be 1 or 2, got {:?}",
                self.decoder.upsample
            )));
        }
        match (self.norm_refresh, &self.temporal) {
            (Some(n), Temporal::Causal) if n < self.frame_multiple() || n % self.frame_multiple() != 0 => {
                return Err(Error::Config(format!(
                    "norm_refresh {n} must be a positive multiple of the model's frame multiple {}",
                    self.frame_multiple()
                )))
            }
            (Some(_), Temporal::Offline) => return Err(Error::Config(
                "norm_refresh is for causal models (temporal \"causal\"); offline ones normalise over the whole input"
                    .into(),
            )),
            _ => {}
        }
        let up: usize = self.decoder.upsample.iter().product();
        if up != self.content.stack.total_subsample() {
            return Err(Error::Config(format!(
                "decoder upsamples ×{up} but the content encoder subsamples ×{}",
                self.content.stack.total_subsample()
            )));
        }
        if self.temporal == Temporal::Causal && up != 1 {
            return Err(Error::Config(
                "a causal (streaming) model cannot subsample or upsample in time".into(),
            ));
        }
        if self.content.c_out == 0 || self.speaker.c_out == 0 {
            return Err(Error::Config(format!(
                "the content code ({}) and the speaker vector ({}) need at least one channel",
                self.content.c_out, self.speaker.c_out
            )));
        }
        if let Some(a) = &self.speaker.attention {
            if a.tokens == 0 || a.dim == 0 {
                return Err(Error::Config(format!(
                    "reference attention needs at least one token of one value, got {} × {}",
                    a.tokens, a.dim
                )));
            }
        }
        if self.decoder.f0 && self.temporal != Temporal::Causal {
            return Err(Error::Config(
                "decoder.f0 (the source's intonation) needs a causal preset: its contour is tracked as the audio streams".into(),
            ));
        }
        if self.decoder.kernel_size == 0 || self.decoder.c_h == 0 {
            return Err(Error::Config("decoder kernel_size and c_h must be positive".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip() {
        for cfg in [
            ModelConfig::paper(),
            ModelConfig::stream(),
            ModelConfig::tiny(),
            ModelConfig::tiny_stream(),
            ModelConfig::stream_attention(),
            ModelConfig::tiny_attention(),
            ModelConfig::tiny_f0(),
        ] {
            cfg.validate().unwrap();
            let json = serde_json::to_string_pretty(&cfg).unwrap();
            assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), cfg);
        }
    }

    #[test]
    fn unknown_fields_and_mismatches_are_rejected() {
        let json = serde_json::to_string(&ModelConfig::tiny()).unwrap();
        let bad = json.replacen("\"n_dense_blocks\"", "\"n_dense_blockz\"", 1);
        let err = serde_json::from_str::<ModelConfig>(&bad).unwrap_err();
        assert!(err.to_string().contains("n_dense_blockz"), "{err}");
        let mut cfg = ModelConfig::tiny();
        cfg.decoder.upsample = vec![1, 1];
        assert!(cfg.validate().unwrap_err().to_string().contains("upsamples ×1"));
        assert!(ModelConfig::preset("huge").is_err());
        let mut cfg = ModelConfig::stream();
        cfg.content.c_out = 0;
        assert!(cfg.validate().unwrap_err().to_string().contains("content code (0)"));
    }
}
