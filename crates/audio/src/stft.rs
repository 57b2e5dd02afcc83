//! Short-time Fourier transform, its inverse, and a streaming STFT, with realfft.
//!
//! Framing follows librosa (`center=True`, `pad_mode="constant"`): the signal is padded with
//! `n_fft / 2` zeros on both sides, frame `t` starts at padded sample `t * hop`, the analysis
//! window is a periodic Hann window of `win_length` centred in `n_fft`. The inverse divides by
//! the summed squared window (librosa's `istft`), so `inverse(forward(x)) == x` wherever the
//! windows cover the signal. [`StreamingStft`] produces the same frames, one by one, as samples
//! arrive.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::num_traits::Float;
use realfft::{ComplexToReal, FftNum, RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The float type a transform computes in: `f32`, or `f64` where float32 rounding matters
/// (the log-mel, whose quietest bands sit near the floor).
pub trait Real: FftNum + Float + Default {}
impl Real for f32 {}
impl Real for f64 {}

fn real<T: Real>(v: f64) -> T {
    T::from_f64(v).unwrap_or_else(T::zero)
}

/// Framing of the STFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StftConfig {
    /// FFT size in samples.
    pub n_fft: usize,
    /// Analysis window length in samples (≤ `n_fft`; the window is centred in the FFT frame).
    pub win_length: usize,
    /// Frame step in samples.
    pub hop_length: usize,
    /// Pad `n_fft / 2` zeros on both sides so that frame `t` is centred on sample `t * hop`.
    pub center: bool,
}

impl StftConfig {
    /// Checks the sizes; every constructor calls this.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.n_fft < 2 || self.n_fft % 2 != 0 {
            return Err(Error::Config(format!("n_fft must be even and ≥ 2, got {}", self.n_fft)));
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return Err(Error::Config(format!(
                "win_length {} must be in 1..={}",
                self.win_length, self.n_fft
            )));
        }
        if self.hop_length == 0 || self.hop_length > self.win_length {
            return Err(Error::Config(format!(
                "hop_length {} must be in 1..={} (win_length)",
                self.hop_length, self.win_length
            )));
        }
        Ok(())
    }

    /// Frequency bins per frame: `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Zeros padded on each side.
    pub fn pad(&self) -> usize {
        if self.center {
            self.n_fft / 2
        } else {
            0
        }
    }

    /// Frames for a signal of `len` samples (librosa's count; 0 if too short when not centred).
    pub fn n_frames(&self, len: usize) -> usize {
        let padded = len + 2 * self.pad();
        if padded < self.n_fft {
            0
        } else {
            1 + (padded - self.n_fft) / self.hop_length
        }
    }

    /// The periodic Hann window of `win_length`, zero-padded to `n_fft` and centred.
    pub fn window<T: Real>(&self) -> Vec<T> {
        let mut w = vec![T::zero(); self.n_fft];
        let off = (self.n_fft - self.win_length) / 2;
        for i in 0..self.win_length {
            let v = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / self.win_length as f64).cos();
            w[off + i] = real(v);
        }
        w
    }
}

/// A complex spectrogram, frame-major: `data[t * n_bins + k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram<T = f32> {
    /// Bins per frame.
    pub n_bins: usize,
    /// Number of frames.
    pub frames: usize,
    /// `frames * n_bins` values.
    pub data: Vec<Complex<T>>,
}

impl<T: Real> Spectrogram<T> {
    /// An empty spectrogram, to be filled by [`Stft::forward_into`].
    pub fn empty() -> Self {
        Self {
            n_bins: 0,
            frames: 0,
            data: Vec::new(),
        }
    }

    /// Frame `t`.
    pub fn frame(&self, t: usize) -> &[Complex<T>] {
        &self.data[t * self.n_bins..(t + 1) * self.n_bins]
    }

    /// Magnitudes, frame-major like `data`.
    pub fn magnitude(&self) -> Vec<T> {
        self.data.iter().map(|c| c.norm()).collect()
    }
}

/// Windows and transforms one frame at a time; owns its scratch buffers.
struct FrameAnalyzer<T: Real> {
    window: Vec<T>,
    fft: Arc<dyn RealToComplex<T>>,
    frame: Vec<T>,
    scratch: Vec<Complex<T>>,
}

