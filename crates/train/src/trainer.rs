//! The training loop: data, model, loss, optimiser, checkpoints, logs and curves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use voxswap_audio::plot;
use voxswap_model::{init, AdaInVc, ModelConfig};

use crate::adversary::SpeakerAdversary;
use crate::data::PhoneUtt;
use crate::data::{load_pitch_store, load_store, scan_corpus, warp_batch, Dataset};
use crate::discriminator::MelDiscriminator;
use crate::error::file_err;
use crate::loss::ae_loss;
use crate::optim::Adam;
use crate::phonetic::{PhoneHead, Transcripts};
use crate::recipe::{Recipe, SpeakerReference};
use crate::step;

use crate::{checkpoint, Error, Result};

/// One line of `train.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LogRecord {
    /// A training step.
    Train {
        /// Step (counted from 1).
        step: u64,
        /// λ_rec · rec + λ_kl · kl.
        loss: f32,
        /// L1 reconstruction.
        rec: f32,
        /// KL term.
        kl: f32,
        /// KL weight at this step.
        lambda_kl: f64,
        /// The speaker adversary's cross-entropy (with `train.lambda_adv`): about ln(speakers)
        /// when the content code tells nothing of the speaker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adv: Option<f32>,
        /// The speaker-consistency loss (with `train.lambda_cons`): 1 − cosine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cons: Option<f32>,
        /// The phonetic head's CTC loss per phoneme (with `train.lambda_phone`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<f32>,
        /// The mel discriminator's loss for the decoder, `(D(made) − 1)²` (with
        /// `train.lambda_gan`, from `train.gan_start`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gen: Option<f32>,
        /// The mel discriminator's own loss (real towards 1, made towards 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disc: Option<f32>,
        /// The VQ loss (with `model.vq_codes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vq: Option<f32>,
        /// Learning rate.
        lr: f64,
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// Steps per second since the previous record.
        steps_per_s: f64,
    },
    /// A validation pass (content code mean, no sampling).
    Valid {
        /// Step.
        step: u64,
        /// λ_rec · rec + λ_kl · kl, with the final λ_kl.
        loss: f32,
        /// L1 reconstruction.
        rec: f32,
        /// KL term.
        kl: f32,
    },
    /// A training step of the vocoder.
    #[serde(rename = "vocoder_train")]
    VocoderTrain {
        /// Step (counted from 1).
        step: u64,
        /// λ_mel · mel + stft + λ_phase · phase.
        loss: f32,
        /// Mean absolute log-mel difference of the generated audio.
        mel: f32,
        /// Multi-resolution STFT loss.
        stft: f32,
        /// Phase loss (0 when the recipe has none).
        #[serde(default)]
        phase: f32,
        /// A source-filter vocoder's F0 error: mean absolute difference of natural-log F0s over
        /// the frames YIN finds voiced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        f0: Option<f32>,
        /// The discriminators' least-squares loss for the vocoder (with `vocoder.lambda_adv`,
        /// from `vocoder.adv_start`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adv: Option<f32>,
        /// Feature matching against the discriminators' layers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fm: Option<f32>,
        /// The discriminators' own loss.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disc: Option<f32>,
        /// Learning rate.
        lr: f64,
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// Steps per second since the previous record.
        steps_per_s: f64,
    },
    /// A validation pass of the vocoder (held-out utterances).
    #[serde(rename = "vocoder_valid")]
    VocoderValid {
        /// Step.
        step: u64,
        /// Mean absolute log-mel difference.
        mel: f32,
        /// Multi-resolution STFT loss.
        stft: f32,
        /// A source-filter vocoder's F0 error (as in training), its audio made at its own F0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        f0: Option<f32>,
    },
}

impl LogRecord {
    fn step(&self) -> u64 {
        match self {
            Self::Train { step, .. }
            | Self::Valid { step, .. }
            | Self::VocoderTrain { step, .. }
            | Self::VocoderValid { step, .. } => *step,
        }
    }
}

