//! The neural vocoder: forward and gradient parity with the PyTorch reference
//! (scripts/dev/torch_reference/vocoder.py, fixture by make_vocoder_fixture.py), and its stream
//! equal to the offline pass whatever the chunking.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use voxswap_model::vocoder::{new_trainable, NeuralVocoder, VocoderConfig};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/model")
        .join(name)
}

/// All of a tensor's values, flattened.
fn samples(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn fixture_named(name: &str) -> (NeuralVocoder, VarMap, HashMap<String, Tensor>) {
    let cfg: VocoderConfig =
        serde_json::from_str(&std::fs::read_to_string(data(&format!("{name}.json"))).unwrap()).unwrap();
    let fix = candle_core::safetensors::load(data(&format!("{name}.safetensors")), &Device::Cpu).unwrap();
    let vars = VarMap::new();
    let v = NeuralVocoder::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    let mut n = 0;
    for (name, var) in vars.data().lock().unwrap().iter() {
        let want = fix
            .get(&format!("param.{name}"))
            .unwrap_or_else(|| panic!("reference has no {name}"));
        assert_eq!(var.dims(), want.dims(), "{name}");
        var.set(want).unwrap();
        n += 1;
    }
    assert_eq!(n, fix.keys().filter(|k| k.starts_with("param.")).count());
    (v, vars, fix)
}

/// The fixture's loss: mean |audio| + mean log(|STFT| + 1e-3), STFT of 128 points, hop 32,
/// periodic Hann, no centring (as a product with a DFT basis).
fn loss(audio: &Tensor) -> Tensor {
    let (n, hop) = (128usize, 32usize);
    let (b, len) = audio.dims2().unwrap();
    let frames = (len - n) / hop + 1;
    let mut cos = vec![0f32; n * (n / 2 + 1)];
    let mut sin = vec![0f32; n * (n / 2 + 1)];
    for j in 0..n {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * j as f64 / n as f64).cos();
        for k in 0..=n / 2 {
            let p = 2.0 * std::f64::consts::PI * (j * k % n) as f64 / n as f64;
            cos[j * (n / 2 + 1) + k] = (w * p.cos()) as f32;
            sin[j * (n / 2 + 1) + k] = (w * p.sin()) as f32;
        }
    }
    let cos = Tensor::from_vec(cos, (n, n / 2 + 1), &Device::Cpu).unwrap();
    let sin = Tensor::from_vec(sin, (n, n / 2 + 1), &Device::Cpu).unwrap();
    let segs: Vec<Tensor> = (0..frames).map(|f| audio.narrow(1, f * hop, n).unwrap()).collect();
    let segs = Tensor::stack(&segs, 1).unwrap().reshape((b * frames, n)).unwrap();
    let re = segs.matmul(&cos).unwrap();
    let im = segs.matmul(&sin).unwrap();
    let mag = (re.sqr().unwrap() + im.sqr().unwrap()).unwrap().sqrt().unwrap();
    let spec = (mag + 1e-3).unwrap().log().unwrap().mean_all().unwrap();
    (audio.abs().unwrap().mean_all().unwrap() + spec).unwrap()
}

#[test]
fn forward_and_gradients_match_pytorch() {
    parity("vocoder_tiny");
}

/// The same with integrated phases (phase advances summed over frames, and the bins' carrier).
#[test]
fn integrated_phases_match_pytorch() {
    let (v, _, _) = fixture_named("vocoder_tiny_integrated");
    assert_eq!(v.config().phase, voxswap_model::vocoder::PhaseMode::Integrated);
    parity("vocoder_tiny_integrated");
}

fn parity(name: &str) {
    let (v, vars, fix) = fixture_named(name);
    let audio = v.forward(&fix["input"]).unwrap();
    let want = &fix["out.audio"];
    assert_eq!(audio.dims(), want.dims());
    let err = max_abs(&(&audio - want).unwrap()) / max_abs(want);
    assert!(err <= 1e-4, "audio: relative difference {err:.2e}");
    let l = loss(&audio);
    let want_l = fix["out.loss"].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    let got_l = l.to_scalar::<f32>().unwrap();
    assert!(
        (got_l - want_l).abs() <= 1e-4 * want_l.abs().max(1.0),
        "loss {got_l} vs {want_l}"
    );
    let grads = l.backward().unwrap();
    let vars: Vec<(String, Var)> = vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let floor = vars
        .iter()
        .map(|(n, _)| max_abs(&fix[&format!("grad.{n}")]))
        .fold(0.0, f64::max)
        * 1e-4;
    for (name, var) in &vars {
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let want = &fix[&format!("grad.{name}")];
        let rel = max_abs(&(got - want).unwrap()) / max_abs(want).max(floor);
        assert!(rel <= 1e-3, "{name}: relative gradient error {rel:.2e}");
    }
}

