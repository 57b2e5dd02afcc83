//! Loudness as people measure it, and a peak limiter.
//!
//! - [`LoudnessMeter`]: integrated loudness of ITU-R BS.1770-4 / EBU R128 (K-weighting,
//!   400 ms blocks, absolute gate at −70 LUFS and relative gate 10 LU below), through the
//!   `ebur128` crate, in bounded memory (its histogram mode) however long the input.
//! - [`Limiter`]: a look-ahead peak limiter that keeps every sample within a ceiling by lowering
//!   the gain smoothly around the peaks only, instead of lowering a whole file.

use std::collections::VecDeque;

use crate::{Error, Result};

/// Integrated loudness of a signal of one or more channels, fed in chunks, as BS.1770 sums
/// them (channel powers added, all weighted 1: the front channels of any layout up to stereo).
pub struct LoudnessMeter {
    meter: ebur128::EbuR128,
    channels: usize,
    /// Frames fed.
    samples: u64,
    /// Sum over frames of the frame's channel powers.
    sum_sq: f64,
    /// A mono signal to be played as this many identical channels (see
    /// [`LoudnessMeter::as_copies`]): its loudness is 10·log10 of it above the mono figure.
    copies: usize,
}

impl std::fmt::Debug for LoudnessMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoudnessMeter").field("samples", &self.samples).finish()
    }
}

impl LoudnessMeter {
    /// A meter for mono samples at `sample_rate_hz`.
    ///
    /// # Errors
    /// [`Error::Config`] for a rate the meter cannot filter at.
    pub fn new(sample_rate_hz: u32) -> Result<Self> {
        Self::with_channels(sample_rate_hz, 1)
    }

    /// A meter for `channels` interleaved channels at `sample_rate_hz` (fed through
    /// [`push_interleaved`](Self::push_interleaved)).
    ///
    /// # Errors
    /// [`Error::Config`] for a rate the meter cannot filter at or no channel.
    pub fn with_channels(sample_rate_hz: u32, channels: usize) -> Result<Self> {
        if channels == 0 {
            return Err(Error::Config("a loudness meter needs a channel".into()));
        }
        // K-weighting's shelf sits at 1.5 kHz: below 8 kHz the filters fold over Nyquist and
        // the figure means nothing (a 2 kHz file measured +30 LUFS).
        if sample_rate_hz < 8000 {
            return Err(Error::Config(format!(
                "loudness cannot be measured at {sample_rate_hz} Hz (EBU R128 needs 8000 Hz or more)"
            )));
        }
        let ch = u32::try_from(channels).map_err(|_| Error::Config(format!("{channels} channels")))?;
        let meter = ebur128::EbuR128::new(ch, sample_rate_hz, ebur128::Mode::I | ebur128::Mode::HISTOGRAM)
            .map_err(|e| Error::Config(format!("loudness meter at {sample_rate_hz} Hz: {e}")))?;
        Ok(Self {
            meter,
            channels,
            samples: 0,
            sum_sq: 0.0,
            copies: 1,
        })
    }

    /// This (mono) meter's signal as it will be heard when written as `copies` identical
    /// channels: its loudness then reads 10·log10(`copies`) dB higher, as BS.1770 adds the
    /// channels' powers.
    #[must_use]
    pub fn as_copies(mut self, copies: usize) -> Self {
        self.copies = copies.max(1);
        self
    }

    fn copies_db(&self) -> f64 {
        10.0 * (self.copies as f64).log10()
    }

    /// Adds samples of a mono meter.
    pub fn push(&mut self, samples: &[f32]) {
        self.push_interleaved(samples);
    }

    /// Adds interleaved frames (a whole number of them).
    pub fn push_interleaved(&mut self, frames: &[f32]) {
        // ebur128 only fails for a sample count that is not a multiple of the channels.
        let _ = self.meter.add_frames_f32(frames);
        self.samples += (frames.len() / self.channels) as u64;
        self.sum_sq += frames.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
    }

    /// Gated integrated loudness in LUFS; `None` when nothing passed the gates (silence, or
    /// less than one 400 ms block).
    pub fn lufs(&self) -> Option<f64> {
        let copies = self.copies_db();
        self.meter
            .loudness_global()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| v + copies)
    }

    /// Plain RMS level in dBFS (for inputs too short to gate; channel powers added), `None`
    /// for digital silence.
    pub fn rms_db(&self) -> Option<f64> {
        let ms = self.sum_sq / self.samples.max(1) as f64;
        (ms > 0.0).then(|| 10.0 * ms.log10() + self.copies_db())
    }

    /// The gain in dB that brings this signal to the loudness of `other`: integrated loudness
    /// when both have it, RMS otherwise (short clips). `None` if either is silent.
    pub fn gain_to_match(&self, other: &LoudnessMeter) -> Option<f64> {
        match (self.lufs(), other.lufs()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => Some(other.rms_db()? - self.rms_db()?),
        }
    }
}