/// What the caller sees of a run as it goes (the CLI draws a progress bar from it).
pub trait Observer {
    /// Training begins (or resumes) at `start` of `total` steps.
    fn start(&mut self, _start: u64, _total: u64, _resumed_from: Option<&Path>) {}
    /// A log record was written.
    fn record(&mut self, _record: &LogRecord) {}
    /// A checkpoint was written.
    fn checkpoint(&mut self, _path: &Path) {}
    /// The device self-check passed (run before training on anything but the CPU).
    fn self_check(&mut self, _report: &crate::selfcheck::SelfCheck) {}
    /// Something the user should know about the run's set-up (one line).
    fn note(&mut self, _text: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// All steps done; the last checkpoint.
    Finished {
        /// The step reached.
        step: u64,
        /// The checkpoint written last.
        checkpoint: PathBuf,
    },
    /// Stopped on request (Ctrl-C) after writing a checkpoint.
    Interrupted {
        /// The step reached.
        step: u64,
        /// The checkpoint written on the way out.
        checkpoint: PathBuf,
    },
}

/// The run folder's layout.
pub fn checkpoints_dir(recipe: &Recipe) -> PathBuf {
    recipe.output.dir.join("checkpoints")
}

/// Scans the recipe's corpus and fills its feature cache (in parallel; cached files are only
/// read). Returns the utterance count and the total frames, without training.
///
/// # Errors
/// A corpus that cannot be scanned or a file that cannot be decoded, named.
pub fn extract_features(recipe: &Recipe, features: &(dyn Fn(usize, usize) + Sync)) -> Result<(usize, usize)> {
    let cfg = recipe.model_config()?;
    let utts = scan_corpus(&recipe.data.corpus)?;
    let load = if cfg.decoder.f0 { load_pitch_store } else { load_store };
    let (store, ids, _) = load(&recipe.data.corpus, &utts, &recipe.data.cache, &cfg.frontend, features)?;
    Ok((utts.len(), ids.iter().map(|&id| store.entry(id).frames).sum()))
}

/// Runs (or resumes, from the newest checkpoint in the run folder) the recipe's training on
/// `device`. `stop` is polled every step: when set, a checkpoint is written and the run returns
/// [`Outcome::Interrupted`]. `features` reports feature-cache progress (done, total).
///
/// # Errors
/// Bad data, an unwritable run folder, or a diverging loss ([`Error::Diverged`], with the last
/// good checkpoint kept).
pub fn train(
    recipe: &Recipe,
    device: &Device,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
    features: &(dyn Fn(usize, usize) + Sync),
) -> Result<Outcome> {
    // Subnormal floats appear as training goes on and can slow each operation on them.
    voxswap_model::par::flush_denormals();
    if !device.is_cpu() {
        let r = crate::selfcheck::check_device(device)?;
        if !r.passed() {
            return Err(crate::Error::DeviceMismatch {
                device: format!("{device:?}"),
                worst: r.worst,
                param: r.worst_param,
                gradients: r.gradients,
            });
        }
        observer.self_check(&r);
    }
    let data = load_dataset(recipe, features)?;
    train_on(recipe, &data, device, stop, observer)
}

/// The recipe's dataset: its corpus scanned, its feature store brought up to date (`features`
/// hears the progress), split into training and validation utterances.
///
/// # Errors
/// As [`extract_features`], and a corpus without a training utterance long enough.
pub fn load_dataset(recipe: &Recipe, features: &(dyn Fn(usize, usize) + Sync)) -> Result<Dataset> {
    let cfg = recipe.model_config()?;
    let utts = scan_corpus(&recipe.data.corpus)?;
    // A model that reads the source's pitch trains on frames holding the log-mel and the pitch
    // channels together (split again by `ModelTask::step`).
    let load = if cfg.decoder.f0 { load_pitch_store } else { load_store };
    let (store, ids, _) = load(&recipe.data.corpus, &utts, &recipe.data.cache, &cfg.frontend, features)?;
    Dataset::from_store(
        &recipe.data.corpus,
        &utts,
        store,
        &ids,
        recipe.data.segment_frames,
        recipe.data.valid_per_speaker,
    )
}

/// [`train`] on a dataset already made (from a feature store, or in memory), after the device
/// check.
///
/// # Errors
/// As [`train`].
pub fn train_on(
    recipe: &Recipe,
    data: &Dataset,
    device: &Device,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let cfg = recipe.model_config()?;
    std::fs::create_dir_all(&recipe.output.dir)
        .map_err(|e| file_err(&recipe.output.dir, format!("cannot create: {e}")))?;

    let vars = VarMap::new();
    let model = AdaInVc::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, device))?;
    init::init_pytorch_like(&vars, recipe.train.seed)?;
    // The phonetic head's transcripts (train.lambda_phone), matched to the training utterances.
    let phones = match (&recipe.data.phonemes, recipe.train.lambda_phone > 0.0) {
        (Some(path), true) => {
            let t = Transcripts::read(path)?;
            let (list, missing) = data.transcribed(&t, cfg.frame_multiple());
            if list.is_empty() {
                return Err(file_err(
                    path,
                    "transcribes none of the training utterances (paths relative to data.corpus)",
                ));
            }
            observer.note(&format!(
                "phonetic head: {} phonemes, {} training utterances transcribed, {missing} not",
                t.inventory.len(),
                list.len()
            ));
            Some((t, list))
        }
        _ => None,
    };
    // The training-only layers (train.lambda_adv, train.lambda_phone): weights in a map of
    // their own, seeded apart from the model's so that the model starts as it would without
    // them (in name order: the adversary's values do not depend on the head's presence).
    let aux = (recipe.train.lambda_adv > 0.0 || phones.is_some() || recipe.train.lambda_gan > 0.0).then(VarMap::new);
    let (adversary, head, critic) = match &aux {
        Some(aux) => {
            let vb = VarBuilder::from_varmap(aux, DType::F32, device);
            let a = (recipe.train.lambda_adv > 0.0)
                .then(|| SpeakerAdversary::new(cfg.content.c_out, data.n_speakers(), vb.pp("adversary")))
                .transpose()?;
            let h = phones
                .as_ref()
                .map(|(t, _)| PhoneHead::new(cfg.content.c_out, t.n_classes(), vb.pp("phonetic")))
                .transpose()?;
            let d = (recipe.train.lambda_gan > 0.0)
                .then(|| MelDiscriminator::new(cfg.frontend.n_mels, vb.pp("discriminator")))
                .transpose()?;
            init::init_pytorch_like(aux, recipe.train.seed ^ 0xad7e_5a4d)?;
            (a, h, d)
        }
        None => (None, None, None),
    };
    let maps: Vec<&VarMap> = std::iter::once(&vars).chain(aux.as_ref()).collect();
    let params = crate::optim::named_vars(&maps);
    let trained: Vec<Var> = params.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = Adam::new(params, recipe.optim.clone())?;
    let ckpt_dir = checkpoints_dir(recipe);
    let latest = checkpoint::list(&ckpt_dir).pop();
    let mut last_ckpt: Option<(u64, PathBuf)> = None;
    if let Some((_, path)) = &latest {
        let state = checkpoint::restore(path, &cfg, &vars, aux.as_ref(), &mut opt, device)?;
        if state.seed != recipe.train.seed {
            return Err(file_err(
                path,
                format!(
                    "was trained with seed {}, the recipe says {}",
                    state.seed, recipe.train.seed
                ),
            ));
        }
        last_ckpt = Some((state.step, path.clone()));
    } else if let Some(step) = warm_start(recipe, &vars, device, observer)? {
        opt.step = step;
    }
    let start = opt.step;
    let log_path = recipe.output.dir.join("train.jsonl");
    let mut log = Log::open(&log_path, start)?;
    observer.start(start, recipe.train.steps, last_ckpt.as_ref().map(|(_, p)| p.as_path()));
    let valid = data.valid_batches(recipe.train.batch_size, device)?;
    let mut task = ModelTask {
        recipe,
        cfg: &cfg,
        data,
        model: &model,
        trained: &trained,
        adversary: adversary.as_ref(),
        critic: critic.as_ref(),
        phonetic: head.as_ref().zip(phones.as_ref().map(|(_, l)| l.as_slice())),
        last_phone: 0.0,
        valid: &valid,
        vars: &vars,
        aux: aux.as_ref(),
        device,
        last: None,
        lambda_kl: 0.0,
        corruption: if recipe.train.denoise_snr_db != 0.0 {
            Some(crate::augment::Corruption::new(&cfg.frontend, recipe.train.seed)?)
        } else {
            None
        },
    };
    let schedule = Schedule {
        total: recipe.train.steps,
        log_every: recipe.train.log_every,
        valid_every: recipe.train.valid_every,
        checkpoint_every: recipe.train.checkpoint_every,
    };
    run_loop(
        &mut task,
        &mut opt,
        &schedule,
        stop,
        &mut log,
        &recipe.output.dir.join("loss.png"),
        observer,
        last_ckpt,
    )
}

