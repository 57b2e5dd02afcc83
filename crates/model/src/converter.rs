//! The inference facade: load a model folder, summarise reference voices into speaker
//! embeddings, convert mels.

use std::path::Path;

use candle_core::{Device, Tensor};
use voxswap_audio::Mel;

use crate::{io, AdaInVc, Error, ModelConfig, Result};

/// A voice, as the speaker encoder summarises it. Plain numbers, so it can be mixed, stored in
/// a speaker bank and glided between while audio streams.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerEmbedding(Vec<f32>);

impl SpeakerEmbedding {
    /// An embedding from its values.
    pub fn new(values: Vec<f32>) -> Self {
        Self(values)
    }

    /// The values.
    pub fn values(&self) -> &[f32] {
        &self.0
    }

    /// `self + strength · (self − away)`: this voice pushed further from `away` (the source's
    /// voice in a conversion) along the line through both; 0 leaves it as it is.
    ///
    /// # Errors
    /// [`Error::Input`] for a negative or non-finite strength, or differing sizes.
    pub fn contrast(&self, away: &SpeakerEmbedding, strength: f32) -> Result<Self> {
        if !(strength.is_finite() && strength >= 0.0) {
            return Err(Error::Input(format!(
                "contrast strength {strength} must be a non-negative number"
            )));
        }
        if away.0.len() != self.0.len() {
            return Err(Error::Input(format!(
                "embeddings of sizes {} and {} cannot contrast",
                self.0.len(),
                away.0.len()
            )));
        }
        Ok(Self(
            self.0
                .iter()
                .zip(&away.0)
                .map(|(t, s)| t + strength * (t - s))
                .collect(),
        ))
    }

    /// `Σ wᵢ · eᵢ / Σ wᵢ`: a weighted mix of voices.
    ///
    /// # Errors
    /// [`Error::Input`] for no parts, negative or all-zero weights, or differing sizes.
    pub fn mix(parts: &[(f32, &SpeakerEmbedding)]) -> Result<Self> {
        let Some((_, first)) = parts.first() else {
            return Err(Error::Input("nothing to mix".into()));
        };
        let total: f32 = parts.iter().map(|(w, _)| *w).sum();
        if parts.iter().any(|(w, _)| !(w.is_finite() && *w >= 0.0)) || total <= 0.0 {
            return Err(Error::Input("mix weights must be non-negative and not all zero".into()));
        }
        let mut out = vec![0.0; first.0.len()];
        for (w, e) in parts {
            if e.0.len() != out.len() {
                return Err(Error::Input(format!(
                    "embeddings of sizes {} and {} cannot mix",
                    out.len(),
                    e.0.len()
                )));
            }
            for (o, v) in out.iter_mut().zip(&e.0) {
                *o += w / total * v;
            }
        }
        Ok(Self(out))
    }
}

/// A loaded model, ready to embed voices and convert speech.
#[derive(Debug, Clone)]
pub struct VoiceConverter {
    model: AdaInVc,
    device: Device,
}

