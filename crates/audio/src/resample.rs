//! Sample-rate conversion with rubato's synchronous FFT resampler.
//!
//! [`resample`] converts a whole clip and trims the resampler's delay, so the output lines up
//! with the input. [`StreamResampler`] takes fixed input chunks, writes into caller-owned
//! buffers without allocating, and reports its delay for latency accounting.

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::{Error, Result};

fn rerr(e: impl std::fmt::Display) -> Error {
    Error::Resample(e.to_string())
}

/// Converts mono `samples` from `from_hz` to `to_hz` (high quality, allocating).
///
/// # Errors
/// [`Error::Resample`] for a zero rate.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(Error::Config(format!(
            "sample rates must be positive ({from_hz} -> {to_hz})"
        )));
    }
    if from_hz == to_hz || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    // 3072: its FFT sizes factor into small primes for the common 3:1 (48k to 16k) and 1:3
    // ratios (1024 gave a radix-19 FFT and ran at half the speed).
    let mut r = Fft::<f32>::new(from_hz as usize, to_hz as usize, 3072, 1, FixedSync::Both).map_err(rerr)?;
    let input = SequentialSlice::new(samples, 1, samples.len()).map_err(rerr)?;
    let out = r.process_all(&input, samples.len(), None).map_err(rerr)?;
    Ok(out.take_data())
}

/// Greatest common divisor.
fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A streaming resampler: fixed-size input chunks in, variable-size output out.
pub struct StreamResampler {
    inner: Fft<f32>,
    from_hz: u32,
    to_hz: u32,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .finish()
    }
}

impl StreamResampler {
    /// A resampler taking `chunk_samples` input samples per call.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero rate or chunk size.
    pub fn new(from_hz: u32, to_hz: u32, chunk_samples: usize) -> Result<Self> {
        if from_hz == 0 || to_hz == 0 || chunk_samples == 0 {
            return Err(Error::Config(format!(
                "resampler needs positive rates and chunk size ({from_hz} -> {to_hz}, chunk {chunk_samples})"
            )));
        }
        // rubato's FFT resampler works in blocks of `from / gcd(from, to)` input samples and
        // gives nothing until a block is full, whatever chunk it is asked for (40 ms at 11,025
        // Hz, 20 ms at 22,050 Hz). A chunk of whole blocks makes every chunk come out at once,
        // so that the chunk (and the latency it costs) is what it says.
        let block = (from_hz / gcd(from_hz, to_hz)) as usize;
        let chunk = chunk_samples.div_ceil(block) * block;
        let inner = Fft::<f32>::new(from_hz as usize, to_hz as usize, chunk, 1, FixedSync::Input).map_err(rerr)?;
        Ok(Self { inner, from_hz, to_hz })
    }

    /// Input samples every call to [`process`](Self::process) takes.
    pub fn input_chunk(&self) -> usize {
        self.inner.input_frames_next()
    }

    /// The most output samples one call writes; size the output buffer to this.
    pub fn output_max(&self) -> usize {
        self.inner.output_frames_max()
    }

    /// Delay in output samples: output sample `n + delay` corresponds to input time `n`.
    pub fn delay_samples(&self) -> usize {
        self.inner.output_delay()
    }

    /// Delay in milliseconds.
    pub fn delay_ms(&self) -> f64 {
        self.delay_samples() as f64 * 1000.0 / f64::from(self.to_hz)
    }

    /// Resamples one chunk of exactly [`input_chunk`](Self::input_chunk) samples into `output`,
    /// returning how many samples were written. Real-time safe: no allocation.
    ///
    /// # Errors
    /// [`Error::Resample`] when `input` or `output` has the wrong size.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) -> Result<usize> {
        let need = self.input_chunk();
        if input.len() != need {
            return Err(Error::Resample(format!(
                "chunk of {} samples, expected {need}",
                input.len()
            )));
        }
        let inp = SequentialSlice::new(input, 1, input.len()).map_err(rerr)?;
        let frames = output.len();
        let mut out = SequentialSlice::new_mut(output, 1, frames).map_err(rerr)?;
        let (_, written) = self.inner.process_into_buffer(&inp, &mut out, None).map_err(rerr)?;
        Ok(written)
    }

    /// Forgets all state, as if new.
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

/// Streaming resampling for pushes of any length, with the resampler's delay removed: output
/// sample `n` lines up with input time `n · from / to`, and after [`finish`](Self::finish)
/// exactly `round(inputs · to / from)` samples have come out, as [`resample`] gives offline.
/// Equal rates pass through untouched.
#[derive(Debug)]
pub struct ChunkResampler {
    inner: Option<StreamResampler>,
    from_hz: u32,
    to_hz: u32,
    pending: Vec<f32>,
    buf: Vec<f32>,
    skip: usize,
    n_in: u64,
    n_out: u64,
}

