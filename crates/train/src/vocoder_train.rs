//! Training the neural vocoder (`voxswap train --vocoder`, a recipe's `[vocoder]` section) on
//! the recipe's corpus, through the same loop as the model ([`crate::trainer`]): exact resume
//! from atomic checkpoints, Ctrl-C, a stop on a non-finite loss, `train.jsonl` and `loss.png`.
//!
//! Each step reads `batch_size` random segments of `segment_frames` frames: the log-mel of the
//! whole utterance (the frontend's, as conversion feeds the vocoder) cut to the segment, and the
//! audio under it; the loss is the log-mel L1 of the generated audio plus the multi-resolution
//! STFT loss ([`crate::vocoder_loss`]). Utterances are decoded as they are drawn, so memory does
//! not grow with the corpus.
//!
//! Fine-tuning (`init_from`, `finetune_model`): the run starts from a trained vocoder's weights,
//! and its input mels are a model's reconstructions of the utterances (each converted into its
//! own voice, as `convert` would render it) while the target stays the recording, so that the
//! vocoder learns to render the converter's output, artefacts included, as clean speech.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use voxswap_audio::{read_mono, resample, ChannelMix, FrontendConfig, LogMel};
use voxswap_model::excitation::F0_REF;
use voxswap_model::vocoder::{new_trainable, NeuralVocoder, PhaseMode, VocoderConfig};

use crate::checkpoint;
use std::collections::HashMap;

use crate::data::{frontend_hash, load_store, scan_corpus};
use crate::error::file_err;
use crate::optim::Adam;
use crate::recipe::{Recipe, VocoderSection};
use crate::step::sharded;
use crate::store::FeatureStore;
use crate::trainer::{run_loop, Log, LogRecord, Observer, Outcome, Schedule, Task};
use crate::vocoder_gan::{discriminator_loss, generator_losses, WaveDiscriminators};
use crate::vocoder_loss::VocoderLoss;
use crate::{Error, Result};

/// Held-out segments validated on at most.
const MAX_VALID: usize = 32;

