//! Training recipes: one TOML file that says what to train on, which model, and how.
//! Relative paths are resolved from the recipe's folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use voxswap_model::ModelConfig;

use crate::optim::AdamConfig;
use crate::{Error, Result};

/// A whole recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Where the data is.
    pub data: DataSection,
    /// Which model.
    pub model: ModelSection,
    /// The run.
    pub train: TrainSection,
    /// The optimiser.
    #[serde(default)]
    pub optim: AdamConfig,
    /// Where results go.
    pub output: OutputSection,
    /// `[vocoder]`: training of the neural vocoder on the same corpus (`voxswap train
    /// --vocoder`).
    #[serde(default)]
    pub vocoder: Option<VocoderSection>,
    /// `[prepare]`: settings of a recipe's data-preparation stage, read by its `run.sh`; not used
    /// by the trainer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare: Option<toml::Table>,
    /// `[eval]`: settings of a recipe's evaluation stage, read by its `run.sh`; not used by the
    /// trainer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<toml::Table>,
    /// `[export]`: settings of a recipe's export stage, read by its `run.sh`; not used by the
    /// trainer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<toml::Table>,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Corpus folder: one folder per speaker.
    pub corpus: PathBuf,
    /// Feature cache folder.
    pub cache: PathBuf,
    /// Frames per training segment (a multiple of the model's subsampling).
    #[serde(default = "default_segment")]
    pub segment_frames: usize,
    /// Utterances per speaker held out for validation.
    #[serde(default = "default_valid")]
    pub valid_per_speaker: usize,
    /// Phoneme transcripts for the phonetic head (`train.lambda_phone`): a TSV file of
    /// corpus-relative audio paths and their phonemes separated by spaces
    /// (`crate::phonetic::Transcripts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phonemes: Option<PathBuf>,
}

fn default_phone_batch() -> usize {
    4
}

fn default_segment() -> usize {
    128
}
fn default_valid() -> usize {
    1
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Preset name (`paper`, `stream`, `tiny`, `tiny-stream`).
    pub preset: String,
    /// Channels of the content code, overriding the preset's: the bottleneck that decides how
    /// much besides the content (the speaker, above all) the code can carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_channels: Option<usize>,
    /// A vector-quantised content code of this many entries (VQVC's bottleneck), overriding
    /// the preset's; the VQ loss joins the training loss and the code is not sampled (set
    /// `train.lambda_kl = 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vq_codes: Option<usize>,
    /// The source's intonation as a decoder input (`decoder.f0`, AutoVC-F0): the features
    /// then carry a pitch track (a feature store of their own), and conversion tracks the
    /// source's pitch as it goes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub f0: bool,
}

