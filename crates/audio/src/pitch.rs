//! Pitch: F0 by YIN, and the contour filled through unvoiced frames (what the neural vocoder's
//! source-filter synthesis is trained to predict).

/// F0 by YIN (de Cheveigné and Kawahara 2002) at `hop` samples, frames centred like the
/// frontend's (frame `t` at sample `t·hop`); 0 for unvoiced frames.
#[derive(Debug, Clone, Copy)]
pub struct Yin {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Hop in samples.
    pub hop: usize,
    /// Lowest F0 in Hz.
    pub fmin: f64,
    /// Highest F0 in Hz.
    pub fmax: f64,
    /// Aperiodicity threshold (cumulative-mean-normalised difference).
    pub threshold: f64,
    /// Frames quieter than this RMS (dBFS) are unvoiced.
    pub silence_dbfs: f64,
}

impl Yin {
    /// 16 kHz, 10 ms hop, 60–500 Hz, threshold 0.15, silence below −45 dBFS.
    pub fn speech_16k() -> Self {
        Self {
            sample_rate: 16000,
            hop: 160,
            fmin: 60.0,
            fmax: 500.0,
            threshold: 0.15,
            silence_dbfs: -45.0,
        }
    }

    /// F0 per frame, `x.len() / hop + 1` frames.
    pub fn track(&self, x: &[f32]) -> Vec<f64> {
        let sr = f64::from(self.sample_rate);
        let tau_max = (sr / self.fmin).ceil() as usize;
        let tau_min = (sr / self.fmax).floor().max(2.0) as usize;
        let w = tau_max; // integration window
        let frames = x.len() / self.hop + 1;
        let half = (w + tau_max) / 2;
        let at = |i: isize| -> f64 {
            if i < 0 || i as usize >= x.len() {
                0.0
            } else {
                f64::from(x[i as usize])
            }
        };
        let silence = 10f64.powf(self.silence_dbfs / 20.0);
        let mut d = vec![0f64; tau_max + 1];
        let mut seg = vec![0f64; w + tau_max];
        let mut cmnd = vec![1f64; tau_max + 1];
        (0..frames)
            .map(|t| {
                let start = (t * self.hop) as isize - half as isize;
                for (k, v) in seg.iter_mut().enumerate() {
                    *v = at(start + k as isize);
                }
                let rms = (seg[..w].iter().map(|v| v * v).sum::<f64>() / w as f64).sqrt();
                if rms < silence {
                    return 0.0;
                }
                for (tau, dv) in d.iter_mut().enumerate().skip(1) {
                    *dv = (0..w).map(|j| (seg[j] - seg[j + tau]).powi(2)).sum();
                }
                // Cumulative mean normalised difference.
                let mut acc = 0.0;
                for tau in 1..=tau_max {
                    acc += d[tau];
                    cmnd[tau] = if acc > 0.0 { d[tau] * tau as f64 / acc } else { 1.0 };
                }
                let mut tau = tau_min;
                while tau < tau_max {
                    if cmnd[tau] < self.threshold {
                        while tau + 1 < tau_max && cmnd[tau + 1] < cmnd[tau] {
                            tau += 1;
                        }
                        // Parabolic interpolation around the minimum.
                        let (a, b, c) = (cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]);
                        let den = a - 2.0 * b + c;
                        let shift = if den.abs() > 1e-12 { 0.5 * (a - c) / den } else { 0.0 };
                        return sr / (tau as f64 + shift.clamp(-1.0, 1.0));
                    }
                    tau += 1;
                }
                0.0
            })
            .collect()
    }
}

/// `f0` (Hz, 0 where unvoiced) with every unvoiced frame filled: linearly in log-frequency
/// between the voiced frames around it, held before the first and after the last; `default` when
/// no frame is voiced.
pub fn fill_unvoiced(f0: &[f64], default: f64) -> Vec<f64> {
    let voiced: Vec<usize> = (0..f0.len()).filter(|&i| f0[i] > 0.0).collect();
    let (Some(&first), Some(&last)) = (voiced.first(), voiced.last()) else {
        return vec![default; f0.len()];
    };
    let mut out = f0.to_vec();
    out[..first].iter_mut().for_each(|v| *v = f0[first]);
    out[last..].iter_mut().for_each(|v| *v = f0[last]);
    for w in voiced.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (la, lb) = (f0[a].ln(), f0[b].ln());
        for (i, v) in out.iter_mut().enumerate().take(b).skip(a + 1) {
            *v = (la + (lb - la) * (i - a) as f64 / (b - a) as f64).exp();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unvoiced_frames_are_filled_between_their_neighbours() {
        let f = fill_unvoiced(&[0.0, 100.0, 0.0, 0.0, 400.0, 0.0], 120.0);
        assert_eq!(f[0], 100.0);
        assert!((f[2] - 100.0 * 4f64.powf(1.0 / 3.0)).abs() < 1e-9, "{f:?}");
        assert!((f[3] - 100.0 * 4f64.powf(2.0 / 3.0)).abs() < 1e-9, "{f:?}");
        assert_eq!((f[4], f[5]), (400.0, 400.0));
        assert_eq!(fill_unvoiced(&[0.0, 0.0], 120.0), vec![120.0, 120.0]);
    }
}