/// Trains (or resumes) the recipe's vocoder on `device` (see the module docs).
///
/// # Errors
/// A recipe without `[vocoder]`, bad data, an unwritable run folder, a diverging loss.
pub fn train_vocoder(
    recipe: &Recipe,
    device: &Device,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    voxswap_model::par::flush_denormals();
    if !device.is_cpu() {
        // The model's device self-check covers its own layers, not the vocoder's.
        return Err(Error::Recipe {
            path: recipe.output.dir.clone(),
            detail: format!("vocoder training runs on the CPU only for now ({device:?} is unchecked)"),
        });
    }
    let (Some(v), Some(dir)) = (recipe.vocoder.as_ref(), recipe.vocoder_dir()) else {
        return Err(Error::Recipe {
            path: recipe.output.dir.clone(),
            detail: "the recipe has no [vocoder] section".into(),
        });
    };
    let fe = recipe.model_config()?.frontend;
    let cfg = v.vocoder_config(&fe).map_err(|detail| Error::Recipe {
        path: recipe.output.dir.clone(),
        detail,
    })?;
    let utts = scan_corpus(&recipe.data.corpus)?;
    // The last `valid_per_speaker` utterances of each speaker are held out, as for the model.
    let mut train = Vec::new();
    let mut valid = Vec::new();
    let mut i = 0;
    while i < utts.len() {
        let j = (i..utts.len())
            .find(|&j| utts[j].speaker != utts[i].speaker)
            .unwrap_or(utts.len());
        let n_valid = recipe.data.valid_per_speaker.min(j - i - 1);
        train.extend(utts[i..j - n_valid].iter().map(|u| u.path.clone()));
        valid.extend(utts[j - n_valid..j].iter().map(|u| u.path.clone()));
        i = j;
    }
    std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, format!("cannot create: {e}")))?;
    let vars = VarMap::new();
    let vocoder = new_trainable(&cfg, &vars, v.seed, device)?;
    // The discriminators (vocoder.lambda_adv): weights of their own, seeded apart, so that the
    // vocoder starts as it would without them.
    let disc_vars = (v.lambda_adv > 0.0).then(VarMap::new);
    let disc = match &disc_vars {
        Some(dv) => {
            let d = WaveDiscriminators::new(VarBuilder::from_varmap(dv, DType::F32, device).pp("disc"))?;
            voxswap_model::init::init_pytorch_like(dv, v.seed ^ 0xd15c_0000)?;
            Some(d)
        }
        None => None,
    };
    let maps: Vec<&VarMap> = std::iter::once(&vars).chain(disc_vars.as_ref()).collect();
    let params = crate::optim::named_vars(&maps);
    let trained: Vec<Var> = params.iter().map(|(_, v)| v.clone()).collect();
    let mut optim = recipe.optim.clone();
    if let Some(lr) = v.lr {
        optim.lr = lr;
    }
    let mut opt = Adam::new(params, optim)?;
    let ckpt_dir = dir.join("checkpoints");
    let mut last_ckpt = None;
    if let Some((_, path)) = checkpoint::list(&ckpt_dir).pop() {
        let state = checkpoint::read_state(&path)?;
        if state.seed != v.seed {
            return Err(file_err(
                &path,
                format!("was trained with seed {}, the recipe says {}", state.seed, v.seed),
            ));
        }
        set_weights(&path, &cfg, &vars, device, "")?;
        let aux = path.join(checkpoint::AUX_FILE);
        match (&disc_vars, aux.is_file()) {
            (Some(dv), true) => set_disc_weights(&aux, dv, device)?,
            (Some(_), false) => {
                return Err(file_err(
                    &path,
                    "was trained without the discriminators (vocoder.lambda_adv): start a new run from it with vocoder.init_from",
                ))
            }
            (None, true) => {
                return Err(file_err(
                    &path,
                    "was trained with the discriminators (vocoder.lambda_adv), which the recipe leaves out",
                ))
            }
            (None, false) => {}
        }
        checkpoint::restore_optim(&path, &mut opt, &state, device)?;
        last_ckpt = Some((state.step, path));
    }
    if last_ckpt.is_none() {
        if let Some(from) = &v.init_from {
            set_weights(from, &cfg, &vars, device, "vocoder.init_from: ")?;
        }
    }
    let recon = match &v.finetune_model {
        Some(m) => Some(Recon::build(m, recipe, &utts, &fe)?),
        None => None,
    };
    let start = opt.step;
    let mut log = Log::open(&dir.join("train.jsonl"), start)?;
    observer.start(
        start,
        v.steps,
        last_ckpt.as_ref().map(|(_, p): &(u64, PathBuf)| p.as_path()),
    );
    let mut loss = VocoderLoss::with_phase(&fe, v.lambda_mel, v.lambda_phase, cfg.n_fft, device)?;
    // Integrated phases start anywhere: only their advance is compared.
    loss.phase_frequency_only = cfg.phase == voxswap_model::vocoder::PhaseMode::Integrated;
    let mut task = VocoderTask {
        section: v,
        fe: fe.clone(),
        logmel: LogMel::new(&fe)?,
        cfg: cfg.clone(),
        vocoder,
        vars: &vars,
        trained,
        disc: disc.as_ref().zip(disc_vars.as_ref()),
        loss,
        train,
        valid_set: valid_segments(
            &valid,
            &fe,
            v.segment_frames,
            recon.as_ref(),
            cfg.phase == PhaseMode::Source,
        )?,
        recon,
        f0_cache: HashMap::new(),
        device: device.clone(),
        ckpt_dir,
        last: [f32::NAN; 8],
        adversarial: false,
    };
    if task.train.is_empty() {
        return Err(Error::Corpus {
            path: recipe.data.corpus.clone(),
            detail: "no training utterances for the vocoder".into(),
        });
    }
    let schedule = Schedule {
        total: v.steps,
        log_every: v.log_every,
        valid_every: v.valid_every,
        checkpoint_every: v.checkpoint_every,
    };
    run_loop(
        &mut task,
        &mut opt,
        &schedule,
        stop,
        &mut log,
        &dir.join("loss.png"),
        observer,
        last_ckpt,
    )
}

