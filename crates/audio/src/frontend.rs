//! The model's frontend: the parameters every voxswap model is trained with, and the log-mel
//! spectrogram they define, offline ([`LogMel`]) and streaming ([`StreamingLogMel`]).
//!
//! # Why these parameters
//! - 16 kHz: speech content lives below 8 kHz; every doubling of the rate doubles the cost of
//!   everything after the frontend.
//! - 25 ms window (`n_fft = win_length = 400`), 10 ms hop (160): the analysis window is pure
//!   latency in live use (a frame cannot be computed before its last sample arrives), so it is
//!   kept at the short end of what resolves speech harmonics; 25 ms / 10 ms is the long-standing
//!   speech front-end (the same framing as Whisper's), and it leaves most of the 60 ms live budget
//!   to the model and the vocoder. Streaming, a centred frame needs 200 samples (12.5 ms) beyond
//!   its centre.
//! - 80 mel bands, Slaney scale and norm, 0–8 kHz, magnitude (not power), natural log floored at
//!   1e-5: the features of the AdaIN-VC re-implementations and of the neural vocoders that read
//!   80-band log-magnitude mels.

use realfft::num_complex::Complex;
use serde::{Deserialize, Serialize};

use crate::mel::{MelFilterbank, MelNorm, MelScale};
use crate::stft::{StftConfig, StreamingStft};
use crate::{Error, Result};

/// Everything that turns audio into the model's features. Saved inside a model's config, so a
/// checkpoint always carries the frontend it was trained with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    /// Sample rate in Hz the features are computed at.
    pub sample_rate: u32,
    /// FFT size in samples.
    pub n_fft: usize,
    /// Analysis window in samples.
    pub win_length: usize,
    /// Frame step in samples.
    pub hop_length: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Lowest filter edge in Hz.
    pub fmin: f64,
    /// Highest filter edge in Hz.
    pub fmax: f64,
    /// Hz-to-mel mapping.
    pub mel_scale: MelScale,
    /// Filter normalisation.
    pub mel_norm: MelNorm,
    /// Floor applied before the log.
    pub log_floor: f32,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self::speech_16k()
    }
}

impl FrontendConfig {
    /// 16 kHz, 25 ms window, 10 ms hop, 80 Slaney mel bands over 0–8 kHz.
    pub fn speech_16k() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 400,
            win_length: 400,
            hop_length: 160,
            n_mels: 80,
            fmin: 0.0,
            fmax: 8_000.0,
            mel_scale: MelScale::Slaney,
            mel_norm: MelNorm::Slaney,
            log_floor: 1e-5,
        }
    }

    /// The STFT framing (always centred).
    pub fn stft(&self) -> StftConfig {
        StftConfig {
            n_fft: self.n_fft,
            win_length: self.win_length,
            hop_length: self.hop_length,
            center: true,
        }
    }

    /// The mel filterbank.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid range or size.
    pub fn filterbank(&self) -> Result<MelFilterbank> {
        MelFilterbank::new(
            self.sample_rate,
            self.n_fft,
            self.n_mels,
            self.fmin,
            self.fmax,
            self.mel_scale,
            self.mel_norm,
        )
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        if !(8_000..=48_000).contains(&self.sample_rate) {
            return Err(Error::Config(format!(
                "frontend sample_rate {} Hz outside 8000..=48000",
                self.sample_rate
            )));
        }
        if !(self.log_floor > 0.0 && self.log_floor.is_finite()) {
            return Err(Error::Config(format!(
                "log_floor {} must be a positive number",
                self.log_floor
            )));
        }
        self.stft().validate()?;
        self.filterbank().map(|_| ())
    }

    /// Frame step in milliseconds.
    pub fn hop_ms(&self) -> f64 {
        self.hop_length as f64 * 1000.0 / f64::from(self.sample_rate)
    }

    /// Analysis window in milliseconds.
    pub fn window_ms(&self) -> f64 {
        self.win_length as f64 * 1000.0 / f64::from(self.sample_rate)
    }

    /// Samples a streaming frame needs after its centre sample: the analysis lookahead.
    pub fn lookahead_samples(&self) -> usize {
        self.n_fft - self.n_fft / 2
    }
}