/// Where the speaker encoder's input comes from in training (`train.speaker_reference`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeakerReference {
    /// The segment being reconstructed.
    #[default]
    Same,
    /// A segment of another utterance of the same speaker.
    Other,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Total optimiser steps.
    pub steps: u64,
    /// Weights to start from when the run has no checkpoint yet (a model folder or its
    /// `model.safetensors`, such as `pretrained/`): every tensor of the same name and shape is
    /// taken; a decoder input layer that reads more channels now (`decoder.f0` added) takes
    /// the old channels' weights and starts the new ones at zero, so that the run starts from
    /// exactly the old model's conversions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<PathBuf>,
    /// The run's snapshot: a model folder (tracked in the repository, half precision) that
    /// `voxswap train --snapshot` replaces with the newest checkpoint's weights and step. When
    /// the run has no checkpoint (a new machine), it resumes from the snapshot's weights and
    /// step, with a fresh optimiser state; it takes precedence over `init_weights`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<PathBuf>,
    /// Segments per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seed of the initialisation, the batches and the VAE noise.
    #[serde(default)]
    pub seed: u64,
    /// Weight of the L1 reconstruction loss.
    #[serde(default = "default_rec")]
    pub lambda_rec: f64,
    /// Final weight of the KL term.
    #[serde(default = "default_kl")]
    pub lambda_kl: f64,
    /// Steps over which the KL weight rises linearly from 0 to `lambda_kl`.
    #[serde(default = "default_anneal")]
    pub kl_anneal_steps: u64,
    /// Frequency warp of the content encoder's input (vocal-tract-length perturbation): each
    /// segment's mel is warped by a factor drawn log-uniformly from `1/(1+w) ..= 1+w` before
    /// the content encoder reads it, while the speaker encoder and the loss see it unwarped, so
    /// the content code cannot carry formant and pitch position (the speaker). 0 turns it off.
    #[serde(default)]
    pub content_warp: f64,
    /// Frequency warp of whole segments (what every encoder reads and the loss asks for), drawn
    /// like `content_warp`: each warped segment is a voice no recording has, so the speaker
    /// encoder and the decoder learn a continuum of voices rather than the corpus's few. 0
    /// turns it off.
    #[serde(default)]
    pub speaker_warp: f64,
    /// What the speaker encoder reads: the segment being reconstructed (`same`, the paper's
    /// auto-encoder) or a segment of another utterance of the same voice (`other`), as at
    /// conversion, where the reference never says what the source says.
    #[serde(default)]
    pub speaker_reference: SpeakerReference,
    /// Weight of the adversarial speaker classifier (Chou et al. 2018): a classifier of the
    /// training speakers reads the content code's mean, and the content encoder gets its
    /// gradient reversed, so that the code keeps less of the voice. 0 (the default) leaves it
    /// out; its weights are training-only (`adversary.safetensors` in checkpoints).
    #[serde(default)]
    pub lambda_adv: f64,
    /// Weight of the speaker-consistency loss (`crate::step::consistency_loss`): each segment
    /// is also decoded in another segment's voice and the speaker encoder, reading the
    /// conversion, should hear that voice (1 − cosine of the global vectors). 0 (the default)
    /// leaves it out.
    #[serde(default)]
    pub lambda_cons: f64,
    /// Weight of the mel discriminator (`crate::discriminator`, Chou et al. 2018's second
    /// stage): a training-only critic tells the corpus's mels from the decoder's reconstructions
    /// and conversions, and the decoder is asked to fool it, against the blur an L1 loss leaves.
    /// 0 (the default) leaves it out.
    #[serde(default)]
    pub lambda_gan: f64,
    /// The step from which the mel discriminator trains and the decoder answers to it (the
    /// auto-encoder first learns alone).
    #[serde(default)]
    pub gan_start: u64,
    /// Weight of the phonetic head (`crate::phonetic`): a training-only classifier of phonemes
    /// reads the content code of whole utterances and CTC scores it against their transcripts
    /// (`data.phonemes`), so that the code must carry what is said. 0 (the default) leaves it
    /// out.
    #[serde(default)]
    pub lambda_phone: f64,
    /// Whole utterances per step for the phonetic head.
    #[serde(default = "default_phone_batch")]
    pub phone_batch: usize,
    /// The denoising auto-encoder: the content encoder reads each segment with noise added at
    /// a signal-to-noise ratio drawn from this many dB to 20 dB more (white, pink or brown
    /// noise), while the loss asks for the clean segment (`crate::augment`). 0 turns it off.
    #[serde(default)]
    pub denoise_snr_db: f64,
    /// With the denoising auto-encoder: the share of segments that also get reverberation
    /// (RT60 0.2–0.8 s), 0 to 1.
    #[serde(default)]
    pub denoise_reverb: f64,
    /// With the denoising auto-encoder: the share of segments left clean, 0 to 1 (a model that
    /// never reads a clean segment handles clean speech worst).
    #[serde(default)]
    pub denoise_clean: f64,
    /// Steps between checkpoints.
    #[serde(default = "default_ckpt")]
    pub checkpoint_every: u64,
    /// Checkpoints kept (the newest).
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// Steps between validation passes.
    #[serde(default = "default_ckpt")]
    pub valid_every: u64,
    /// Steps between log records.
    #[serde(default = "default_log")]
    pub log_every: u64,
}

fn default_batch() -> usize {
    16
}
fn default_rec() -> f64 {
    10.0
}
fn default_kl() -> f64 {
    1.0
}
fn default_anneal() -> u64 {
    20_000
}
fn default_ckpt() -> u64 {
    1000
}
fn default_keep() -> usize {
    3
}
fn default_log() -> u64 {
    10
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Run folder: checkpoints, `train.jsonl`, `loss.png`.
    pub dir: PathBuf,
}