/// Sets the discriminators' weights `vars` to those saved in `path`.
fn set_disc_weights(path: &Path, vars: &VarMap, device: &Device) -> Result<()> {
    let saved = candle_core::safetensors::load(path, device)
        .map_err(|e| file_err(path, format!("not a readable safetensors file: {e}")))?;
    for (name, var) in vars.data().lock().map_err(|_| file_err(path, "lock poisoned"))?.iter() {
        let t = saved
            .get(name)
            .ok_or_else(|| file_err(path, format!("the discriminators' tensor `{name}` is missing")))?;
        var.set(t)?;
    }
    Ok(())
}

/// Sets `vars` to the weights of the vocoder folder `path`, whose configuration must be `cfg`;
/// errors start with `what`.
fn set_weights(path: &Path, cfg: &VocoderConfig, vars: &VarMap, device: &Device, what: &str) -> Result<()> {
    let saved = NeuralVocoder::load(path, device)?
        .ok_or_else(|| file_err(path, format!("{what}holds no vocoder (vocoder.json)")))?;
    if saved.config() != cfg {
        return Err(file_err(
            path,
            format!("{what}was trained with another vocoder configuration than the recipe's"),
        ));
    }
    let weights = candle_core::safetensors::load(path.join(voxswap_model::vocoder::WEIGHTS_FILE), device)?;
    for (name, var) in vars.data().lock().map_err(|_| file_err(path, "lock poisoned"))?.iter() {
        let t = weights
            .get(name)
            .ok_or_else(|| file_err(path, format!("{what}tensor `{name}` missing")))?;
        var.set(t)?;
    }
    Ok(())
}

/// One segment: log-mel `[n_mels · frames]` (band-major), the audio under it, and its F0 per
/// frame (a source-filter vocoder's; empty for the others).
struct Segment {
    mel: Vec<f32>,
    audio: Vec<f32>,
    f0: F0Track,
}

/// An F0 per frame (Hz, filled through unvoiced frames) and whether YIN found the frame voiced
/// (1) or not (0).
#[derive(Debug, Clone, Default)]
struct F0Track {
    hz: Vec<f32>,
    voiced: Vec<f32>,
}

/// The F0 of `audio` per frame of the frontend `fe` (frame `t` centred on sample `t · hop`), by
/// YIN over 60–500 Hz, filled through unvoiced frames (log-linearly between voiced ones; the
/// source-filter vocoder's harmonic gains, not its F0, silence them), `frames` values.
fn f0_track(audio: &[f32], fe: &FrontendConfig, frames: usize) -> F0Track {
    let yin = voxswap_audio::pitch::Yin {
        sample_rate: fe.sample_rate,
        hop: fe.hop_length,
        ..voxswap_audio::pitch::Yin::speech_16k()
    };
    let raw = yin.track(audio);
    let f = voxswap_audio::pitch::fill_unvoiced(&raw, f64::from(F0_REF));
    let last = f.last().copied().unwrap_or(f64::from(F0_REF));
    F0Track {
        hz: (0..frames).map(|t| f.get(t).copied().unwrap_or(last) as f32).collect(),
        voiced: (0..frames)
            .map(|t| if raw.get(t).is_some_and(|&v| v > 0.0) { 1.0 } else { 0.0 })
            .collect(),
    }
}

/// The log-mel of the whole file and its audio at the frontend's rate.
fn decode(path: &Path, logmel: &mut LogMel, recon: Option<&Recon>) -> Result<(voxswap_audio::Mel, Vec<f32>)> {
    let a = read_mono(path, ChannelMix::Downmix)?;
    let x = resample(&a.samples, a.sample_rate, logmel.config().sample_rate)?;
    let mel = match recon {
        // Fine-tuning: the model's reconstruction, computed once, in place of the log-mel.
        Some(r) => r.mel_for(path, logmel.config().stft().n_frames(x.len()))?,
        None => logmel.compute(&x),
    };
    Ok((mel, x))
}

