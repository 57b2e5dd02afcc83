//! The causal model converts chunk by chunk as it converts a whole input, for chunks of 1, 3
//! and 17 frames. In float64 the two agree within 1e-5 of the output's scale with orders of
//! magnitude to spare, which proves the streaming state exact; in float32 (as it runs) they
//! differ by matrix-product rounding, which normalisation amplifies where a channel is nearly
//! constant (the first, silent frames): within 1e-4 of the output's scale.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use voxswap_audio::{read_mono, ChannelMix, FrontendConfig, LogMel};
use voxswap_model::{init, AdaInVc, ModelConfig, StreamingConverter};

fn mel(name: &str, frames: usize, dtype: DType) -> Tensor {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name);
    let audio = read_mono(p, ChannelMix::Downmix).unwrap();
    let m = LogMel::new(&FrontendConfig::speech_16k())
        .unwrap()
        .compute(&audio.samples);
    let t = Tensor::from_vec(m.data, (1, 80, m.frames), &Device::Cpu).unwrap();
    t.narrow(2, 0, frames.min(m.frames)).unwrap().to_dtype(dtype).unwrap()
}

fn model(cfg: &ModelConfig, dtype: DType) -> AdaInVc {
    let vars = VarMap::new();
    let m = AdaInVc::new(cfg, VarBuilder::from_varmap(&vars, dtype, &Device::Cpu)).unwrap();
    init::init_pytorch_like(&vars, 11).unwrap();
    m
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

/// The largest difference between streamed and offline output, relative to the output's scale.
fn worst(cfg: &ModelConfig, frames: usize, chunk: usize, dtype: DType) -> f64 {
    let m = model(cfg, dtype);
    let x = mel("speech_m.wav", frames, dtype);
    let spk = m.speaker.forward(&mel("speech_f.wav", 200, dtype)).unwrap();
    let offline = m.convert(&x, &spk).unwrap();
    let t = x.dim(2).unwrap();
    let mut s = StreamingConverter::new(m, spk).unwrap();
    let mut err: f64 = 0.0;
    // Twice: `reset` really starts a new stream.
    for _ in 0..2 {
        s.reset();
        let mut outs = Vec::new();
        let mut pos = 0;
        while pos < t {
            let n = chunk.min(t - pos);
            outs.push(s.step(&x.narrow(2, pos, n).unwrap()).unwrap());
            pos += n;
        }
        let streamed = Tensor::cat(&outs, 2).unwrap();
        err = err.max(max_abs(&(streamed - &offline).unwrap()) / max_abs(&offline));
    }
    err
}

#[test]
fn stream_equals_offline_exactly_in_f64() {
    for (cfg, frames) in [
        (ModelConfig::tiny_stream(), 279),
        (ModelConfig::stream(), 60),
        (ModelConfig::tiny_attention(), 279),
        (ModelConfig::stream_attention(), 60),
    ] {
        for chunk in [1, 3, 17] {
            let e = worst(&cfg, frames, chunk, DType::F64);
            assert!(e <= 1e-5, "{} chunk {chunk}: relative difference {e:.2e}", cfg.preset);
        }
    }
}

#[test]
fn stream_equals_offline_to_f32_rounding() {
    for (cfg, frames) in [
        (ModelConfig::tiny_stream(), 279),
        (ModelConfig::stream(), 60),
        (ModelConfig::tiny_attention(), 279),
        (ModelConfig::stream_attention(), 60),
    ] {
        for chunk in [1, 3, 17] {
            let e = worst(&cfg, frames, chunk, DType::F32);
            assert!(e <= 1e-4, "{} chunk {chunk}: relative difference {e:.2e}", cfg.preset);
        }
    }
}

#[test]
fn offline_models_refuse_to_stream() {
    let m = model(&ModelConfig::tiny(), DType::F32);
    let spk = Tensor::zeros((1, 8), DType::F32, &Device::Cpu).unwrap();
    let err = StreamingConverter::new(m, spk).unwrap_err();
    assert!(err.to_string().contains("cannot stream"), "{err}");
}

/// With `norm_refresh = n`, every frame is the crossfade the docs promise of two plain passes
/// restarted every `2n` frames, `n` apart: checked frame by frame against passes of the plain
/// model over the right stretches of the input (float64), for the whole input at once and in
/// chunks that straddle the restarts.
#[test]
fn refreshed_passes_crossfade_restarted_streams() {
    let n = 16;
    let mut cfg = ModelConfig::tiny_stream();
    cfg.norm_refresh = Some(n);
    let m = model(&cfg, DType::F64);
    let x = mel("speech_m.wav", 279, DType::F64);
    let spk = m.speaker.forward(&mel("speech_f.wav", 200, DType::F64)).unwrap();
    let t = x.dim(2).unwrap();
    // A plain pass from frame `start`, at frame `f`.
    let plain = |start: usize, f: usize| -> Vec<f64> {
        let y = m.convert(&x.narrow(2, start, t - start).unwrap(), &spk).unwrap();
        y.narrow(2, f - start, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    let mut s = StreamingConverter::new(m.clone(), spk.clone()).unwrap();
    let whole = s.step(&x).unwrap();
    let scale = max_abs(&whole);
    s.reset();
    let chunked: Vec<Tensor> = (0..t)
        .step_by(7)
        .map(|p| s.step(&x.narrow(2, p, 7.min(t - p)).unwrap()).unwrap())
        .collect();
    let chunked = Tensor::cat(&chunked, 2).unwrap();
    assert!(max_abs(&(&chunked - &whole).unwrap()) <= 1e-9 * scale);
    // Chunks that mix kept states with whole segments run as a batch (the whole input is all
    // batched segments but the last ones): long, short, ending on and off the restarts.
    s.reset();
    let mut mixed = Vec::new();
    let mut p = 0;
    for len in [3, 70, 1, 2 * n - 4, 5 * n, n, 9, t] {
        let len = len.min(t - p);
        if len > 0 {
            mixed.push(s.step(&x.narrow(2, p, len).unwrap()).unwrap());
            p += len;
        }
    }
    let mixed = Tensor::cat(&mixed, 2).unwrap();
    assert!(max_abs(&(&mixed - &whole).unwrap()) <= 1e-9 * scale);
    for f in [
        0,
        5,
        n - 1,
        n,
        n + 3,
        2 * n - 1,
        2 * n,
        2 * n + 9,
        3 * n,
        5 * n + 2,
        t - 1,
    ] {
        let a_start = f / (2 * n) * (2 * n);
        let want: Vec<f64> = if f < n {
            plain(0, f)
        } else {
            let b_start = n + (f - n) / (2 * n) * (2 * n);
            let age = f % (2 * n);
            let w = if age < n { age } else { 2 * n - age } as f64 / n as f64;
            plain(a_start, f)
                .iter()
                .zip(plain(b_start, f))
                .map(|(a, b)| w * a + (1.0 - w) * b)
                .collect()
        };
        let got = whole
            .narrow(2, f, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let err = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
        assert!(err <= 1e-9 * scale, "frame {f}: off by {err:.2e} of {scale:.2}");
    }
    // Refreshing differs from one pass over the whole input once the first restart is due.
    let one = m.convert(&x, &spk).unwrap();
    assert!(max_abs(&(one.narrow(2, 0, n).unwrap() - whole.narrow(2, 0, n).unwrap()).unwrap()) <= 1e-9 * scale);
    assert!(max_abs(&(one - &whole).unwrap()) > 1e-3 * scale);
    // Only causal models take it, and only a positive period.
    let mut offline = ModelConfig::tiny();
    offline.norm_refresh = Some(8);
    let err = offline.validate().unwrap_err().to_string();
    assert!(err.contains("norm_refresh is for causal models"), "{err}");
    cfg.norm_refresh = Some(0);
    assert!(cfg.validate().unwrap_err().to_string().contains("norm_refresh 0"));
}

/// Several references' tokens pool their frames together: the same reference twice gives the
/// tokens (and the global vector) of the reference once; two different ones give neither's.
#[test]
fn reference_attention_pools_frames_of_several_references() {
    let cfg = ModelConfig::tiny_attention();
    let m = model(&cfg, DType::F64);
    let a = mel("speech_f.wav", 150, DType::F64);
    let b = mel("speech_m.wav", 150, DType::F64);
    let once = m.speaker.forward(&a).unwrap();
    assert_eq!(once.dims(), [1, cfg.speaker.width()]);
    let many = m.speaker.forward_many(std::slice::from_ref(&a)).unwrap();
    assert!(max_abs(&(&many - &once).unwrap()) < 1e-12);
    let twice = m.speaker.forward_many(&[a.clone(), a.clone()]).unwrap();
    assert!(
        max_abs(&(&twice - &once).unwrap()) < 1e-9,
        "the same reference twice changed the voice"
    );
    let both = m.speaker.forward_many(&[a, b.clone()]).unwrap();
    let other = m.speaker.forward(&b).unwrap();
    let tok = |t: &Tensor| {
        t.narrow(1, cfg.speaker.c_out, cfg.speaker.width() - cfg.speaker.c_out)
            .unwrap()
    };
    assert!(max_abs(&(tok(&both) - tok(&once)).unwrap()) > 1e-4);
    assert!(max_abs(&(tok(&both) - tok(&other)).unwrap()) > 1e-4);
}
