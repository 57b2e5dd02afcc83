//! Vocoders: log-mel frames in, audio out, behind one trait so that the engine does not care
//! which it runs.

use candle_core::{Device, Tensor};
use voxswap_audio::{BlockVocoder, FrontendConfig, GriffinLimConfig, Mel, StreamingGriffinLim};
use voxswap_model::{FrameVocoder, NeuralVocoder, VocoderStream};

use crate::Result;

/// Turns log-mel frames (the model's frontend: `n_mels` values each, one per hop) into audio at
/// the frontend's rate, aligned with the frames' time axis (frame `t` centred on sample
/// `t · hop`; sample 0 first).
pub trait Vocoder: Send {
    /// Adds one frame; audio that is final is appended to `out`.
    ///
    /// # Errors
    /// A frame of the wrong size.
    fn push(&mut self, frame: &[f32], out: &mut Vec<f32>) -> Result<()>;
    /// Adds every frame of `mel` in order: the same audio as pushing them one by one (vocoders
    /// that work faster on blocks override it).
    ///
    /// # Errors
    /// A mel of the wrong size.
    fn push_mel(&mut self, mel: &Mel, out: &mut Vec<f32>) -> Result<()> {
        for t in 0..mel.frames {
            self.push(&mel.frame(t), out)?;
        }
        Ok(())
    }
    /// Ends the stream: the rest of the audio (at least up to the last frame's centre; the
    /// engine cuts it to the input's length).
    ///
    /// # Errors
    /// From the vocoder's set-up (not expected after construction).
    fn finish(&mut self, out: &mut Vec<f32>) -> Result<()>;
    /// Forgets the stream: the next frame pushed is frame 0.
    fn reset(&mut self);
    /// How far the audio out stays behind the newest frame's centre, in samples at the
    /// frontend's rate: once frame `t` is pushed, every sample before `t · hop − latency` is out.
    fn latency_samples(&self) -> usize;
    /// A short name for reports ("griffin-lim (streaming, look-ahead 2)").
    fn name(&self) -> String;
}

/// Griffin-Lim in its streaming form (RTISI-LA): a few frames of look-ahead, for live use.
#[derive(Debug)]
pub struct StreamingGl {
    inner: StreamingGriffinLim,
    lookahead: usize,
}

impl StreamingGl {
    /// The default look-ahead: 2 frames (22.5 ms of latency with the speech frontend).
    pub const LOOKAHEAD: usize = 2;
    /// The default iterations per frame.
    pub const ITERATIONS: usize = 8;

    /// A streaming Griffin-Lim for the frontend `cfg`.
    ///
    /// # Errors
    /// An invalid frontend, or a look-ahead or iteration count of 0.
    pub fn new(cfg: &FrontendConfig, lookahead: usize, iterations: usize) -> Result<Self> {
        Ok(Self {
            inner: StreamingGriffinLim::new(cfg, lookahead, iterations)?,
            lookahead,
        })
    }
}

impl Vocoder for StreamingGl {
    fn push(&mut self, frame: &[f32], out: &mut Vec<f32>) -> Result<()> {
        Ok(self.inner.push(frame, out)?)
    }

    fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        self.inner.finish(out);
        Ok(())
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    fn latency_samples(&self) -> usize {
        self.inner.latency_samples()
    }

    fn name(&self) -> String {
        format!("griffin-lim (streaming, look-ahead {})", self.lookahead)
    }
}

/// Griffin-Lim over blocks of frames (10 s by default), crossfaded: the offline quality, for
/// files, with a latency of a whole block.
#[derive(Debug)]
pub struct BlockGl {
    inner: BlockVocoder,
    cfg: FrontendConfig,
    gl: GriffinLimConfig,
    block: usize,
    overlap: usize,
}

impl BlockGl {
    /// Blocks of `block` frames with `overlap` frames of crossfaded context.
    ///
    /// # Errors
    /// An invalid frontend or block sizes.
    pub fn new(cfg: &FrontendConfig, gl: GriffinLimConfig, block: usize, overlap: usize) -> Result<Self> {
        Ok(Self {
            inner: BlockVocoder::new(cfg, gl, block, overlap)?,
            cfg: cfg.clone(),
            gl,
            block,
            overlap,
        })
    }
}

impl Vocoder for BlockGl {
    fn push(&mut self, frame: &[f32], out: &mut Vec<f32>) -> Result<()> {
        Ok(self.inner.push(frame, out)?)
    }

    fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        Ok(self.inner.finish(out)?)
    }

    fn reset(&mut self) {
        if let Ok(v) = BlockVocoder::new(&self.cfg, self.gl, self.block, self.overlap) {
            self.inner = v;
        }
    }

    fn latency_samples(&self) -> usize {
        (self.block + self.overlap) * self.cfg.hop_length
    }

    fn name(&self) -> String {
        format!(
            "griffin-lim ({} iterations, blocks of {} frames)",
            self.gl.n_iter, self.block
        )
    }
}