/// Frames `offset .. offset + frames` of `mel` and the audio from `offset · hop` on.
fn cut(mel: &voxswap_audio::Mel, audio: &[f32], f0: &F0Track, offset: usize, frames: usize, hop: usize) -> Segment {
    let part = |v: &[f32]| {
        if v.is_empty() {
            Vec::new()
        } else {
            v[offset..offset + frames].to_vec()
        }
    };
    Segment {
        mel: mel.range(offset, frames).data,
        audio: audio[offset * hop..(offset + frames) * hop].to_vec(),
        f0: F0Track {
            hz: part(&f0.hz),
            voiced: part(&f0.voiced),
        },
    }
}

/// `[B, T]` of per-frame values `v` on the device and in the type of `like`.
fn frame_tensor(v: &[Vec<f32>], like: &Tensor) -> Result<Tensor> {
    let (b, t) = (v.len(), v.first().map_or(0, Vec::len));
    let flat: Vec<f32> = v.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (b, t), like.device())?.to_dtype(like.dtype())?)
}

/// Mean of `per_frame` `[B, T]` over `f0`'s voiced frames (none voiced: 0).
fn voiced_mean(per_frame: &Tensor, f0: &[F0Track]) -> Result<Tensor> {
    let voiced: Vec<Vec<f32>> = f0.iter().map(|t| t.voiced.clone()).collect();
    let w = frame_tensor(&voiced, per_frame)?;
    let n = voiced.iter().flatten().sum::<f32>().max(1.0);
    Ok(((per_frame * w)?.sum_all()? / f64::from(n))?)
}

/// Mean absolute difference of the vocoder's `ln(F0 / F0_REF)` `z` `[B, T]` from that of `f0`
/// over its voiced frames (an unvoiced frame's F0 is for the harmonic gains to silence).
fn log_f0_error(z: &Tensor, f0: &[F0Track]) -> Result<Tensor> {
    let target: Vec<Vec<f32>> = f0
        .iter()
        .map(|t| t.hz.iter().map(|f| (f / F0_REF).ln()).collect())
        .collect();
    voiced_mean(&(z - frame_tensor(&target, z)?)?.abs()?, f0)
}

/// Cross-entropy of an F0 network's pitch-bin logits `[B, T, bins]` against `f0` over its voiced
/// frames, the target blurred over the bins around it (a Gaussian of one bin's deviation), so that
/// a near miss costs less than an octave.
fn f0_class_loss(logits: &Tensor, f0: &[F0Track]) -> Result<Tensor> {
    let (b, t, bins) = logits.dims3()?;
    let mut target = vec![0f32; b * t * bins];
    for (frame, f) in target.chunks_mut(bins).zip(f0.iter().flat_map(|t| &t.hz)) {
        let pos = voxswap_model::excitation::f0_bin(*f, bins);
        for (j, v) in frame.iter_mut().enumerate() {
            *v = (-0.5 * (j as f32 - pos).powi(2)).exp();
        }
        let sum: f32 = frame.iter().sum();
        frame.iter_mut().for_each(|v| *v /= sum);
    }
    let target = Tensor::from_vec(target, (b, t, bins), logits.device())?.to_dtype(logits.dtype())?;
    let log_p = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
    voiced_mean(&(target * log_p)?.sum(candle_core::D::Minus1)?.neg()?, f0)
}

/// A fixed segment from the middle of each held-out utterance long enough (at most
/// [`MAX_VALID`]).
fn valid_segments(
    paths: &[PathBuf],
    fe: &FrontendConfig,
    frames: usize,
    recon: Option<&Recon>,
    with_f0: bool,
) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    let mut logmel = LogMel::new(fe)?;
    for p in paths {
        if out.len() == MAX_VALID {
            break;
        }
        let (mel, audio) = decode(p, &mut logmel, recon)?;
        let usable = (audio.len() / fe.hop_length).min(mel.frames);
        if usable >= frames {
            let f0 = if with_f0 {
                f0_track(&audio, fe, mel.frames)
            } else {
                F0Track::default()
            };
            out.push(cut(&mel, &audio, &f0, (usable - frames) / 2, frames, fe.hop_length));
        }
    }
    Ok(out)
}