/// `[vocoder]`: the neural vocoder's training (`voxswap train --vocoder`). The corpus, feature
/// cache and `[optim]` settings are the recipe's; the learning rate may differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VocoderSection {
    /// Total optimiser steps.
    pub steps: u64,
    /// Weights to start from when the run has no checkpoint yet (a model folder or its
    /// `model.safetensors`, such as `pretrained/`): every tensor of the same name and shape is
    /// taken; a decoder input layer that reads more channels now (`decoder.f0` added) takes
    /// the old channels' weights and starts the new ones at zero, so that the run starts from
    /// exactly the old model's conversions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<PathBuf>,
    /// The run's snapshot: a model folder (tracked in the repository, half precision) that
    /// `voxswap train --snapshot` replaces with the newest checkpoint's weights and step. When
    /// the run has no checkpoint (a new machine), it resumes from the snapshot's weights and
    /// step, with a fresh optimiser state; it takes precedence over `init_weights`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<PathBuf>,
    /// Segments per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Frames per training segment (10 ms each).
    #[serde(default = "default_vocoder_segment")]
    pub segment_frames: usize,
    /// `small` (the shipped size) or `tiny` (tests).
    #[serde(default = "default_vocoder_size")]
    pub size: String,
    /// `absolute` (the head gives each frame's phases), `integrated` (it gives each frame's
    /// phase advance, summed over frames) or `source` (a source-filter synthesis: gains for a
    /// harmonic excitation at an F0 the head predicts and for noise; see
    /// `voxswap_model::vocoder::PhaseMode`).
    #[serde(default)]
    pub phase: voxswap_model::vocoder::PhaseMode,
    /// Hops each synthesis frame spans (its FFT has this × hop points; default 2, no latency
    /// beyond the frontend's window). Each hop more gives finer frequency bins (the harmonics of
    /// low voices resolved) for half a hop (5 ms at 16 kHz) more latency. Either phase mode.
    #[serde(default)]
    pub synthesis_hops: Option<usize>,
    /// Weight of the log-mel L1 term (the multi-resolution STFT loss has weight 1).
    #[serde(default = "default_lambda_mel")]
    pub lambda_mel: f64,
    /// Weight of the phase loss (anti-wrapped phase, group delay and instantaneous frequency
    /// against the target's STFT phases; Ai & Ling's APNet): 0 leaves the phases to the
    /// magnitude losses alone.
    #[serde(default)]
    pub lambda_phase: f64,
    /// Weight of the F0 loss of a `source` vocoder over the frames YIN finds voiced in the target
    /// audio: the mean absolute difference of the head's log-F0 from YIN's, or with `f0_net` the
    /// cross-entropy of its pitch bins. (In training the harmonic source runs at YIN's F0, filled
    /// through unvoiced frames.)
    #[serde(default = "default_lambda_f0")]
    pub lambda_f0: f64,
    /// A `source` vocoder's F0 network of its own, `{ channels = 96, blocks = 3, bins = 96 }`:
    /// a classifier over pitch bins trained on the F0 alone (cross-entropy, `lambda_f0`), so
    /// that the log-mel terms do not drown it; without it the head's last output is the F0.
    #[serde(default)]
    pub f0_net: Option<voxswap_model::vocoder::F0NetConfig>,
    /// Weight of the adversarial loss (`crate::vocoder_gan`: multi-period and
    /// multi-resolution discriminators, least squares): 0 (the default) trains without them.
    #[serde(default)]
    pub lambda_adv: f64,
    /// Weight of the discriminators' feature matching (with `lambda_adv`).
    #[serde(default = "default_lambda_fm")]
    pub lambda_fm: f64,
    /// The step from which the discriminators train and the vocoder answers to them.
    #[serde(default)]
    pub adv_start: u64,
    /// Learning rate (default: `[optim]`'s).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Seed of the initialisation and the batches.
    #[serde(default)]
    pub seed: u64,
    /// Steps between checkpoints.
    #[serde(default = "default_ckpt")]
    pub checkpoint_every: u64,
    /// Checkpoints kept (the newest).
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// Steps between validation passes.
    #[serde(default = "default_ckpt")]
    pub valid_every: u64,
    /// Steps between log records.
    #[serde(default = "default_log")]
    pub log_every: u64,
    /// Run folder (default: `vocoder/` in `[output] dir`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A vocoder folder (a checkpoint) whose weights a new run starts from instead of fresh
    /// ones: for fine-tuning. Its configuration must be the section's.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// A model folder: the vocoder then learns from that model's reconstructions of the corpus
    /// (each utterance converted into its own voice) to the recorded audio, so that it learns
    /// to render the converter's output rather than clean log-mels. The reconstructions are
    /// computed once into a feature store beside the recipe's (`cache/<frontend hash>-recon-<model
    /// fingerprint>/`).
    #[serde(default)]
    pub finetune_model: Option<PathBuf>,
}