/// Chunks of 1, 3 and 17 frames give the offline audio (to float rounding), twice (`reset`),
/// and `finish` completes it up to the last frame's centre and beyond.
#[test]
fn stream_equals_offline() {
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    stream_equals_offline_at(&VocoderConfig::tiny(&fe));
}

/// The same with synthesis frames of 4 hops: the stream stays one hop further behind.
#[test]
fn stream_equals_offline_with_wider_frames() {
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    let mut cfg = VocoderConfig::tiny(&fe);
    cfg.n_fft = 4 * fe.hop_length;
    assert_eq!(cfg.latency_samples(), fe.hop_length);
    stream_equals_offline_at(&cfg);
}

fn stream_equals_offline_at(cfg: &VocoderConfig) {
    let fe = cfg.frontend.clone();
    let vars = VarMap::new();
    let v = new_trainable(cfg, &vars, 5, &Device::Cpu).unwrap();
    let fix = candle_core::safetensors::load(data("vocoder_tiny.safetensors"), &Device::Cpu).unwrap();
    let mel = fix["input"].narrow(0, 0, 1).unwrap();
    let frames = mel.dim(2).unwrap();
    let offline = v.forward(&mel).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(offline.len(), frames * fe.hop_length);
    let scale = offline.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0);
    let mut s = v.stream();
    for chunk in [1usize, 3, 17] {
        for _ in 0..2 {
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < frames {
                let n = chunk.min(frames - pos);
                s.step(&mel.narrow(2, pos, n).unwrap(), &mut out).unwrap();
                // Everything before the newest frame's centre is out.
                assert!(out.len() >= ((pos + n - 1) * fe.hop_length).saturating_sub(cfg.latency_samples()));
                pos += n;
            }
            s.finish(&mut out);
            assert!(out.len() >= offline.len());
            let worst = offline
                .iter()
                .zip(&out)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-5 * scale,
                "chunks of {chunk}: difference {worst} at scale {scale}"
            );
        }
    }
}

#[test]
fn configurations_are_checked() {
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    let mut cfg = VocoderConfig::small(&fe);
    cfg.validate().unwrap();
    assert_eq!(cfg.latency_samples(), 0);
    cfg.n_fft = 250;
    assert!(cfg.validate().unwrap_err().to_string().contains("n_fft"));
    let json = serde_json::to_string(&VocoderConfig::tiny(&fe)).unwrap();
    assert!(serde_json::from_str::<VocoderConfig>(&json.replacen("\"blocks\"", "\"blockz\"", 1)).is_err());
}

/// The frame-by-frame vocoder (plain loops) equals the tensor stream, frame for frame, at the
/// shipped size with initial weights, on the log-mel of real speech; and again after a reset.
#[test]
fn frame_vocoder_equals_the_stream() {
    frame_vocoder_equals_the_stream_in(false, 2);
}

/// The same with every weight rounded to half precision (as `voxswap export --half` writes
/// them), which the frame-by-frame vocoder then reads as halves.
#[test]
fn frame_vocoder_with_half_precision_weights_equals_the_stream() {
    frame_vocoder_equals_the_stream_in(true, 2);
}

/// Synthesis frames of 4 hops (`[vocoder] synthesis_hops`) frame by frame.
#[test]
fn frame_vocoder_with_wider_frames_equals_the_stream() {
    frame_vocoder_equals_the_stream_in(false, 4);
}

fn frame_vocoder_equals_the_stream_in(half: bool, hops: usize) {
    use voxswap_model::FrameVocoder;
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    let mut cfg = VocoderConfig::small(&fe);
    cfg.n_fft = hops * fe.hop_length;
    let vars = VarMap::new();
    let v = new_trainable(&cfg, &vars, 11, &Device::Cpu).unwrap();
    if half {
        for var in vars.all_vars() {
            var.set(
                &var.as_tensor()
                    .to_dtype(DType::F16)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap(),
            )
            .unwrap();
        }
    }
    let clip = voxswap_audio::read_mono(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/speech_f.wav"),
        voxswap_audio::ChannelMix::Downmix,
    )
    .unwrap();
    let x = voxswap_audio::resample(&clip.samples, clip.sample_rate, 16000).unwrap();
    let mel = voxswap_audio::LogMel::new(&fe)
        .unwrap()
        .compute(&x[..16000.min(x.len())]);
    let mut s = v.stream();
    let mut want = Vec::new();
    s.step(
        &Tensor::from_slice(&mel.data, (1, mel.n_mels, mel.frames), &Device::Cpu).unwrap(),
        &mut want,
    )
    .unwrap();
    s.finish(&mut want);
    let mut f = FrameVocoder::new(&v).unwrap();
    assert_eq!(f.half_precision(), half);
    for round in 0..2 {
        let mut got = Vec::new();
        for t in 0..mel.frames {
            f.step(&mel.frame(t), &mut got).unwrap();
        }
        f.finish(&mut got);
        assert_eq!(got.len(), want.len());
        let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(peak > 1e-3, "silent output");
        assert!(
            worst <= 1e-4 * peak.max(1.0),
            "round {round}: differs by {worst} (peak {peak})"
        );
    }
    assert!(f.step(&[0.0; 3], &mut Vec::new()).is_err());
}

