//! The inference facade: load a model folder, summarise reference voices into speaker
//! embeddings, convert mels.

use std::path::Path;

use candle_core::{Device, Tensor};
use voxswap_audio::Mel;

use crate::{io, AdaInVc, Error, ModelConfig, Result};

/// A voice, as the speaker encoder summarises it, with the spectral correction that brings the
/// model's rendering of it to the reference's long-term average spectrum. Plain numbers, so it
/// can be mixed, stored in a speaker bank and glided between while audio streams.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerEmbedding {
    values: Vec<f32>,
    /// Per mel band, the log-mel difference (reference − the model's conversion of the
    /// reference into this voice) over the reference's speech frames; `None`: none known.
    spectrum: Option<Vec<f32>>,
    /// Per mel band, the references' mean log-mel over their speech frames (their long-term
    /// average spectrum); `None`: not known.
    average: Option<Vec<f32>>,
}

/// Frames quieter than the loudest frame by more than this (natural log of power, ≈ 26 dB)
/// are pauses, left out of a spectrum correction.
const SPEECH_RANGE: f32 = 6.0;

impl SpeakerEmbedding {
    /// An embedding from its values, without a spectrum correction.
    pub fn new(values: Vec<f32>) -> Self {
        Self {
            values,
            spectrum: None,
            average: None,
        }
    }

    /// The same voice with a spectrum correction (one value per mel band, added to the model's
    /// log-mel output), or without one.
    #[must_use]
    pub fn with_spectrum(mut self, spectrum: Option<Vec<f32>>) -> Self {
        self.spectrum = spectrum;
        self
    }

    /// The same voice with the references' long-term average spectrum (one log-mel value per
    /// band, see [`VoiceConverter::match_spectrum`]), or without it.
    #[must_use]
    pub fn with_average(mut self, average: Option<Vec<f32>>) -> Self {
        self.average = average;
        self
    }

    /// The references' long-term average spectrum, per mel band (log-mel), if known.
    pub fn average(&self) -> Option<&[f32]> {
        self.average.as_deref()
    }

    /// The values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The spectrum correction, per mel band (log-mel), if known.
    pub fn spectrum(&self) -> Option<&[f32]> {
        self.spectrum.as_deref()
    }

    /// The spectrum correction scaled by `strength` (0 drops it; 1 keeps it); the average
    /// spectrum stays.
    ///
    /// # Errors
    /// [`Error::Input`] for a negative or non-finite strength.
    pub fn spectrum_strength(&self, strength: f32) -> Result<Self> {
        if !(strength.is_finite() && strength >= 0.0) {
            return Err(Error::Input(format!(
                "spectrum strength {strength} must be a non-negative number"
            )));
        }
        let spectrum = match &self.spectrum {
            Some(s) if strength > 0.0 => Some(s.iter().map(|v| v * strength).collect()),
            _ => None,
        };
        Ok(Self {
            values: self.values.clone(),
            spectrum,
            average: self.average.clone(),
        })
    }

    /// `self + strength · (self − away)`: this voice pushed further from `away` (the source's
    /// voice in a conversion) along the line through both; 0 leaves it as it is. The spectrum
    /// correction and average stay this voice's.
    ///
    /// # Errors
    /// [`Error::Input`] for a negative or non-finite strength, or differing sizes.
    pub fn contrast(&self, away: &SpeakerEmbedding, strength: f32) -> Result<Self> {
        if !(strength.is_finite() && strength >= 0.0) {
            return Err(Error::Input(format!(
                "contrast strength {strength} must be a non-negative number"
            )));
        }
        if away.values.len() != self.values.len() {
            return Err(Error::Input(format!(
                "embeddings of sizes {} and {} cannot contrast",
                self.values.len(),
                away.values.len()
            )));
        }
        Ok(Self {
            values: self
                .values
                .iter()
                .zip(&away.values)
                .map(|(t, s)| t + strength * (t - s))
                .collect(),
            spectrum: self.spectrum.clone(),
            average: self.average.clone(),
        })
    }