/// The steps, and how often a run logs, validates and writes checkpoints.
pub(crate) struct Schedule {
    pub(crate) total: u64,
    pub(crate) log_every: u64,
    pub(crate) valid_every: u64,
    pub(crate) checkpoint_every: u64,
}

/// What a training run steps through (the AdaIN-VC model, the vocoder); the loop around it,
/// [`run_loop`], is shared: stop requests, divergence, logs, validation and checkpoints.
pub(crate) trait Task {
    /// Forward and backward of step `step` (counted from 1): the gradients and the loss.
    fn step(&mut self, step: u64) -> Result<(GradStore, f32)>;
    /// The log record of the step just taken.
    fn record(&self, step: u64, lr: f64, grad_norm: f64, steps_per_s: f64) -> LogRecord;
    /// A validation pass, if there is anything to validate on.
    fn validate(&mut self, step: u64) -> Result<Option<LogRecord>>;
    /// Writes a checkpoint of the weights and `opt`; returns its folder.
    fn save(&mut self, opt: &Adam) -> Result<PathBuf>;
}

/// Runs `task` from `opt.step` to `schedule.total`. `stop` is polled every step: when set, a
/// checkpoint is written (unless one of this very step exists) and the run returns
/// [`Outcome::Interrupted`]. A loss that is not a finite number ends the run with
/// [`Error::Diverged`], the last checkpoint kept.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_loop(
    task: &mut dyn Task,
    opt: &mut Adam,
    schedule: &Schedule,
    stop: &AtomicBool,
    log: &mut Log,
    png: &Path,
    observer: &mut dyn Observer,
    mut last_ckpt: Option<(u64, PathBuf)>,
) -> Result<Outcome> {
    let total = schedule.total;
    let mut tick = Instant::now();
    let mut tick_step = opt.step;
    let save = |task: &mut dyn Task, opt: &Adam, log: &Log, observer: &mut dyn Observer| -> Result<PathBuf> {
        let p = task.save(opt)?;
        log.plot(png)?;
        observer.checkpoint(&p);
        Ok(p)
    };
    while opt.step < total {
        if stop.load(Ordering::Relaxed) {
            // A checkpoint of this very step exists when the stop comes right after one.
            let p = match &last_ckpt {
                Some((step, p)) if *step == opt.step => p.clone(),
                _ => save(task, opt, log, observer)?,
            };
            return Ok(Outcome::Interrupted {
                step: opt.step,
                checkpoint: p,
            });
        }
        let step = opt.step + 1;
        let (grads, value) = task.step(step)?;
        if !value.is_finite() {
            let checkpoint = last_ckpt
                .as_ref()
                .map_or("none written yet".into(), |(_, p)| p.display().to_string());
            return Err(Error::Diverged {
                step,
                loss: value,
                checkpoint,
            });
        }
        let info = opt.step(&grads, total)?;
        if step % schedule.log_every == 0 || step == total {
            let secs = tick.elapsed().as_secs_f64().max(1e-9);
            let rec = task.record(step, info.lr, info.grad_norm, (step - tick_step) as f64 / secs);
            log.write(&rec)?;
            observer.record(&rec);
            tick = Instant::now();
            tick_step = step;
        }
        if step % schedule.valid_every == 0 || step == total {
            if let Some(rec) = task.validate(step)? {
                log.write(&rec)?;
                observer.record(&rec);
            }
        }
        if step % schedule.checkpoint_every == 0 || step == total {
            last_ckpt = Some((opt.step, save(task, opt, log, observer)?));
        }
    }
    let checkpoint = match last_ckpt {
        Some((_, p)) => p,
        None => save(task, opt, log, observer)?,
    };
    Ok(Outcome::Finished {
        step: opt.step,
        checkpoint,
    })
}

