//! The tiny model trained on real speech (the committed espeak-ng clips as three speakers):
//! the loss falls, a resumed run equals an uninterrupted one bit for bit, divergence stops the
//! run and keeps the last good checkpoint.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use voxswap_train::recipe::Recipe;
use voxswap_train::trainer::{self, LogRecord, Observer, Outcome, Quiet};
use voxswap_train::Error;

fn clips() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// Three speakers, two utterances each (the clip, and its second half as another utterance).
fn make_corpus(dir: &Path) -> PathBuf {
    let corpus = dir.join("corpus");
    for (spk, clip) in [("m", "speech_m.wav"), ("f", "speech_f.wav"), ("s", "speech_s.wav")] {
        let d = corpus.join(spk);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(clips().join(clip), d.join("a.wav")).unwrap();
        let audio = voxswap_audio::read_mono(clips().join(clip), voxswap_audio::ChannelMix::Downmix).unwrap();
        let half = &audio.samples[audio.samples.len() / 2..];
        voxswap_audio::write_wav(
            d.join("b.wav"),
            half,
            audio.sample_rate,
            voxswap_audio::WavFormat::Float32,
        )
        .unwrap();
    }
    corpus
}

fn recipe(dir: &Path, steps: u64, extra: &str) -> Recipe {
    recipe_text(dir, steps, extra);
    Recipe::load(&dir.join("recipe.toml")).unwrap()
}

/// Writes the corpus and `recipe.toml` (see [`recipe`]) without loading it.
fn recipe_text(dir: &Path, steps: u64, extra: &str) {
    make_corpus(dir);
    let text = format!(
        r#"
[data]
corpus = "corpus"
cache = "cache"
segment_frames = 32
valid_per_speaker = 1

[model]
preset = "tiny"

[train]
steps = {steps}
batch_size = 4
seed = 3
kl_anneal_steps = 100
checkpoint_every = 25
keep_checkpoints = 2
valid_every = 50
log_every = 5
{extra}

[optim]
lr = 0.003

[output]
dir = "run"
"#
    );
    std::fs::write(dir.join("recipe.toml"), text).unwrap();
}

fn train_records(dir: &Path) -> Vec<(u64, f32)> {
    std::fs::read_to_string(dir.join("run/train.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| match serde_json::from_str::<LogRecord>(l).unwrap() {
            LogRecord::Train { step, rec, .. } => Some((step, rec)),
            _ => None,
        })
        .collect()
}