impl ChunkResampler {
    /// A resampler from `from_hz` to `to_hz`.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero rate.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self> {
        Self::with_chunk(from_hz, to_hz, 3072)
    }

    /// A resampler that works in chunks of `chunk_samples` input samples: small chunks for
    /// streams (each output sample waits for its chunk), large ones for files (fewer calls).
    ///
    /// # Errors
    /// [`Error::Config`] for a zero rate or chunk.
    pub fn with_chunk(from_hz: u32, to_hz: u32, chunk_samples: usize) -> Result<Self> {
        if chunk_samples == 0 {
            return Err(Error::Config("resampler chunk of 0 samples".into()));
        }
        let inner = if from_hz == to_hz {
            if from_hz == 0 {
                return Err(Error::Config("resampler needs positive rates".into()));
            }
            None
        } else {
            Some(StreamResampler::new(from_hz, to_hz, chunk_samples)?)
        };
        let (buf, skip) = inner
            .as_ref()
            .map_or((Vec::new(), 0), |r| (vec![0.0; r.output_max()], r.delay_samples()));
        Ok(Self {
            inner,
            from_hz,
            to_hz,
            // Never more than a chunk short of a whole one plus what one push brings: room for
            // pushes of up to a chunk without growing in a real-time thread.
            pending: Vec::with_capacity(2 * chunk_samples),
            buf,
            skip,
            n_in: 0,
            n_out: 0,
        })
    }

    /// How far the output can stay behind the input, in output samples: a whole chunk waits
    /// to be complete, plus the filter's delay (0 for equal rates).
    pub fn latency_samples(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| {
            (r.input_chunk() as u64 * u64::from(self.to_hz)).div_ceil(u64::from(self.from_hz)) as usize
                + r.delay_samples()
        })
    }

    /// Feeds `x`; the resampled samples ready so far are appended to `out`.
    ///
    /// # Errors
    /// [`Error::Resample`] from the resampler (not expected).
    pub fn push(&mut self, x: &[f32], out: &mut Vec<f32>) -> Result<()> {
        self.n_in += x.len() as u64;
        let Some(r) = self.inner.as_mut() else {
            out.extend_from_slice(x);
            self.n_out += x.len() as u64;
            return Ok(());
        };
        self.pending.extend_from_slice(x);
        let chunk = r.input_chunk();
        let mut start = 0;
        while self.pending.len() - start >= chunk {
            let w = r.process(&self.pending[start..start + chunk], &mut self.buf)?;
            start += chunk;
            let skip = self.skip.min(w);
            self.skip -= skip;
            out.extend_from_slice(&self.buf[skip..w]);
            self.n_out += (w - skip) as u64;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Ends the stream: the remaining samples, up to `round(inputs · to / from)` in all.
    ///
    /// # Errors
    /// [`Error::Resample`] from the resampler (not expected).
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let target = (self.n_in as f64 * f64::from(self.to_hz) / f64::from(self.from_hz)).round() as u64;
        if let Some(r) = self.inner.as_mut() {
            let chunk = r.input_chunk();
            let mut block = std::mem::take(&mut self.pending);
            while self.n_out < target {
                block.resize(chunk, 0.0);
                let w = r.process(&block, &mut self.buf)?;
                block.clear();
                let skip = self.skip.min(w);
                self.skip -= skip;
                let take = ((w - skip) as u64).min(target - self.n_out) as usize;
                out.extend_from_slice(&self.buf[skip..skip + take]);
                self.n_out += take as u64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, n: usize, amp: f32) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32)
            .collect()
    }

    /// Frequency and amplitude of a sine by least squares against sin/cos at candidate
    /// frequencies (fine grid around the expected one).
    fn fit_sine(x: &[f32], rate: u32, around: f64) -> (f64, f64) {
        let mut best = (0.0, 0.0);
        for k in -200..=200 {
            let f = around + k as f64 * 0.05;
            let w = 2.0 * std::f64::consts::PI * f / f64::from(rate);
            let (mut s, mut c) = (0.0, 0.0);
            for (i, &v) in x.iter().enumerate() {
                s += f64::from(v) * (w * i as f64).sin();
                c += f64::from(v) * (w * i as f64).cos();
            }
            let amp = 2.0 * (s * s + c * c).sqrt() / x.len() as f64;
            if amp > best.1 {
                best = (f, amp);
            }
        }
        best
    }

    #[test]
    fn offline_round_trip_keeps_a_sine() {
        let x = sine(1000.0, 48000, 48000, 0.5);
        let down = resample(&x, 48000, 16000).unwrap();
        assert_eq!(down.len(), 16000);
        let up = resample(&down, 16000, 48000).unwrap();
        assert_eq!(up.len(), 48000);
        // Away from the edges, the round trip is the input within 1e-3.
        let err = x[4800..43200]
            .iter()
            .zip(&up[4800..43200])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-3, "max error {err}");
        let (f, a) = fit_sine(&up[4800..43200], 48000, 1000.0);
        assert!((f - 1000.0).abs() <= 0.1, "frequency {f}");
        assert!((a - 0.5).abs() < 0.005, "amplitude {a}");
    }

    #[test]
    fn streaming_round_trip_keeps_a_sine_once_delay_is_compensated() {
        let x = sine(1000.0, 48000, 96000, 0.5);
        let mut down = StreamResampler::new(48000, 16000, 480).unwrap();
        let mut up = StreamResampler::new(16000, 48000, 160).unwrap();
        let mut mid = Vec::new();
        let mut buf = vec![0.0; down.output_max()];
        for chunk in x.chunks_exact(down.input_chunk()) {
            let n = down.process(chunk, &mut buf).unwrap();
            mid.extend_from_slice(&buf[..n]);
        }
        let mut y = Vec::new();
        let mut buf = vec![0.0; up.output_max()];
        for chunk in mid.chunks_exact(up.input_chunk()) {
            let n = up.process(chunk, &mut buf).unwrap();
            y.extend_from_slice(&buf[..n]);
        }
        // Total delay at 48 kHz: the first stage's, scaled by 3, plus the second's.
        let delay = down.delay_samples() * 3 + up.delay_samples();
        assert!(delay > 0 && delay < 4800, "delay {delay}");
        let aligned = &y[delay..];
        let n = aligned.len().min(x.len());
        let err = x[9600..n - 9600]
            .iter()
            .zip(&aligned[9600..n - 9600])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 2e-3, "max error {err} after compensating {delay} samples");
        let (f, a) = fit_sine(&aligned[9600..n - 9600], 48000, 1000.0);
        assert!((f - 1000.0).abs() <= 0.1, "frequency {f}");
        assert!((a - 0.5).abs() < 0.005, "amplitude {a}");
    }

    #[test]
    fn wrong_chunk_is_an_error_not_a_panic() {
        let mut r = StreamResampler::new(48000, 16000, 480).unwrap();
        let mut out = vec![0.0; r.output_max()];
        assert!(r.process(&[0.0; 100], &mut out).is_err());
        assert!(StreamResampler::new(0, 16000, 480).is_err());
    }

    #[test]
    fn pushes_of_any_length_equal_the_offline_resampler() {
        let x: Vec<f32> = (0..48_000).map(|i| (i as f32 * 0.031).sin() * 0.5).collect();
        for (from, to) in [(48_000u32, 16_000u32), (16_000, 44_100), (16_000, 16_000)] {
            let x = &x[..(from as usize)];
            let want = resample(x, from, to).unwrap();
            let mut r = ChunkResampler::new(from, to).unwrap();
            let mut got = Vec::new();
            for piece in x.chunks(777) {
                r.push(piece, &mut got).unwrap();
            }
            r.finish(&mut got).unwrap();
            assert_eq!(got.len(), to as usize, "{from} -> {to}");
            assert_eq!(want.len(), got.len(), "{from} -> {to}");
            // Same signal away from the ends (the offline resampler sees the whole input).
            let err = want[200..want.len() - 200]
                .iter()
                .zip(&got[200..got.len() - 200])
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err < 1e-3, "{from} -> {to}: {err}");
        }
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    /// Every chunk of the resampler gives its share of output at once, at the rates where 10 ms
    /// is no whole number of samples too (its chunk is then rounded up to whole blocks), so that
    /// a stream never waits longer than the latency stated.
    #[test]
    fn every_chunk_comes_out_at_once_at_any_rate() {
        for (from, to) in [
            (16000u32, 11025u32),
            (11025, 16000),
            (16000, 22050),
            (22050, 16000),
            (44100, 16000),
            (16000, 48000),
        ] {
            let asked = (f64::from(from) * 0.01).round() as usize;
            let mut r = ChunkResampler::with_chunk(from, to, asked).unwrap();
            let (mut n_in, mut n_out) = (0u64, 0u64);
            let mut o = Vec::new();
            for i in 0..300 {
                o.clear();
                let x: Vec<f32> = (0..asked)
                    .map(|k| ((i * asked + k) as f32 * 0.01).sin() * 0.5)
                    .collect();
                r.push(&x, &mut o).unwrap();
                n_in += asked as u64;
                n_out += o.len() as u64;
                let due = n_in * u64::from(to) / u64::from(from);
                assert!(
                    n_out + r.latency_samples() as u64 >= due,
                    "{from} -> {to}: push {i}: {n_out} out of {due} due, latency {}",
                    r.latency_samples()
                );
            }
        }
    }
}