/// A log-mel spectrogram, `[n_mels, frames]` row-major (channels first, as conv1d wants).
#[derive(Debug, Clone, PartialEq)]
pub struct Mel {
    /// Bands.
    pub n_mels: usize,
    /// Frames.
    pub frames: usize,
    /// `data[m * frames + t]`.
    pub data: Vec<f32>,
}

impl Mel {
    /// Builds from frame-major values (`[frames, n_mels]`), transposing.
    pub fn from_frames(n_mels: usize, frame_major: &[f32]) -> Self {
        let frames = frame_major.len().checked_div(n_mels).unwrap_or(0);
        let mut data = vec![0.0; n_mels * frames];
        for t in 0..frames {
            for m in 0..n_mels {
                data[m * frames + t] = frame_major[t * n_mels + m];
            }
        }
        Self { n_mels, frames, data }
    }

    /// Value of band `m` at frame `t`.
    pub fn at(&self, m: usize, t: usize) -> f32 {
        self.data[m * self.frames + t]
    }

    /// Frame `t` as a column.
    pub fn frame(&self, t: usize) -> Vec<f32> {
        (0..self.n_mels).map(|m| self.at(m, t)).collect()
    }

    /// Frames `start .. start + frames` as a mel of their own.
    ///
    /// # Panics
    /// When the range goes past the last frame.
    pub fn range(&self, start: usize, frames: usize) -> Self {
        assert!(
            start + frames <= self.frames,
            "frames {start}..{} of {}",
            start + frames,
            self.frames
        );
        let mut data = Vec::with_capacity(self.n_mels * frames);
        for m in 0..self.n_mels {
            data.extend_from_slice(&self.data[m * self.frames + start..m * self.frames + start + frames]);
        }
        Self {
            n_mels: self.n_mels,
            frames,
            data,
        }
    }
}

/// Offline log-mel: `ln(max(W · |STFT(x)|, floor))`.
#[derive(Debug)]
pub struct LogMel {
    cfg: FrontendConfig,
    /// float64: a float32 FFT's rounding, relative to a frame's loudest bin, is visible on the
    /// log scale in the quietest bands (1e-4 off librosa's float64 reference); float64 costs
    /// little next to everything after the frontend.
    power: BlockPower,
    fb: MelFilterbank,
    mag: Vec<f32>,
    col: Vec<f32>,
}

impl LogMel {
    /// Builds the transforms.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration.
    pub fn new(cfg: &FrontendConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            power: BlockPower::new(cfg.stft()),
            fb: cfg.filterbank()?,
            cfg: cfg.clone(),
            mag: Vec::new(),
            col: vec![0.0; cfg.n_mels * BLOCK],
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FrontendConfig {
        &self.cfg
    }

    /// The filterbank.
    pub fn filterbank(&self) -> &MelFilterbank {
        &self.fb
    }

    /// The log-mel spectrogram of `x` (at the configured sample rate).
    pub fn compute(&mut self, x: &[f32]) -> Mel {
        let n_mels = self.cfg.n_mels;
        let frames = self.cfg.stft().n_frames(x.len());
        let mut mel = Mel {
            n_mels,
            frames,
            data: vec![0.0; n_mels * frames],
        };
        let Self {
            power,
            fb,
            mag,
            col,
            cfg,
        } = self;
        let floor = cfg.log_floor;
        mag.resize((cfg.n_fft / 2 + 1) * BLOCK, 0.0);
        power.for_each_block(x, |t0, count, rows| {
            log_mel_block(fb, rows, mag, col, floor);
            for m in 0..n_mels {
                mel.data[m * frames + t0..m * frames + t0 + count].copy_from_slice(&col[m * BLOCK..m * BLOCK + count]);
            }
        });
        mel
    }
}

/// Power spectra of [`BLOCK`] frames at a time, in float64: two real frames per complex FFT
/// (`z = a + i·b`, then `A[k] = (Z[k] + conj Z[N−k]) / 2`, `B[k] = (Z[k] − conj Z[N−k]) / 2i`),
/// all pairs of a block in one FFT call. Cheaper than one real FFT per frame, whose
/// post-processing cost as much as the transform; the powers agree with [`StreamingStft`]'s to
/// float64 rounding.
struct BlockPower {
    cfg: StftConfig,
    window: Vec<f64>,
    fft: std::sync::Arc<dyn rustfft::Fft<f64>>,
    buf: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    head: Vec<f32>,
    tail: Vec<f32>,
    /// Powers of the block's frames, frame-major, before the transpose to bin-major.
    rows: Vec<f32>,
}

impl std::fmt::Debug for BlockPower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockPower").field("cfg", &self.cfg).finish()
    }
}

