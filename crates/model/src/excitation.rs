//! The sources of the neural vocoder's source-filter synthesis ([`crate::vocoder::PhaseMode::Source`]):
//! a harmonic excitation (a sum of cosines at every multiple of an F0 below Nyquist, their phases
//! the running integral of that F0, so that it is periodic by construction) and white noise,
//! each cut into the vocoder's synthesis frames and transformed, ready for the head's gains.
//!
//! Frame `t` spans samples `t·hop − n_fft/2 .. t·hop + n_fft/2`. The samples a frame is the
//! first to reach take that frame's F0, so a frame needs nothing from later frames: the stream
//! and the offline synthesis generate the same signal. The noise is a hash of the sample's index
//! (counted from the first frame's first sample), the same in both too.
//!
//! Both sources have the same power spectral density on average (each harmonic's amplitude
//! `2·√(F0/sr)` spreads its power over `F0` hertz as the noise's unit variance spreads over
//! `sr/2`), so the head's two gains are two spectral envelopes on one scale.

use realfft::num_complex::Complex;

/// The head's F0 output is `ln(F0 / F0_REF)`.
pub const F0_REF: f32 = 120.0;
/// F0s are held to this range before synthesis (Hz).
pub const F0_MIN: f32 = 40.0;
/// See [`F0_MIN`].
pub const F0_MAX: f32 = 1000.0;

/// The F0 network's lowest pitch bin's centre (Hz).
pub const F0_BIN_LO: f32 = 50.0;
/// Its highest (Hz).
pub const F0_BIN_HI: f32 = 600.0;

/// Where `f0` (Hz) falls among `bins` pitch bins spaced evenly in log-frequency from
/// [`F0_BIN_LO`] (bin 0) to [`F0_BIN_HI`] (bin `bins − 1`), fractional, held to the range.
pub fn f0_bin(f0: f32, bins: usize) -> f32 {
    let pos = (f0 / F0_BIN_LO).ln() / (F0_BIN_HI / F0_BIN_LO).ln() * (bins - 1) as f32;
    if pos.is_finite() {
        pos.clamp(0.0, (bins - 1) as f32)
    } else {
        0.0
    }
}

/// The F0 (Hz) of a frame's pitch-bin logits: the softmax-weighted mean bin position within two
/// bins of the strongest (CREPE's local average, so that the answer is finer than a bin and
/// never between two distant candidates such as an octave), [`F0_REF`] if no logit is finite.
pub fn decode_f0(logits: &[f32]) -> f32 {
    let bins = logits.len();
    let Some((best, &top)) = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1))
    else {
        return F0_REF;
    };
    let (lo, hi) = (best.saturating_sub(2), (best + 2).min(bins - 1));
    let (mut sum, mut weight) = (0f32, 0f32);
    for (j, v) in logits.iter().enumerate().take(hi + 1).skip(lo) {
        if v.is_finite() {
            let w = (v - top).exp();
            sum += w * j as f32;
            weight += w;
        }
    }
    let pos = sum / weight;
    F0_BIN_LO * (F0_BIN_HI / F0_BIN_LO).powf(pos / (bins - 1).max(1) as f32)
}

/// A planned forward real FFT (the plan has no `Debug` of its own).
#[derive(Clone)]
struct Fft(std::sync::Arc<dyn realfft::RealToComplex<f32>>);

impl std::fmt::Debug for Fft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fft({})", self.0.len())
    }
}

/// The two sources of one synthesis, frame by frame (see the module docs).
#[derive(Debug, Clone)]
pub struct Excitation {
    sample_rate: f64,
    hop: usize,
    n_fft: usize,
    /// The fundamental's phase at the next sample (radians, below one turn).
    theta: f64,
    /// Index of the next sample, from the first frame's first sample.
    next: u64,
    /// The last `n_fft` samples of each source (the current frame's).
    harm: Vec<f32>,
    noise: Vec<f32>,
    /// Analysis window: the square root of a periodic Hann (the synthesis window without its
    /// `1/n`), so that analysis, gains of 1 and synthesis give the source back.
    window: Vec<f32>,
    fft: Fft,
    buf: Vec<f32>,
    scratch: Vec<Complex<f32>>,
    /// Per frame: each harmonic's amplitude, and each new sample's cos θ and the recurrence's
    /// last two terms.
    taper: Vec<f32>,
    c1: Vec<f32>,
    prev: Vec<f32>,
    cur: Vec<f32>,
}

/// F0 in Hz from the head's output `ln(F0 / F0_REF)`, held to `F0_MIN ..= F0_MAX` (a
/// non-finite output gives `F0_REF`).
pub fn f0_from_head(z: f32) -> f32 {
    let f = F0_REF * z.exp();
    if f.is_finite() {
        f.clamp(F0_MIN, F0_MAX)
    } else if z > 0.0 {
        F0_MAX
    } else {
        F0_REF
    }
}