impl<T: Real> FrameAnalyzer<T> {
    fn new(cfg: &StftConfig) -> Self {
        let fft = RealFftPlanner::<T>::new().plan_fft_forward(cfg.n_fft);
        let scratch = fft.make_scratch_vec();
        Self {
            window: cfg.window(),
            frame: vec![T::zero(); cfg.n_fft],
            scratch,
            fft,
        }
    }

    /// Transforms `samples` (exactly `n_fft` long) into `out` (`n_bins` long). No allocation.
    fn analyse(&mut self, samples: &[f32], out: &mut [Complex<T>]) {
        apply_window(&mut self.frame, samples, &self.window);
        // Lengths are fixed at construction, so the transform cannot fail.
        let _ = self.fft.process_with_scratch(&mut self.frame, out, &mut self.scratch);
    }
}

crate::simd::multiversion! {
    /// `frame[i] = samples[i] · window[i]`, converting to `T` on the way.
    fn apply_window<T: Real>(frame: &mut [T], samples: &[f32], window: &[T]) {
        for ((f, &s), &w) in frame.iter_mut().zip(samples).zip(window) {
            *f = T::from_f32(s).unwrap_or_else(T::zero) * w;
        }
    }
}

/// Offline STFT and inverse STFT of one configuration (plans made once, buffers reused).
pub struct Stft<T: Real = f32> {
    cfg: StftConfig,
    analyzer: FrameAnalyzer<T>,
    ifft: Arc<dyn ComplexToReal<T>>,
    ibuf: Vec<Complex<T>>,
    iframe: Vec<T>,
    iscratch: Vec<Complex<T>>,
    padded: Vec<f32>,
    acc: Vec<T>,
    /// Summed squared windows of the last inverse, kept while the frame count stays the same.
    wsum: Vec<T>,
    wsum_frames: usize,
}

impl<T: Real> std::fmt::Debug for Stft<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft").field("cfg", &self.cfg).finish()
    }
}

impl<T: Real> Stft<T> {
    /// Plans the transforms.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid sizes.
    pub fn new(cfg: StftConfig) -> Result<Self> {
        cfg.validate()?;
        let ifft = RealFftPlanner::<T>::new().plan_fft_inverse(cfg.n_fft);
        Ok(Self {
            analyzer: FrameAnalyzer::new(&cfg),
            iscratch: ifft.make_scratch_vec(),
            ibuf: vec![Complex::default(); cfg.n_bins()],
            iframe: vec![T::zero(); cfg.n_fft],
            ifft,
            padded: Vec::new(),
            acc: Vec::new(),
            wsum: Vec::new(),
            wsum_frames: usize::MAX,
            cfg,
        })
    }

    /// The framing.
    pub fn config(&self) -> &StftConfig {
        &self.cfg
    }

    /// The spectrogram of `x`.
    pub fn forward(&mut self, x: &[f32]) -> Spectrogram<T> {
        let mut spec = Spectrogram::empty();
        self.forward_into(x, &mut spec);
        spec
    }

    /// The spectrogram of `x` into `spec`, reusing its allocation.
    pub fn forward_into(&mut self, x: &[f32], spec: &mut Spectrogram<T>) {
        let n_bins = self.cfg.n_bins();
        let frames = self.cfg.n_frames(x.len());
        self.pad_input(x);
        spec.n_bins = n_bins;
        spec.frames = frames;
        spec.data.resize(frames * n_bins, Complex::default());
        let (n_fft, hop) = (self.cfg.n_fft, self.cfg.hop_length);
        for (t, out) in spec.data.chunks_exact_mut(n_bins).enumerate() {
            self.analyzer.analyse(&self.padded[t * hop..t * hop + n_fft], out);
        }
    }

    fn pad_input(&mut self, x: &[f32]) {
        let pad = self.cfg.pad();
        self.padded.clear();
        self.padded.resize(pad, 0.0);
        self.padded.extend_from_slice(x);
        self.padded.resize(x.len() + 2 * pad, 0.0);
    }