impl BlockPower {
    fn new(cfg: StftConfig) -> Self {
        let fft = rustfft::FftPlanner::<f64>::new().plan_fft_forward(cfg.n_fft);
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        Self {
            window: cfg.window(),
            buf: vec![Complex::default(); cfg.n_fft * BLOCK / 2],
            scratch,
            fft,
            head: Vec::new(),
            tail: Vec::new(),
            rows: vec![0.0; cfg.n_bins() * BLOCK],
            cfg,
        }
    }

    /// Calls `f(t0, count, rows)` for each block of frames `t0..t0 + count`; `rows` holds
    /// their power spectra frame-major (`rows[j * n_bins + k]`; rows past `count` are 0).
    fn for_each_block(&mut self, x: &[f32], mut f: impl FnMut(usize, usize, &[f32])) {
        let (n_fft, hop, pad) = (self.cfg.n_fft, self.cfg.hop_length, self.cfg.pad());
        let frames = self.cfg.n_frames(x.len());
        // Frames inside the signal are read from `x`; those that overlap the zero padding
        // from copies of its two ends (the whole padded signal when it is short).
        let (head, tail) = (&mut self.head, &mut self.tail);
        let whole = x.len() < 2 * n_fft;
        head.clear();
        head.resize(pad, 0.0);
        tail.clear();
        if whole {
            head.extend_from_slice(x);
            head.resize(x.len() + 2 * pad, 0.0);
        } else {
            head.extend_from_slice(&x[..n_fft]);
            tail.extend_from_slice(&x[x.len() - n_fft..]);
            tail.resize(n_fft + pad, 0.0);
        }
        let (head, tail) = (&self.head, &self.tail);
        let frame = |t: usize| -> Option<&[f32]> {
            if t >= frames {
                return None;
            }
            let o = t * hop;
            Some(if whole || o < pad {
                &head[o..o + n_fft]
            } else if o - pad + n_fft <= x.len() {
                &x[o - pad..o - pad + n_fft]
            } else {
                let o = o - pad + n_fft - x.len();
                &tail[o..o + n_fft]
            })
        };
        for t0 in (0..frames).step_by(BLOCK) {
            let count = (frames - t0).min(BLOCK);
            for p in 0..BLOCK / 2 {
                let (a, b) = (frame(t0 + 2 * p), frame(t0 + 2 * p + 1));
                pack_pair(&mut self.buf[p * n_fft..(p + 1) * n_fft], a, b, &self.window);
            }
            self.fft.process_with_scratch(&mut self.buf, &mut self.scratch);
            for p in 0..BLOCK / 2 {
                unpack_pair_power(&self.buf[p * n_fft..(p + 1) * n_fft], &mut self.rows, 2 * p);
            }
            f(t0, count, &self.rows);
        }
    }
}

crate::simd::multiversion! {
    /// `out[i] = w[i] · (a[i] + i·b[i])`; a missing frame is zeros.
    fn pack_pair(out: &mut [Complex<f64>], a: Option<&[f32]>, b: Option<&[f32]>, w: &[f64]) {
        match (a, b) {
            (Some(a), Some(b)) => {
                for (((o, &wa), &xa), &xb) in out.iter_mut().zip(w).zip(a).zip(b) {
                    *o = Complex::new(wa * f64::from(xa), wa * f64::from(xb));
                }
            }
            (Some(a), None) => {
                for ((o, &wa), &xa) in out.iter_mut().zip(w).zip(a) {
                    *o = Complex::new(wa * f64::from(xa), 0.0);
                }
            }
            _ => out.fill(Complex::default()),
        }
    }
}

