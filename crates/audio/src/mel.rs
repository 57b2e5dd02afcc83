//! Mel filterbanks, equal to librosa's `filters.mel` (Slaney scale and area norm by default,
//! HTK scale as an option), stored sparsely: each filter spans only a few FFT bins.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The Hz-to-mel mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelScale {
    /// Slaney's Auditory Toolbox: linear below 1 kHz, logarithmic above (librosa's default).
    #[default]
    Slaney,
    /// HTK: `2595 * log10(1 + f / 700)`.
    Htk,
}

/// Normalisation of each triangular filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelNorm {
    /// Divide by the filter's width in Hz, so each has equal area (librosa's `norm="slaney"`).
    #[default]
    Slaney,
    /// Peak 1.
    None,
}

/// Hz to mel.
pub fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney => {
            let f_sp = 200.0 / 3.0;
            let min_log_hz = 1000.0;
            let min_log_mel = min_log_hz / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if hz >= min_log_hz {
                min_log_mel + (hz / min_log_hz).ln() / logstep
            } else {
                hz / f_sp
            }
        }
    }
}

/// Mel to Hz.
pub fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney => {
            let f_sp = 200.0 / 3.0;
            let min_log_hz = 1000.0;
            let min_log_mel = min_log_hz / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if mel >= min_log_mel {
                min_log_hz * (logstep * (mel - min_log_mel)).exp()
            } else {
                f_sp * mel
            }
        }
    }
}

/// A mel filterbank over the bins of an `n_fft`-point real FFT.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilterbank {
    n_mels: usize,
    n_bins: usize,
    /// Per filter: first non-zero bin and its weights.
    filters: Vec<(usize, Vec<f32>)>,
}

/// Scratch space of [`MelFilterbank::invert_with`], made once per stream so that inverting a
/// frame does not allocate.
#[derive(Debug, Clone, Default)]
pub struct InvertScratch {
    colsum: Vec<f32>,
    rowsum: Vec<f32>,
    scaled: Vec<f32>,
    wts: Vec<f32>,
    ws: Vec<f32>,
    wtws: Vec<f32>,
    wty: Vec<f32>,
}