/// A frequency-warp factor drawn log-uniformly from `1/(1+w) ..= 1+w`.
fn warp_factor(rng: &mut impl Rng, w: f64) -> f64 {
    let span = (1.0 + w).ln();
    rng.random_range(-span..=span).exp()
}

/// AdaIN-VC's training as a [`Task`].
struct ModelTask<'a> {
    recipe: &'a Recipe,
    cfg: &'a ModelConfig,
    data: &'a Dataset,
    model: &'a AdaInVc,
    trained: &'a [Var],
    adversary: Option<&'a SpeakerAdversary>,
    /// The mel discriminator.
    critic: Option<&'a MelDiscriminator>,
    /// The phonetic head and the transcribed training utterances.
    phonetic: Option<(&'a PhoneHead, &'a [PhoneUtt])>,
    /// The last step's CTC loss.
    last_phone: f32,
    valid: &'a [Tensor],
    vars: &'a VarMap,
    aux: Option<&'a VarMap>,
    device: &'a Device,
    /// The last step's loss parts, for its record.
    last: Option<step::StepGrads>,
    lambda_kl: f64,
    /// The denoising auto-encoder's corruption of the content encoder's input.
    corruption: Option<crate::augment::Corruption>,
}

impl Task for ModelTask<'_> {
    fn step(&mut self, step: u64) -> Result<(GradStore, f32)> {
        let (recipe, cfg, data, device) = (self.recipe, self.cfg, self.data, self.device);
        let code_frames = recipe.data.segment_frames / cfg.frame_multiple();
        // Everything random in a step derives from (seed, step): a resumed run draws exactly
        // what an uninterrupted one would.
        let mut rng = rand::rngs::StdRng::seed_from_u64(recipe.train.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ step);
        let picks = data.pick(&mut rng, recipe.train.batch_size);
        let (x, pitch) = split_pitch(&data.segments(&picks, device)?, cfg)?;
        let n_noise = recipe.train.batch_size * cfg.content.c_out * code_frames;
        let noise: Vec<f32> = (0..n_noise).map(|_| StandardNormal.sample(&mut rng)).collect();
        let noise = Tensor::from_vec(noise, (recipe.train.batch_size, cfg.content.c_out, code_frames), device)?;
        // Warp factors are drawn after the noise, and references after the warps, so that runs
        // without them draw what they always drew.
        let mut factors = |w: f64| -> Option<Vec<f64>> {
            (w != 0.0).then(|| (0..recipe.train.batch_size).map(|_| warp_factor(&mut rng, w)).collect())
        };
        let warp = |x: &Tensor, f: &Option<Vec<f64>>| -> Result<Tensor> {
            match f {
                Some(f) => warp_batch(x, f, &cfg.frontend),
                None => Ok(x.clone()),
            }
        };
        let voice = factors(recipe.train.speaker_warp);
        let x = warp(&x, &voice)?;
        let content = warp(&x, &factors(recipe.train.content_warp))?;
        let speaker = match recipe.train.speaker_reference {
            SpeakerReference::Same => x.clone(),
            // The reference is warped like its segment: the same (perhaps made-up) voice.
            SpeakerReference::Other => warp(
                &split_pitch(&data.segments(&data.references(&mut rng, &picks), device)?, cfg)?.0,
                &voice,
            )?,
        };
        // The denoising auto-encoder's corruption, drawn last (runs without it draw as before).
        let content = match &self.corruption {
            Some(c) => c.apply(
                &content,
                &mut rng,
                recipe.train.denoise_snr_db,
                recipe.train.denoise_reverb,
                recipe.train.denoise_clean,
            )?,
            None => content,
        };
        self.lambda_kl = recipe.lambda_kl_at(step);
        let speakers = match self.adversary {
            Some(_) => Some(Tensor::from_vec(
                picks.iter().map(|p| p.speaker as u32).collect::<Vec<u32>>(),
                picks.len(),
                device,
            )?),
            None => None,
        };
        // One batch shard per CPU thread (crate::step).
        let batch = step::StepBatch {
            target: x,
            content,
            speaker,
            noise,
            speakers,
            pitch,
        };
        let mut sg = step::forward_backward_with(
            self.model,
            self.trained,
            &batch,
            recipe.train.lambda_rec,
            self.lambda_kl,
            step::Extras {
                adversary: self.adversary.map(|a| (a, recipe.train.lambda_adv)),
                lambda_cons: recipe.train.lambda_cons,
                gan: self
                    .critic
                    .filter(|_| step > recipe.train.gan_start)
                    .map(|d| (d, recipe.train.lambda_gan)),
            },
        )?;
        let mut grads = std::mem::take(&mut sg.grads);
        let mut value = sg.total;
        // The phonetic head reads whole utterances, drawn last (runs without it draw as before),
        // the content encoder's frequency warp applied as to the segments.
        if let Some((head, list)) = self.phonetic {
            let mut mels = Vec::with_capacity(recipe.train.phone_batch);
            let mut labels = Vec::with_capacity(recipe.train.phone_batch);
            for _ in 0..recipe.train.phone_batch {
                let p = &list[rng.random_range(0..list.len())];
                let mel = split_pitch(&data.utterance(p.speaker, p.utt, cfg.frame_multiple(), device)?, cfg)?.0;
                let mel = if recipe.train.content_warp != 0.0 {
                    let f = warp_factor(&mut rng, recipe.train.content_warp);
                    warp_batch(&mel, &[f], &cfg.frontend)?
                } else {
                    mel
                };
                mels.push(mel);
                labels.push(p.labels.clone());
            }
            let lambda = recipe.train.lambda_phone;
            let (g, ctc) = step::phonetic_backward(self.model, head, self.trained, &mels, &labels, lambda)?;
            step::add_grads(&mut grads, g, self.trained)?;
            value += (lambda as f32) * ctc;
            self.last_phone = ctc;
        }
        sg.total = value;
        self.last = Some(sg);
        Ok((grads, value))
    }

    fn record(&self, step: u64, lr: f64, grad_norm: f64, steps_per_s: f64) -> LogRecord {
        let (loss, rec, kl, adv, cons, gen, disc, vq) = self
            .last
            .as_ref()
            .map_or((f32::NAN, f32::NAN, f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0), |s| {
                (s.total, s.rec, s.kl, s.adv, s.cons, s.gen, s.disc, s.vq)
            });
        let gan = self.critic.is_some() && step > self.recipe.train.gan_start;
        LogRecord::Train {
            step,
            loss,
            rec,
            kl,
            lambda_kl: self.lambda_kl,
            adv: self.adversary.is_some().then_some(adv),
            phone: self.phonetic.is_some().then_some(self.last_phone),
            cons: (self.recipe.train.lambda_cons > 0.0).then_some(cons),
            gen: gan.then_some(gen),
            disc: gan.then_some(disc),
            vq: self.cfg.content.vq_codes.is_some().then_some(vq),
            lr,
            grad_norm,
            steps_per_s,
        }
    }

    fn validate(&mut self, step: u64) -> Result<Option<LogRecord>> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        validate(self.model, self.cfg, self.valid, self.recipe, step).map(Some)
    }

    fn save(&mut self, opt: &Adam) -> Result<PathBuf> {
        checkpoint::save(
            &checkpoints_dir(self.recipe),
            self.cfg,
            self.vars,
            self.aux,
            opt,
            self.recipe.train.seed,
            self.recipe.train.keep_checkpoints,
        )
    }
}