    /// `Σ wᵢ · eᵢ / Σ wᵢ`: a weighted mix of voices. Their spectrum corrections and average
    /// spectra mix with the same weights when every part has one (none otherwise).
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
        let weighted = |get: &dyn Fn(&SpeakerEmbedding) -> &[f32], what: &str| -> Result<Vec<f32>> {
            let mut out = vec![0.0; get(first).len()];
            for (w, e) in parts {
                let v = get(e);
                if v.len() != out.len() {
                    return Err(Error::Input(format!(
                        "{what} of sizes {} and {} cannot mix",
                        out.len(),
                        v.len()
                    )));
                }
                for (o, v) in out.iter_mut().zip(v) {
                    *o += w / total * v;
                }
            }
            Ok(out)
        };
        let values = weighted(&|e| &e.values, "embeddings")?;
        let spectrum = if parts.iter().all(|(_, e)| e.spectrum.is_some()) {
            Some(weighted(
                &|e| e.spectrum.as_deref().unwrap_or(&[]),
                "spectrum corrections",
            )?)
        } else {
            None
        };
        let average = if parts.iter().all(|(_, e)| e.average.is_some()) {
            Some(weighted(&|e| e.average.as_deref().unwrap_or(&[]), "average spectra")?)
        } else {
            None
        };
        Ok(Self {
            values,
            spectrum,
            average,
        })
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

    /// A chunk-by-chunk converter to `speaker`, for causal models (`None` for offline ones),
    /// with the warm-up gate on, as [`convert`](Self::convert) has it.
    ///
    /// # Errors
    /// [`Error::Input`] for a wrong embedding size.
    pub fn stream(&self, speaker: &SpeakerEmbedding) -> Result<Option<crate::StreamingConverter>> {
        if self.config().temporal != crate::config::Temporal::Causal {
            return Ok(None);
        }
        let (spk, offset) = self.speaker_tensors(speaker)?;
        let mut s = crate::StreamingConverter::new(self.model.clone(), spk)?;
        s.set_offset(offset);
        s.set_warmup_gate(true);
        Ok(Some(s))
    }