impl MelFilterbank {
    /// Builds the filterbank as librosa does (weights computed in f64, stored as f32).
    ///
    /// # Errors
    /// [`Error::Config`] for zero sizes or a frequency range outside `0..=sample_rate/2`.
    pub fn new(
        sample_rate: u32,
        n_fft: usize,
        n_mels: usize,
        fmin: f64,
        fmax: f64,
        scale: MelScale,
        norm: MelNorm,
    ) -> Result<Self> {
        let nyquist = f64::from(sample_rate) / 2.0;
        if n_mels == 0 || n_fft < 2 {
            return Err(Error::Config(format!(
                "mel filterbank needs n_mels ≥ 1 and n_fft ≥ 2 ({n_mels}, {n_fft})"
            )));
        }
        if !(0.0 <= fmin && fmin < fmax && fmax <= nyquist) {
            return Err(Error::Config(format!(
                "mel range {fmin}..{fmax} Hz must lie within 0..={nyquist} Hz"
            )));
        }
        let n_bins = n_fft / 2 + 1;
        let fftfreqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * nyquist / (n_bins - 1) as f64).collect();
        let (lo, hi) = (hz_to_mel(fmin, scale), hz_to_mel(fmax, scale));
        let mel_f: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64, scale))
            .collect();
        let mut filters = Vec::with_capacity(n_mels);
        for i in 0..n_mels {
            let (f0, f1, f2) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
            let enorm = match norm {
                MelNorm::Slaney => 2.0 / (f2 - f0),
                MelNorm::None => 1.0,
            };
            let weights: Vec<f32> = fftfreqs
                .iter()
                .map(|&f| {
                    let lower = (f - f0) / (f1 - f0);
                    let upper = (f2 - f) / (f2 - f1);
                    (lower.min(upper).max(0.0) * enorm) as f32
                })
                .collect();
            let start = weights.iter().position(|&w| w != 0.0).unwrap_or(0);
            let end = weights.iter().rposition(|&w| w != 0.0).map_or(start, |e| e + 1);
            filters.push((start, weights[start..end].to_vec()));
        }
        Ok(Self {
            n_mels,
            n_bins,
            filters,
        })
    }

    /// Number of mel bands.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Number of FFT bins the filterbank reads.
    pub fn n_bins(&self) -> usize {
        self.n_bins
    }

    /// The dense `[n_mels, n_bins]` matrix, row-major.
    pub fn dense(&self) -> Vec<f32> {
        let mut m = vec![0.0; self.n_mels * self.n_bins];
        for (i, (start, w)) in self.filters.iter().enumerate() {
            m[i * self.n_bins + start..i * self.n_bins + start + w.len()].copy_from_slice(w);
        }
        m
    }

    /// `out[m] = Σ_k W[m, k] · spectrum[k]` for one frame. No allocation.
    pub fn apply(&self, spectrum: &[f32], out: &mut [f32]) {
        for ((start, w), o) in self.filters.iter().zip(out.iter_mut()) {
            *o = w.iter().zip(&spectrum[*start..]).map(|(a, b)| a * b).sum();
        }
    }

    /// [`apply`](Self::apply) on `L` frames at once: `spectra` is bin-major (`spectra[k * L + j]`
    /// is bin `k` of frame `j`) and so is `out` (`out[m * L + j]`). Each lane sums in the same
    /// order as `apply`, so the results are identical; the lanes vectorise.
    #[inline(always)]
    pub fn apply_lanes<const L: usize>(&self, spectra: &[f32], out: &mut [f32]) {
        for ((start, w), o) in self.filters.iter().zip(out.chunks_exact_mut(L)) {
            let mut acc = [0.0f32; L];
            for (&wk, s) in w.iter().zip(spectra[start * L..].chunks_exact(L)) {
                for j in 0..L {
                    acc[j] += wk * s[j];
                }
            }
            o.copy_from_slice(&acc);
        }
    }

    /// `out[k] = Σ_m W[m, k] · mel[m]` (the transpose), for one frame.
    pub fn apply_transpose(&self, mel: &[f32], out: &mut [f32]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        for ((start, w), &m) in self.filters.iter().zip(mel) {
            for (o, &wk) in out[*start..].iter_mut().zip(w) {
                *o += wk * m;
            }
        }
    }

    /// A non-negative spectrum `s` with `W s ≈ mel`, by multiplicative NNLS updates
    /// (Lee & Seung), the role librosa's `mel_to_stft` gives to NNLS. Bins no filter covers
    /// come out 0.
    pub fn invert(&self, mel: &[f32], iterations: usize, out: &mut [f32]) {
        self.invert_with(mel, iterations, out, &mut InvertScratch::default());
    }

    /// [`invert`](Self::invert) with its working vectors in `scratch` (sized and filled on
    /// the first call): no allocation after that.
    pub fn invert_with(&self, mel: &[f32], iterations: usize, out: &mut [f32], scratch: &mut InvertScratch) {
        let InvertScratch {
            colsum,
            rowsum,
            scaled,
            wts,
            ws,
            wtws,
            wty,
        } = scratch;
        if colsum.len() != self.n_bins || rowsum.len() != self.n_mels {
            // The column and row sums of W, the same for every frame.
            colsum.clear();
            colsum.resize(self.n_bins, 0.0);
            rowsum.clear();
            rowsum.resize(self.n_mels, 0.0);
            ws.clear();
            ws.resize(self.n_mels, 1.0);
            self.apply_transpose(ws, colsum);
            wts.clear();
            wts.resize(self.n_bins, 1.0);
            self.apply(wts, rowsum);
            for v in [&mut *scaled, &mut *ws] {
                v.clear();
                v.resize(self.n_mels, 0.0);
            }
            for v in [&mut *wts, &mut *wtws, &mut *wty] {
                v.clear();
                v.resize(self.n_bins, 0.0);
            }
        }
        // Start from the transpose, normalised so that a flat spectrum maps back to itself.
        self.apply_transpose(mel, out);
        for ((s, m), r) in scaled.iter_mut().zip(mel).zip(rowsum.iter()) {
            *s = if *r > 0.0 { m / r } else { 0.0 };
        }
        self.apply_transpose(scaled, wts);
        for ((o, w), c) in out.iter_mut().zip(wts.iter()).zip(colsum.iter()) {
            *o = if *c > 0.0 { w / c } else { 0.0 };
        }
        self.apply_transpose(mel, wty);
        for _ in 0..iterations {
            self.apply(out, ws);
            self.apply_transpose(ws, wtws);
            for ((o, &num), &den) in out.iter_mut().zip(wty.iter()).zip(wtws.iter()) {
                if den > 1e-30 {
                    *o *= num / den;
                }
            }
        }
    }
}