/// The snapshot's step file (beside its weights).
pub const SNAPSHOT_STEP_FILE: &str = "step";

/// Starts a run that has no checkpoint from the recipe's snapshot (weights and step) or its
/// `init_weights` (weights, step 0), whichever it has (see [`crate::recipe::TrainSection`]).
/// Returns the step to go on from when a snapshot was read.
fn warm_start(recipe: &Recipe, vars: &VarMap, device: &Device, observer: &mut dyn Observer) -> Result<Option<u64>> {
    let weights = |p: &Path| -> PathBuf {
        if p.is_dir() {
            p.join(voxswap_model::io::WEIGHTS_FILE)
        } else {
            p.to_path_buf()
        }
    };
    if let Some(dir) = &recipe.train.snapshot {
        let step_path = dir.join(SNAPSHOT_STEP_FILE);
        if step_path.exists() {
            let text =
                std::fs::read_to_string(&step_path).map_err(|e| file_err(&step_path, format!("cannot read: {e}")))?;
            let step: u64 = text
                .trim()
                .parse()
                .map_err(|_| file_err(&step_path, format!("`{}` is not a step number", text.trim())))?;
            let (taken, widened) = load_weights(&weights(dir), vars, device)?;
            observer.note(&format!(
                "no checkpoint: resumed from the snapshot in {} at step {step} ({taken} tensors, {widened} widened; optimiser state starts afresh)",
                dir.display()
            ));
            return Ok(Some(step));
        }
    }
    if let Some(p) = &recipe.train.init_weights {
        let (taken, widened) = load_weights(&weights(p), vars, device)?;
        observer.note(&format!(
            "started from the weights in {} ({taken} tensors taken, {widened} widened with zeros)",
            p.display()
        ));
    }
    Ok(None)
}

