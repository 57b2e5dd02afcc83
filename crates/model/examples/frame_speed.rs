//! The shipped model's streaming step, one 10 ms frame at a time, through candle's tensors
//! (`StreamingConverter`) and through `FrameModel`'s plain loops, on real speech, one thread:
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p voxswap-model --example frame_speed -- [MODEL_DIR] [REF.wav] [SRC.wav]
//!
//! Defaults: pretrained/, examples/target_unseen.wav, tests/data/speech_m.wav. Runs both paths
//! over the source three times each, alternating, and prints the best time per frame of each
//! and the largest difference between their outputs (relative to the output's peak).

use std::time::Instant;

use candle_core::{Device, Tensor};
use voxswap_audio::{read_mono, resample, ChannelMix, LogMel};
use voxswap_model::VoiceConverter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let conv = VoiceConverter::load(arg(0, "pretrained").as_ref(), &Device::Cpu)?;
    let fe = conv.config().frontend.clone();
    let mel = |p: String| -> Result<voxswap_audio::Mel, Box<dyn std::error::Error>> {
        let a = read_mono(p, ChannelMix::Downmix)?;
        Ok(LogMel::new(&fe)?.compute(&resample(&a.samples, a.sample_rate, fe.sample_rate)?))
    };
    let voice = conv.embed(&[mel(arg(1, "examples/target_unseen.wav"))?])?;
    let m = mel(arg(2, "tests/data/speech_m.wav"))?;
    let src = Tensor::from_vec(m.data, (1, m.n_mels, m.frames), &Device::Cpu)?;
    let (_, n, t) = src.dims3()?;
    let frames: Vec<Vec<f32>> = src.squeeze(0)?.t()?.contiguous()?.to_vec2()?;
    let (mut best_t, mut best_f) = (f64::INFINITY, f64::INFINITY);
    let (mut out_t, mut out_f) = (Vec::new(), vec![0f32; t * n]);
    for _ in 0..3 {
        let mut s = conv.stream(&voice)?.ok_or("the preset cannot stream")?;
        let t0 = Instant::now();
        out_t.clear();
        for i in 0..t {
            let y = s.step(&src.narrow(2, i, 1)?)?;
            out_t.extend(y.flatten_all()?.to_vec1::<f32>()?);
        }
        best_t = best_t.min(t0.elapsed().as_secs_f64());
        let mut m = conv.frame_model(&voice)?.ok_or("the preset needs the tensor stream")?;
        let t0 = Instant::now();
        for (x, y) in frames.iter().zip(out_f.chunks_exact_mut(n)) {
            m.step(x, y)?;
        }
        best_f = best_f.min(t0.elapsed().as_secs_f64());
    }
    let peak = out_t.iter().fold(0f32, |a, v| a.max(v.abs()));
    let diff = out_t.iter().zip(&out_f).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    let ms = |s: f64| s * 1e3 / t as f64;
    println!(
        "{t} frames: tensors {:.3} ms/frame, frame model {:.3} ms/frame ({:.1}x); largest difference {:.2e} of the peak {peak:.2}",
        ms(best_t),
        ms(best_f),
        best_t / best_f,
        diff / peak
    );
    Ok(())
}