impl VoiceConverter {
    /// Loads a model folder (`config.json`, `model.safetensors`), checking every tensor.
    ///
    /// # Errors
    /// See [`io::load_model`].
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Ok(Self {
            model: io::load_model(dir, device)?,
            device: device.clone(),
        })
    }

    /// Wraps a model already built.
    pub fn from_model(model: AdaInVc, device: &Device) -> Self {
        Self {
            model,
            device: device.clone(),
        }
    }

    /// A chunk-by-chunk converter to `speaker`, for causal models (`None` for offline ones).
    ///
    /// # Errors
    /// [`Error::Input`] for a wrong embedding size.
    pub fn stream(&self, speaker: &SpeakerEmbedding) -> Result<Option<crate::StreamingConverter>> {
        if self.config().temporal != crate::config::Temporal::Causal {
            return Ok(None);
        }
        let spk = self.speaker_tensor(speaker)?;
        Ok(Some(crate::StreamingConverter::new(self.model.clone(), spk)?))
    }

    fn speaker_tensor(&self, speaker: &SpeakerEmbedding) -> Result<Tensor> {
        let c = self.config().speaker.c_out;
        if speaker.0.len() != c {
            return Err(Error::Input(format!(
                "speaker embedding has {} values, the model uses {c}",
                speaker.0.len()
            )));
        }
        Ok(Tensor::from_slice(&speaker.0, (1, c), &self.device)?)
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// Fewest frames a mel may have (the deepest layer still needs a few frames of context).
    pub fn min_frames(&self) -> usize {
        let s = self
            .config()
            .speaker
            .stack
            .total_subsample()
            .max(self.config().frame_multiple());
        s * self
            .config()
            .speaker
            .stack
            .kernel_size
            .max(self.config().content.stack.kernel_size)
    }

    fn to_tensor(&self, mel: &Mel, what: &str) -> Result<Tensor> {
        let n_mels = self.config().frontend.n_mels;
        if mel.n_mels != n_mels {
            return Err(Error::Input(format!(
                "{what} has {} mel bands, the model reads {n_mels}",
                mel.n_mels
            )));
        }
        if mel.frames < self.min_frames() {
            let hop_ms = self.config().frontend.hop_ms();
            return Err(Error::Input(format!(
                "{what} is too short: {} frames ({:.0} ms); at least {} frames ({:.0} ms) are needed",
                mel.frames,
                mel.frames as f64 * hop_ms,
                self.min_frames(),
                self.min_frames() as f64 * hop_ms
            )));
        }
        Ok(Tensor::from_slice(
            &mel.data,
            (1, mel.n_mels, mel.frames),
            &self.device,
        )?)
    }

    /// The mean speaker embedding of one or more reference mels.
    ///
    /// # Errors
    /// [`Error::Input`] for no references, a wrong band count, or a reference that is too short.
    pub fn embed(&self, references: &[Mel]) -> Result<SpeakerEmbedding> {
        if references.is_empty() {
            return Err(Error::Input("no reference given".into()));
        }
        let mut sum: Option<Tensor> = None;
        for (i, r) in references.iter().enumerate() {
            let e = self
                .model
                .speaker
                .forward(&self.to_tensor(r, &format!("reference {}", i + 1))?)?;
            sum = Some(match sum {
                Some(s) => (s + e)?,
                None => e,
            });
        }
        let sum = sum.ok_or_else(|| Error::Input("no reference given".into()))?;
        let mean = (sum / references.len() as f64)?;
        Ok(SpeakerEmbedding(mean.flatten_all()?.to_vec1::<f32>()?))
    }

    /// `mel`'s content in the voice of `speaker`. The mel is padded with silence to the frame
    /// multiple the model needs, and the result cut back to the input's length.
    ///
    /// # Errors
    /// [`Error::Input`] for a wrong band count, a too-short mel or a wrong embedding size.
    pub fn convert(&self, mel: &Mel, speaker: &SpeakerEmbedding) -> Result<Mel> {
        let spk = self.speaker_tensor(speaker)?;
        let multiple = self.config().frame_multiple();
        let frames = mel.frames.max(self.min_frames()).div_ceil(multiple) * multiple;
        let silence = self.config().frontend.log_floor.ln();
        let mut padded = Mel {
            n_mels: mel.n_mels,
            frames,
            data: vec![silence; mel.n_mels * frames],
        };
        for m in 0..mel.n_mels.min(self.config().frontend.n_mels) {
            padded.data[m * frames..m * frames + mel.frames]
                .copy_from_slice(&mel.data[m * mel.frames..(m + 1) * mel.frames]);
        }
        let x = self.to_tensor(&padded, "source")?;
        let y = self.model.convert(&x, &spk)?.narrow(2, 0, mel.frames)?;
        let data = y.flatten_all()?.to_vec1::<f32>()?;
        Ok(Mel {
            n_mels: mel.n_mels,
            frames: mel.frames,
            data,
        })
    }
}