/// Copies the tensors of the safetensors file `path` into `vars` by name: the same shape is
/// taken whole; a variable wider only in dimension 1 (an input layer that reads more channels)
/// takes the file's values in its first channels and zeros in the rest. Returns (taken,
/// widened).
///
/// # Errors
/// An unreadable file; a tensor whose shape fits neither way.
fn load_weights(path: &Path, vars: &VarMap, device: &Device) -> Result<(usize, usize)> {
    let file = candle_core::safetensors::load(path, device)
        .map_err(|e| file_err(path, format!("cannot read weights: {e}")))?;
    let data = vars
        .data()
        .lock()
        .map_err(|_| crate::Error::Candle(candle_core::Error::Msg("variable map poisoned".into())))?;
    let (mut taken, mut widened) = (0, 0);
    for (name, var) in data.iter() {
        let Some(t) = file.get(name) else { continue };
        let t = t.to_dtype(DType::F32)?;
        let (have, want) = (t.dims().to_vec(), var.dims().to_vec());
        if have == want {
            var.set(&t)?;
            taken += 1;
        } else if have.len() == want.len()
            && have.len() >= 2
            && have[1] < want[1]
            && have.iter().zip(&want).enumerate().all(|(i, (a, b))| i == 1 || a == b)
        {
            let mut pad = want.clone();
            pad[1] = want[1] - have[1];
            var.set(&Tensor::cat(&[&t, &Tensor::zeros(pad, DType::F32, device)?], 1)?)?;
            widened += 1;
        } else {
            return Err(file_err(
                path,
                format!("`{name}` is {have:?} in the file and {want:?} in the model"),
            ));
        }
    }
    if taken + widened == 0 {
        return Err(file_err(path, "holds none of the model's tensors"));
    }
    Ok((taken, widened))
}