/// A sample of unit-variance white noise: uniform in ±√3, from a hash of `i` (SplitMix64).
fn noise_at(i: u64) -> f32 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let u = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
    (2.0 * u - 1.0) * 3f32.sqrt()
}

impl Excitation {
    /// Sources for frames of `n_fft` points every `hop` samples at `sample_rate`.
    pub fn new(sample_rate: u32, hop: usize, n_fft: usize) -> Self {
        let fft = realfft::RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
        Self {
            sample_rate: f64::from(sample_rate),
            hop,
            n_fft,
            theta: 0.0,
            next: 0,
            harm: vec![0.0; n_fft],
            noise: vec![0.0; n_fft],
            window: crate::vocoder::synthesis_window(n_fft)
                .into_iter()
                .map(|w| (w * n_fft as f64) as f32)
                .collect(),
            buf: fft.make_input_vec(),
            // Room for every harmonic at the lowest F0: a frame never allocates.
            taper: Vec::with_capacity((0.5 * f64::from(sample_rate) / f64::from(F0_MIN)) as usize + 1),
            c1: vec![0.0; n_fft],
            prev: vec![0.0; n_fft],
            cur: vec![0.0; n_fft],
            scratch: fft.make_scratch_vec(),
            fft: Fft(fft),
        }
    }

    /// Starts again from the first frame.
    pub fn reset(&mut self) {
        self.theta = 0.0;
        self.next = 0;
        self.harm.iter_mut().for_each(|v| *v = 0.0);
        self.noise.iter_mut().for_each(|v| *v = 0.0);
    }

    /// The next frame at F0 `f0` (Hz; held to [`F0_MIN`]` ..= `[`F0_MAX`]): the spectra of its
    /// windowed harmonic and noise sources, `n_fft / 2 + 1` bins each.
    pub fn frame(&mut self, f0: f32, harm: &mut [Complex<f32>], noise: &mut [Complex<f32>]) {
        let f0 = if f0.is_finite() {
            f0.clamp(F0_MIN, F0_MAX)
        } else {
            F0_REF
        };
        // The first frame reaches n_fft samples, each later one a hop more.
        let new = if self.next == 0 { self.n_fft } else { self.hop };
        let keep = self.n_fft - new;
        self.harm.copy_within(new.., 0);
        self.noise.copy_within(new.., 0);
        let sr = self.sample_rate;
        let f = f64::from(f0);
        let step = 2.0 * std::f64::consts::PI * f / sr;
        let amp = 2.0 * (f / sr).sqrt();
        // Harmonics fade out over the top tenth below Nyquist, so that one appearing as F0 falls
        // does not click.
        let nyq = 0.5 * sr;
        let top = (nyq / f).floor() as usize;
        self.taper.clear();
        self.taper
            .extend((1..=top).map(|h| (amp * ((nyq - h as f64 * f) / (0.1 * nyq)).clamp(0.0, 1.0)) as f32));
        // Each new sample's cos θ, then Σ_h a_h cos(hθ) for all of them at once by the Chebyshev
        // recurrence cos(hθ) = 2cosθ cos((h−1)θ) − cos((h−2)θ), sample-wise (vectorised).
        let c1 = &mut self.c1[..new];
        for (j, c) in c1.iter_mut().enumerate() {
            *c = self.theta.cos() as f32;
            self.noise[keep + j] = noise_at(self.next);
            self.next += 1;
            self.theta += step;
            if self.theta >= 2.0 * std::f64::consts::PI {
                self.theta -= 2.0 * std::f64::consts::PI;
            }
        }
        let (prev, cur) = (&mut self.prev[..new], &mut self.cur[..new]);
        prev.iter_mut().for_each(|v| *v = 1.0);
        cur.copy_from_slice(c1);
        let acc = &mut self.harm[keep..];
        acc.iter_mut().for_each(|v| *v = 0.0);
        for &a in &self.taper {
            for (((s, p), c), &x) in acc.iter_mut().zip(prev.iter_mut()).zip(cur.iter_mut()).zip(c1.iter()) {
                *s += a * *c;
                let n = 2.0 * x * *c - *p;
                *p = *c;
                *c = n;
            }
        }
        self.transform(true, harm);
        self.transform(false, noise);
    }

