//! `voxswap train` from the command line on real speech: it trains, writes its run folder, and
//! on SIGINT (Ctrl-C) writes a checkpoint and exits 130; the same command then resumes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

fn write_recipe(dir: &Path, steps: u64) -> std::path::PathBuf {
    for (spk, clip) in [("m", "speech_m.wav"), ("f", "speech_f.wav"), ("s", "speech_s.wav")] {
        let d = dir.join("corpus").join(spk);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(data(clip), d.join("a.wav")).unwrap();
        std::fs::copy(data(clip), d.join("b.wav")).unwrap();
    }
    let recipe = dir.join("recipe.toml");
    std::fs::write(
        &recipe,
        format!(
            "[data]\ncorpus = \"corpus\"\ncache = \"cache\"\nsegment_frames = 32\n\n[model]\npreset = \"tiny-stream\"\n\n\
             [train]\nsteps = {steps}\nbatch_size = 2\ncheckpoint_every = 1000000\nvalid_every = 20\nlog_every = 5\n\n\
             [output]\ndir = \"run\"\n"
        ),
    )
    .unwrap();
    recipe
}

#[test]
fn train_runs_and_writes_its_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), 40);
    let o = voxswap(&[&"train", &"--config", &recipe]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("finished at step 40"), "{}", stdout(&o));
    let run = dir.path().join("run");
    assert!(run.join("checkpoints/step-00000040/model.safetensors").is_file());
    assert!(run.join("loss.png").is_file());
    let log = std::fs::read_to_string(run.join("train.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"kind\":\"train\"")).count(), 8);
    assert!(log.contains("\"kind\":\"valid\""));
    // Without a terminal (stderr is a pipe here) progress still shows: a line of the step and
    // its loss, and each validation.
    let err = stderr(&o);
    assert!(err.contains("step 5/40: loss"), "{err}");
    assert!(err.contains("step 20: validation rec"), "{err}");
    // A bad recipe fails fast with the file and the key named.
    std::fs::write(&recipe, "[data]\ncorpus = \"c\"\ncache = \"x\"\nsegment_framez = 3\n").unwrap();
    let o = voxswap(&[&"train", &"--config", &recipe]);
    assert_clean_error(&o, &recipe, "unknown field `segment_framez`");
}

#[test]
fn ctrl_c_checkpoints_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), 100_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxswap"))
        .args(["train", "--config"])
        .arg(&recipe)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training is under way (the log has records), then interrupt.
    let log = dir.path().join("run/train.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |t| t.lines().count() < 2) {
        assert!(start.elapsed() < Duration::from_secs(120), "training did not start");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("voxswap train exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("stopped at step"), "{text}");
    let ckpts: Vec<_> = std::fs::read_dir(dir.path().join("run/checkpoints"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(ckpts.len(), 1, "one checkpoint, no temporary folder left");
    let name = ckpts[0].file_name().to_string_lossy().into_owned();
    let step: u64 = name.trim_start_matches("step-").parse().unwrap();
    // Resume with a target just past the interruption.
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("steps = 100000", &format!("steps = {}", step + 10));
    std::fs::write(&recipe, text).unwrap();
    let o = voxswap(&[&"train", &"--config", &recipe]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("finished at step {}", step + 10)),
        "{}",
        stdout(&o)
    );
}

/// `voxswap train --vocoder` trains the recipe's [vocoder] section into its run folder; a
/// recipe without one is refused with a message naming the file.
#[test]
fn train_vocoder_runs_and_writes_its_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), 40);
    let o = voxswap(&[&"train", &"--config", &recipe, &"--vocoder"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no [vocoder] section"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&recipe).unwrap()
        + "\n[vocoder]\nsteps = 6\nbatch_size = 2\nsegment_frames = 16\nsize = \"tiny\"\nlog_every = 3\nvalid_every = 3\n";
    std::fs::write(&recipe, text).unwrap();
    let o = voxswap(&[&"train", &"--config", &recipe, &"--vocoder"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("finished at step 6; vocoder:"), "{}", stdout(&o));
    let run = dir.path().join("run/vocoder");
    let ckpt = run.join("checkpoints/step-00000006");
    for f in ["vocoder.json", "vocoder.safetensors", "optim.safetensors", "state.json"] {
        assert!(ckpt.join(f).is_file(), "{f}");
    }
    let log = std::fs::read_to_string(run.join("train.jsonl")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.contains("\"kind\":\"vocoder_train\"")).count(),
        2
    );
    assert!(log.contains("\"kind\":\"vocoder_valid\""));
    assert!(run.join("loss.png").is_file());
}

/// Fine-tuning the vocoder: a run starts from another's weights (`init_from`) and reads a
/// model's reconstructions of the corpus (`finetune_model`), computed once into a store of
/// their own beside the recipe's features; a model that cannot be loaded is named.
#[test]
fn vocoder_fine_tunes_on_a_models_reconstructions() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), 40);
    let base = std::fs::read_to_string(&recipe).unwrap();
    let section = "\n[vocoder]\nbatch_size = 2\nsegment_frames = 16\nsize = \"tiny\"\nlog_every = 3\nvalid_every = 3\n";
    std::fs::write(&recipe, format!("{base}{section}steps = 6\n")).unwrap();
    let o = voxswap(&[&"train", &"--config", &recipe, &"--vocoder"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let trained = dir.path().join("run/vocoder/checkpoints/step-00000006");
    let m = tiny_model(dir.path());

    // A learning rate so small that the weights cannot move: the run ends where it started.
    let ft = dir.path().join("ft.toml");
    let write_ft = |model: &Path| {
        std::fs::write(
            &ft,
            format!(
                "{base}{section}steps = 3\nlr = 1e-12\ndir = \"ft\"\ninit_from = \"{}\"\nfinetune_model = \"{}\"\n",
                trained.display(),
                model.display()
            ),
        )
        .unwrap();
    };
    write_ft(&dir.path().join("nowhere"));
    let o = voxswap(&[&"train", &"--config", &ft, &"--vocoder"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nowhere"), "{}", stderr(&o));
    write_ft(&m);
    let o = voxswap(&[&"train", &"--config", &ft, &"--vocoder"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let load =
        |p: &Path| candle_core::safetensors::load(p.join("vocoder.safetensors"), &candle_core::Device::Cpu).unwrap();
    let (before, after) = (load(&trained), load(&dir.path().join("ft/checkpoints/step-00000003")));
    let mut worst = 0f32;
    for (name, t) in &before {
        let d = (t - &after[name])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        worst = worst.max(d.to_scalar::<f32>().unwrap());
    }
    assert!(
        worst < 1e-6,
        "fine-tuning did not start from init_from: weights moved by {worst}"
    );

    // The reconstructions' store: every utterance, and not the plain log-mels.
    let cache = dir.path().join("cache");
    let recon = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().contains("-recon-"))
        .expect("no reconstruction store");
    let index = std::fs::read_to_string(recon.join("index.tsv")).unwrap();
    assert_eq!(index.lines().count(), 1 + 6, "{index}");
    let store = voxswap_train::store::FeatureStore::open(&recon, 80).unwrap();
    let id = store.find("m/a.wav").unwrap();
    let r = store.mel(id).unwrap();
    let plain = voxswap_train::data::compute_mel(
        &dir.path().join("corpus/m/a.wav"),
        &voxswap_audio::FrontendConfig::speech_16k(),
    )
    .unwrap();
    assert_eq!(r.frames, plain.frames);
    assert_ne!(r.data, plain.data);
}