crate::simd::multiversion! {
    /// Powers of the two real frames packed in one complex spectrum `z`, into rows `j` and `j + 1`
    /// of the frame-major `rows`.
    fn unpack_pair_power(z: &[Complex<f64>], rows: &mut [f32], j: usize) {
        let n = z.len();
        let n_bins = n / 2 + 1;
        let (ra, rb) = rows[j * n_bins..(j + 2) * n_bins].split_at_mut(n_bins);
        // k = 0 pairs with itself; for k ≥ 1 the partner is z[n − k], read backwards.
        let power = |zk: Complex<f64>, zc: Complex<f64>| {
            let (a, b) = (zk + zc, zk - zc);
            (
                (0.25 * (a.re * a.re + a.im * a.im)) as f32,
                (0.25 * (b.re * b.re + b.im * b.im)) as f32,
            )
        };
        (ra[0], rb[0]) = power(z[0], z[0].conj());
        for (((pa, pb), &zk), &zr) in ra[1..]
            .iter_mut()
            .zip(&mut rb[1..])
            .zip(&z[1..n_bins])
            .zip(z[n_bins - 1..].iter().rev())
        {
            (*pa, *pb) = power(zk, zr.conj());
        }
    }
}

/// Frames per filterbank pass in [`LogMel::compute`]: eight f32 lanes, one AVX register.
const BLOCK: usize = 8;

crate::simd::multiversion! {
    /// Log-mel of [`BLOCK`] frames of power spectra (frame-major `rows[j * n_bins + k]`) into
    /// `out[m * BLOCK + j]`, through `mag` (bin-major magnitudes, the filterbank's input). The same
    /// operations in the same order per frame as [`log_mel_frame`], so offline and streaming
    /// features are identical.
    fn log_mel_block(
        fb: &MelFilterbank,
        rows: &[f32],
        mag: &mut [f32],
        out: &mut [f32],
        floor: f32,
    ) {
        let n_bins = fb.n_bins();
        for (k, lanes) in mag.chunks_exact_mut(BLOCK).enumerate() {
            for (j, v) in lanes.iter_mut().enumerate() {
                *v = rows[j * n_bins + k].sqrt();
            }
        }
        fb.apply_lanes::<BLOCK>(mag, out);
        for v in out.iter_mut() {
            *v = fast_ln(v.max(floor));
        }
    }
}

crate::simd::multiversion! {
    fn log_mel_frame(
        fb: &MelFilterbank,
        frame: &[Complex<f64>],
        mag: &mut [f32],
        out: &mut [f32],
        floor: f32,
    ) {
        // The power in float64, the square root in float32 (4 lanes, not 2; exact enough).
        for (m, c) in mag.iter_mut().zip(frame) {
            *m = ((c.re * c.re + c.im * c.im) as f32).sqrt();
        }
        fb.apply(mag, out);
        for v in out.iter_mut() {
            *v = fast_ln(v.max(floor));
        }
    }
}

/// Natural log of a positive normal `f32`, within 2e-7 absolute of `f32::ln` (a float32 rounding
/// at the values the log-mel takes), several times faster: the exponent from the bits, then a
/// polynomial for `ln(m)` on `m ∈ [√½, √2)`, which the compiler can vectorise.
#[inline(always)]
fn fast_ln(x: f32) -> f32 {
    let bits = x.to_bits();
    // Exponent and mantissa with the mantissa moved into [√½, √2).
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2·atanh(s), s = (m − 1)/(m + 1), |s| < 0.1716: an odd series in s.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = 2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0))));
    s * poly + e as f32 * std::f32::consts::LN_2
}

/// Streaming log-mel: push samples, receive mel frames equal to [`LogMel`]'s. Real-time safe
/// after construction.
#[derive(Debug)]
pub struct StreamingLogMel {
    cfg: FrontendConfig,
    stft: StreamingStft<f64>,
    fb: MelFilterbank,
    mag: Vec<f32>,
    frame: Vec<f32>,
}

