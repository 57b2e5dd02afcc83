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

    /// Samples YIN reads for one frame: the integration window plus the longest lag.
    pub fn window_samples(&self) -> usize {
        2 * self.tau_max()
    }

    fn tau_max(&self) -> usize {
        (f64::from(self.sample_rate) / self.fmin).ceil() as usize
    }

    /// F0 per frame, `x.len() / hop + 1` frames, each read from a window centred on its frame
    /// (samples outside `x` are zeros).
    pub fn track(&self, x: &[f32]) -> Vec<f64> {
        let half = self.window_samples() / 2;
        self.track_ending(x, half)
    }

    /// F0 per frame, `x.len() / hop + 1` frames, frame `t` read from the
    /// [`window_samples`](Self::window_samples) that end at sample `t·hop + lookahead` (samples
    /// outside `x` are zeros): with the frontend's half window as `lookahead`, a frame needs no
    /// sample its log-mel frame does not (what [`PitchStream`] computes as samples arrive).
    pub fn track_ending(&self, x: &[f32], lookahead: usize) -> Vec<f64> {
        let n = self.window_samples();
        let frames = x.len() / self.hop + 1;
        let mut scratch = YinScratch::new(self);
        let mut seg = vec![0f32; n];
        (0..frames)
            .map(|t| {
                let start = (t * self.hop + lookahead) as isize - n as isize;
                for (k, v) in seg.iter_mut().enumerate() {
                    let i = start + k as isize;
                    *v = if i < 0 || i as usize >= x.len() {
                        0.0
                    } else {
                        x[i as usize]
                    };
                }
                self.frame(&seg, &mut scratch)
            })
            .collect()
    }

    /// The F0 of one window of [`window_samples`](Self::window_samples) samples (0: unvoiced).
    /// Real-time safe: no allocation.
    pub fn frame(&self, seg: &[f32], scratch: &mut YinScratch) -> f64 {
        let sr = f64::from(self.sample_rate);
        let tau_max = self.tau_max();
        let tau_min = (sr / self.fmax).floor().max(2.0) as usize;
        let w = tau_max; // integration window
        if seg.len() < w + tau_max {
            return 0.0;
        }
        let silence = 10f64.powf(self.silence_dbfs / 20.0);
        let rms = (seg[..w].iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / w as f64).sqrt();
        if rms < silence {
            return 0.0;
        }
        let (d, cmnd) = (&mut scratch.d, &mut scratch.cmnd);
        let head = &seg[..w];
        for (tau, dv) in d.iter_mut().enumerate().skip(1) {
            let lagged = &seg[tau..tau + w];
            *dv = f64::from(head.iter().zip(lagged).map(|(a, b)| (a - b) * (a - b)).sum::<f32>());
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
    }
}

/// Buffers of [`Yin::frame`], allocated once.
#[derive(Debug, Clone)]
pub struct YinScratch {
    d: Vec<f64>,
    cmnd: Vec<f64>,
}

impl YinScratch {
    /// Buffers for `yin`'s lags.
    pub fn new(yin: &Yin) -> Self {
        let n = yin.tau_max() + 1;
        Self {
            d: vec![0.0; n],
            cmnd: vec![1.0; n],
        }
    }
}

/// The source's intonation as the decoder reads it ([`PITCH_CHANNELS`] values a frame): log-F0
/// normalised by running statistics of the source's own voiced log-F0, and the voicing. Causal:
/// frame `t`'s values depend on frames up to `t` only, so that offline and streaming agree.
///
/// The statistics are cumulative over the first [`PitchNormalizer::WARM_FRAMES`] voiced frames
/// (warm-started: a prior spread of [`PitchNormalizer::PRIOR_SPREAD`] worth
/// [`PitchNormalizer::PRIOR_FRAMES`] frames keeps the first few from dividing by nothing), then
/// exponentially decayed with that time constant, so that a long stream follows a speaker who
/// changes register.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PitchNormalizer {
    n: f64,
    mean: f64,
    /// Running mean of squared deviations.
    var: f64,
}

/// Values per frame of [`PitchNormalizer`]'s output: normalised log-F0, voicing.
pub const PITCH_CHANNELS: usize = 2;

impl Default for PitchNormalizer {
    fn default() -> Self {
        Self::new()
    }
}

impl PitchNormalizer {
    /// Voiced frames (2 s of voicing) after which the statistics decay instead of accumulating.
    pub const WARM_FRAMES: f64 = 200.0;
    /// The spread (natural-log units, about 2.6 semitones) assumed before any is measured.
    pub const PRIOR_SPREAD: f64 = 0.15;
    /// How many frames the prior spread counts for.
    pub const PRIOR_FRAMES: f64 = 10.0;
    /// Normalised values are clipped to ± this.
    pub const CLIP: f64 = 4.0;