/// Integrated phases and the source-filter synthesis: the stream equals the offline pass in
/// chunks of 1, 3 and 17 frames, and the frame-by-frame vocoder equals the stream, with synthesis
/// frames of 2, 3 and 4 hops (each bin's carrier turning by `k / m` a frame; the sources
/// generated a frame ahead of its centre).
#[test]
fn integrated_phases_stream_as_offline() {
    stream_as_offline_in(voxswap_model::vocoder::PhaseMode::Integrated);
}

/// See [`integrated_phases_stream_as_offline`]. With the head's F0 held (its weights zero, its
/// bias not) the stream is the offline pass to float rounding. With the F0 free, it differs by
/// more: the harmonics' phases integrate the F0, and the head's F0 differs in its last bits
/// between a frame at a time and many at once, which over 60 frames moves the waveform by about
/// a thousandth of its peak (at 10 minutes, by a fraction of a turn of a phase, as inaudible).
#[test]
fn source_filter_streams_as_offline() {
    stream_as_offline_in(voxswap_model::vocoder::PhaseMode::Source);
}

fn stream_as_offline_in(mode: voxswap_model::vocoder::PhaseMode) {
    use voxswap_model::vocoder::PhaseMode;
    stream_as_offline_with(mode, false, false, 1e-4);
    if mode == PhaseMode::Source {
        stream_as_offline_with(mode, false, true, 5e-3);
        // With an F0 network of its own (`f0_net`).
        stream_as_offline_with(mode, true, false, 1e-4);
        stream_as_offline_with(mode, true, true, 5e-3);
    }
}

fn stream_as_offline_with(mode: voxswap_model::vocoder::PhaseMode, f0_net: bool, free_f0: bool, tol: f32) {
    use voxswap_model::FrameVocoder;
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    for hops in [2, 3, 4] {
        let mut cfg = VocoderConfig::tiny(&fe);
        cfg.phase = mode;
        cfg.n_fft = hops * fe.hop_length;
        if f0_net {
            cfg.f0_net = Some(voxswap_model::vocoder::F0NetConfig {
                channels: 8,
                blocks: 1,
                bins: 24,
            });
        }
        let vars = VarMap::new();
        let v = new_trainable(&cfg, &vars, 5, &Device::Cpu).unwrap();
        if f0_net && !free_f0 {
            // Logits from the bias alone: the same F0 in every form.
            let data = vars.data().lock().unwrap();
            let w = &data["f0.head.weight"];
            w.set(&w.as_tensor().zeros_like().unwrap()).unwrap();
        } else if mode == voxswap_model::vocoder::PhaseMode::Source && !free_f0 {
            // The head's weights are the vocoder's: setting them changes it.
            let data = vars.data().lock().unwrap();
            let w = &data["head.weight"];
            let f0_row = w.as_tensor().narrow(0, 0, 2 * cfg.n_bins()).unwrap();
            let zero = Tensor::zeros((1, cfg.channels), DType::F32, &Device::Cpu).unwrap();
            w.set(&Tensor::cat(&[&f0_row, &zero], 0).unwrap()).unwrap();
        }
        let mel = Tensor::randn(0f32, 1.0, (1, fe.n_mels, 60), &Device::Cpu)
            .unwrap()
            .affine(1.0, -4.0)
            .unwrap();
        let offline = samples(&v.forward(&mel).unwrap());
        let peak = offline.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak > 1e-4);
        for chunk in [1, 3, 17] {
            let mut s = v.stream();
            let mut got = Vec::new();
            let mut t = 0;
            while t < 60 {
                let n = chunk.min(60 - t);
                s.step(&mel.narrow(2, t, n).unwrap(), &mut got).unwrap();
                t += n;
            }
            let d = got.iter().zip(&offline).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(got.len() >= 59 * fe.hop_length - cfg.latency_samples());
            assert!(
                d <= tol * peak.max(1.0),
                "{hops} hops, chunks of {chunk}: {d} (peak {peak})"
            );
        }
        let mut f = FrameVocoder::new(&v).unwrap();
        let mut got = Vec::new();
        for t in 0..60 {
            let col = mel
                .narrow(2, t, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            f.step(&col, &mut got).unwrap();
        }
        let d = got.iter().zip(&offline).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(got.len() >= 59 * fe.hop_length - cfg.latency_samples());
        assert!(
            d <= tol * peak.max(1.0),
            "{hops} hops, frame by frame: {d} (peak {peak})"
        );
    }
}

