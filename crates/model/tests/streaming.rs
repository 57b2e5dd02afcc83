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
    for (cfg, frames) in [(ModelConfig::tiny_stream(), 279), (ModelConfig::stream(), 60)] {
        for chunk in [1, 3, 17] {
            let e = worst(&cfg, frames, chunk, DType::F64);
            assert!(e <= 1e-5, "{} chunk {chunk}: relative difference {e:.2e}", cfg.preset);
        }
    }
}

#[test]
fn stream_equals_offline_to_f32_rounding() {
    for (cfg, frames) in [(ModelConfig::tiny_stream(), 279), (ModelConfig::stream(), 60)] {
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