/// A batch of the dataset's frames `[B, bands, T]` as the log-mel and, for a model that reads
/// the source's pitch, the pitch channels after it (see [`load_pitch_store`]).
fn split_pitch(x: &Tensor, cfg: &ModelConfig) -> Result<(Tensor, Option<Tensor>)> {
    let n = cfg.frontend.n_mels;
    let bands = x.dim(1)?;
    let p = cfg.decoder.pitch_channels();
    if bands != n + p {
        return Err(crate::Error::Candle(candle_core::Error::Msg(format!(
            "the features have {bands} bands a frame, the model reads {n} mel bands and {p} pitch channels"
        ))));
    }
    if p == 0 {
        return Ok((x.clone(), None));
    }
    Ok((x.narrow(1, 0, n)?.contiguous()?, Some(x.narrow(1, n, p)?.contiguous()?)))
}

fn validate(model: &AdaInVc, cfg: &ModelConfig, valid: &[Tensor], recipe: &Recipe, step: u64) -> Result<LogRecord> {
    let (mut rec, mut kl, mut n) = (0.0f32, 0.0f32, 0.0f32);
    for x in valid {
        let (x, pitch) = split_pitch(x, cfg)?;
        let x = &x;
        let (b, _, t) = x.dims3()?;
        let noise = Tensor::zeros((b, cfg.content.c_out, t / cfg.frame_multiple()), DType::F32, x.device())?;
        let out = model.forward_pitched(x, x, x, &noise, pitch.as_ref())?;
        let l = ae_loss(x, &out, recipe.train.lambda_rec, recipe.train.lambda_kl)?;
        rec += l.rec.to_scalar::<f32>()? * b as f32;
        kl += l.kl.to_scalar::<f32>()? * b as f32;
        n += b as f32;
    }
    let (rec, kl) = (rec / n, kl / n);
    let loss = (recipe.train.lambda_rec as f32) * rec + (recipe.train.lambda_kl as f32) * kl;
    Ok(LogRecord::Valid { step, loss, rec, kl })
}