    /// The signal whose STFT is closest to `spec` (least squares, window-sum normalised).
    /// `length` trims or zero-pads the result; `None` gives `(frames - 1) * hop` samples when
    /// centred.
    pub fn inverse(&mut self, spec: &Spectrogram<T>, length: Option<usize>) -> Vec<f32> {
        let mut y = Vec::new();
        self.inverse_into(spec, length, &mut y);
        y
    }

    /// [`inverse`](Self::inverse) into `y`, reusing its allocation.
    pub fn inverse_into(&mut self, spec: &Spectrogram<T>, length: Option<usize>, y: &mut Vec<f32>) {
        let (n_fft, hop, pad) = (self.cfg.n_fft, self.cfg.hop_length, self.cfg.pad());
        let full = if spec.frames == 0 {
            0
        } else {
            n_fft + hop * (spec.frames - 1)
        };
        let window = &self.analyzer.window;
        let acc = &mut self.acc;
        acc.clear();
        acc.resize(full, T::zero());
        if self.wsum_frames != spec.frames {
            self.wsum.clear();
            self.wsum.resize(full, T::zero());
            for t in 0..spec.frames {
                for (s, &w) in self.wsum[t * hop..t * hop + n_fft].iter_mut().zip(window) {
                    *s = *s + w * w;
                }
            }
            self.wsum_frames = spec.frames;
        }
        let scale = T::one() / real::<T>(n_fft as f64);
        for t in 0..spec.frames {
            self.ibuf.copy_from_slice(spec.frame(t));
            // A real signal's DC and Nyquist bins are real; realfft insists.
            self.ibuf[0].im = T::zero();
            if let Some(last) = self.ibuf.last_mut() {
                last.im = T::zero();
            }
            let _ = self
                .ifft
                .process_with_scratch(&mut self.ibuf, &mut self.iframe, &mut self.iscratch);
            let start = t * hop;
            for ((a, &v), &w) in acc[start..start + n_fft].iter_mut().zip(&self.iframe).zip(window) {
                *a = *a + v * scale * w;
            }
        }
        let tiny = T::min_positive_value();
        let want = length.unwrap_or_else(|| full.saturating_sub(2 * pad));
        y.clear();
        y.extend(acc.iter().zip(&self.wsum).skip(pad).take(want).map(|(&v, &w)| {
            let v = if w > tiny { v / w } else { v };
            v.to_f32().unwrap_or(0.0)
        }));
        y.resize(want, 0.0);
    }
}

/// A streaming STFT: push samples in any chunk sizes; it emits the same frames, in order, as
/// [`Stft::forward`] does on the whole signal. Real-time safe after construction (`push` and
/// `finish` do not allocate).
pub struct StreamingStft<T: Real = f32> {
    cfg: StftConfig,
    analyzer: FrameAnalyzer<T>,
    /// The samples of the frame being filled.
    buf: Vec<f32>,
    filled: usize,
    out: Vec<Complex<T>>,
    finished: bool,
}

impl<T: Real> std::fmt::Debug for StreamingStft<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingStft")
            .field("cfg", &self.cfg)
            .field("filled", &self.filled)
            .finish()
    }
}

impl<T: Real> StreamingStft<T> {
    /// A streaming STFT of one configuration.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid sizes.
    pub fn new(cfg: StftConfig) -> Result<Self> {
        cfg.validate()?;
        let mut s = Self {
            analyzer: FrameAnalyzer::new(&cfg),
            buf: vec![0.0; cfg.n_fft],
            filled: 0,
            out: vec![Complex::default(); cfg.n_bins()],
            finished: false,
            cfg,
        };
        s.reset();
        Ok(s)
    }

    /// Back to the start of a new stream.
    pub fn reset(&mut self) {
        self.buf.fill(0.0);
        // The leading zero padding of a centred STFT is already "received".
        self.filled = self.cfg.pad();
        self.finished = false;
    }

    /// Samples a frame needs beyond its centre before it can be emitted (analysis lookahead).
    pub fn lookahead_samples(&self) -> usize {
        self.cfg.n_fft - self.cfg.pad()
    }