/// A warp of a mel spectrogram's frequency axis by a factor `alpha` (vocal-tract-length
/// perturbation): what sat at `f` Hz moves to `alpha · f`, formants and harmonics alike, so a
/// voice sounds like one with a shorter (`alpha > 1`) or longer vocal tract and a higher or
/// lower pitch. Each output band reads the input at its centre frequency divided by `alpha`,
/// interpolated linearly between the two nearest bands; beyond the input's range it repeats
/// the edge band. Used in training to show the content encoder another voice saying the same
/// thing.
#[derive(Debug, Clone, PartialEq)]
pub struct MelWarp {
    /// Per output band: the lower input band and the weight of the one above it.
    taps: Vec<(usize, f32)>,
}

impl MelWarp {
    /// The warp by `alpha` for `n_mels` bands spread over `fmin..fmax` on `scale` (as
    /// [`MelFilterbank::new`] spreads them).
    ///
    /// # Errors
    /// [`Error::Config`] for no bands, an empty range or a factor that is not positive.
    pub fn new(n_mels: usize, fmin: f64, fmax: f64, scale: MelScale, alpha: f64) -> Result<Self> {
        if n_mels == 0 || !(0.0 <= fmin && fmin < fmax) || !(alpha > 0.0 && alpha.is_finite()) {
            return Err(Error::Config(format!(
                "mel warp needs bands, an ordered range and a positive factor ({n_mels}, {fmin}..{fmax}, {alpha})"
            )));
        }
        let (lo, hi) = (hz_to_mel(fmin, scale), hz_to_mel(fmax, scale));
        let step = (hi - lo) / (n_mels + 1) as f64;
        // Band i is centred on mel lo + (i + 1) · step.
        let taps = (0..n_mels)
            .map(|i| {
                let centre = mel_to_hz(lo + (i + 1) as f64 * step, scale);
                let pos = (hz_to_mel(centre / alpha, scale) - lo) / step - 1.0;
                let pos = pos.clamp(0.0, (n_mels - 1) as f64);
                let j = (pos.floor() as usize).min(n_mels - 1);
                let w = if j + 1 < n_mels { (pos - j as f64) as f32 } else { 0.0 };
                (j, w)
            })
            .collect();
        Ok(Self { taps })
    }