    /// A frame-by-frame, allocation-free stream converting to `speaker` ([`crate::FrameModel`],
    /// warm-up gate on, as [`Self::stream`]), or `None` when the preset needs the tensor
    /// stream (it is not causal, or subsamples, upsamples or attends).
    ///
    /// # Errors
    /// [`Error::Input`] for a wrong embedding or correction size.
    pub fn frame_model(&self, speaker: &SpeakerEmbedding) -> Result<Option<crate::FrameModel>> {
        // Checks the sizes.
        self.speaker_tensors(speaker)?;
        let global = self.config().speaker.c_out;
        let mut m = match crate::FrameModel::new(&self.model, &speaker.values[..global]) {
            Ok(m) => m,
            Err(Error::Config(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        m.set_embedding(speaker)?;
        m.set_warmup_gate(true);
        Ok(Some(m))
    }

    /// The speaker vector `[1, c_out]` and the spectrum correction `[1, n_mels, 1]`, checked:
    /// what [`crate::StreamingConverter::set_speaker`] and `set_offset` take.
    ///
    /// # Errors
    /// [`Error::Input`] for a wrong embedding or correction size.
    pub fn speaker_tensors(&self, speaker: &SpeakerEmbedding) -> Result<(Tensor, Option<Tensor>)> {
        let c = self.config().speaker.width();
        if speaker.values.len() != c {
            return Err(Error::Input(format!(
                "speaker embedding has {} values, the model uses {c}",
                speaker.values.len()
            )));
        }
        let offset = match &speaker.spectrum {
            None => None,
            Some(s) => {
                let n_mels = self.config().frontend.n_mels;
                if s.len() != n_mels || s.iter().any(|v| !v.is_finite()) {
                    return Err(Error::Input(format!(
                        "the speaker's spectrum correction has {} values, the model has {n_mels} mel bands",
                        s.len()
                    )));
                }
                Some(Tensor::from_slice(s, (1, n_mels, 1), &self.device)?)
            }
        };
        Ok((Tensor::from_slice(&speaker.values, (1, c), &self.device)?, offset))
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

    /// What the model reads of `x` (mono samples at the model's rate): its log-mel and, for a
    /// model that reads the source's pitch (`decoder.f0`), the pitch channels as
    /// [`crate::config::PITCH_CHANNELS`] more rows (normalised log-F0, voicing; see
    /// [`voxswap_audio::pitch::pitch_features`]). Every method here that takes a [`Mel`] takes
    /// these features; a source without the pitch rows cannot be converted by such a model.
    ///
    /// # Errors
    /// A frontend the mel computation refuses.
    pub fn features(&self, x: &[f32]) -> Result<Mel> {
        let fe = &self.config().frontend;
        let mut mel = voxswap_audio::LogMel::new(fe)
            .map_err(|e| Error::Config(e.to_string()))?
            .compute(x);
        if self.model.uses_pitch() {
            voxswap_audio::pitch::append_pitch_rows(&mut mel, x, fe).map_err(|e| Error::Config(e.to_string()))?;
        }
        Ok(mel)
    }

    /// Rows of a [`Self::features`] frame: the mel bands, then the pitch channels (if any).
    pub fn feature_rows(&self) -> usize {
        self.config().frontend.n_mels + self.config().decoder.pitch_channels()
    }

    /// `mel` (log-mel rows, perhaps followed by the pitch rows) as the model's input tensor
    /// `[1, n_mels, T]` and, when the rows are there and the model reads them, the pitch
    /// `[1, 2, T]`.
    fn split(&self, mel: &Mel, what: &str) -> Result<(Tensor, Option<Tensor>)> {
        let n_mels = self.config().frontend.n_mels;
        let p = self.config().decoder.pitch_channels();
        let x = self.to_tensor(mel, what)?;
        if mel.n_mels == n_mels {
            return Ok((x, None));
        }
        Ok((
            x.narrow(1, 0, n_mels)?.contiguous()?,
            Some(x.narrow(1, n_mels, p)?.contiguous()?),
        ))
    }

    fn to_tensor(&self, mel: &Mel, what: &str) -> Result<Tensor> {
        let n_mels = self.config().frontend.n_mels;
        let rows = self.feature_rows();
        if mel.n_mels != n_mels && mel.n_mels != rows {
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

    /// The voice of one or more reference mels: the mean speaker embedding; the references'
    /// long-term average spectrum (mean log-mel over their speech frames, for
    /// [`Self::match_spectrum`]); and the spectrum correction, the mean over references of
    /// (reference − the reference converted into that embedding) over each reference's speech
    /// frames. Added to the model's output, the correction brings the long-term average
    /// spectrum of conversions into this voice towards the references' (the decoder alone
    /// renders an unseen voice only part of the way) without seeing the source.
    ///
    /// # Errors
    /// [`Error::Input`] for no references, a wrong band count, or a reference that is too short.
    pub fn embed(&self, references: &[Mel]) -> Result<SpeakerEmbedding> {
        let plain = self.speaker_vector(references)?;
        let n_mels = self.config().frontend.n_mels;
        let (mut correction, mut average) = (vec![0f64; n_mels], vec![0f64; n_mels]);
        for r in references {
            let y = self.convert(r, &plain)?;
            let speech = speech_frames(r, n_mels);
            let (mr, my) = (band_means(r, &speech), band_means(&y, &speech));
            for m in 0..n_mels {
                correction[m] += f64::from(mr[m] - my[m]);
                average[m] += f64::from(mr[m]);
            }
        }
        let mean = |v: Vec<f64>| v.iter().map(|v| (v / references.len() as f64) as f32).collect();
        Ok(plain
            .with_spectrum(Some(mean(correction)))
            .with_average(Some(mean(average))))
    }

    /// `speaker` with a spectrum correction measured on `source` (the speech to be converted,
    /// or its first seconds): `strength` × (the speaker's average spectrum − the average
    /// spectrum of `source` converted into the speaker's vector), over the source's speech
    /// frames. The conversion's long-term average spectrum then lands on the references'
    /// (strength 1). A speaker without an average spectrum (a bank entry from before
    /// voxswap stored one) keeps its own correction, scaled by `strength`.
    ///
    /// # Errors
    /// [`Error::Input`] for a negative or non-finite strength, a wrong embedding or average
    /// size, a wrong band count or a too-short source.
    pub fn match_spectrum(&self, source: &Mel, speaker: &SpeakerEmbedding, strength: f32) -> Result<SpeakerEmbedding> {
        let scaled = speaker.spectrum_strength(strength)?;
        let Some(average) = speaker.average().filter(|_| strength > 0.0) else {
            return Ok(scaled);
        };
        let n_mels = self.config().frontend.n_mels;
        if average.len() != n_mels || average.iter().any(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "the speaker's average spectrum has {} values, the model has {n_mels} mel bands",
                average.len()
            )));
        }
        let y = self.convert(source, &speaker.clone().with_spectrum(None))?;
        let got = band_means(&y, &speech_frames(source, n_mels));
        let correction = average.iter().zip(&got).map(|(a, g)| strength * (a - g)).collect();
        Ok(scaled.with_spectrum(Some(correction)))
    }

    /// The mean speaker embedding of one or more reference mels, without a spectrum correction
    /// (half the work of [`Self::embed`]).
    ///
    /// # Errors
    /// [`Error::Input`] for no references, a wrong band count, or a reference that is too short.
    pub fn speaker_vector(&self, references: &[Mel]) -> Result<SpeakerEmbedding> {
        if references.is_empty() {
            return Err(Error::Input("no reference given".into()));
        }
        let mels = references
            .iter()
            .enumerate()
            .map(|(i, r)| Ok(self.split(r, &format!("reference {}", i + 1))?.0))
            .collect::<Result<Vec<_>>>()?;
        let mean = self.model.speaker.forward_many(&mels)?;
        Ok(SpeakerEmbedding::new(mean.flatten_all()?.to_vec1::<f32>()?))
    }

    /// `mel`'s content in the voice of `speaker` (with its spectrum correction, if it has one),
    /// as a stream over the whole input would convert it (refreshed passes, see
    /// [`crate::StreamingConverter`], when the model has `norm_refresh`). The mel is padded with
    /// silence to the frame multiple the model needs, and the result cut back to the input's
    /// length.
    ///
    /// # Errors
    /// [`Error::Input`] for a wrong band count, a too-short mel or a wrong embedding size.
    pub fn convert(&self, mel: &Mel, speaker: &SpeakerEmbedding) -> Result<Mel> {
        let (spk, offset) = self.speaker_tensors(speaker)?;
        let multiple = self.config().frame_multiple();
        let frames = mel.frames.max(self.min_frames()).div_ceil(multiple) * multiple;
        let n_mels = self.config().frontend.n_mels;
        let silence = self.config().frontend.log_floor.ln();
        // Padding frames: silence, unvoiced.
        let mut padded = Mel {
            n_mels: mel.n_mels,
            frames,
            data: vec![silence; mel.n_mels * frames],
        };
        padded.data[n_mels.min(mel.n_mels) * frames..].fill(0.0);
        for m in 0..mel.n_mels {
            padded.data[m * frames..m * frames + mel.frames]
                .copy_from_slice(&mel.data[m * mel.frames..(m + 1) * mel.frames]);
        }
        let (x, pitch) = self.split(&padded, "source")?;
        let y = if self.config().temporal == crate::config::Temporal::Causal {
            // What a stream over the whole input gives (refreshed passes, warm-up gate).
            let mut s = crate::StreamingConverter::new(self.model.clone(), spk)?;
            s.set_offset(offset);
            s.set_warmup_gate(true);
            s.step_pitched(&x, pitch.as_ref())?
        } else {
            let y = self.model.convert_pitched(&x, &spk, pitch.as_ref())?;
            match offset {
                Some(o) => y.broadcast_add(&o)?,
                None => y,
            }
        };
        let y = y.narrow(2, 0, mel.frames)?;
        let data = y.flatten_all()?.to_vec1::<f32>()?;
        Ok(Mel {
            n_mels,
            frames: mel.frames,
            data,
        })
    }
}

/// The speech frames of `a`: within [`SPEECH_RANGE`] of its loudest frame, by mean log-mel
/// of its first `n_mels` rows (the mel bands, without any pitch rows after them).
fn speech_frames(a: &Mel, n_mels: usize) -> Vec<usize> {
    let n = n_mels.min(a.n_mels);
    let loudness: Vec<f32> = (0..a.frames)
        .map(|t| (0..n).map(|m| a.data[m * a.frames + t]).sum::<f32>() / n as f32)
        .collect();
    let top = loudness.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (0..a.frames).filter(|&t| loudness[t] >= top - SPEECH_RANGE).collect()
}

/// Per band, the mean of `m` over `frames`.
fn band_means(m: &Mel, frames: &[usize]) -> Vec<f32> {
    (0..m.n_mels)
        .map(|k| {
            let row = &m.data[k * m.frames..][..m.frames];
            frames.iter().map(|&t| row[t]).sum::<f32>() / frames.len().max(1) as f32
        })
        .collect()
}
