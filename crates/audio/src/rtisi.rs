//! Streaming phase reconstruction: RTISI-LA (Zhu, Beauregard & Wyse 2007, "Real-Time Signal
//! Estimation From Modified Short-Time Fourier Transform Magnitude Spectra", IEEE TASLP 15(5)),
//! Griffin-Lim's iteration confined to a few frames of look-ahead.
//!
//! Frames arrive one at a time. The newest `lookahead + 1` frames keep phase estimates that
//! `iterations` Griffin-Lim passes refine against each other and against the audio of the frames
//! already committed; then the oldest is committed (its windowed inverse FFT added to the output
//! for good), and every sample that no later frame overlaps is emitted. Output sample `n` lines
//! up with the frames' time axis (frame `t` centred on sample `t · hop`, as the frontend frames
//! it), so the vocoder adds no shift of its own, only a wait: see
//! [`StreamingGriffinLim::latency_samples`].

use std::collections::VecDeque;
use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::frontend::FrontendConfig;
use crate::mel::MelFilterbank;
use crate::{Error, Result};

/// One frame inside the look-ahead: its target magnitude and current complex estimate.
#[derive(Debug, Clone)]
struct Frame {
    mag: Vec<f32>,
    spec: Vec<Complex32>,
    /// Its windowed inverse FFT (the frame's contribution to the signal), kept current.
    wave: Vec<f32>,
}

/// Log-mel frames in, audio out, with a fixed look-ahead (see the module docs).
pub struct StreamingGriffinLim {
    n_fft: usize,
    hop: usize,
    n_mels: usize,
    log_floor: f32,
    lookahead: usize,
    iterations: usize,
    fb: MelFilterbank,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    /// Frames in the look-ahead, oldest first; `first` is the index of the oldest.
    frames: VecDeque<Frame>,
    /// Committed frames' buffers, reused for new frames (no allocation once warm).
    spare: Vec<Frame>,
    /// The mel inversion's working vectors.
    invert_scratch: crate::mel::InvertScratch,
    first: u64,
    /// Committed audio and window-square sums from sample `base` on (frame-relative offsets).
    num: VecDeque<f32>,
    den: VecDeque<f32>,
    /// Signal position (may be negative) of `num[0]`.
    base: i64,
    /// Samples emitted so far (from position 0).
    emitted: u64,
    // Scratch buffers (allocated once).
    seg: Vec<f32>,
    bins: Vec<Complex32>,
    mel_lin: Vec<f32>,
    scratch_fwd: Vec<Complex32>,
    scratch_inv: Vec<Complex32>,
}

impl std::fmt::Debug for StreamingGriffinLim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingGriffinLim")
            .field("lookahead", &self.lookahead)
            .field("iterations", &self.iterations)
            .field("emitted", &self.emitted)
            .finish()
    }
}