/// A look-ahead peak limiter: the output is the input delayed by [`latency`](Self::latency)
/// samples, times a gain that is 1 except around samples that would exceed the ceiling, where it
/// falls smoothly (over the look-ahead) to exactly what keeps them within it and recovers with
/// an exponential release. No sample of the output exceeds the ceiling.
///
/// The gain is a moving average, over the look-ahead, of the running minimum (over the same
/// window) of each sample's required gain `min(1, ceiling/|x|)`: every average that touches a
/// peak's output time includes only minima over windows that contain the peak, so it is at most
/// the peak's required gain.
#[derive(Debug, Clone)]
pub struct Limiter {
    ceiling: f32,
    len: usize,
    release: f64,
    /// The last `len` inputs (the delay line).
    delay: VecDeque<f32>,
    /// Monotonic deque of (index, required gain) for the running minimum.
    mins: VecDeque<(u64, f64)>,
    /// The last `len` running minima, and their sum.
    box_vals: VecDeque<f64>,
    box_sum: f64,
    gain: f64,
    n: u64,
    /// Smallest gain applied so far.
    min_gain: f64,
}

impl Limiter {
    /// A limiter at `sample_rate_hz` keeping |samples| ≤ `ceiling`, looking `lookahead_ms`
    /// ahead, releasing with a time constant of `release_ms`.
    ///
    /// # Errors
    /// [`Error::Config`] for a ceiling outside (0, 1], or a look-ahead under one sample.
    pub fn new(sample_rate_hz: u32, ceiling: f32, lookahead_ms: f64, release_ms: f64) -> Result<Self> {
        if !(ceiling > 0.0 && ceiling <= 1.0) {
            return Err(Error::Config(format!("limiter ceiling {ceiling} is not in (0, 1]")));
        }
        let len = (lookahead_ms * 1e-3 * f64::from(sample_rate_hz)).round() as usize;
        if len < 1 || !release_ms.is_finite() || release_ms <= 0.0 {
            return Err(Error::Config(format!(
                "limiter look-ahead {lookahead_ms} ms or release {release_ms} ms too short at {sample_rate_hz} Hz"
            )));
        }
        let release = 1.0 - (-1.0 / (release_ms * 1e-3 * f64::from(sample_rate_hz))).exp();
        let mut l = Self {
            ceiling,
            len,
            release,
            delay: VecDeque::with_capacity(len + 1),
            mins: VecDeque::with_capacity(len + 1),
            box_vals: VecDeque::with_capacity(len + 1),
            box_sum: 0.0,
            gain: 1.0,
            n: 0,
            min_gain: 1.0,
        };
        l.reset();
        Ok(l)
    }

    /// voxswap's output limiter: ceiling 0.99 (under full scale after 16-bit rounding), 5 ms
    /// look-ahead, 60 ms release.
    ///
    /// # Errors
    /// See [`Limiter::new`].
    pub fn output(sample_rate_hz: u32) -> Result<Self> {
        Self::new(sample_rate_hz, 0.99, 5.0, 60.0)
    }

    /// Delay of the output behind the input, in samples.
    pub fn latency(&self) -> usize {
        self.len - 1
    }

    /// The smallest gain applied so far (1 when the limiter never acted).
    pub fn min_gain(&self) -> f64 {
        self.min_gain
    }

    /// Back to the state after construction (silence in the delay line).
    pub fn reset(&mut self) {
        self.delay.clear();
        self.delay.extend(std::iter::repeat_n(0.0, self.len - 1));
        self.mins.clear();
        self.box_vals.clear();
        self.box_vals.extend(std::iter::repeat_n(1.0, self.len));
        self.box_sum = self.len as f64;
        self.gain = 1.0;
        self.n = 0;
        self.min_gain = 1.0;
    }

