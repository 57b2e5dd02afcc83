//! Speed of the neural vocoder (fresh weights: only the cost is measured), one thread:
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p voxswap-model --example vocoder_speed -- [small|tiny] [HOPS] [PHASE]
//!
//! HOPS: the synthesis frame's width in hops (`[vocoder] synthesis_hops`, default 2). PHASE:
//! `absolute` (default), `integrated` or `source` (`[vocoder] phase`); `source-f0net`: `source`
//! with an F0 network of 3 blocks of 96 channels and 96 pitch bins (`[vocoder] f0_net`).
//!
//! Prints the real-time factor offline (10 s of mels at once) and streaming (one 10 ms frame a
//! step, with tensors and with `FrameVocoder`'s plain loops, its weights in single and in half
//! precision), best of three.

use std::time::Instant;

use candle_core::{Device, Tensor};
use voxswap_model::vocoder::{new_trainable, VocoderConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fe = voxswap_audio::FrontendConfig::speech_16k();
    let mut cfg = match std::env::args().nth(1).as_deref() {
        Some("tiny") => VocoderConfig::tiny(&fe),
        _ => VocoderConfig::small(&fe),
    };
    if let Some(h) = std::env::args().nth(2) {
        cfg.n_fft = h.parse::<usize>()? * fe.hop_length;
        cfg.validate()?;
    }
    if let Some(p) = std::env::args().nth(3) {
        let (phase, f0_net) = match p.strip_suffix("-f0net") {
            Some(p) => (p.to_string(), true),
            None => (p, false),
        };
        cfg.phase = serde_json::from_str(&format!("\"{phase}\""))?;
        if f0_net {
            cfg.f0_net = Some(voxswap_model::vocoder::F0NetConfig {
                channels: 96,
                blocks: 3,
                bins: 96,
            });
        }
        cfg.validate()?;
    }
    let vars = candle_nn::VarMap::new();
    let v = new_trainable(&cfg, &vars, 1, &Device::Cpu)?;
    let params: usize = vars.all_vars().iter().map(|v| v.elem_count()).sum();
    let mel = Tensor::randn(0f32, 1.0, (1, fe.n_mels, 1000), &Device::Cpu)?.affine(1.0, -4.0)?;
    let best =
        |f: &mut dyn FnMut() -> Result<(), Box<dyn std::error::Error>>| -> Result<f64, Box<dyn std::error::Error>> {
            let mut b = f64::INFINITY;
            for _ in 0..3 {
                let t0 = Instant::now();
                f()?;
                b = b.min(t0.elapsed().as_secs_f64());
            }
            Ok(b)
        };
    let off = best(&mut || {
        v.forward(&mel)?;
        Ok(())
    })? / 10.0;
    let frames = 300;
    let mut s = v.stream();
    let mut out = Vec::new();
    let st = best(&mut || {
        s.reset();
        out.clear();
        for t in 0..frames {
            s.step(&mel.narrow(2, t, 1)?, &mut out)?;
        }
        Ok(())
    })? / (frames as f64 * 0.01);
    // The frame-by-frame form (plain loops), as the live engine runs it, with the weights in
    // single precision, then rounded to half precision (as `voxswap export --half` writes them),
    // which it then reads as halves.
    let cols: Vec<Vec<f32>> = (0..frames)
        .map(|t| Ok(mel.narrow(2, t, 1)?.flatten_all()?.to_vec1::<f32>()?))
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let mut frame_rtf = |f: &mut voxswap_model::FrameVocoder| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(best(&mut || {
            f.reset();
            out.clear();
            for c in &cols {
                f.step(c, &mut out)?;
            }
            Ok(())
        })? / (frames as f64 * 0.01))
    };
    let fr = frame_rtf(&mut voxswap_model::FrameVocoder::new(&v)?)?;
    voxswap_model::io::round_to_half(&vars)?;
    let fr_half = frame_rtf(&mut voxswap_model::FrameVocoder::new(&v)?)?;
    println!(
        "vocoder {} channels × {} blocks, n_fft {} ({params} parameters): RTF offline {off:.4}, streaming {st:.4} \
         (tensors), {fr:.4} (frame by frame), {fr_half:.4} (frame by frame, half-precision weights)",
        cfg.channels, cfg.blocks, cfg.n_fft
    );
    Ok(())
}