/// The source-filter synthesis with the harmonic gains at 1, the noise's at nothing and the
/// head's F0 at 200 Hz gives the harmonic source itself: periodic at 200 Hz (80 samples) and at
/// no shorter period, the same as when the F0 is given (as training gives the measured one);
/// and with another F0 given, another period.
#[test]
fn source_filter_is_periodic_at_its_f0() {
    use voxswap_model::excitation::F0_REF;
    use voxswap_model::vocoder::PhaseMode;
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    let mut cfg = VocoderConfig::tiny(&fe);
    cfg.phase = PhaseMode::Source;
    let vars = VarMap::new();
    let v = new_trainable(&cfg, &vars, 5, &Device::Cpu).unwrap();
    let f = cfg.n_bins();
    for (name, var) in vars.data().lock().unwrap().iter() {
        if name == "head.weight" {
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        } else if name == "head.bias" {
            let mut b = vec![0f32; f];
            b.extend(vec![-30f32; f]);
            b.push((200f32 / F0_REF).ln());
            var.set(&Tensor::from_vec(b, 2 * f + 1, &Device::Cpu).unwrap()).unwrap();
        }
    }
    let mel = Tensor::randn(0f32, 1.0, (1, fe.n_mels, 100), &Device::Cpu).unwrap();
    let x = samples(&v.forward(&mel).unwrap());
    let corr = |x: &[f32], lag: usize| {
        let m = &x[2000..14000];
        let a: f32 = m.iter().zip(&x[2000 + lag..]).map(|(p, q)| p * q).sum();
        a / m.iter().map(|p| p * p).sum::<f32>()
    };
    assert!(corr(&x, 80) > 0.999, "{}", corr(&x, 80));
    assert!((20..70).all(|l| corr(&x, l) < 0.9));
    let out = v.forward_source(&mel, Some(&[vec![200.0; 100]])).unwrap();
    assert!(out.f0_logits.is_none());
    let (given, z) = (out.audio, out.log_f0);
    let given = samples(&given);
    assert!(x.iter().zip(&given).all(|(a, b)| (a - b).abs() < 1e-5));
    let z = samples(&z);
    assert!(z.iter().all(|z| (F0_REF * z.exp() - 200.0).abs() < 1e-3));
    let other = v.forward_source(&mel, Some(&[vec![160.0; 100]])).unwrap().audio;
    let other = samples(&other);
    assert!(corr(&other, 100) > 0.999 && corr(&other, 80) < 0.9);
    assert!(v.forward_source(&mel, Some(&[vec![200.0; 99]])).is_err());
}

/// `export_vocoder` writes a vocoder folder's weights in half precision: it loads, sounds as the
/// original up to the rounding, and runs frame by frame on halves; a folder without a vocoder is
/// refused.
#[test]
fn exported_in_half_precision() {
    use voxswap_model::vocoder::{export_vocoder, WEIGHTS_FILE};
    use voxswap_model::FrameVocoder;
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    let cfg = VocoderConfig::tiny(&fe);
    let vars = VarMap::new();
    let v = new_trainable(&cfg, &vars, 5, &Device::Cpu).unwrap();
    let src = tempfile::tempdir().unwrap();
    NeuralVocoder::save(src.path(), &cfg, &vars).unwrap();
    let dst = tempfile::tempdir().unwrap();
    export_vocoder(src.path(), dst.path(), true).unwrap();
    let t = candle_core::safetensors::load(dst.path().join(WEIGHTS_FILE), &Device::Cpu).unwrap();
    assert!(t.values().all(|t| t.dtype() == DType::F16));
    let h = NeuralVocoder::load(dst.path(), &Device::Cpu).unwrap().unwrap();
    assert!(FrameVocoder::new(&h).unwrap().half_precision());
    assert!(!FrameVocoder::new(&v).unwrap().half_precision());
    let mel = Tensor::randn(0f32, 1.0, (1, 80, 50), &Device::Cpu)
        .unwrap()
        .affine(1.0, -4.0)
        .unwrap();
    let (a, b) = (v.forward(&mel).unwrap(), h.forward(&mel).unwrap());
    let peak = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(peak > 1e-3 && diff > 0.0 && diff < 0.01 * peak, "{diff} of {peak}");
    let empty = tempfile::tempdir().unwrap();
    let err = export_vocoder(empty.path(), dst.path(), true).unwrap_err().to_string();
    assert!(err.contains("no vocoder"), "{err}");
}