    /// Limits `input`, appending one output sample per input sample to `out` (delayed by
    /// [`latency`](Self::latency)). Real-time safe when `out` has room: no allocation.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let len = self.len as u64;
        for &x in input {
            let a = f64::from(x.abs());
            let need = if a > f64::from(self.ceiling) {
                f64::from(self.ceiling) / a
            } else {
                1.0
            };
            while self.mins.back().is_some_and(|&(_, g)| g >= need) {
                self.mins.pop_back();
            }
            self.mins.push_back((self.n, need));
            while self.mins.front().is_some_and(|&(i, _)| i + len <= self.n) {
                self.mins.pop_front();
            }
            let m = self.mins.front().map_or(1.0, |&(_, g)| g);
            self.box_sum += m - self.box_vals.pop_front().unwrap_or(1.0);
            self.box_vals.push_back(m);
            let target = (self.box_sum / self.len as f64).min(1.0);
            self.gain = if target < self.gain {
                target
            } else {
                self.gain + (target - self.gain) * self.release
            };
            self.min_gain = self.min_gain.min(self.gain);
            self.delay.push_back(x);
            let y = self.delay.pop_front().unwrap_or(0.0);
            // The average is at most the peak's required gain up to rounding; the clamp takes
            // care of the last ulp.
            let y = (f64::from(y) * self.gain) as f32;
            out.push(y.clamp(-self.ceiling, self.ceiling));
            self.n += 1;
        }
    }

    /// Flushes the delay line: appends the last [`latency`](Self::latency) samples.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let zeros = [0.0f32; 64];
        let mut left = self.latency();
        while left > 0 {
            let k = left.min(zeros.len());
            self.push(&zeros[..k], out);
            left -= k;
        }
    }
}

/// How much speech a recording holds, and at what level (a simple voice-activity measure).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechLevel {
    /// Seconds of 20 ms frames that count as speech.
    pub speech_s: f64,
    /// RMS level of those frames, dBFS (`-inf` with none).
    pub speech_db: f64,
    /// The recording's quiet floor: the 10th percentile of its frame levels, dBFS.
    pub floor_db: f64,
    /// Its loud frames: the 95th percentile of its frame levels, dBFS.
    pub top_db: f64,
}

/// A recording whose loud frames are below this (dBFS) is near-silence, not speech.
const SPEECH_MIN_DB: f64 = -70.0;
/// Speech frames rise at least this far (dB) above the recording's quiet floor: stationary
/// noise (hiss, hum) varies by a few dB from frame to frame, speech by 20 dB and more.
const SPEECH_ABOVE_FLOOR_DB: f64 = 12.0;
/// ... and lie within this (dB) of its loud frames.
const SPEECH_BELOW_TOP_DB: f64 = 40.0;