    fn transform(&mut self, harmonic: bool, out: &mut [Complex<f32>]) {
        let src = if harmonic { &self.harm } else { &self.noise };
        for ((b, s), w) in self.buf.iter_mut().zip(src).zip(&self.window) {
            *b = s * w;
        }
        // The lengths are the plan's own: the transform cannot fail.
        let _ = self.fft.0.process_with_scratch(&mut self.buf, out, &mut self.scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overlap-add of the inverse transforms of `spectra` with the synthesis window: the signal
    /// from the first frame's centre on.
    fn resynthesise(spectra: &[Vec<Complex<f32>>], n: usize, hop: usize) -> Vec<f32> {
        let ifft = realfft::RealFftPlanner::<f32>::new().plan_fft_inverse(n);
        let mut out = vec![0f32; (spectra.len() - 1) * hop + n];
        for (t, s) in spectra.iter().enumerate() {
            let mut s = s.clone();
            s[0].im = 0.0;
            s[n / 2].im = 0.0;
            let mut frame = vec![0f32; n];
            ifft.process(&mut s, &mut frame).unwrap();
            for (j, v) in frame.iter().enumerate() {
                let w = (std::f32::consts::PI * j as f32 / n as f32).sin() / n as f32;
                out[t * hop + j] += v * w;
            }
        }
        out.drain(..n / 2);
        out
    }

    #[test]
    fn the_harmonic_source_is_periodic_at_its_f0_and_resynthesises() {
        let (sr, hop, n) = (16000, 160, 320);
        let mut e = Excitation::new(sr, hop, n);
        let mut harm = Vec::new();
        let mut noise = Vec::new();
        for _ in 0..60 {
            let (mut h, mut z) = (vec![Complex::default(); n / 2 + 1], vec![Complex::default(); n / 2 + 1]);
            e.frame(200.0, &mut h, &mut z);
            harm.push(h);
            noise.push(z);
        }
        let x = resynthesise(&harm, n, hop);
        // A period of 200 Hz is 80 samples: the signal repeats, and has no other period.
        let mid = &x[1000..8000];
        let lag = |l: usize| {
            let a: f32 = mid.iter().zip(&mid[l..]).map(|(p, q)| p * q).sum();
            let b: f32 = mid.iter().zip(&mid[l..]).map(|(p, _)| p * p).sum();
            a / b
        };
        assert!(lag(80) > 0.999, "{}", lag(80));
        assert!(lag(40) < 0.0, "{}", lag(40));
        // Power: each of the 39 full harmonics (and the tapered ones) at amplitude 2√(F0/sr).
        let p = mid.iter().map(|v| v * v).sum::<f32>() / mid.len() as f32;
        let a2 = 4.0 * 200.0 / 16000.0;
        assert!(p > 36.0 * a2 / 2.0 && p < 40.0 * a2 / 2.0, "{p}");
        // The noise resynthesises to unit variance and is not periodic.
        let z = resynthesise(&noise, n, hop);
        let zm = &z[1000..8000];
        let var = zm.iter().map(|v| v * v).sum::<f32>() / zm.len() as f32;
        assert!((var - 1.0).abs() < 0.08, "{var}");
    }

    #[test]
    fn frames_depend_only_on_past_f0s() {
        let (sr, hop, n) = (16000, 160, 320);
        let spectra = |f0s: &[f32]| {
            let mut e = Excitation::new(sr, hop, n);
            f0s.iter()
                .map(|&f| {
                    let (mut h, mut z) = (vec![Complex::default(); n / 2 + 1], vec![Complex::default(); n / 2 + 1]);
                    e.frame(f, &mut h, &mut z);
                    (h, z)
                })
                .collect::<Vec<_>>()
        };
        let a = spectra(&[100.0, 150.0, 120.0, 300.0]);
        let b = spectra(&[100.0, 150.0, 120.0, 90.0]);
        assert_eq!(a[..3], b[..3]);
        assert_ne!(a[3], b[3]);
    }

    #[test]
    fn pitch_bins_decode_to_their_f0() {
        let bins = 96;
        for f in [60f32, 118.0, 200.0, 455.0] {
            let pos = f0_bin(f, bins);
            // Logits of a Gaussian around the position: the decoded F0 is within a cent or two.
            let logits: Vec<f32> = (0..bins).map(|j| -0.5 * ((j as f32 - pos) / 1.0).powi(2)).collect();
            let got = decode_f0(&logits);
            assert!((1200.0 * (got / f).log2()).abs() < 3.0, "{f}: {got}");
        }
        assert_eq!(f0_bin(10.0, bins), 0.0);
        assert_eq!(f0_bin(5000.0, bins), 95.0);
        // An octave candidate far away does not pull the answer between the two.
        let mut logits = vec![-10f32; bins];
        logits[20] = 5.0;
        logits[60] = 4.9;
        let got = decode_f0(&logits);
        assert!((f0_bin(got, bins) - 20.0).abs() < 0.01, "{got}");
        assert_eq!(decode_f0(&[f32::NAN; 4]), F0_REF);
    }

    #[test]
    fn head_outputs_map_to_held_f0s() {
        assert_eq!(f0_from_head(0.0), F0_REF);
        assert_eq!(f0_from_head(-20.0), F0_MIN);
        assert_eq!(f0_from_head(f32::INFINITY), F0_MAX);
        assert_eq!(f0_from_head(f32::NAN), F0_REF);
        assert!((f0_from_head((200f32 / F0_REF).ln()) - 200.0).abs() < 1e-3);
    }
}
