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

/// Per band, the mean log-mel over the frames within 26 dB of the loudest (the speech).
fn speech_means(m: &Mel, of: &Mel) -> Vec<f32> {
    let loud: Vec<f32> = (0..of.frames)
        .map(|t| (0..of.n_mels).map(|k| of.at(k, t)).sum::<f32>() / of.n_mels as f32)
        .collect();
    let top = loud.iter().copied().fold(f32::MIN, f32::max);
    let speech: Vec<usize> = (0..of.frames).filter(|&t| loud[t] >= top - 6.0).collect();
    assert!(
        speech.len() > 50 && speech.len() < of.frames,
        "{} speech frames",
        speech.len()
    );
    (0..m.n_mels)
        .map(|k| speech.iter().map(|&t| m.at(k, t)).sum::<f32>() / speech.len() as f32)
        .collect()
}

fn mean_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

#[test]
fn spectrum_correction_matches_the_reference_spectrum() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny(dir.path(), 3);
    let vc = VoiceConverter::load(dir.path(), &Device::Cpu).unwrap();
    let (reference, source) = (clip_mel("speech_f.wav"), clip_mel("speech_m.wav"));
    let voice = vc.embed(std::slice::from_ref(&reference)).unwrap();
    let plain = vc.speaker_vector(std::slice::from_ref(&reference)).unwrap();
    assert_eq!(voice.values(), plain.values());
    assert_eq!(plain.spectrum(), None);
    let spectrum = voice.spectrum().unwrap();
    assert_eq!(spectrum.len(), 80);
    // The reference converted into its own voice has exactly the reference's average spectrum
    // over its speech with the correction, and (an untrained model) far from it without.
    let want = speech_means(&reference, &reference);
    let fixed = speech_means(&vc.convert(&reference, &voice).unwrap(), &reference);
    let raw = speech_means(&vc.convert(&reference, &plain).unwrap(), &reference);
    assert!(
        mean_abs_difference(&fixed, &want) < 1e-3,
        "{}",
        mean_abs_difference(&fixed, &want)
    );
    assert!(
        mean_abs_difference(&raw, &want) > 0.5,
        "{}",
        mean_abs_difference(&raw, &want)
    );
    // Another recording converted into the voice: the correction adds the same values to every
    // frame, and brings its average spectrum nearer the reference's.
    let with = vc.convert(&source, &voice).unwrap();
    let without = vc.convert(&source, &plain).unwrap();
    for k in [0, 40, 79] {
        for t in [0, source.frames / 2, source.frames - 1] {
            assert!((with.at(k, t) - without.at(k, t) - spectrum[k]).abs() < 1e-4);
        }
    }
    let near = mean_abs_difference(&speech_means(&with, &source), &want);
    let far = mean_abs_difference(&speech_means(&without, &source), &want);
    assert!(near < 0.5 * far, "with {near:.3}, without {far:.3}");
    // Strength scales it, 0 removes it; mixes mix it; contrast keeps the target's.
    let half = voice.spectrum_strength(0.5).unwrap();
    assert!((half.spectrum().unwrap()[10] - 0.5 * spectrum[10]).abs() < 1e-6);
    let zero = voice.spectrum_strength(0.0).unwrap();
    assert_eq!((zero.values(), zero.spectrum()), (plain.values(), None));
    assert!(voice.spectrum_strength(-1.0).is_err());
    let other = vc.embed(std::slice::from_ref(&source)).unwrap();
    let mix = SpeakerEmbedding::mix(&[(3.0, &voice), (1.0, &other)]).unwrap();
    let k = 20;
    let expect = 0.75 * spectrum[k] + 0.25 * other.spectrum().unwrap()[k];
    assert!((mix.spectrum().unwrap()[k] - expect).abs() < 1e-5);
    assert_eq!(
        SpeakerEmbedding::mix(&[(1.0, &voice), (1.0, &plain)])
            .unwrap()
            .spectrum(),
        None
    );
    assert_eq!(voice.contrast(&other, 0.5).unwrap().spectrum(), voice.spectrum());
    // A correction of the wrong size is refused, not applied.
    let wrong = plain.clone().with_spectrum(Some(vec![0.0; 79]));
    let err = vc.convert(&source, &wrong).unwrap_err().to_string();
    assert!(err.contains("79 values") && err.contains("80 mel bands"), "{err}");
}