/// The neural vocoder ([`voxswap_model::vocoder`]) on tensors, fastest on blocks of frames
/// (offline): no look-ahead beyond the frontend's window at its default size.
#[derive(Debug)]
pub struct Neural {
    inner: VocoderStream,
    n_mels: usize,
}

impl Neural {
    /// A stream over `vocoder`.
    pub fn new(vocoder: &NeuralVocoder) -> Self {
        Self {
            inner: vocoder.stream(),
            n_mels: vocoder.config().frontend.n_mels,
        }
    }
}

impl Vocoder for Neural {
    fn push(&mut self, frame: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let x = Tensor::from_slice(frame, (1, self.n_mels, 1), &Device::Cpu)?;
        Ok(self.inner.step(&x, out)?)
    }

    fn push_mel(&mut self, mel: &Mel, out: &mut Vec<f32>) -> Result<()> {
        if mel.frames == 0 {
            return Ok(());
        }
        let x = Tensor::from_slice(&mel.data, (1, mel.n_mels, mel.frames), &Device::Cpu)?;
        Ok(self.inner.step(&x, out)?)
    }

    fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        self.inner.finish(out);
        Ok(())
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    fn latency_samples(&self) -> usize {
        self.inner.vocoder().config().latency_samples()
    }

    fn name(&self) -> String {
        let c = self.inner.vocoder().config();
        format!("neural ({} channels, {} blocks)", c.channels, c.blocks)
    }
}

/// The neural vocoder a frame at a time in plain loops ([`FrameVocoder`]): the live engine's
/// form, faster than [`Neural`] on single frames and allocation-free per frame; the same audio.
#[derive(Debug)]
pub struct NeuralFrames {
    inner: FrameVocoder,
}

impl NeuralFrames {
    /// The frame-by-frame form of `vocoder`.
    ///
    /// # Errors
    /// Weights that cannot be read.
    pub fn new(vocoder: &NeuralVocoder) -> Result<Self> {
        Ok(Self {
            inner: FrameVocoder::new(vocoder)?,
        })
    }
}

impl Vocoder for NeuralFrames {
    fn push(&mut self, frame: &[f32], out: &mut Vec<f32>) -> Result<()> {
        Ok(self.inner.step(frame, out)?)
    }

    fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        self.inner.finish(out);
        Ok(())
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    fn latency_samples(&self) -> usize {
        self.inner.config().latency_samples()
    }

    fn name(&self) -> String {
        let c = self.inner.config();
        format!("neural ({} channels, {} blocks)", c.channels, c.blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{VarBuilder, VarMap};
    use voxswap_model::vocoder::VocoderConfig;

    /// A block of frames gives the same audio as the frames one by one, and as the offline pass.
    #[test]
    fn neural_blocks_equal_frames_and_the_offline_pass() {
        let fe = FrontendConfig::speech_16k();
        let vars = VarMap::new();
        let cfg = VocoderConfig::tiny(&fe);
        let v = NeuralVocoder::new(
            &cfg,
            VarBuilder::from_varmap(&vars, candle_core::DType::F32, &Device::Cpu),
        )
        .unwrap();
        voxswap_model::vocoder::init_vocoder(&vars, &cfg, 3).unwrap();
        // A log-mel of a chirp.
        let x: Vec<f32> = (0..4000)
            .map(|i| {
                let t = i as f32 / 16000.0;
                0.3 * (2.0 * std::f32::consts::PI * (200.0 + 2000.0 * t) * t).sin()
            })
            .collect();
        let mel = voxswap_audio::LogMel::new(&fe).unwrap().compute(&x);
        let mut by_frame = Vec::new();
        let mut a = Neural::new(&v);
        for t in 0..mel.frames {
            a.push(&mel.frame(t), &mut by_frame).unwrap();
        }
        a.finish(&mut by_frame).unwrap();
        let mut by_block = Vec::new();
        let mut b = Neural::new(&v);
        b.push_mel(&mel, &mut by_block).unwrap();
        b.finish(&mut by_block).unwrap();
        assert_eq!(by_frame.len(), by_block.len());
        let d = by_frame
            .iter()
            .zip(&by_block)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(d < 1e-5, "block and frame streams differ by {d}");
        let offline = v
            .forward(&Tensor::from_slice(&mel.data, (1, mel.n_mels, mel.frames), &Device::Cpu).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let n = offline.len().min(by_block.len());
        assert!(n >= (mel.frames - 1) * fe.hop_length, "{n}");
        let d = offline[..n]
            .iter()
            .zip(&by_block)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(d < 1e-5, "stream and offline differ by {d}");
        assert!(by_block.iter().any(|v| v.abs() > 1e-4));
        let mut by_loops = Vec::new();
        let mut c = NeuralFrames::new(&v).unwrap();
        for t in 0..mel.frames {
            c.push(&mel.frame(t), &mut by_loops).unwrap();
        }
        c.finish(&mut by_loops).unwrap();
        assert_eq!(by_loops.len(), by_block.len());
        let d = by_loops
            .iter()
            .zip(&by_block)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(d < 1e-5, "frame loops and the block stream differ by {d}");
    }
}