    /// Feeds samples; calls `emit` with each completed frame (`n_bins` complex values).
    pub fn push(&mut self, mut x: &[f32], mut emit: impl FnMut(&[Complex<T>])) {
        let (n_fft, hop) = (self.cfg.n_fft, self.cfg.hop_length);
        while !x.is_empty() {
            let take = (n_fft - self.filled).min(x.len());
            self.buf[self.filled..self.filled + take].copy_from_slice(&x[..take]);
            self.filled += take;
            x = &x[take..];
            if self.filled == n_fft {
                self.analyzer.analyse(&self.buf, &mut self.out);
                emit(&self.out);
                self.buf.copy_within(hop.., 0);
                self.filled -= hop;
            }
        }
    }

    /// Ends the stream: feeds the trailing padding and emits the last frames, so the total
    /// equals the offline frame count. Call [`reset`](Self::reset) before reuse.
    pub fn finish(&mut self, mut emit: impl FnMut(&[Complex<T>])) {
        if self.finished {
            return;
        }
        self.finished = true;
        let (n_fft, hop) = (self.cfg.n_fft, self.cfg.hop_length);
        let mut pad = self.cfg.pad();
        while pad > 0 {
            let take = (n_fft - self.filled).min(pad);
            self.buf[self.filled..self.filled + take].fill(0.0);
            self.filled += take;
            pad -= take;
            if self.filled == n_fft {
                self.analyzer.analyse(&self.buf, &mut self.out);
                emit(&self.out);
                self.buf.copy_within(hop.., 0);
                self.filled -= hop;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const CFG: StftConfig = StftConfig {
        n_fft: 400,
        win_length: 400,
        hop_length: 160,
        center: true,
    };

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-0.8f32..0.8)).collect()
    }

    #[test]
    fn inverse_of_forward_is_identity() {
        for cfg in [
            CFG,
            StftConfig {
                n_fft: 512,
                win_length: 400,
                hop_length: 100,
                center: true,
            },
            StftConfig {
                n_fft: 1024,
                win_length: 1024,
                hop_length: 256,
                center: true,
            },
        ] {
            let x = noise(16_037, 1);
            let mut stft = Stft::<f32>::new(cfg).unwrap();
            let spec = stft.forward(&x);
            assert_eq!(spec.frames, 1 + x.len() / cfg.hop_length);
            let y = stft.inverse(&spec, Some(x.len()));
            let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-5, "{cfg:?}: max error {err}");
        }
    }

    #[test]
    fn streaming_equals_offline_frame_for_frame() {
        let x = noise(8_123, 2);
        let mut stft = Stft::<f64>::new(CFG).unwrap();
        let offline = stft.forward(&x);
        for chunk in [1usize, 7, 160, 333, 5000] {
            let mut s = StreamingStft::<f64>::new(CFG).unwrap();
            let mut frames: Vec<Complex<f64>> = Vec::new();
            for c in x.chunks(chunk) {
                s.push(c, |f| frames.extend_from_slice(f));
            }
            s.finish(|f| frames.extend_from_slice(f));
            assert_eq!(frames.len(), offline.data.len(), "chunk {chunk}");
            let err = frames
                .iter()
                .zip(&offline.data)
                .map(|(a, b)| (a - b).norm())
                .fold(0.0, f64::max);
            assert!(err == 0.0, "chunk {chunk}: max difference {err}");
        }
    }

    #[test]
    fn sine_peaks_at_its_bin() {
        let x: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let spec = Stft::<f32>::new(CFG).unwrap().forward(&x);
        let mag = spec.magnitude();
        let frame = &mag[50 * 201..51 * 201];
        let peak = frame
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap();
        // 1000 Hz at 40 Hz per bin is bin 25; the Hann window's gain is win/2.
        assert_eq!(peak, 25);
        assert!((frame[25] - 100.0).abs() < 0.5, "peak magnitude {}", frame[25]);
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(Stft::<f32>::new(StftConfig { n_fft: 401, ..CFG }).is_err());
        assert!(Stft::<f32>::new(StftConfig { win_length: 500, ..CFG }).is_err());
        assert!(Stft::<f32>::new(StftConfig { hop_length: 0, ..CFG }).is_err());
    }
}