#[test]
fn matching_the_spectrum_on_the_source_lands_on_the_reference_average() {
    let dir = tempfile::tempdir().unwrap();
    saved_tiny(dir.path(), 3);
    let vc = VoiceConverter::load(dir.path(), &Device::Cpu).unwrap();
    let (reference, source) = (clip_mel("speech_f.wav"), clip_mel("speech_m.wav"));
    let voice = vc.embed(std::slice::from_ref(&reference)).unwrap();
    // The voice carries its reference's average spectrum over its speech.
    let average = voice.average().unwrap().to_vec();
    assert!(mean_abs_difference(&average, &speech_means(&reference, &reference)) < 1e-4);
    assert_eq!(
        vc.speaker_vector(std::slice::from_ref(&reference)).unwrap().average(),
        None
    );
    // Matched on the source, the source's conversion has exactly that average over the
    // source's speech; the reference-side correction alone leaves it further off.
    let matched = vc.match_spectrum(&source, &voice, 1.0).unwrap();
    assert_eq!(matched.values(), voice.values());
    let got = speech_means(&vc.convert(&source, &matched).unwrap(), &source);
    let gap = mean_abs_difference(&got, &average);
    assert!(gap < 1e-3, "{gap}");
    let by_reference = speech_means(&vc.convert(&source, &voice).unwrap(), &source);
    let gap_reference = mean_abs_difference(&by_reference, &average);
    assert!(gap_reference > 0.01 && gap < 0.1 * gap_reference, "{gap_reference}");
    // Strength scales the correction; 0 is no correction at all.
    let half = vc.match_spectrum(&source, &voice, 0.5).unwrap();
    for k in [0, 33, 79] {
        let (h, f) = (half.spectrum().unwrap()[k], matched.spectrum().unwrap()[k]);
        assert!((h - 0.5 * f).abs() < 1e-5, "band {k}: {h} vs {f}");
    }
    let none = vc.match_spectrum(&source, &voice, 0.0).unwrap();
    assert_eq!(none.spectrum(), None);
    assert!(vc.match_spectrum(&source, &voice, -1.0).is_err());
    // A voice without an average (an older bank entry) keeps its own correction, scaled.
    let old = voice.clone().with_average(None);
    assert_eq!(
        vc.match_spectrum(&source, &old, 0.5).unwrap(),
        old.spectrum_strength(0.5).unwrap()
    );
    // Averages mix with the voices' weights; contrast keeps the target's; a wrong size is
    // refused with its sizes.
    let other = vc.embed(std::slice::from_ref(&source)).unwrap();
    let mix = SpeakerEmbedding::mix(&[(1.0, &voice), (3.0, &other)]).unwrap();
    let expect = 0.25 * average[7] + 0.75 * other.average().unwrap()[7];
    assert!((mix.average().unwrap()[7] - expect).abs() < 1e-5);
    assert_eq!(voice.contrast(&other, 0.5).unwrap().average(), voice.average());
    let wrong = voice.clone().with_average(Some(vec![0.0; 81]));
    let err = vc.match_spectrum(&source, &wrong, 1.0).unwrap_err().to_string();
    assert!(err.contains("81 values") && err.contains("80 mel bands"), "{err}");
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

/// A model with reference attention: its voices are the global vector and the tokens in one
/// embedding, which saves, loads, mixes and converts like any other.
#[test]
fn reference_attention_voices_embed_mix_and_convert() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::tiny_attention();
    let vars = VarMap::new();
    AdaInVc::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    init::init_pytorch_like(&vars, 3).unwrap();
    save_model(dir.path(), &cfg, &vars).unwrap();
    let vc = VoiceConverter::load(dir.path(), &Device::Cpu).unwrap();
    let src = clip_mel("speech_m.wav");
    let a = vc.embed(&[clip_mel("speech_f.wav")]).unwrap();
    let b = vc.embed(&[clip_mel("speech_s.wav")]).unwrap();
    assert_eq!(a.values().len(), 8 + 4 * 8);
    // Two references: the global vectors average, the tokens pool both references' frames.
    let both = vc.embed(&[clip_mel("speech_f.wav"), clip_mel("speech_s.wav")]).unwrap();
    for i in 0..8 {
        assert!((both.values()[i] - 0.5 * (a.values()[i] + b.values()[i])).abs() < 1e-5);
    }
    assert!((8..40).any(|i| (both.values()[i] - 0.5 * (a.values()[i] + b.values()[i])).abs() > 1e-4));
    let (ya, yb) = (vc.convert(&src, &a).unwrap(), vc.convert(&src, &b).unwrap());
    let mix = SpeakerEmbedding::mix(&[(1.0, &a), (1.0, &b)]).unwrap();
    let ym = vc.convert(&src, &mix).unwrap();
    assert!(ym.data.iter().all(|v| v.is_finite()));
    let differs = |x: &Mel, y: &Mel| x.data.iter().zip(&y.data).any(|(p, q)| (p - q).abs() > 1e-4);
    assert!(differs(&ya, &yb) && differs(&ym, &ya) && differs(&ym, &yb));
    // The tokens matter: the same global vector with b's tokens converts differently.
    let mut swapped = a.values().to_vec();
    swapped[8..].copy_from_slice(&b.values()[8..]);
    let ys = vc
        .convert(
            &src,
            &SpeakerEmbedding::new(swapped).with_spectrum(a.spectrum().map(<[f32]>::to_vec)),
        )
        .unwrap();
    assert!(differs(&ys, &ya));
    // An embedding of the plain model's width is refused.
    assert!(vc.convert(&src, &SpeakerEmbedding::new(vec![0.0; 8])).is_err());
}

