//! Model folders on real speech: save, load, embed, convert; and every broken folder gives a
//! clear error naming the file and the tensor.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use voxswap_audio::{read_mono, ChannelMix, FrontendConfig, LogMel, Mel};
use voxswap_model::io::{save_model, CONFIG_FILE, WEIGHTS_FILE};
use voxswap_model::{init, AdaInVc, ModelConfig, SpeakerEmbedding, VoiceConverter};

fn clip_mel(name: &str) -> Mel {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name);
    let audio = read_mono(p, ChannelMix::Downmix).unwrap();
    LogMel::new(&FrontendConfig::speech_16k())
        .unwrap()
        .compute(&audio.samples)
}

fn saved_tiny(dir: &Path, seed: u64) -> (ModelConfig, VarMap) {
    let cfg = ModelConfig::tiny();
    let vars = VarMap::new();
    AdaInVc::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    init::init_pytorch_like(&vars, seed).unwrap();
    save_model(dir, &cfg, &vars).unwrap();
    (cfg, vars)
}

#[test]
fn saved_model_loads_and_converts_speech() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny(dir.path(), 1);
    let vc = VoiceConverter::load(dir.path(), &Device::Cpu).unwrap();
    let src = clip_mel("speech_m.wav");
    let target = vc.embed(&[clip_mel("speech_f.wav"), clip_mel("speech_s.wav")]).unwrap();
    assert_eq!(target.values().len(), 8);
    let out = vc.convert(&src, &target).unwrap();
    assert_eq!((out.n_mels, out.frames), (80, src.frames));
    assert!(out.data.iter().all(|v| v.is_finite()));
    // Two references embed to the mean of each alone.
    let a = vc.embed(&[clip_mel("speech_f.wav")]).unwrap();
    let b = vc.embed(&[clip_mel("speech_s.wav")]).unwrap();
    let mean = SpeakerEmbedding::mix(&[(1.0, &a), (1.0, &b)]).unwrap();
    for (x, y) in mean.values().iter().zip(target.values()) {
        assert!((x - y).abs() < 1e-5);
    }
    // A different voice changes the output.
    let other = vc.convert(&src, &a).unwrap();
    assert!(out.data.iter().zip(&other.data).any(|(x, y)| (x - y).abs() > 1e-4));
    // Contrast: 0 is the voice itself; s moves it along the line from the other voice, s times
    // the distance between them further away.
    let s = vc.embed(std::slice::from_ref(&src)).unwrap();
    let dist = |x: &SpeakerEmbedding, y: &SpeakerEmbedding| {
        x.values()
            .iter()
            .zip(y.values())
            .map(|(p, q)| (p - q) * (p - q))
            .sum::<f32>()
            .sqrt()
    };
    assert_eq!(target.contrast(&s, 0.0).unwrap(), target);
    let pushed = target.contrast(&s, 0.5).unwrap();
    let d = dist(&target, &s);
    assert!(d > 1e-4);
    assert!((dist(&pushed, &target) - 0.5 * d).abs() < 1e-4 * d.max(1.0));
    assert!((dist(&pushed, &s) - 1.5 * d).abs() < 1e-4 * d.max(1.0));
    assert!(target.contrast(&s, -0.1).is_err());
    assert!(target.contrast(&s, f32::NAN).is_err());
    assert!(target.contrast(&SpeakerEmbedding::new(vec![0.0; 3]), 0.5).is_err());
}

#[test]
fn seeded_init_is_reproducible() {
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    saved_tiny(d1.path(), 7);
    saved_tiny(d2.path(), 7);
    saved_tiny(d3.path(), 8);
    let read = |d: &Path| std::fs::read(d.join(WEIGHTS_FILE)).unwrap();
    assert_eq!(read(d1.path()), read(d2.path()));
    assert_ne!(read(d1.path()), read(d3.path()));
}

fn load_err(dir: &Path) -> String {
    VoiceConverter::load(dir, &Device::Cpu).unwrap_err().to_string()
}

#[test]
fn broken_folders_give_clear_errors() {
    // Missing folder / files.
    let dir = tempfile::tempdir().unwrap();
    let err = load_err(&dir.path().join("nothing"));
    assert!(err.contains(CONFIG_FILE) && err.contains("cannot read"), "{err}");

    // Corrupt weights.
    saved_tiny(dir.path(), 1);
    std::fs::write(
        dir.path().join(WEIGHTS_FILE),
        b"\x10\x00\x00\x00\x00\x00\x00\x00garbage, not safetensors",
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains(WEIGHTS_FILE) && err.contains("not a readable safetensors file"),
        "{err}"
    );

    // Missing weights file.
    std::fs::remove_file(dir.path().join(WEIGHTS_FILE)).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains(WEIGHTS_FILE) && err.contains("no such file"), "{err}");

    // Wrong shapes: weights of a wider model under the tiny config.
    let other = tempfile::tempdir().unwrap();
    let mut wide = ModelConfig::tiny();
    wide.decoder.c_h = 24;
    let vars = VarMap::new();
    AdaInVc::new(&wide, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    save_model(other.path(), &wide, &vars).unwrap();
    std::fs::copy(other.path().join(WEIGHTS_FILE), dir.path().join(WEIGHTS_FILE)).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("tensor `decoder.") && err.contains("shape") && err.contains("the model expects"),
        "{err}"
    );

    // Unknown field in config.json.
    saved_tiny(dir.path(), 1);
    let cfg = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
    std::fs::write(
        dir.path().join(CONFIG_FILE),
        cfg.replacen("\"preset\"", "\"presett\"", 1),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains(CONFIG_FILE) && err.contains("unknown field `presett`"),
        "{err}"
    );
}

#[test]
fn short_and_mismatched_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny(dir.path(), 1);
    let vc = VoiceConverter::load(dir.path(), &Device::Cpu).unwrap();
    let mel = clip_mel("speech_m.wav");
    let short = Mel {
        n_mels: 80,
        frames: 3,
        data: mel.data[..240].to_vec(),
    };
    let err = vc.embed(&[short]).unwrap_err().to_string();
    assert!(err.contains("too short"), "{err}");
    assert!(vc.embed(&[]).is_err());
    let wrong = SpeakerEmbedding::new(vec![0.0; 5]);
    assert!(vc.convert(&mel, &wrong).unwrap_err().to_string().contains("5 values"));
}