#[test]
fn loss_falls_well_below_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), 300, "");
    let out = trainer::train(&r, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    assert!(matches!(out, Outcome::Finished { step: 300, .. }), "{out:?}");
    let recs = train_records(dir.path());
    let first: f32 = recs[..4].iter().map(|r| r.1).sum::<f32>() / 4.0;
    let last: f32 = recs[recs.len() - 4..].iter().map(|r| r.1).sum::<f32>() / 4.0;
    assert!(last < 0.5 * first, "reconstruction loss {first} -> {last}");
    // The run folder: the newest two checkpoints, the log, the curves.
    let ckpts = voxswap_train::checkpoint::list(&dir.path().join("run/checkpoints"));
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![275, 300]);
    let png = std::fs::read(dir.path().join("run/loss.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    // The final checkpoint is a model folder that converts.
    let vc = voxswap_model::VoiceConverter::load(&ckpts[1].1, &Device::Cpu).unwrap();
    let mel = voxswap_train::data::compute_mel(&clips().join("speech_m.wav"), &vc.config().frontend).unwrap();
    let spk = vc.embed(std::slice::from_ref(&mel)).unwrap();
    let y = vc.convert(&mel, &spk).unwrap();
    assert!(y.data.iter().all(|v| v.is_finite()));
}

struct StopAt(u64, &'static AtomicBool);
impl Observer for StopAt {
    fn record(&mut self, r: &LogRecord) {
        if let LogRecord::Train { step, .. } | LogRecord::VocoderTrain { step, .. } = r {
            if *step >= self.0 {
                self.1.store(true, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn interrupted_and_resumed_equals_straight() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Straight: 60 steps.
    let ra = recipe(a.path(), 60, "");
    trainer::train(&ra, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    // Interrupted after step 30 (not a checkpoint step: the stop writes one), then resumed.
    let rb = recipe(b.path(), 60, "");
    let out = trainer::train(&rb, &Device::Cpu, &STOP, &mut StopAt(30, &STOP), &|_, _| {}).unwrap();
    assert!(matches!(out, Outcome::Interrupted { step: 30, .. }), "{out:?}");
    let out = trainer::train(&rb, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    assert!(matches!(out, Outcome::Finished { step: 60, .. }), "{out:?}");
    let w = |d: &Path| std::fs::read(d.join("run/checkpoints/step-00000060/model.safetensors")).unwrap();
    assert!(
        w(a.path()) == w(b.path()),
        "resumed weights differ from the straight run's"
    );
    assert_eq!(train_records(a.path()), train_records(b.path()));
}

/// The content and speaker warps and a narrower content code (recipe keys
/// `train.content_warp`, `train.speaker_warp`, `model.content_channels`): the checkpoint
/// carries the width, each warp changes what is learnt, and a resumed run still equals a
/// straight one (the warp factors derive from the step). A warp of 1 or more is refused when
/// the recipe loads.
#[test]
fn content_warp_and_code_width_train_and_resume() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let run = |i: usize, warp: &str, stop: Option<u64>| {
        let mut r = recipe(dirs[i].path(), 40, warp);
        r.model.content_channels = Some(4);
        match stop {
            Some(at) => trainer::train(&r, &Device::Cpu, &STOP, &mut StopAt(at, &STOP), &|_, _| {}),
            None => trainer::train(&r, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}),
        }
        .unwrap()
    };
    let all = "content_warp = 0.2\nspeaker_warp = 0.1\nspeaker_reference = \"other\"";
    run(0, all, None);
    assert!(matches!(run(1, all, Some(20)), Outcome::Interrupted { step: 20, .. }));
    assert!(matches!(run(1, all, None), Outcome::Finished { step: 40, .. }));
    run(2, "content_warp = 0.2\nspeaker_warp = 0.1", None);
    run(3, "content_warp = 0.2", None);
    run(4, "", None);
    let ckpt = |i: usize| dirs[i].path().join("run/checkpoints/step-00000040");
    let w = |i: usize| std::fs::read(ckpt(i).join("model.safetensors")).unwrap();
    assert!(w(0) == w(1), "resumed weights differ from the straight run's");
    assert!(w(0) != w(2), "references from other utterances changed nothing");
    assert!(w(2) != w(3), "the speaker warp changed nothing");
    assert!(w(3) != w(4), "the content warp changed nothing");
    let vc = voxswap_model::VoiceConverter::load(&ckpt(0), &Device::Cpu).unwrap();
    assert_eq!(vc.config().content.c_out, 4);
    // An offline model has no refresh period; a causal one converts in passes refreshed every
    // half segment, and a checkpoint written before that setting existed still resumes.
    assert_eq!(vc.config().norm_refresh, None);
    let mut r = recipe(dirs[4].path(), 6, "");
    r.model.preset = "tiny-stream".into();
    r.output.dir = dirs[4].path().join("causal");
    trainer::train(&r, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    let causal = dirs[4].path().join("causal/checkpoints/step-00000006");
    let cfg_path = causal.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg["norm_refresh"], r.data.segment_frames / 2);
    cfg.as_object_mut().unwrap().remove("norm_refresh");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    r.train.steps = 8;
    let done = trainer::train(&r, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    assert!(matches!(done, Outcome::Finished { step: 8, .. }));
    let text = std::fs::read_to_string(dirs[0].path().join("recipe.toml")).unwrap();
    let bad = dirs[0].path().join("bad.toml");
    std::fs::write(&bad, text.replace("content_warp = 0.2", "content_warp = 1.0")).unwrap();
    let err = Recipe::load(&bad).unwrap_err().to_string();
    assert!(err.contains("content_warp"), "{err}");
    std::fs::write(&bad, text.replace("\"other\"", "\"others\"")).unwrap();
    let err = Recipe::load(&bad).unwrap_err().to_string();
    assert!(
        err.contains("line 22") && err.contains("expected `same` or `other`"),
        "{err}"
    );
}

#[test]
fn divergence_stops_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = recipe(dir.path(), 200, "");
    // Train normally to step 50, then push the learning rate absurdly high.
    r.train.steps = 50;
    trainer::train(&r, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    r.train.steps = 200;
    r.optim.lr = 1e12;
    r.optim.grad_clip = 0.0;
    let err = trainer::train(&r, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap_err();
    assert!(matches!(err, Error::Diverged { .. }), "{err}");
    assert!(err.to_string().contains("step-00000050"), "{err}");
    let ckpts = voxswap_train::checkpoint::list(&dir.path().join("run/checkpoints"));
    assert_eq!(ckpts.last().unwrap().0, 50);
}

/// The trainer's loss is the PyTorch reference's (tests/data/model fixture, λ_rec 10, λ_kl 0.5).
#[test]
fn loss_equals_the_pytorch_reference() {
    use candle_nn::{VarBuilder, VarMap};
    let dir = clips().join("model");
    let cfg: voxswap_model::ModelConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tiny_config.json")).unwrap()).unwrap();
    let fix = candle_core::safetensors::load(dir.join("adain_vc_tiny.safetensors"), &Device::Cpu).unwrap();
    let vars = VarMap::new();
    let model = voxswap_model::AdaInVc::new(
        &cfg,
        VarBuilder::from_varmap(&vars, candle_core::DType::F32, &Device::Cpu),
    )
    .unwrap();
    for (name, var) in vars.data().lock().unwrap().iter() {
        var.set(&fix[&format!("param.{name}")]).unwrap();
    }
    let out = model.forward(&fix["input"], &fix["noise"]).unwrap();
    let l = voxswap_train::loss::ae_loss(&fix["input"], &out, 10.0, 0.5).unwrap();
    for (got, key) in [(&l.total, "out.loss"), (&l.rec, "out.rec"), (&l.kl, "out.kl")] {
        let want = fix[key].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        let got = got.to_scalar::<f32>().unwrap();
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{key}: {got} vs {want}"
        );
    }
}

/// A training-only layer's common checks: a run made by `make(dir, 40)` interrupted at step 20
/// and resumed equals a straight one (model and training-only weights), the same recipe with
/// `disable` applied refuses its checkpoint naming `what`, and a plain recipe learns something
/// else. Returns the folders: straight, resumed, plain.
fn check_training_only_layer(
    make: &dyn Fn(&Path, u64) -> Recipe,
    disable: fn(&mut Recipe),
    what: &str,
) -> Vec<tempfile::TempDir> {
    // A stop flag of this call's own: tests run side by side.
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let straight = make(dirs[0].path(), 40);
    trainer::train(&straight, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    let resumed = make(dirs[1].path(), 40);
    let out = trainer::train(&resumed, &Device::Cpu, stop, &mut StopAt(20, stop), &|_, _| {}).unwrap();
    assert!(matches!(out, Outcome::Interrupted { step: 20, .. }), "{out:?}");
    // The recipe without the layer refuses the checkpoint that has it.
    let mut without = resumed.clone();
    disable(&mut without);
    let err = trainer::train(&without, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains(what), "{err}");
    trainer::train(&resumed, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    let plain = recipe(dirs[2].path(), 40, "");
    trainer::train(&plain, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    let ckpt = |i: usize| dirs[i].path().join("run/checkpoints/step-00000040");
    let w = |i: usize| std::fs::read(ckpt(i).join("model.safetensors")).unwrap();
    assert!(w(0) == w(1), "resumed weights differ from the straight run's");
    assert!(w(0) != w(2), "{what} changed nothing");
    let a = |i: usize| std::fs::read(ckpt(i).join("training_only.safetensors")).unwrap();
    assert!(a(0) == a(1), "resumed {what} differs from the straight run's");
    assert!(!ckpt(2).join("training_only.safetensors").exists());
    dirs
}

/// The speaker adversary (`train.lambda_adv`): its cross-entropy is logged, it changes what the
/// model learns, its weights stay out of the model folder (which still loads and converts), a
/// resumed run equals a straight one, and a checkpoint is not resumed by a recipe that disagrees
/// about it.
#[test]
fn speaker_adversary_trains_resumes_and_stays_out_of_the_model() {
    let dirs = check_training_only_layer(
        &|d, steps| recipe(d, steps, "lambda_adv = 0.5"),
        |r| r.train.lambda_adv = 0.0,
        "speaker adversary",
    );
    let ckpt = |i: usize| dirs[i].path().join("run/checkpoints/step-00000040");
    // Its cross-entropy is logged: near ln 3 for three speakers at the start.
    let log = std::fs::read_to_string(dirs[0].path().join("run/train.jsonl")).unwrap();
    let first: f32 = log
        .lines()
        .find_map(|l| match serde_json::from_str::<LogRecord>(l).unwrap() {
            LogRecord::Train { adv, .. } => adv,
            _ => None,
        })
        .unwrap();
    assert!((first - 3f32.ln()).abs() < 0.5, "first adversary loss {first}");
    // The checkpoint is a model folder without the adversary's weights in it.
    let vc = voxswap_model::VoiceConverter::load(&ckpt(0), &Device::Cpu).unwrap();
    let mel = voxswap_train::data::compute_mel(&clips().join("speech_m.wav"), &vc.config().frontend).unwrap();
    let spk = vc.embed(std::slice::from_ref(&mel)).unwrap();
    assert!(vc.convert(&mel, &spk).unwrap().data.iter().all(|v| v.is_finite()));
    let text = std::fs::read_to_string(dirs[0].path().join("recipe.toml")).unwrap();
    let path = dirs[0].path().join("bad.toml");
    std::fs::write(&path, text.replace("lambda_adv = 0.5", "lambda_adv = -1")).unwrap();
    let err = Recipe::load(&path).unwrap_err().to_string();
    assert!(err.contains("lambda_adv"), "{err}");
}

/// Phoneme transcripts of the tiny corpus's training utterances (espeak-ng's, as
/// `recipes/synth/phonemes.sh` writes them); `b.wav`, held out for validation, has none.
const PHONEMES: &str = "m/a.wav\tD @2 b 3: tS k @ n u: s l I d O2 n D @2 s m u: D p l a N k s\n\
f/a.wav\tg l u: D @2 S i: t t @ D @2 d A@ k b l u: b a k g r aU n d\n\
s/a.wav\tI t s i: z i t @ t E l D @2 d E p T @ v @ w E l\n";

fn phone_recipe(dir: &Path, steps: u64, tsv: &str) -> Recipe {
    recipe_text(dir, steps, "lambda_phone = 1.0\nphone_batch = 2");
    std::fs::write(dir.join("phonemes.tsv"), tsv).unwrap();
    let path = dir.join("recipe.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "valid_per_speaker = 1\n",
        "valid_per_speaker = 1\nphonemes = \"phonemes.tsv\"\n",
    );
    std::fs::write(&path, text).unwrap();
    Recipe::load(&path).unwrap()
}

/// The phonetic head (`train.lambda_phone`): its CTC loss is logged and falls, it changes what
/// the model learns, a resumed run equals a straight one, its weights stay out of the model
/// folder, and a recipe that disagrees about it (or transcripts that name no training
/// utterance) is refused.
#[test]
fn phonetic_head_trains_resumes_and_stays_out_of_the_model() {
    let dirs = check_training_only_layer(
        &|d, steps| phone_recipe(d, steps, PHONEMES),
        |r| r.train.lambda_phone = 0.0,
        "phonetic head",
    );
    let ckpt = |i: usize| dirs[i].path().join("run/checkpoints/step-00000040");
    // The CTC loss per phoneme is logged and falls.
    let log = std::fs::read_to_string(dirs[0].path().join("run/train.jsonl")).unwrap();
    let phone: Vec<f32> = log
        .lines()
        .filter_map(|l| match serde_json::from_str::<LogRecord>(l).unwrap() {
            LogRecord::Train { phone, .. } => phone,
            _ => None,
        })
        .collect();
    assert_eq!(phone.len(), 8);
    assert!(phone.iter().all(|p| p.is_finite() && *p > 0.0), "{phone:?}");
    assert!(phone[7] < phone[0] * 0.7, "CTC loss did not fall: {phone:?}");
    // The checkpoint is a model folder that loads and converts.
    let vc = voxswap_model::VoiceConverter::load(&ckpt(0), &Device::Cpu).unwrap();
    let mel = voxswap_train::data::compute_mel(&clips().join("speech_m.wav"), &vc.config().frontend).unwrap();
    let spk = vc.embed(std::slice::from_ref(&mel)).unwrap();
    assert!(vc.convert(&mel, &spk).unwrap().data.iter().all(|v| v.is_finite()));
    // Transcripts of other paths are refused.
    let d = tempfile::tempdir().unwrap();
    let other = phone_recipe(d.path(), 10, &PHONEMES.replace("/a.wav", "/x.wav"));
    let err = trainer::train(&other, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("transcribes none of the training utterances"), "{err}");
    // The recipe needs the transcripts with the head.
    let text = std::fs::read_to_string(d.path().join("recipe.toml")).unwrap();
    let path = d.path().join("bad.toml");
    std::fs::write(&path, text.replace("phonemes = \"phonemes.tsv\"\n", "")).unwrap();
    let err = Recipe::load(&path).unwrap_err().to_string();
    assert!(err.contains("data.phonemes"), "{err}");
}

/// The speaker-consistency loss (`train.lambda_cons`) is logged, lies in [0, 2] and changes
/// what the model learns.
#[test]
fn speaker_consistency_is_logged_and_trains() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with = recipe(a.path(), 20, "lambda_cons = 1.0");
    trainer::train(&with, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    let plain = recipe(b.path(), 20, "");
    trainer::train(&plain, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    let log = std::fs::read_to_string(a.path().join("run/train.jsonl")).unwrap();
    let cons: Vec<f32> = log
        .lines()
        .filter_map(|l| match serde_json::from_str::<LogRecord>(l).unwrap() {
            LogRecord::Train { cons, .. } => cons,
            _ => None,
        })
        .collect();
    assert_eq!(cons.len(), 4);
    assert!(cons.iter().all(|c| (0.0..=2.0).contains(c)), "{cons:?}");
    let w = |d: &Path| std::fs::read(d.join("run/checkpoints/step-00000020/model.safetensors")).unwrap();
    assert!(w(a.path()) != w(b.path()), "the consistency loss changed nothing");
}

/// The mel discriminator (`train.lambda_gan`): silent until `train.gan_start`, then both of its
/// losses are logged (the decoder's and its own, LSGAN: about 1 at the start, finite, in range),
/// it changes what the model learns, a resumed run equals a straight one (also across the start),
/// its weights stay out of the model folder, and a recipe that disagrees about it is refused.
#[test]
fn mel_discriminator_trains_resumes_and_stays_out_of_the_model() {
    let dirs = check_training_only_layer(
        &|d, steps| recipe(d, steps, "lambda_gan = 1.0\ngan_start = 25"),
        |r| r.train.lambda_gan = 0.0,
        "mel discriminator",
    );
    let log = std::fs::read_to_string(dirs[0].path().join("run/train.jsonl")).unwrap();
    let gan: Vec<(u64, Option<f32>, Option<f32>)> = log
        .lines()
        .filter_map(|l| match serde_json::from_str::<LogRecord>(l).unwrap() {
            LogRecord::Train { step, gen, disc, .. } => Some((step, gen, disc)),
            _ => None,
        })
        .collect();
    assert_eq!(gan.len(), 8, "{gan:?}");
    for (step, gen, disc) in &gan {
        match step > &25 {
            false => assert!(gen.is_none() && disc.is_none(), "{gan:?}"),
            true => {
                let (g, d) = (gen.unwrap(), disc.unwrap());
                assert!(g.is_finite() && g > 0.0 && g < 10.0, "{gan:?}");
                assert!(d.is_finite() && d > 0.0 && d < 10.0, "{gan:?}");
            }
        }
    }
    let ckpt = dirs[0].path().join("run/checkpoints/step-00000040");
    let vc = voxswap_model::VoiceConverter::load(&ckpt, &Device::Cpu).unwrap();
    let mel = voxswap_train::data::compute_mel(&clips().join("speech_m.wav"), &vc.config().frontend).unwrap();
    let spk = vc.embed(std::slice::from_ref(&mel)).unwrap();
    assert!(vc.convert(&mel, &spk).unwrap().data.iter().all(|v| v.is_finite()));
    let text = std::fs::read_to_string(dirs[0].path().join("recipe.toml")).unwrap();
    let path = dirs[0].path().join("bad.toml");
    std::fs::write(&path, text.replace("lambda_gan = 1.0", "lambda_gan = -1")).unwrap();
    let err = Recipe::load(&path).unwrap_err().to_string();
    assert!(err.contains("lambda_gan"), "{err}");
}

fn vq_recipe(dir: &Path, steps: u64, kl: &str) -> Recipe {
    recipe_text(dir, steps, kl);
    let path = dir.join("recipe.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("preset = \"tiny\"\n", "preset = \"tiny\"\nvq_codes = 8\n");
    std::fs::write(&path, text).unwrap();
    Recipe::load(&path).unwrap()
}

/// A vector-quantised content code (`model.vq_codes`): its VQ loss is logged and falls, a
/// resumed run equals a straight one, the checkpoint is a model folder whose configuration
/// keeps the codebook and that converts offline and frame by frame alike, and a recipe that
/// keeps the KL term with it is refused.
#[test]
fn vector_quantised_code_trains_and_converts() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let straight = vq_recipe(a.path(), 40, "lambda_kl = 0.0");
    trainer::train(&straight, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    let resumed = vq_recipe(b.path(), 40, "lambda_kl = 0.0");
    let out = trainer::train(&resumed, &Device::Cpu, &STOP, &mut StopAt(20, &STOP), &|_, _| {}).unwrap();
    assert!(matches!(out, Outcome::Interrupted { step: 20, .. }), "{out:?}");
    trainer::train(&resumed, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}).unwrap();
    let ckpt = |d: &Path| d.join("run/checkpoints/step-00000040");
    let w = |d: &Path| std::fs::read(ckpt(d).join("model.safetensors")).unwrap();
    assert!(
        w(a.path()) == w(b.path()),
        "resumed weights differ from the straight run's"
    );
    let log = std::fs::read_to_string(a.path().join("run/train.jsonl")).unwrap();
    let vq: Vec<f32> = log
        .lines()
        .filter_map(|l| match serde_json::from_str::<LogRecord>(l).unwrap() {
            LogRecord::Train { vq, .. } => vq,
            _ => None,
        })
        .collect();
    assert_eq!(vq.len(), 8, "{vq:?}");
    assert!(vq.iter().all(|v| v.is_finite() && *v >= 0.0), "{vq:?}");
    assert!(vq[7] < vq[0], "VQ loss did not fall: {vq:?}");
    let vc = voxswap_model::VoiceConverter::load(&ckpt(a.path()), &Device::Cpu).unwrap();
    assert_eq!(vc.config().content.vq_codes, Some(8));
    let mel = voxswap_train::data::compute_mel(&clips().join("speech_m.wav"), &vc.config().frontend).unwrap();
    let spk = vc.embed(std::slice::from_ref(&mel)).unwrap();
    let y = vc.convert(&mel, &spk).unwrap();
    assert!(y.data.iter().all(|v| v.is_finite()));
    let path = a.path().join("bad.toml");
    std::fs::write(
        &path,
        std::fs::read_to_string(a.path().join("recipe.toml"))
            .unwrap()
            .replace("lambda_kl = 0.0", "lambda_kl = 1.0"),
    )
    .unwrap();
    let err = Recipe::load(&path).unwrap_err().to_string();
    assert!(err.contains("must be 0 with model.vq_codes"), "{err}");
}

fn vocoder_records(dir: &Path) -> Vec<(u64, f32)> {
    std::fs::read_to_string(dir.join("run/vocoder/train.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| match serde_json::from_str::<LogRecord>(l).unwrap() {
            LogRecord::VocoderTrain { step, mel, .. } => Some((step, mel)),
            _ => None,
        })
        .collect()
}

/// The vocoder's training (`[vocoder]`, `voxswap train --vocoder`) through the shared loop: the
/// log-mel error of its audio falls, an interrupted run resumes to the same weights, and a
/// checkpoint is a vocoder that loads and streams.
#[test]
fn vocoder_trains_resumes_and_loads() {
    static STOP: AtomicBool = AtomicBool::new(false);
    use voxswap_train::vocoder_train::train_vocoder;
    let section = "\n[vocoder]\nsteps = 40\nbatch_size = 4\nsegment_frames = 16\nsize = \"tiny\"\nlr = 0.003\ncheckpoint_every = 20\nvalid_every = 20\nlog_every = 5\n";
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with_vocoder = |dir: &Path| {
        let r = recipe(dir, 10, "");
        let path = dir.join("recipe.toml");
        let text = std::fs::read_to_string(&path).unwrap() + section;
        std::fs::write(&path, text).unwrap();
        let r2 = Recipe::load(&path).unwrap();
        assert_eq!(r2.data, r.data);
        r2
    };
    let ra = with_vocoder(a.path());
    let out = train_vocoder(&ra, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap();
    assert!(matches!(out, Outcome::Finished { step: 40, .. }), "{out:?}");
    let recs = vocoder_records(a.path());
    assert!(recs.last().unwrap().1 < recs[0].1, "mel error did not fall: {recs:?}");
    let rb = with_vocoder(b.path());
    let out = train_vocoder(&rb, &Device::Cpu, &STOP, &mut StopAt(15, &STOP)).unwrap();
    assert!(matches!(out, Outcome::Interrupted { step: 15, .. }), "{out:?}");
    train_vocoder(&rb, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap();
    let w = |d: &Path| std::fs::read(d.join("run/vocoder/checkpoints/step-00000040/vocoder.safetensors")).unwrap();
    assert!(
        w(a.path()) == w(b.path()),
        "resumed vocoder differs from the straight run's"
    );
    assert_eq!(recs, vocoder_records(b.path()));
    let ckpt = a.path().join("run/vocoder/checkpoints/step-00000040");
    let v = voxswap_model::NeuralVocoder::load(&ckpt, &Device::Cpu)
        .unwrap()
        .unwrap();
    let mel = voxswap_train::data::compute_mel(&clips().join("speech_m.wav"), &v.config().frontend).unwrap();
    let x = candle_core::Tensor::from_vec(mel.data.clone(), (1, mel.n_mels, mel.frames), &Device::Cpu).unwrap();
    let y = v.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(y.iter().all(|s| s.is_finite()));
    assert!(std::fs::read(a.path().join("run/vocoder/loss.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    // A recipe without [vocoder] says so.
    let plain = recipe(tempfile::tempdir().unwrap().path(), 10, "");
    let err = train_vocoder(&plain, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap_err();
    assert!(err.to_string().contains("[vocoder]"), "{err}");
}

/// A source-filter vocoder (`phase = "source"`): its F0 loss (against YIN on the corpus's real
/// speech) is logged in training and validation, and the validation error falls (with the
/// log-mel term nearly off: 16 channels cannot serve both in 60 steps), an interrupted run resumes to the same
/// weights (the F0 tracks are recomputed, not saved), and its checkpoint loads as a source-filter
/// vocoder whose audio on real speech is finite and not silent.
#[test]
fn source_vocoder_learns_the_f0_and_resumes() {
    static STOP: AtomicBool = AtomicBool::new(false);
    source_vocoder_learns_the_f0("lambda_f0 = 50.0\nlambda_mel = 0.0001\nlr = 0.003\n", 60, &STOP);
}

/// The same with an F0 network of its own (`f0_net`, a classifier over pitch bins trained on
/// the F0 alone): the log-mel term at its usual weight.
#[test]
fn source_vocoder_with_an_f0_network_learns_the_f0_and_resumes() {
    static STOP: AtomicBool = AtomicBool::new(false);
    source_vocoder_learns_the_f0(
        "f0_net = { channels = 16, blocks = 1, bins = 48 }\nlr = 0.01\n",
        240,
        &STOP,
    );
}

fn source_vocoder_learns_the_f0(extra: &str, steps: u64, stop: &'static AtomicBool) {
    use voxswap_train::vocoder_train::train_vocoder;
    let (third, sixth) = (steps / 3, steps / 6);
    let section = format!("\n[vocoder]\nsteps = {steps}\nbatch_size = 4\nsegment_frames = 16\nsize = \"tiny\"\nphase = \"source\"\n{extra}checkpoint_every = {third}\nvalid_every = {third}\nlog_every = {sixth}\n");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with_vocoder = |dir: &Path| {
        recipe_text(dir, 10, "");
        let path = dir.join("recipe.toml");
        std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + &section).unwrap();
        Recipe::load(&path).unwrap()
    };
    let ra = with_vocoder(a.path());
    let out = train_vocoder(&ra, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap();
    assert!(
        matches!(out, Outcome::Finished { step, .. } if step == steps),
        "{out:?}"
    );
    let log = std::fs::read_to_string(a.path().join("run/vocoder/train.jsonl")).unwrap();
    let recs: Vec<LogRecord> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let f0: Vec<f32> = recs
        .iter()
        .filter_map(|r| match r {
            LogRecord::VocoderTrain { f0, .. } => Some(f0.expect("no F0 loss logged")),
            _ => None,
        })
        .collect();
    assert_eq!(f0.len(), 6);
    assert!(f0.iter().all(|v| v.is_finite() && *v >= 0.0), "{f0:?}");
    // On the fixed validation segments, at the head's own F0.
    let valid: Vec<f32> = recs
        .iter()
        .filter_map(|r| match r {
            LogRecord::VocoderValid { f0, .. } => Some(f0.expect("no validation F0 error")),
            _ => None,
        })
        .collect();
    assert_eq!(valid.len(), 3);
    eprintln!("validation F0 errors {valid:?}");
    assert!(valid[2] < valid[0], "F0 error did not fall: {valid:?}");
    let rb = with_vocoder(b.path());
    let out = train_vocoder(&rb, &Device::Cpu, stop, &mut StopAt(steps / 2, stop)).unwrap();
    assert!(
        matches!(out, Outcome::Interrupted { step, .. } if step == steps / 2),
        "{out:?}"
    );
    train_vocoder(&rb, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap();
    let ckpt = |d: &Path| d.join(format!("run/vocoder/checkpoints/step-{steps:08}"));
    let w = |d: &Path| std::fs::read(ckpt(d).join("vocoder.safetensors")).unwrap();
    assert!(
        w(a.path()) == w(b.path()),
        "resumed vocoder differs from the straight run's"
    );
    let v = voxswap_model::NeuralVocoder::load(&ckpt(a.path()), &Device::Cpu)
        .unwrap()
        .unwrap();
    assert_eq!(v.config().phase, voxswap_model::vocoder::PhaseMode::Source);
    let mel = voxswap_train::data::compute_mel(&clips().join("speech_m.wav"), &v.config().frontend).unwrap();
    let x = candle_core::Tensor::from_vec(mel.data.clone(), (1, mel.n_mels, mel.frames), &Device::Cpu).unwrap();
    let y = v.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(y.iter().all(|s| s.is_finite()));
    assert!(y.iter().map(|s| s * s).sum::<f32>() > 0.0);
}

/// `[vocoder] synthesis_hops`: a wider synthesis frame reaches the trained vocoder's
/// configuration (and its latency), with either phase mode; a width the vocoder cannot use is
/// refused when the recipe loads, naming the section.
#[test]
fn vocoder_synthesis_hops() {
    use voxswap_train::vocoder_train::train_vocoder;
    let section = |extra: &str| {
        format!("\n[vocoder]\nsteps = 4\nbatch_size = 2\nsegment_frames = 16\nsize = \"tiny\"\ncheckpoint_every = 4\nvalid_every = 4\nlog_every = 2\n{extra}")
    };
    let dir = tempfile::tempdir().unwrap();
    recipe_text(dir.path(), 10, "");
    let path = dir.path().join("recipe.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, base.clone() + &section("synthesis_hops = 4\n")).unwrap();
    let r = Recipe::load(&path).unwrap();
    let out = train_vocoder(&r, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap();
    assert!(matches!(out, Outcome::Finished { step: 4, .. }), "{out:?}");
    let v = voxswap_model::NeuralVocoder::load(&dir.path().join("run/vocoder/checkpoints/step-00000004"), &Device::Cpu)
        .unwrap()
        .unwrap();
    assert_eq!(v.config().n_fft, 4 * v.config().frontend.hop_length);
    assert_eq!(v.config().latency_samples(), v.config().frontend.hop_length);
    std::fs::write(&path, base.clone() + &section("synthesis_hops = 0\n")).unwrap();
    let err = Recipe::load(&path).unwrap_err().to_string();
    assert!(err.contains("[vocoder]") && err.contains("n_fft"), "{err}");
    std::fs::write(
        &path,
        base.clone() + &section("synthesis_hops = 4\nphase = \"integrated\"\n"),
    )
    .unwrap();
    let r = Recipe::load(&path).unwrap();
    let v = r.vocoder.as_ref().unwrap();
    assert_eq!(
        v.vocoder_config(&r.model_config().unwrap().frontend).unwrap().n_fft,
        640
    );
}

/// The vocoder against discriminators (`vocoder.lambda_adv`, from `vocoder.adv_start`): their
/// losses are logged from the start step on, the run learns something else than without them,
/// an interrupted run resumes to the same weights (theirs included), their weights stay out of
/// the vocoder's files, and a checkpoint is not resumed by a recipe that disagrees about them.
#[test]
fn vocoder_against_discriminators_trains_and_resumes() {
    static STOP: AtomicBool = AtomicBool::new(false);
    use voxswap_train::vocoder_train::train_vocoder;
    let section = |adv: &str| {
        format!(
            "\n[vocoder]\nsteps = 24\nbatch_size = 2\nsegment_frames = 16\nsize = \"tiny\"\nlr = 0.003\ncheckpoint_every = 12\nvalid_every = 12\nlog_every = 4\n{adv}"
        )
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let with = |i: usize, adv: &str| {
        let dir = dirs[i].path();
        recipe(dir, 10, "");
        let path = dir.join("recipe.toml");
        let text = std::fs::read_to_string(&path).unwrap() + &section(adv);
        std::fs::write(&path, text).unwrap();
        Recipe::load(&path).unwrap()
    };
    let gan = "lambda_adv = 1.0\nadv_start = 5\n";
    let straight = with(0, gan);
    train_vocoder(&straight, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap();
    let resumed = with(1, gan);
    let out = train_vocoder(&resumed, &Device::Cpu, &STOP, &mut StopAt(8, &STOP)).unwrap();
    assert!(matches!(out, Outcome::Interrupted { step: 8, .. }), "{out:?}");
    // A recipe without the discriminators refuses their checkpoint, and the other way round.
    let mut without = resumed.clone();
    without.vocoder.as_mut().unwrap().lambda_adv = 0.0;
    let err = train_vocoder(&without, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap_err();
    assert!(err.to_string().contains("with the discriminators"), "{err}");
    train_vocoder(&resumed, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap();
    let plain = with(2, "");
    train_vocoder(&plain, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap();
    let mut late = plain.clone();
    late.vocoder.as_mut().unwrap().lambda_adv = 1.0;
    late.vocoder.as_mut().unwrap().steps = 30;
    let err = train_vocoder(&late, &Device::Cpu, &AtomicBool::new(false), &mut Quiet).unwrap_err();
    assert!(err.to_string().contains("without the discriminators"), "{err}");
    let ckpt = |i: usize| dirs[i].path().join("run/vocoder/checkpoints/step-00000024");
    let w = |i: usize, f: &str| std::fs::read(ckpt(i).join(f)).unwrap();
    assert!(
        w(0, "vocoder.safetensors") == w(1, "vocoder.safetensors"),
        "resumed vocoder differs"
    );
    assert!(
        w(0, "training_only.safetensors") == w(1, "training_only.safetensors"),
        "resumed discriminators differ"
    );
    assert!(
        w(0, "vocoder.safetensors") != w(2, "vocoder.safetensors"),
        "the discriminators changed nothing"
    );
    assert!(!ckpt(2).join("training_only.safetensors").exists());
    // Logged from the start step on.
    let log = std::fs::read_to_string(dirs[0].path().join("run/vocoder/train.jsonl")).unwrap();
    type Parts = (u64, Option<f32>, Option<f32>, Option<f32>);
    let recs: Vec<Parts> = log
        .lines()
        .filter_map(|l| match serde_json::from_str::<LogRecord>(l).unwrap() {
            LogRecord::VocoderTrain {
                step, adv, fm, disc, ..
            } => Some((step, adv, fm, disc)),
            _ => None,
        })
        .collect();
    assert_eq!(recs.len(), 6, "{recs:?}");
    for (step, adv, fm, disc) in &recs {
        if *step <= 5 {
            assert!(adv.is_none() && fm.is_none() && disc.is_none(), "{recs:?}");
        } else {
            let all = [adv.unwrap(), fm.unwrap(), disc.unwrap()];
            assert!(all.iter().all(|v| v.is_finite() && *v > 0.0), "{recs:?}");
        }
    }
    // The vocoder folder loads.
    assert!(voxswap_model::NeuralVocoder::load(&ckpt(0), &Device::Cpu)
        .unwrap()
        .is_some());
}

/// The denoising auto-encoder (`train.denoise_snr_db`, `train.denoise_reverb`): the corruption
/// changes what is learnt, a resumed run equals a straight one (its draws derive from the
/// step), and reverberation without noise is refused when the recipe loads.
#[test]
fn denoising_trains_and_resumes() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let run = |i: usize, extra: &str, stop: Option<u64>| {
        let r = recipe(dirs[i].path(), 30, extra);
        match stop {
            Some(at) => trainer::train(&r, &Device::Cpu, &STOP, &mut StopAt(at, &STOP), &|_, _| {}),
            None => trainer::train(&r, &Device::Cpu, &AtomicBool::new(false), &mut Quiet, &|_, _| {}),
        }
        .unwrap()
    };
    let noisy = "denoise_snr_db = 5.0\ndenoise_reverb = 0.5";
    run(0, noisy, None);
    assert!(matches!(run(1, noisy, Some(10)), Outcome::Interrupted { step: 10, .. }));
    assert!(matches!(run(1, noisy, None), Outcome::Finished { step: 30, .. }));
    run(2, "", None);
    let w = |i: usize| std::fs::read(dirs[i].path().join("run/checkpoints/step-00000030/model.safetensors")).unwrap();
    assert!(w(0) == w(1), "resumed weights differ from the straight run's");
    assert!(w(0) != w(2), "the corruption changed nothing");
    assert!(train_records(dirs[0].path()).iter().all(|r| r.1.is_finite()));
    let path = dirs[2].path().join("bad.toml");
    let text = std::fs::read_to_string(dirs[2].path().join("recipe.toml"))
        .unwrap()
        .replace("[optim]", "denoise_reverb = 0.5\n\n[optim]");
    std::fs::write(&path, text).unwrap();
    let e = Recipe::load(&path).unwrap_err().to_string();
    assert!(e.contains("denoise_reverb"), "{e}");
}