/// `export_model` copies a checkpoint into a model folder: in full precision the very weights;
/// in half precision a file of halves that loads, converts real speech as the original does up
/// to the rounding, and runs frame by frame on halves; a weight beyond half precision's range is
/// an error naming it, with no file written.
#[test]
fn export_in_half_precision() {
    use voxswap_model::io::export_model;
    let src = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::tiny_stream();
    let vars = VarMap::new();
    AdaInVc::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    init::init_pytorch_like(&vars, 3).unwrap();
    save_model(src.path(), &cfg, &vars).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (full, half) = (out.path().join("full"), out.path().join("half"));
    export_model(src.path(), &full, false).unwrap();
    export_model(src.path(), &half, true).unwrap();
    let read = |d: &Path| candle_core::safetensors::load(d.join(WEIGHTS_FILE), &Device::Cpu).unwrap();
    let (orig, f, h) = (read(src.path()), read(&full), read(&half));
    assert_eq!(orig.len(), h.len());
    for (name, t) in &orig {
        let flat = |t: &candle_core::Tensor| {
            t.to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(flat(t), flat(&f[name]), "{name}: full precision changed a weight");
        assert_eq!(h[name].dtype(), DType::F16, "{name}");
        for (a, b) in flat(t).iter().zip(flat(&h[name])) {
            assert!(
                (a - b).abs() <= a.abs() * 2f32.powi(-11) + 1e-7,
                "{name}: {a} became {b}"
            );
        }
    }
    let len = |d: &Path| std::fs::metadata(d.join(WEIGHTS_FILE)).unwrap().len();
    assert!(
        len(&half) * 10 < len(&full) * 6,
        "{} vs {} bytes",
        len(&half),
        len(&full)
    );
    // Both convert real speech, nearly alike; the half folder runs frame by frame on halves.
    let (vf, vh) = (
        VoiceConverter::load(&full, &Device::Cpu).unwrap(),
        VoiceConverter::load(&half, &Device::Cpu).unwrap(),
    );
    let src_mel = clip_mel("speech_m.wav");
    let voice = vf.embed(&[clip_mel("speech_f.wav")]).unwrap();
    let (yf, yh) = (
        vf.convert(&src_mel, &voice).unwrap(),
        vh.convert(&src_mel, &voice).unwrap(),
    );
    let worst = yf
        .data
        .iter()
        .zip(&yh.data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst > 0.0 && worst < 0.05,
        "half precision moved the output by {worst}"
    );
    assert!(vh.frame_model(&voice).unwrap().unwrap().half_precision());
    assert!(!vf.frame_model(&voice).unwrap().unwrap().half_precision());
    // A weight half precision cannot hold.
    let name = orig.keys().min().unwrap().clone();
    let big = vars.data().lock().unwrap()[&name].clone();
    big.set(&big.as_tensor().affine(0.0, 1e6).unwrap()).unwrap();
    save_model(src.path(), &cfg, &vars).unwrap();
    let bad = out.path().join("bad");
    let err = export_model(src.path(), &bad, true).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("half precision"), "{err}");
    assert!(!bad.join(WEIGHTS_FILE).exists() && !bad.join(CONFIG_FILE).exists());
    export_model(src.path(), &bad, false).unwrap();
}