impl StreamingLogMel {
    /// Builds the transforms.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration.
    pub fn new(cfg: &FrontendConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            stft: StreamingStft::new(cfg.stft())?,
            fb: cfg.filterbank()?,
            mag: vec![0.0; cfg.n_fft / 2 + 1],
            frame: vec![0.0; cfg.n_mels],
            cfg: cfg.clone(),
        })
    }

    /// Algorithmic latency of the analysis in samples (the lookahead past a frame's centre).
    pub fn latency_samples(&self) -> usize {
        self.stft.lookahead_samples()
    }

    /// Feeds samples; `emit` receives each finished frame (`n_mels` values).
    pub fn push(&mut self, x: &[f32], emit: impl FnMut(&[f32])) {
        self.run(Some(x), emit);
    }

    /// Ends the stream (trailing padding), emitting the last frames.
    pub fn finish(&mut self, emit: impl FnMut(&[f32])) {
        self.run(None, emit);
    }

    /// `push` (`Some`) or `finish` (`None`), with each STFT frame turned into a log-mel frame.
    fn run(&mut self, x: Option<&[f32]>, mut emit: impl FnMut(&[f32])) {
        let Self {
            stft,
            fb,
            mag,
            frame,
            cfg,
        } = self;
        let on_frame = |f: &[Complex<f64>]| {
            log_mel_frame(fb, f, mag, frame, cfg.log_floor);
            emit(frame);
        };
        match x {
            Some(x) => stft.push(x, on_frame),
            None => stft.finish(on_frame),
        }
    }

    /// Back to the start of a new stream.
    pub fn reset(&mut self) {
        self.stft.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_has_its_mel_peak_where_the_filterbank_says() {
        let cfg = FrontendConfig::speech_16k();
        let x: Vec<f32> = (0..16000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let mel = LogMel::new(&cfg).unwrap().compute(&x);
        assert_eq!((mel.n_mels, mel.frames), (80, 101));
        let col = mel.frame(50);
        let peak = col
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap();
        // The band whose filter weighs bin 25 (1000 Hz) most.
        let dense = cfg.filterbank().unwrap().dense();
        let want = (0..80)
            .max_by(|&a, &b| dense[a * 201 + 25].total_cmp(&dense[b * 201 + 25]))
            .unwrap();
        assert_eq!(peak, want);
    }

    #[test]
    fn fast_ln_matches_ln() {
        let mut worst = 0.0f32;
        let mut x = 1e-6f32;
        while x < 1e5 {
            worst = worst.max((fast_ln(x) - x.ln()).abs());
            x *= 1.000_37;
        }
        assert!(worst < 1e-6, "worst error {worst}");
    }

    #[test]
    fn streaming_equals_offline() {
        let cfg = FrontendConfig::speech_16k();
        let x: Vec<f32> = (0..12_345)
            .map(|i| ((i as f32) * 0.37).sin() * ((i as f32) * 0.0011).cos())
            .collect();
        let offline = LogMel::new(&cfg).unwrap().compute(&x);
        for chunk in [1, 160, 999] {
            let mut s = StreamingLogMel::new(&cfg).unwrap();
            let mut frames = Vec::new();
            for c in x.chunks(chunk) {
                s.push(c, |f| frames.extend_from_slice(f));
            }
            s.finish(|f| frames.extend_from_slice(f));
            assert_eq!(Mel::from_frames(80, &frames), offline, "chunk {chunk}");
        }
    }

    /// The offline path (two frames per FFT, edges from padded copies) against the streaming
    /// path (one real FFT per frame) for lengths around every edge case.
    #[test]
    fn offline_equals_streaming_at_every_length() {
        let cfg = FrontendConfig::speech_16k();
        let mut lm = LogMel::new(&cfg).unwrap();
        for len in [0usize, 1, 159, 160, 399, 400, 401, 799, 800, 801, 960, 1281, 3333] {
            let x: Vec<f32> = (0..len).map(|i| ((i as f32) * 0.61).sin() * 0.3 + 0.01).collect();
            let offline = lm.compute(&x);
            assert_eq!(offline.frames, 1 + len / 160, "len {len}");
            let mut s = StreamingLogMel::new(&cfg).unwrap();
            let mut frames = Vec::new();
            s.push(&x, |f| frames.extend_from_slice(f));
            s.finish(|f| frames.extend_from_slice(f));
            let streamed = Mel::from_frames(80, &frames);
            let err = offline
                .data
                .iter()
                .zip(&streamed.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert_eq!(offline.frames, streamed.frames, "len {len}");
            assert!(err <= 1e-6, "len {len}: max difference {err}");
        }
    }

    #[test]
    fn config_round_trips_and_rejects_unknown_fields() {
        let cfg = FrontendConfig::speech_16k();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<FrontendConfig>(&json).unwrap(), cfg);
        let bad = json.replace("\"n_mels\"", "\"n_mel\"");
        assert!(serde_json::from_str::<FrontendConfig>(&bad).is_err());
        assert!(FrontendConfig {
            fmax: 9000.0,
            ..cfg.clone()
        }
        .validate()
        .is_err());
        assert!(FrontendConfig { sample_rate: 1, ..cfg }.validate().is_err());
    }
}