/// `train.jsonl`: records of steps up to the resumed step are kept, later ones (from a run that
/// went past its last checkpoint) are dropped, so the curves describe one consistent run.
pub(crate) struct Log {
    path: PathBuf,
    records: Vec<LogRecord>,
    file: std::fs::File,
}

impl Log {
    pub(crate) fn open(path: &Path, start: u64) -> Result<Self> {
        let records: Vec<LogRecord> = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| serde_json::from_str::<LogRecord>(l).ok())
                .filter(|r| r.step() <= start)
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut text = String::new();
        for r in &records {
            text.push_str(&serde_json::to_string(r).map_err(|e| file_err(path, e))?);
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| file_err(path, format!("cannot write: {e}")))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| file_err(path, format!("cannot write: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            records,
            file,
        })
    }

    fn write(&mut self, r: &LogRecord) -> Result<()> {
        let line = serde_json::to_string(r).map_err(|e| file_err(&self.path, e))?;
        writeln!(self.file, "{line}").map_err(|e| file_err(&self.path, format!("cannot write: {e}")))?;
        self.records.push(r.clone());
        Ok(())
    }

    fn plot(&self, png: &Path) -> Result<()> {
        let mut train = Vec::new();
        let mut valid = Vec::new();
        let mut title = "L1 reconstruction loss";
        for r in &self.records {
            match r {
                LogRecord::Train { step, rec, .. } => train.push((*step as f64, f64::from(*rec))),
                LogRecord::Valid { step, rec, .. } => valid.push((*step as f64, f64::from(*rec))),
                LogRecord::VocoderTrain { step, mel, .. } => {
                    title = "log-mel L1 of the generated audio";
                    train.push((*step as f64, f64::from(*mel)));
                }
                LogRecord::VocoderValid { step, mel, .. } => valid.push((*step as f64, f64::from(*mel))),
            }
        }
        Ok(plot::loss_curves(
            png,
            title,
            &[("train".to_string(), train), ("validation".to_string(), valid)],
        )?)
    }
}

#[cfg(test)]
mod warm_start_tests {
    use super::*;
    use voxswap_model::init;

    /// Weights of a model without pitch input start a pitch-conditioned one: its decoder input
    /// widened with zeros, so that it converts exactly as the old model whatever the pitch.
    #[test]
    fn widened_weights_convert_as_the_old_model() {
        let dev = Device::Cpu;
        let old_vars = VarMap::new();
        let old = AdaInVc::new(
            &ModelConfig::tiny_stream(),
            VarBuilder::from_varmap(&old_vars, DType::F32, &dev),
        )
        .unwrap();
        init::init_pytorch_like(&old_vars, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        old_vars.save(&path).unwrap();
        let vars = VarMap::new();
        let new = AdaInVc::new(
            &ModelConfig::tiny_f0(),
            VarBuilder::from_varmap(&vars, DType::F32, &dev),
        )
        .unwrap();
        init::init_pytorch_like(&vars, 9).unwrap();
        let (taken, widened) = load_weights(&path, &vars, &dev).unwrap();
        assert_eq!(widened, 1);
        assert_eq!(taken + widened, old_vars.all_vars().len());
        let x = Tensor::randn(0f32, 1.0, (1, 80, 16), &dev).unwrap();
        let p = Tensor::randn(0f32, 1.0, (1, 2, 16), &dev).unwrap();
        let spk = old.speaker.forward(&x).unwrap();
        let a = old.convert(&x, &spk).unwrap();
        let b = new.convert_pitched(&x, &spk, Some(&p)).unwrap();
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "{d}");
        // A tensor that fits neither way is refused, by name.
        let small = VarMap::new();
        let mut cfg = ModelConfig::tiny_stream();
        cfg.decoder.c_h = 8;
        AdaInVc::new(&cfg, VarBuilder::from_varmap(&small, DType::F32, &dev)).unwrap();
        let err = load_weights(&path, &small, &dev).unwrap_err().to_string();
        assert!(err.contains("in the file"), "{err}");
    }
}