    /// No frame seen yet.
    pub fn new() -> Self {
        Self {
            n: 0.0,
            mean: 0.0,
            var: 0.0,
        }
    }

    /// Forgets the source.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The next frame's F0 (Hz, 0 when unvoiced) as `[normalised log-F0, voicing]`, updating
    /// the statistics first with a voiced frame. Real-time safe.
    pub fn push(&mut self, f0: f64) -> [f32; PITCH_CHANNELS] {
        if f0 <= 0.0 || !f0.is_finite() {
            return [0.0, 0.0];
        }
        let l = f0.ln();
        self.n = (self.n + 1.0).min(Self::WARM_FRAMES);
        let a = 1.0 / self.n;
        let d = l - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        let spread = ((self.var * self.n + Self::PRIOR_SPREAD.powi(2) * Self::PRIOR_FRAMES)
            / (self.n + Self::PRIOR_FRAMES))
            .sqrt();
        let z = ((l - self.mean) / spread).clamp(-Self::CLIP, Self::CLIP);
        [z as f32, 1.0]
    }

    /// A whole track (F0 per frame) as `[PITCH_CHANNELS, frames]`, channels first, from a fresh
    /// normaliser.
    pub fn normalize(f0: &[f64]) -> Vec<f32> {
        let mut n = Self::new();
        let mut out = vec![0f32; PITCH_CHANNELS * f0.len()];
        for (t, &f) in f0.iter().enumerate() {
            let v = n.push(f);
            for (c, x) in v.iter().enumerate() {
                out[c * f0.len() + t] = *x;
            }
        }
        out
    }
}

/// The version of [`pitch_features`]: feature stores of pitch are kept apart by it, so that a
/// change of the tracker never reads stale tracks.
pub const PITCH_FEATURES_VERSION: u32 = 1;

/// The pitch track a model with F0 conditioning reads for audio at `cfg`'s rate: YIN at the
/// frontend's hop (60–500 Hz), each frame read from the window that ends where its log-mel
/// frame's does, so that pitch needs no look-ahead the mel does not.
///
/// Its aperiodicity threshold is 0.2 (not YIN's 0.15): on natural-sounding speech that finds
/// about a tenth more of the frames pyworld calls voiced, its log-F0 still within 0.98 of
/// pyworld's (0.3 starts making octave errors).
pub fn frontend_yin(cfg: &crate::FrontendConfig) -> (Yin, usize) {
    let yin = Yin {
        sample_rate: cfg.sample_rate,
        hop: cfg.hop_length,
        threshold: 0.2,
        ..Yin::speech_16k()
    };
    (yin, cfg.stft().pad().max(1))
}

/// The pitch input of a model with F0 conditioning for `x` (samples at `cfg`'s rate):
/// `[PITCH_CHANNELS, frames]`, channels first, as many frames as `cfg`'s log-mel of `x` has
/// (see [`frontend_yin`] and [`PitchNormalizer`]).
pub fn pitch_features(x: &[f32], cfg: &crate::FrontendConfig) -> Vec<f32> {
    let (yin, lookahead) = frontend_yin(cfg);
    PitchNormalizer::normalize(&yin.track_ending(x, lookahead))
}

/// `mel` (the log-mel of `x`, at `cfg`) with the [`pitch_features`] of `x` appended as
/// [`PITCH_CHANNELS`] more rows: what a model with F0 conditioning reads.
///
/// # Errors
/// [`crate::Error::Config`] when the pitch track and the mel disagree on the frame count (a mel
/// of other samples or another frontend).
pub fn append_pitch_rows(mel: &mut crate::Mel, x: &[f32], cfg: &crate::FrontendConfig) -> crate::Result<()> {
    let p = pitch_features(x, cfg);
    if p.len() != PITCH_CHANNELS * mel.frames {
        return Err(crate::Error::Config(format!(
            "a pitch track of {} frames for a log-mel of {}",
            p.len() / PITCH_CHANNELS,
            mel.frames
        )));
    }
    mel.data.extend_from_slice(&p);
    mel.n_mels += PITCH_CHANNELS;
    Ok(())
}

/// [`pitch_features`] as samples arrive: push samples, pull each frame's values when its last
/// sample is in. Real-time safe after it is built.
#[derive(Debug, Clone)]
pub struct PitchFeatures {
    track: PitchStream,
    norm: PitchNormalizer,
}

impl PitchFeatures {
    /// For audio at `cfg`'s rate.
    pub fn new(cfg: &crate::FrontendConfig) -> Self {
        let (yin, lookahead) = frontend_yin(cfg);
        Self {
            track: PitchStream::new(yin, lookahead),
            norm: PitchNormalizer::new(),
        }
    }

    /// Takes one sample; returns the values of the frame it completes, if any.
    pub fn push(&mut self, x: f32) -> Option<[f32; PITCH_CHANNELS]> {
        self.track.push(x).map(|f| self.norm.push(f))
    }