impl StreamingGriffinLim {
    /// A vocoder for the frontend `cfg` with `lookahead` frames of look-ahead (≥ 1) and
    /// `iterations` Griffin-Lim passes per frame (≥ 1).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid frontend, a look-ahead of 0 or no iterations.
    pub fn new(cfg: &FrontendConfig, lookahead: usize, iterations: usize) -> Result<Self> {
        cfg.validate()?;
        if lookahead == 0 || iterations == 0 {
            return Err(Error::Config(format!(
                "streaming Griffin-Lim needs a look-ahead and iterations (got {lookahead} and {iterations})"
            )));
        }
        let stft = cfg.stft();
        let (n_fft, hop) = (stft.n_fft, stft.hop_length);
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n_fft);
        let ifft = planner.plan_fft_inverse(n_fft);
        let fb = cfg.filterbank()?;
        let n_bins = n_fft / 2 + 1;
        let scratch_fwd = fft.make_scratch_vec();
        let scratch_inv = ifft.make_scratch_vec();
        let mut s = Self {
            n_fft,
            hop,
            n_mels: cfg.n_mels,
            log_floor: cfg.log_floor.ln(),
            lookahead,
            iterations,
            fb,
            window: stft.window::<f32>(),
            fft,
            ifft,
            frames: VecDeque::with_capacity(lookahead + 2),
            spare: Vec::with_capacity(lookahead + 2),
            invert_scratch: crate::mel::InvertScratch::default(),
            first: 0,
            num: VecDeque::new(),
            den: VecDeque::new(),
            base: 0,
            emitted: 0,
            seg: vec![0.0; n_fft],
            bins: vec![Complex32::default(); n_bins],
            mel_lin: vec![0.0; cfg.n_mels],
            scratch_fwd,
            scratch_inv,
        };
        s.reset();
        Ok(s)
    }

    /// How far the output stays behind the frames, in samples: once frame `t` is pushed, every
    /// sample before `t · hop − latency` is out, with latency `(lookahead − 1) · hop + n_fft/2`
    /// (the frames still open overlap the rest). 360 samples (22.5 ms) for the speech frontend
    /// and a look-ahead of 2.
    pub fn latency_samples(&self) -> usize {
        (self.lookahead - 1) * self.hop + self.n_fft / 2
    }

    /// Forgets everything: the next frame pushed is frame 0 again.
    pub fn reset(&mut self) {
        self.frames.clear();
        self.first = 0;
        self.num.clear();
        self.den.clear();
        self.base = -(self.n_fft as i64 / 2);
        self.emitted = 0;
    }

    /// Signal position where frame `t` starts.
    fn start_of(&self, t: u64) -> i64 {
        t as i64 * self.hop as i64 - self.n_fft as i64 / 2
    }

    /// Adds a log-mel frame (`n_mels` values); the audio now final is appended to `out`.
    ///
    /// # Errors
    /// [`Error::Config`] for a frame of the wrong size.
    pub fn push(&mut self, frame: &[f32], out: &mut Vec<f32>) -> Result<()> {
        if frame.len() != self.n_mels {
            return Err(Error::Config(format!(
                "a mel frame of {} values, the vocoder expects {}",
                frame.len(),
                self.n_mels
            )));
        }
        for (c, &v) in self.mel_lin.iter_mut().zip(frame) {
            // Values at the floor carry no information: silence.
            *c = if v <= self.log_floor + 1e-6 { 0.0 } else { v.exp() };
        }
        let n_bins = self.n_fft / 2 + 1;
        let mut f = self.spare.pop().unwrap_or_else(|| Frame {
            mag: vec![0.0; n_bins],
            spec: vec![Complex32::default(); n_bins],
            wave: vec![0.0; self.n_fft],
        });
        self.fb
            .invert_with(&self.mel_lin, 30, &mut f.mag, &mut self.invert_scratch);
        let t = self.first + self.frames.len() as u64;
        // Room in the accumulators up to the new frame's end.
        let end = self.start_of(t) + self.n_fft as i64;
        while self.base + (self.num.len() as i64) < end {
            self.num.push_back(0.0);
            self.den.push_back(0.0);
        }
        // The new frame's phase starts from what the signal around it already says.
        self.frames.push_back(f);
        let newest = self.frames.len() - 1;
        self.project(newest, true);
        for _ in 0..self.iterations {
            for i in 0..self.frames.len() {
                self.project(i, false);
            }
        }
        if self.frames.len() > self.lookahead {
            self.commit(out);
        }
        Ok(())
    }

    /// Ends the stream: commits the frames left and emits the rest of the audio (up to the last
    /// frame's centre, as the offline resynthesis ends).
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let last = self.first + self.frames.len() as u64;
        while !self.frames.is_empty() {
            self.commit(out);
        }
        // Everything up to the centre of the last frame.
        let stop = (last.saturating_sub(1) * self.hop as u64) as i64;
        self.emit_until(stop.max(self.emitted as i64), out);
        self.reset();
    }

    /// The signal estimate over frame `i`'s span (committed audio plus every look-ahead frame),
    /// re-analysed: frame `i` gets its phase, keeps its magnitude. With `fresh`, frame `i` is
    /// left out of the estimate (it has none yet).
    fn project(&mut self, i: usize, fresh: bool) {
        let start = self.start_of(self.first + i as u64);
        let n = self.n_fft;
        for k in 0..n {
            let pos = start + k as i64;
            let at = (pos - self.base) as usize;
            let (mut num, mut den) = (self.num[at], self.den[at]);
            for (j, f) in self.frames.iter().enumerate() {
                if fresh && j == i {
                    continue;
                }
                let off = pos - self.start_of(self.first + j as u64);
                if (0..n as i64).contains(&off) {
                    let w = self.window[off as usize];
                    num += f.wave[off as usize];
                    den += w * w;
                }
            }
            let y = if den > 1e-8 { num / den } else { 0.0 };
            self.seg[k] = y * self.window[k];
        }
        let _ = self
            .fft
            .process_with_scratch(&mut self.seg, &mut self.bins, &mut self.scratch_fwd);
        let f = &mut self.frames[i];
        for (k, (s, b)) in f.spec.iter_mut().zip(&self.bins).enumerate() {
            let norm = b.norm();
            // Where the estimate is silent there is no phase to take: zero phase.
            *s = if norm > 1e-12 {
                b * (f.mag[k] / norm)
            } else {
                Complex32::new(f.mag[k], 0.0)
            };
        }
        // The DC and Nyquist bins of a real signal are real.
        let nb = f.spec.len();
        f.spec[0].im = 0.0;
        f.spec[nb - 1].im = 0.0;
        self.bins.copy_from_slice(&f.spec);
        let _ = self
            .ifft
            .process_with_scratch(&mut self.bins, &mut self.seg, &mut self.scratch_inv);
        let scale = 1.0 / n as f32;
        for (k, w) in f.wave.iter_mut().enumerate() {
            *w = self.seg[k] * scale * self.window[k];
        }
    }

    /// Commits the oldest look-ahead frame and emits what is final.
    fn commit(&mut self, out: &mut Vec<f32>) {
        let Some(f) = self.frames.pop_front() else { return };
        let start = self.start_of(self.first);
        for (k, (&v, &w)) in f.wave.iter().zip(&self.window).enumerate() {
            let at = (start + k as i64 - self.base) as usize;
            self.num[at] += v;
            self.den[at] += w * w;
        }
        self.spare.push(f);
        self.first += 1;
        // No frame still to come touches samples before the next frame's start.
        let stop = self.start_of(self.first);
        self.emit_until(stop, out);
    }

    /// Emits the samples from the last one emitted up to position `stop` (exclusive).
    fn emit_until(&mut self, stop: i64, out: &mut Vec<f32>) {
        while self.base < stop {
            let (Some(num), Some(den)) = (self.num.pop_front(), self.den.pop_front()) else {
                break;
            };
            if self.base >= 0 {
                out.push(if den > 1e-8 { num / den } else { 0.0 });
                self.emitted += 1;
            }
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::LogMel;
    use crate::griffinlim::{mel_to_audio, spectral_convergence, GriffinLimConfig};
    use crate::stft::Stft;

    fn speechlike(n: usize) -> Vec<f32> {
        // A gliding harmonic tone with a syllable envelope.
        (0..n)
            .map(|i| {
                let t = i as f32 / 16000.0;
                let f0 = 120.0 + 40.0 * (t * 3.0).sin();
                let env = (0.5 + 0.5 * (t * 2.0 * std::f32::consts::PI * 4.0).sin()).powi(2);
                let mut v = 0.0;
                for h in 1..12 {
                    v += (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin() / h as f32;
                }
                0.2 * env * v
            })
            .collect()
    }

    #[test]
    fn streams_the_length_of_the_offline_resynthesis_and_comes_near_its_quality() {
        let cfg = FrontendConfig::speech_16k();
        let x = speechlike(16000);
        let mel = LogMel::new(&cfg).unwrap().compute(&x);
        let mut v = StreamingGriffinLim::new(&cfg, 2, 8).unwrap();
        let mut y = Vec::new();
        for t in 0..mel.frames {
            v.push(&mel.frame(t), &mut y).unwrap();
            // Never more than the latency behind the newest frame's centre.
            let centre = t * cfg.hop_length;
            assert!(y.len() + v.latency_samples() >= centre, "frame {t}: {} out", y.len());
        }
        v.finish(&mut y);
        let offline = mel_to_audio(&cfg, &mel, GriffinLimConfig::default()).unwrap();
        assert_eq!(y.len(), offline.len());
        // The magnitudes it reaches: spectral convergence against the frontend's linear
        // magnitudes of the original, next to the offline 32-iteration Griffin-Lim's and to a
        // signal with the right magnitudes but random phases (no reconstruction at all).
        let mut stft = Stft::new(cfg.stft()).unwrap();
        let target = stft.forward(&x[..y.len()]).magnitude();
        let sc_stream = spectral_convergence(&mut stft, &target, &y);
        let sc_offline = spectral_convergence(&mut stft, &target, &offline);
        assert!(sc_stream < 0.3, "streaming {sc_stream:.3}, offline {sc_offline:.3}");
        assert!(
            sc_stream < 2.5 * sc_offline + 0.1,
            "streaming {sc_stream:.3}, offline {sc_offline:.3}"
        );
        // After reset it starts again, the same.
        let mut again = Vec::new();
        for t in 0..mel.frames {
            v.push(&mel.frame(t), &mut again).unwrap();
        }
        v.finish(&mut again);
        assert_eq!(again, y);
    }

    #[test]
    fn a_delayed_impulse_train_stays_where_it_was() {
        // Clicks every 100 ms: the output's clicks sit at the same samples (no shift).
        let cfg = FrontendConfig::speech_16k();
        let mut x = vec![0.0f32; 16000];
        for i in (800..16000).step_by(1600) {
            x[i] = 0.9;
        }
        let mel = LogMel::new(&cfg).unwrap().compute(&x);
        let mut v = StreamingGriffinLim::new(&cfg, 2, 16).unwrap();
        let mut y = Vec::new();
        for t in 0..mel.frames {
            v.push(&mel.frame(t), &mut y).unwrap();
        }
        v.finish(&mut y);
        // Energy in ±2 ms around each click against the same windows shifted by 20 ms.
        let energy = |c: usize| y[c - 32..c + 32].iter().map(|v| v * v).sum::<f32>();
        for c in (2400..14000).step_by(1600) {
            assert!(energy(c) > 2.0 * energy(c + 320), "click at {c} moved");
        }
    }
}