/// A model's reconstructions of the corpus in a feature store of their own, by path.
struct Recon {
    store: FeatureStore,
    ids: HashMap<PathBuf, usize>,
}

impl Recon {
    /// Opens (and brings up to date) the store of `model`'s reconstructions of the recipe's
    /// utterances: each utterance's log-mel converted with the speaker vector of the utterance
    /// itself.
    fn build(model: &Path, recipe: &Recipe, utts: &[crate::data::Utterance], fe: &FrontendConfig) -> Result<Self> {
        let conv = voxswap_model::VoiceConverter::load(model, &Device::Cpu)?;
        if &conv.config().frontend != fe {
            return Err(file_err(
                model,
                "vocoder.finetune_model: the model reads another frontend than the recipe's",
            ));
        }
        let fp = voxswap_model::bank::fingerprint(&voxswap_model::io::weights_path(model))?;
        let dir = recipe.data.cache.join(format!("{}-recon-{fp}", frontend_hash(fe)));
        let mut store = FeatureStore::open(&dir, fe.n_mels)?;
        // The utterances' log-mels come from the recipe's feature store (built if missing).
        let (mels, _, _) = load_store(&recipe.data.corpus, utts, &recipe.data.cache, fe, &|_, _| {})?;
        let compute = |u: &crate::data::Utterance, rel: &str, _: (u64, u64)| -> Result<(voxswap_audio::Mel, bool)> {
            let id = mels
                .find(rel)
                .ok_or_else(|| file_err(&u.path, "not in the feature store"))?;
            let mel = mels.mel(id)?;
            let voice = conv.speaker_vector(std::slice::from_ref(&mel))?;
            Ok((conv.convert(&mel, &voice)?, false))
        };
        let (ids, _) = store.update_with(&recipe.data.corpus, utts, &compute, &|_, _| {})?;
        let ids = utts.iter().zip(ids).map(|(u, id)| (u.path.clone(), id)).collect();
        Ok(Self { store, ids })
    }

    /// The reconstruction of the utterance at `path`, whose own log-mel has `frames` frames.
    fn mel_for(&self, path: &Path, frames: usize) -> Result<voxswap_audio::Mel> {
        let id = *self
            .ids
            .get(path)
            .ok_or_else(|| file_err(path, "no model reconstruction of this utterance"))?;
        let r = self.store.mel(id)?;
        if r.frames != frames {
            return Err(file_err(
                path,
                format!("its reconstruction has {} frames, the utterance {frames}", r.frames),
            ));
        }
        Ok(r)
    }
}

/// The vocoder's training as a [`Task`].
struct VocoderTask<'a> {
    section: &'a VocoderSection,
    fe: FrontendConfig,
    /// The frontend's log-mel, built once (filterbank, FFT plans).
    logmel: LogMel,
    cfg: VocoderConfig,
    vocoder: NeuralVocoder,
    vars: &'a VarMap,
    trained: Vec<Var>,
    /// The discriminators and their weights (vocoder.lambda_adv).
    disc: Option<(&'a WaveDiscriminators, &'a VarMap)>,
    loss: VocoderLoss,
    train: Vec<PathBuf>,
    valid_set: Vec<Segment>,
    /// Fine-tuning: the model's reconstructions, read in place of the utterances' own mels.
    recon: Option<Recon>,
    /// A source-filter vocoder's F0 tracks of the utterances drawn so far (by path).
    f0_cache: HashMap<PathBuf, F0Track>,
    device: Device,
    ckpt_dir: PathBuf,
    /// The last step's loss, mel, STFT, phase, adversarial, feature-matching, discriminator
    /// and F0 parts.
    last: [f32; 8],
    /// Whether the last step trained against the discriminators.
    adversarial: bool,
}