    /// Warps `mel` (`[n_mels, frames]`, row-major, log or linear values) into `out` (same
    /// shape).
    ///
    /// # Panics
    /// When the slices are not `n_mels · frames` long.
    pub fn apply(&self, mel: &[f32], frames: usize, out: &mut [f32]) {
        let n = self.taps.len();
        assert!(
            mel.len() == n * frames && out.len() == n * frames,
            "mel warp: wrong sizes"
        );
        for (o, &(j, w)) in out.chunks_exact_mut(frames).zip(&self.taps) {
            let a = &mel[j * frames..(j + 1) * frames];
            if w == 0.0 {
                o.copy_from_slice(a);
            } else {
                let b = &mel[(j + 1) * frames..(j + 2) * frames];
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = a + w * (b - a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_invert() {
        for scale in [MelScale::Slaney, MelScale::Htk] {
            for hz in [0.0, 100.0, 999.0, 1000.0, 4321.0, 8000.0] {
                let back = mel_to_hz(hz_to_mel(hz, scale), scale);
                assert!((back - hz).abs() < 1e-9, "{scale:?} {hz} -> {back}");
            }
        }
        // Slaney is linear below 1 kHz: 15 mel at 1 kHz.
        assert!((hz_to_mel(1000.0, MelScale::Slaney) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn invert_recovers_a_smooth_spectrum() {
        let fb = MelFilterbank::new(16000, 400, 80, 0.0, 8000.0, MelScale::Slaney, MelNorm::Slaney).unwrap();
        let spec: Vec<f32> = (0..201).map(|k| 1.0 + (k as f32 * 0.05).sin().abs()).collect();
        let mut mel = vec![0.0; 80];
        fb.apply(&spec, &mut mel);
        let mut back = vec![0.0; 201];
        fb.invert(&mel, 50, &mut back);
        let mut mel2 = vec![0.0; 80];
        fb.apply(&back, &mut mel2);
        let rel = mel
            .iter()
            .zip(&mel2)
            .map(|(a, b)| ((a - b) / a).abs())
            .fold(0.0, f32::max);
        assert!(rel < 0.05, "mel of the inverted spectrum differs by {rel}");
        assert!(back.iter().all(|v| *v >= 0.0));
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(MelFilterbank::new(16000, 400, 80, 0.0, 9000.0, MelScale::Slaney, MelNorm::Slaney).is_err());
        assert!(MelFilterbank::new(16000, 400, 0, 0.0, 8000.0, MelScale::Slaney, MelNorm::Slaney).is_err());
        assert!(MelFilterbank::new(16000, 400, 80, 500.0, 100.0, MelScale::Htk, MelNorm::None).is_err());
    }
    /// A 700 Hz tone's peak band moves to the band nearest 700 · alpha Hz; alpha = 1 changes
    /// nothing.
    #[test]
    fn warp_moves_a_tone_by_the_factor() {
        let cfg = crate::FrontendConfig::speech_16k();
        let x: Vec<f32> = (0..16000)
            .map(|n| 0.5 * (2.0 * std::f32::consts::PI * 700.0 * n as f32 / 16000.0).sin())
            .collect();
        let mel = crate::LogMel::new(&cfg).unwrap().compute(&x);
        let (n, frames) = (mel.n_mels, mel.frames);
        let (lo, hi) = (hz_to_mel(cfg.fmin, cfg.mel_scale), hz_to_mel(cfg.fmax, cfg.mel_scale));
        let centre = |m: usize| mel_to_hz(lo + (m + 1) as f64 * (hi - lo) / (n + 1) as f64, cfg.mel_scale);
        let peak = |data: &[f32]| {
            (0..n)
                .max_by(|&a, &b| data[a * frames + frames / 2].total_cmp(&data[b * frames + frames / 2]))
                .unwrap()
        };
        let nearest = |hz: f64| {
            (0..n)
                .min_by(|&a, &b| (centre(a) - hz).abs().total_cmp(&(centre(b) - hz).abs()))
                .unwrap()
        };
        assert_eq!(peak(&mel.data), nearest(700.0));
        let mut out = vec![0.0; mel.data.len()];
        for alpha in [0.8, 0.9, 1.15, 1.3] {
            MelWarp::new(n, cfg.fmin, cfg.fmax, cfg.mel_scale, alpha)
                .unwrap()
                .apply(&mel.data, frames, &mut out);
            let got = peak(&out) as i64;
            let want = nearest(700.0 * alpha) as i64;
            assert!(
                (got - want).abs() <= 1,
                "alpha {alpha}: peak band {got}, expected {want}"
            );
            assert_ne!(got, peak(&mel.data) as i64, "alpha {alpha} did not move the peak");
        }
        MelWarp::new(n, cfg.fmin, cfg.fmax, cfg.mel_scale, 1.0)
            .unwrap()
            .apply(&mel.data, frames, &mut out);
        let diff = out
            .iter()
            .zip(&mel.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-4, "alpha 1 changed the mel by {diff}");
        assert!(MelWarp::new(n, cfg.fmin, cfg.fmax, cfg.mel_scale, 0.0).is_err());
        assert!(MelWarp::new(0, cfg.fmin, cfg.fmax, cfg.mel_scale, 1.0).is_err());
    }
}