/// Measures the speech in mono `samples` at `sample_rate_hz`: 20 ms frames count as speech when
/// their level is at least 12 dB above the recording's quiet floor (the 10th percentile of frame
/// levels) and within 40 dB of its loud frames (the 95th percentile), and those loud frames are
/// above −70 dBFS. Hiss, hum and near-silence hold none. Both thresholds are relative, so the
/// same recording at another level gives the same frames (and a level shifted by as much).
pub fn speech_level(samples: &[f32], sample_rate_hz: u32) -> SpeechLevel {
    let n = ((sample_rate_hz / 50) as usize).max(1);
    let db: Vec<f64> = samples
        .chunks(n)
        .filter(|c| c.len() * 2 >= n)
        .map(|c| {
            let ms = c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / c.len() as f64;
            10.0 * ms.max(1e-14).log10()
        })
        .collect();
    if db.is_empty() {
        return SpeechLevel {
            speech_s: 0.0,
            speech_db: f64::NEG_INFINITY,
            floor_db: f64::NEG_INFINITY,
            top_db: f64::NEG_INFINITY,
        };
    }
    let mut sorted = db.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let (floor_db, top_db) = (pct(0.10), pct(0.95));
    let threshold = (floor_db + SPEECH_ABOVE_FLOOR_DB).max(top_db - SPEECH_BELOW_TOP_DB);
    let speech: Vec<f64> = if top_db < SPEECH_MIN_DB {
        Vec::new()
    } else {
        db.iter().copied().filter(|&d| d > threshold).collect()
    };
    let speech_db = if speech.is_empty() {
        f64::NEG_INFINITY
    } else {
        10.0 * (speech.iter().map(|d| 10f64.powf(d / 10.0)).sum::<f64>() / speech.len() as f64).log10()
    };
    SpeechLevel {
        speech_s: speech.len() as f64 * n as f64 / f64::from(sample_rate_hz),
        speech_db,
        floor_db,
        top_db,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two identical channels read 3.01 dB above one of them, whether measured as stereo or as
    /// a mono signal to be written twice.
    #[test]
    fn identical_channels_add_their_power() {
        let x: Vec<f32> = (0..48000 * 3).map(|i| 0.1 * (i as f32 * 0.05).sin()).collect();
        let mut mono = LoudnessMeter::new(48000).unwrap();
        mono.push(&x);
        let mut stereo = LoudnessMeter::with_channels(48000, 2).unwrap();
        let inter: Vec<f32> = x.iter().flat_map(|&v| [v, v]).collect();
        stereo.push_interleaved(&inter);
        let (m, st) = (mono.lufs().unwrap(), stereo.lufs().unwrap());
        // The meter's histogram mode reads loudness in steps of 0.01 LU or so.
        assert!((st - m - 3.0103).abs() < 0.05, "{m} {st}");
        let copies = {
            let mut c = LoudnessMeter::new(48000).unwrap().as_copies(2);
            c.push(&x);
            c
        };
        assert!((copies.lufs().unwrap() - st).abs() < 0.05);
        assert!((copies.rms_db().unwrap() - stereo.rms_db().unwrap()).abs() < 1e-6);
        assert!(copies.gain_to_match(&stereo).unwrap().abs() < 0.05);
    }

    #[test]
    fn a_sine_at_minus_20_dbfs_reads_as_bs1770_says() {
        // BS.1770: the K-weighting's +0.691 dB near 1 kHz cancels the formula's −0.691 dB, so a
        // 997 Hz sine at −20 dBFS RMS in one channel reads −20 LUFS.
        let rate = 48_000;
        let amp = 10f32.powf(-20.0 / 20.0) * std::f32::consts::SQRT_2;
        let x: Vec<f32> = (0..rate * 5)
            .map(|i| amp * (2.0 * std::f32::consts::PI * 997.0 * i as f32 / rate as f32).sin())
            .collect();
        let mut m = LoudnessMeter::new(rate).unwrap();
        for c in x.chunks(4800) {
            m.push(c);
        }
        let l = m.lufs().unwrap();
        assert!((l + 20.0).abs() < 0.1, "{l}");
        assert!(LoudnessMeter::new(rate).unwrap().lufs().is_none());
    }

    #[test]
    fn limiter_keeps_peaks_under_the_ceiling_and_leaves_quiet_audio_alone() {
        let rate = 16_000;
        let mut l = Limiter::output(rate).unwrap();
        let x: Vec<f32> = (0..rate as usize)
            .map(|i| {
                let s = (i as f32 * 0.07).sin();
                if (4000..4100).contains(&i) {
                    s * 3.0
                } else {
                    s * 0.5
                }
            })
            .collect();
        let mut y = Vec::new();
        for c in x.chunks(37) {
            l.push(c, &mut y);
        }
        l.finish(&mut y);
        let d = l.latency();
        assert_eq!(y.len(), x.len() + d);
        let y = &y[d..];
        assert!(y.iter().all(|v| v.abs() <= 0.99), "a sample over the ceiling");
        // The loud burst is limited to the ceiling; far from it the signal is untouched.
        let peak = y[4000..4100].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak > 0.95, "{peak}");
        for i in 0..3000 {
            assert!((y[i] - x[i]).abs() < 1e-6, "sample {i} changed");
        }
        // After the burst the gain recovers (60 ms release): within 1% after 300 ms.
        for i in 9000..16000 {
            assert!(
                (y[i] - x[i]).abs() <= 0.01 * x[i].abs() + 1e-6,
                "sample {i}: {} vs {}",
                y[i],
                x[i]
            );
        }
        // The gain moves smoothly (over the 80-sample look-ahead), never in one jump.
        let gain: Vec<(usize, f32)> = (3800..4400)
            .filter(|&i| x[i].abs() > 0.1)
            .map(|i| (i, y[i] / x[i]))
            .collect();
        for w in gain.windows(2) {
            let ((i, a), (j, b)) = (w[0], w[1]);
            assert!((a - b).abs() <= 0.02 * (j - i) as f32, "gain {a} at {i}, {b} at {j}");
        }
        assert!(l.min_gain() < 0.34);
    }

    #[test]
    fn speech_level_finds_no_speech_in_hiss_and_a_tone_burst_train_has_some() {
        use rand::{Rng, SeedableRng};
        let rate = 16_000u32;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        // 5 s of white hiss at −60 and at −30 dBFS RMS: no speech at any level.
        for level_db in [-60.0f64, -30.0] {
            let a = 10f64.powf(level_db / 20.0) * 3f64.sqrt();
            let x: Vec<f32> = (0..rate * 5)
                .map(|_| (a * rng.random_range(-1.0..1.0)) as f32)
                .collect();
            let s = speech_level(&x, rate);
            assert_eq!(s.speech_s, 0.0, "{level_db} dBFS hiss: {s:?}");
        }
        // Syllable-like bursts (150 ms of tone, 100 ms of faint hiss) at −30 dBFS: speech,
        // measured at the bursts' level.
        let x: Vec<f32> = (0..rate * 3)
            .map(|i| {
                let t = i % (rate / 4);
                if t < rate * 3 / 20 {
                    0.0447 * (i as f32 * 0.1).sin()
                } else {
                    1e-4 * rng.random_range(-1.0f32..1.0)
                }
            })
            .collect();
        let s = speech_level(&x, rate);
        assert!((s.speech_s - 1.8).abs() < 0.15, "{s:?}");
        assert!((s.speech_db + 30.0).abs() < 0.5, "{s:?}");
    }
}