impl VocoderSection {
    /// The vocoder's shape for `size` and the model's frontend.
    ///
    /// # Errors
    /// An unknown size, named.
    pub fn vocoder_config(
        &self,
        fe: &voxswap_audio::FrontendConfig,
    ) -> std::result::Result<voxswap_model::VocoderConfig, String> {
        let mut cfg = match self.size.as_str() {
            "small" => voxswap_model::VocoderConfig::small(fe),
            "tiny" => voxswap_model::VocoderConfig::tiny(fe),
            other => return Err(format!("vocoder.size `{other}`: known sizes are small and tiny")),
        };
        cfg.phase = self.phase;
        cfg.f0_net = self.f0_net.clone();
        if let Some(h) = self.synthesis_hops {
            cfg.n_fft = h * fe.hop_length;
        }
        cfg.validate().map_err(|e| format!("[vocoder]: {e}"))?;
        Ok(cfg)
    }
}

fn default_vocoder_segment() -> usize {
    32
}
fn default_vocoder_size() -> String {
    "small".into()
}
fn default_lambda_f0() -> f64 {
    1.0
}

fn default_lambda_mel() -> f64 {
    45.0
}
fn default_lambda_fm() -> f64 {
    2.0
}

impl Recipe {
    /// The vocoder's run folder: `[vocoder] dir`, or `vocoder/` in the model's run folder.
    pub fn vocoder_dir(&self) -> Option<PathBuf> {
        let v = self.vocoder.as_ref()?;
        Some(v.dir.clone().unwrap_or_else(|| self.output.dir.join("vocoder")))
    }