impl VocoderTask<'_> {
    /// Batches of segments as tensors: mels `[B, n_mels, T]`, audio `[B, T · hop]`.
    fn tensors(&self, segs: &[Segment]) -> Result<(Tensor, Tensor)> {
        let t = self.section.segment_frames;
        let n = segs.len();
        let mel: Vec<f32> = segs.iter().flat_map(|s| s.mel.iter().copied()).collect();
        let audio: Vec<f32> = segs.iter().flat_map(|s| s.audio.iter().copied()).collect();
        Ok((
            Tensor::from_vec(mel, (n, self.fe.n_mels, t), &self.device)?,
            Tensor::from_vec(audio, (n, t * self.fe.hop_length), &self.device)?,
        ))
    }

    /// Loss parts (total, mel, stft, phase, adversarial, feature matching, discriminators, F0)
    /// of the batch, and the gradients of `params`; against the discriminators when
    /// `adversarial` (their gradients from their own loss only). A source-filter vocoder's
    /// sources run at `f0`, the F0 measured on the target audio.
    fn forward_backward(
        &self,
        mel: &Tensor,
        audio: &Tensor,
        f0: &[F0Track],
        adversarial: bool,
    ) -> Result<(GradStore, Vec<f32>)> {
        let b = mel.dim(0)?;
        let v = self.section;
        sharded(b, &self.trained, 8, &|start, len| {
            let (m, a) = (mel.narrow(0, start, len)?, audio.narrow(0, start, len)?);
            let target_mel = self.loss.log_mel().forward(&a)?;
            // A source-filter vocoder's F0: the loss it trains on, and its error as logged.
            let (pred, l, f0_parts) = if self.cfg.phase == PhaseMode::Source {
                let f0 = &f0[start..start + len];
                let hz: Vec<Vec<f32>> = f0.iter().map(|t| t.hz.clone()).collect();
                let out = self.vocoder.forward_source(&m, Some(&hz))?;
                let l = self.loss.forward(&out.audio, &a, &target_mel)?;
                let error = log_f0_error(&out.log_f0, f0)?;
                let train = match &out.f0_logits {
                    Some(logits) => f0_class_loss(logits, f0)?,
                    None => error.clone(),
                };
                (out.audio, l, Some((train, error)))
            } else {
                let (pred, phase) = self.vocoder.forward_with_phase(&m)?;
                let l = self.loss.forward_with_phase(&pred, Some(&phase), &a, &target_mel)?;
                (pred, l, None)
            };
            let share = len as f64 / b as f64;
            let s = share as f32;
            let l_total = match &f0_parts {
                Some((f, _)) => (&l.total + f.affine(v.lambda_f0, 0.0)?)?,
                None => l.total.clone(),
            };
            let gan = match (self.disc, adversarial) {
                (Some((d, _)), true) => Some((d, d.forward(&a)?)),
                _ => None,
            };
            let (total, adv, fm) = match &gan {
                Some((d, real)) => {
                    let (adv, fm) = generator_losses(real, &d.forward(&pred)?)?;
                    let total = ((&l_total + adv.affine(v.lambda_adv, 0.0)?)? + fm.affine(v.lambda_fm, 0.0)?)?;
                    (total, adv.to_scalar::<f32>()?, fm.to_scalar::<f32>()?)
                }
                None => (l_total, 0.0, 0.0),
            };
            let total = total.affine(share, 0.0)?;
            let mut grads = total.backward()?;
            let mut disc = 0.0;
            if let Some((d, real)) = &gan {
                let own = d.params();
                for p in &own {
                    grads.remove(p);
                }
                let dl = discriminator_loss(real, &d.forward(&pred.detach())?)?;
                disc = dl.to_scalar::<f32>()?;
                let mut g = dl.affine(share, 0.0)?.backward()?;
                for p in &own {
                    if let Some(t) = g.remove(p) {
                        grads.insert(p, t);
                    }
                }
            }
            Ok((
                grads,
                vec![
                    total.to_scalar::<f32>()?,
                    l.mel.to_scalar::<f32>()? * s,
                    l.stft.to_scalar::<f32>()? * s,
                    l.phase.to_scalar::<f32>()? * s,
                    adv * s,
                    fm * s,
                    disc * s,
                    f0_parts.map_or(Ok(0.0), |(_, e)| e.to_scalar::<f32>())? * s,
                ],
            ))
        })
    }
}