    /// Frames emitted so far.
    pub fn frames(&self) -> usize {
        self.track.frames()
    }

    /// Forgets the source (its statistics too).
    pub fn reset(&mut self) {
        self.track.reset();
        self.norm.reset();
    }

    /// Ends a stream of `total` samples: `emit` receives the values of its remaining frames
    /// (read with zeros past the end), up to as many frames in all as its log-mel has.
    pub fn finish(&mut self, total: usize, mut emit: impl FnMut([f32; PITCH_CHANNELS])) {
        let norm = &mut self.norm;
        self.track.finish(total, |f| emit(norm.push(f)));
    }
}

/// [`Yin::track_ending`] as samples arrive: push samples, pull F0 frames. Real-time safe after
/// it is built.
#[derive(Debug, Clone)]
pub struct PitchStream {
    yin: Yin,
    lookahead: usize,
    scratch: YinScratch,
    /// Recent samples: the last `window_samples` of them end at `buf[len]` (zeros before the
    /// stream); twice the window long, so that sliding back is rare.
    buf: Vec<f32>,
    len: usize,
    /// Samples pushed.
    seen: usize,
    /// Frames emitted.
    frames: usize,
}

impl PitchStream {
    /// A stream of `yin` frames, frame `t` read from the window ending at `t·hop + lookahead`
    /// (`lookahead` at least 1).
    pub fn new(yin: Yin, lookahead: usize) -> Self {
        let n = yin.window_samples();
        Self {
            yin,
            lookahead: lookahead.max(1),
            scratch: YinScratch::new(&yin),
            buf: vec![0.0; 2 * n],
            len: n,
            seen: 0,
            frames: 0,
        }
    }

    /// Frames emitted so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        self.buf.iter_mut().for_each(|v| *v = 0.0);
        self.len = self.yin.window_samples();
        self.seen = 0;
        self.frames = 0;
    }

    /// Takes one sample; returns the F0 of the frame it completes, if any.
    pub fn push(&mut self, x: f32) -> Option<f64> {
        let n = self.yin.window_samples();
        if self.len == self.buf.len() {
            self.buf.copy_within(self.len - n..self.len, 0);
            self.len = n;
        }
        self.buf[self.len] = x;
        self.len += 1;
        self.seen += 1;
        if self.seen == self.frames * self.yin.hop + self.lookahead {
            self.frames += 1;
            return Some(self.yin.frame(&self.buf[self.len - n..self.len], &mut self.scratch));
        }
        None
    }

    /// Ends a stream of `total` samples: `emit` receives the F0 of its remaining frames (up to
    /// `total / hop + 1` in all), read with zeros past the end.
    pub fn finish(&mut self, total: usize, mut emit: impl FnMut(f64)) {
        let frames = total / self.yin.hop + 1;
        while self.frames < frames {
            if let Some(f) = self.push(0.0) {
                emit(f);
            }
        }
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

    fn sine(f: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / 16000.0).sin()) as f32)
            .collect()
    }

    #[test]
    fn yin_finds_a_sines_pitch_and_streams_as_it_tracks() {
        let yin = Yin::speech_16k();
        let mut x = sine(150.0, 8000);
        x.extend(sine(220.0, 8000));
        let off = yin.track_ending(&x, 200);
        assert_eq!(off.len(), x.len() / 160 + 1);
        assert!((off[30] - 150.0).abs() < 1.0, "{}", off[30]);
        assert!((off[80] - 220.0).abs() < 1.5, "{}", off[80]);
        let mut s = PitchStream::new(yin, 200);
        let mut on = Vec::new();
        for chunk in x.chunks(37) {
            for &v in chunk {
                on.extend(s.push(v));
            }
        }
        s.finish(x.len(), |f| on.push(f));
        assert_eq!(on, off);
    }

    #[test]
    fn normalised_pitch_follows_the_contour_not_the_register() {
        // The same rising contour an octave apart normalises to the same values once warm.
        let low: Vec<f64> = (0..400).map(|t| 100.0 * 2f64.powf((t % 50) as f64 / 120.0)).collect();
        let high: Vec<f64> = low.iter().map(|f| 2.0 * f).collect();
        let (a, b) = (PitchNormalizer::normalize(&low), PitchNormalizer::normalize(&high));
        for t in 0..400 {
            assert!((a[t] - b[t]).abs() < 1e-4, "frame {t}: {} vs {}", a[t], b[t]);
        }
        assert!(a[399] > 1.0 && a[350] < -1.0, "{} {}", a[399], a[350]);
        // Unvoiced frames: zeros, and the statistics are left alone.
        let mut n = PitchNormalizer::new();
        n.push(100.0);
        let before = n;
        assert_eq!(n.push(0.0), [0.0, 0.0]);
        assert_eq!(n, before);
        assert_eq!(PitchNormalizer::new().push(200.0), [0.0, 1.0]);
    }

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