    /// Reads a recipe; relative paths become relative to its folder.
    ///
    /// # Errors
    /// [`Error::Recipe`] for an unreadable file, invalid TOML, an unknown key or a bad value.
    pub fn load(path: &Path) -> Result<Self> {
        let err = |detail: String| Error::Recipe {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut r: Recipe = toml::from_str(&text).map_err(|e| {
            // One line: toml's own message draws the offending line under it.
            let line = e
                .span()
                .map_or(0, |sp| text[..sp.start.min(text.len())].lines().count().max(1));
            err(format!("invalid recipe (line {line}): {}", e.message()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut r.data.corpus, &mut r.data.cache, &mut r.output.dir]
            .into_iter()
            .chain(r.data.phonemes.as_mut())
            .chain(r.train.init_weights.as_mut())
            .chain(r.train.snapshot.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(v) = r.vocoder.as_mut() {
            for d in [&mut v.dir, &mut v.init_from, &mut v.finetune_model]
                .into_iter()
                .flatten()
            {
                if d.is_relative() {
                    *d = base.join(&*d);
                }
            }
        }
        r.validate().map_err(err)?;
        Ok(r)
    }

    /// The model configuration the recipe names. A causal model converts with refreshed
    /// passes of half the training segment (`norm_refresh`, see `StreamingConverter`), so that
    /// no output frame rests on more history than a training segment had.
    ///
    /// # Errors
    /// An unknown preset.
    pub fn model_config(&self) -> Result<ModelConfig> {
        let mut cfg = ModelConfig::preset(&self.model.preset)?;
        if let Some(c) = self.model.content_channels {
            cfg.content.c_out = c;
        }
        if let Some(k) = self.model.vq_codes {
            cfg.content.vq_codes = Some(k);
        }
        cfg.decoder.f0 |= self.model.f0;
        if cfg.temporal == voxswap_model::config::Temporal::Causal {
            let m = cfg.frame_multiple().max(1);
            let half = self.data.segment_frames / 2 / m * m;
            cfg.norm_refresh = Some(if half > 0 {
                half
            } else {
                self.data.segment_frames.max(m)
            });
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let cfg = self.model_config().map_err(|e| e.to_string())?;
        let m = cfg.frame_multiple();
        if self.data.segment_frames == 0 || self.data.segment_frames % m != 0 {
            return Err(format!(
                "data.segment_frames {} must be a positive multiple of {m}",
                self.data.segment_frames
            ));
        }
        if self.train.steps == 0 || self.train.batch_size == 0 {
            return Err("train.steps and train.batch_size must be positive".into());
        }
        if self.train.checkpoint_every == 0 || self.train.valid_every == 0 || self.train.log_every == 0 {
            return Err("train.checkpoint_every, valid_every and log_every must be positive".into());
        }
        for (key, w) in [
            ("content_warp", self.train.content_warp),
            ("speaker_warp", self.train.speaker_warp),
        ] {
            if !(0.0..1.0).contains(&w) {
                return Err(format!("train.{key} {w} must be at least 0 and below 1"));
            }
        }
        if !(self.train.lambda_adv >= 0.0 && self.train.lambda_adv.is_finite()) {
            return Err(format!(
                "train.lambda_adv {} must be a non-negative number",
                self.train.lambda_adv
            ));
        }
        if self.model.vq_codes.is_some() && self.train.lambda_kl != 0.0 {
            return Err(format!(
                "train.lambda_kl {} must be 0 with model.vq_codes: a quantised code is not sampled, and the KL term would pull its mean to 0",
                self.train.lambda_kl
            ));
        }
        if !(self.train.lambda_gan >= 0.0 && self.train.lambda_gan.is_finite()) {
            return Err(format!(
                "train.lambda_gan {} must be a non-negative number",
                self.train.lambda_gan
            ));
        }
        if !(self.train.lambda_cons >= 0.0 && self.train.lambda_cons.is_finite()) {
            return Err(format!(
                "train.lambda_cons {} must be a non-negative number",
                self.train.lambda_cons
            ));
        }
        if !(self.train.lambda_phone >= 0.0 && self.train.lambda_phone.is_finite()) {
            return Err(format!(
                "train.lambda_phone {} must be a non-negative number",
                self.train.lambda_phone
            ));
        }
        if self.train.lambda_phone > 0.0 && (self.data.phonemes.is_none() || self.train.phone_batch == 0) {
            return Err("train.lambda_phone needs data.phonemes (the transcripts) and train.phone_batch ≥ 1".into());
        }
        if !(self.train.denoise_snr_db.is_finite() && (0.0..=1.0).contains(&self.train.denoise_reverb)) {
            return Err("train.denoise_snr_db must be a number (0: off) and train.denoise_reverb from 0 to 1".into());
        }
        if !(0.0..=1.0).contains(&self.train.denoise_clean) {
            return Err("train.denoise_clean must be from 0 to 1".into());
        }
        if (self.train.denoise_reverb > 0.0 || self.train.denoise_clean > 0.0) && self.train.denoise_snr_db == 0.0 {
            return Err(
                "train.denoise_reverb and denoise_clean need train.denoise_snr_db (the denoising auto-encoder) on"
                    .into(),
            );
        }
        if self.train.keep_checkpoints == 0 {
            return Err("train.keep_checkpoints must be at least 1".into());
        }
        if let Some(v) = &self.vocoder {
            if v.steps == 0 || v.batch_size == 0 || v.segment_frames < 4 {
                return Err("vocoder.steps and batch_size must be positive, segment_frames at least 4".into());
            }
            if v.checkpoint_every == 0 || v.valid_every == 0 || v.log_every == 0 || v.keep_checkpoints == 0 {
                return Err(
                    "vocoder.checkpoint_every, valid_every, log_every and keep_checkpoints must be positive".into(),
                );
            }
            v.vocoder_config(&voxswap_audio::FrontendConfig::speech_16k())?;
            if !(v.lambda_mel >= 0.0 && v.lambda_mel.is_finite()) || v.lr.is_some_and(|l| !(l > 0.0 && l.is_finite())) {
                return Err("vocoder.lambda_mel must be a non-negative number and vocoder.lr a positive one".into());
            }
            if !(v.lambda_adv >= 0.0 && v.lambda_adv.is_finite() && v.lambda_fm >= 0.0 && v.lambda_fm.is_finite()) {
                return Err("vocoder.lambda_adv and vocoder.lambda_fm must be non-negative numbers".into());
            }
        }
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return Err(format!("optim.lr {} must be a positive number", self.optim.lr));
        }
        Ok(())
    }

    /// The KL weight at `step`.
    pub fn lambda_kl_at(&self, step: u64) -> f64 {
        if self.train.kl_anneal_steps == 0 {
            return self.train.lambda_kl;
        }
        self.train.lambda_kl * (step as f64 / self.train.kl_anneal_steps as f64).min(1.0)
    }
}