impl Task for VocoderTask<'_> {
    fn step(&mut self, step: u64) -> Result<(GradStore, f32)> {
        let v = self.section;
        let mut rng = rand::rngs::StdRng::seed_from_u64(v.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ step);
        let hop = self.fe.hop_length;
        let mut segs = Vec::with_capacity(v.batch_size);
        // Utterances too short for a segment are drawn again (a bounded number of times).
        let mut tries = 0;
        while segs.len() < v.batch_size {
            tries += 1;
            if tries > 100 * v.batch_size {
                return Err(Error::Corpus {
                    path: PathBuf::new(),
                    detail: format!(
                        "hardly any utterance is {} frames long: lower vocoder.segment_frames",
                        v.segment_frames
                    ),
                });
            }
            let path = &self.train[rng.random_range(0..self.train.len())];
            let (mel, audio) = decode(path, &mut self.logmel, self.recon.as_ref())?;
            let usable = (audio.len() / hop).min(mel.frames);
            if usable < v.segment_frames {
                continue;
            }
            let offset = rng.random_range(0..=usable - v.segment_frames);
            let none = F0Track::default();
            let f0 = if self.cfg.phase == PhaseMode::Source {
                self.f0_cache
                    .entry(path.clone())
                    .or_insert_with(|| f0_track(&audio, &self.fe, mel.frames))
            } else {
                &none
            };
            segs.push(cut(&mel, &audio, f0, offset, v.segment_frames, hop));
        }
        let (mel, audio) = self.tensors(&segs)?;
        let f0: Vec<F0Track> = segs.into_iter().map(|s| s.f0).collect();
        self.adversarial = self.disc.is_some() && step > v.adv_start;
        let (grads, parts) = self.forward_backward(&mel, &audio, &f0, self.adversarial)?;
        self.last.copy_from_slice(&parts);
        Ok((grads, parts[0]))
    }

    fn record(&self, step: u64, lr: f64, grad_norm: f64, steps_per_s: f64) -> LogRecord {
        LogRecord::VocoderTrain {
            step,
            loss: self.last[0],
            mel: self.last[1],
            stft: self.last[2],
            phase: self.last[3],
            f0: (self.cfg.phase == PhaseMode::Source).then_some(self.last[7]),
            adv: self.adversarial.then_some(self.last[4]),
            fm: self.adversarial.then_some(self.last[5]),
            disc: self.adversarial.then_some(self.last[6]),
            lr,
            grad_norm,
            steps_per_s,
        }
    }

    fn validate(&mut self, step: u64) -> Result<Option<LogRecord>> {
        if self.valid_set.is_empty() {
            return Ok(None);
        }
        let (mut mel_sum, mut stft_sum, mut f0_sum) = (0f32, 0f32, 0f32);
        let source = self.cfg.phase == PhaseMode::Source;
        for chunk in self.valid_set.chunks(self.section.batch_size.max(1)) {
            let (mel, audio) = self.tensors(chunk)?;
            let target_mel = self.loss.log_mel().forward(&audio)?;
            let pred = if source {
                // At its own F0, as conversion runs it.
                let out = self.vocoder.forward_source(&mel, None)?;
                let f0: Vec<F0Track> = chunk.iter().map(|s| s.f0.clone()).collect();
                f0_sum += log_f0_error(&out.log_f0, &f0)?.to_scalar::<f32>()? * chunk.len() as f32;
                out.audio.detach()
            } else {
                self.vocoder.forward(&mel)?.detach()
            };
            let l = self.loss.forward(&pred, &audio, &target_mel)?;
            mel_sum += l.mel.to_scalar::<f32>()? * chunk.len() as f32;
            stft_sum += l.stft.to_scalar::<f32>()? * chunk.len() as f32;
        }
        let n = self.valid_set.len() as f32;
        Ok(Some(LogRecord::VocoderValid {
            step,
            mel: mel_sum / n,
            stft: stft_sum / n,
            f0: source.then_some(f0_sum / n),
        }))
    }

    fn save(&mut self, opt: &Adam) -> Result<PathBuf> {
        let (cfg, vars, disc) = (&self.cfg, self.vars, self.disc);
        checkpoint::save_with(
            &self.ckpt_dir,
            opt,
            self.section.seed,
            self.section.keep_checkpoints,
            &|tmp: &Path| {
                NeuralVocoder::save(tmp, cfg, vars)?;
                if let Some((_, dv)) = disc {
                    let path = tmp.join(checkpoint::AUX_FILE);
                    dv.save(&path).map_err(|e| file_err(&path, e))?;
                }
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 150 Hz voice, 0.3 s of silence, a 220 Hz voice.
    fn voice_gap_voice() -> Vec<f32> {
        let tone = |f: f32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    let p = 2.0 * std::f32::consts::PI * f * i as f32 / 16000.0;
                    0.3 * p.sin() + 0.2 * (2.0 * p).sin() + 0.1 * (3.0 * p).sin()
                })
                .collect()
        };
        let mut x = tone(150.0, 8000);
        x.extend(vec![0.0; 4800]);
        x.extend(tone(220.0, 8000));
        x
    }

    #[test]
    fn f0_tracks_fill_the_gap_and_mark_it_unvoiced() {
        let fe = FrontendConfig::speech_16k();
        let x = voice_gap_voice();
        let frames = fe.stft().n_frames(x.len());
        let t = f0_track(&x, &fe, frames);
        assert_eq!((t.hz.len(), t.voiced.len()), (frames, frames));
        assert!(t.voiced[10..40].iter().all(|&v| v == 1.0));
        assert!(t.voiced[58..72].iter().all(|&v| v == 0.0));
        assert!(t.voiced[90..125].iter().all(|&v| v == 1.0));
        assert!((t.hz[20] - 150.0).abs() < 2.0 && (t.hz[120] - 220.0).abs() < 2.0);
        // Filled between the two, log-linearly.
        assert!(t.hz[65] > 150.0 && t.hz[65] < 220.0, "{}", t.hz[65]);
    }

    #[test]
    fn f0_losses_count_voiced_frames_only() {
        let dev = Device::Cpu;
        let track = F0Track {
            hz: vec![100.0, 200.0, 200.0, 400.0],
            voiced: vec![1.0, 0.0, 0.0, 1.0],
        };
        let f0 = [track];
        // Right where voiced, an octave off where not: no error.
        let z: Vec<f32> = [100f32, 400.0, 100.0, 400.0]
            .iter()
            .map(|f| (f / F0_REF).ln())
            .collect();
        let z = Tensor::from_vec(z, (1, 4), &dev).unwrap();
        assert!(log_f0_error(&z, &f0).unwrap().to_scalar::<f32>().unwrap().abs() < 1e-6);
        // An octave off on one of the two voiced frames: half of ln 2.
        let z2 = (z.clone() + Tensor::new(&[[0f32, 0.0, 0.0, std::f32::consts::LN_2]], &dev).unwrap()).unwrap();
        let e = log_f0_error(&z2, &f0).unwrap().to_scalar::<f32>().unwrap();
        assert!((e - std::f32::consts::LN_2 / 2.0).abs() < 1e-5, "{e}");
        // Cross-entropy: logits peaked at the right bins on the voiced frames cost less than at
        // an octave away, whatever the unvoiced frames say.
        let bins = 48;
        let logits = |shift: f32| {
            let v: Vec<f32> = [100f32, 150.0, 150.0, 400.0]
                .iter()
                .enumerate()
                .flat_map(|(i, f)| {
                    let pos = voxswap_model::excitation::f0_bin(if i == 3 { f * shift } else { *f }, bins);
                    (0..bins).map(move |j| -2.0 * (j as f32 - pos).powi(2))
                })
                .collect();
            Tensor::from_vec(v, (1, 4, bins), &dev).unwrap()
        };
        let right = f0_class_loss(&logits(1.0), &f0).unwrap().to_scalar::<f32>().unwrap();
        let wrong = f0_class_loss(&logits(0.5), &f0).unwrap().to_scalar::<f32>().unwrap();
        assert!(right < 3.0 && wrong > 50.0, "{right} {wrong}");
    }
}
