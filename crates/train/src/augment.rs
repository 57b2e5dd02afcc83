//! The denoising auto-encoder's corruption (`train.denoise_snr_db`, `train.denoise_reverb`):
//! the content encoder reads each segment with noise and reverberation added, the loss asks for
//! the clean segment, so that the content code of a talker in a real room is the code of the
//! same words said in a quiet one.
//!
//! The trainer works on cached log-mels, so the corruption is made in the mel domain, where the
//! frontend's magnitudes of uncorrelated sounds add as powers (`|X + N|² ≈ |X|² + |N|²` per
//! band, exact in expectation):
//! - **noise**: white, pink and brown noise generated here (Gaussian samples, coloured by
//!   first-order filters) and analysed by the frontend itself into log-mels once, at the start;
//!   each segment gets a random stretch of one colour, scaled to a signal-to-noise ratio drawn
//!   uniformly from `snr .. snr + 20` dB (powers averaged over the segment's bands and frames);
//! - **reverberation**: an exponentially decaying tail added to each band's power, the late
//!   reverberation of a room of reverberation time RT60 drawn from 0.2–0.8 s, at a
//!   direct-to-reverberant ratio drawn from 0–10 dB. Early reflections (the comb filtering of a
//!   real room's first milliseconds) are not modelled.

use candle_core::Tensor;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use voxswap_audio::{FrontendConfig, LogMel, Mel};

use crate::Result;

/// Seconds of each noise colour analysed at the start.
const NOISE_SECONDS: usize = 20;
/// The span of signal-to-noise ratios drawn above the recipe's lowest, dB.
const SNR_SPAN_DB: f64 = 20.0;

/// Noise log-mels to corrupt segments with (see the module docs).
#[derive(Debug)]
pub struct Corruption {
    /// White, pink and brown noise, analysed by the frontend.
    noise: Vec<Mel>,
    /// Seconds per frame.
    hop_s: f64,
}

impl Corruption {
    /// Generates and analyses the noise for frontend `fe` (the same noise for every seed of
    /// the run: it is drawn from `seed`).
    ///
    /// # Errors
    /// An invalid frontend.
    pub fn new(fe: &FrontendConfig, seed: u64) -> Result<Self> {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x6e01_5e5e);
        let n = NOISE_SECONDS * fe.sample_rate as usize;
        let mut logmel = LogMel::new(fe)?;
        let mut noise = Vec::new();
        // Leaky integrators: none (white), a gentle one (about pink over speech's range), a
        // strong one (brown).
        for leak in [0.0f32, 0.9, 0.995] {
            let mut state = 0f32;
            let x: Vec<f32> = (0..n)
                .map(|_| {
                    let w: f32 = StandardNormal.sample(&mut rng);
                    state = leak * state + w;
                    state
                })
                .collect();
            noise.push(logmel.compute(&x));
        }
        Ok(Self {
            noise,
            hop_s: f64::from(fe.hop_length as u32) / f64::from(fe.sample_rate),
        })
    }

    /// `x` (`[B, n_mels, T]` log-mels) with each item corrupted: reverberation with probability
    /// `reverb`, then noise at a signal-to-noise ratio from `snr_db .. snr_db + 20` dB; each item
    /// is left clean with probability `clean` (drawn first, and only when `clean` > 0, so that
    /// runs without clean items draw as before).
    ///
    /// # Errors
    /// A batch of another band count than the frontend's, or longer than the noise.
    pub fn apply(&self, x: &Tensor, rng: &mut impl Rng, snr_db: f64, reverb: f64, clean: f64) -> Result<Tensor> {
        let (b, n_mels, t) = x.dims3()?;
        let noise0 = &self.noise[0];
        if n_mels != noise0.n_mels || t > noise0.frames {
            return Err(candle_core::Error::Msg(format!(
                "corruption: a batch of {n_mels} bands × {t} frames, the noise has {} × {}",
                noise0.n_mels, noise0.frames
            ))
            .into());
        }
        let mut data = x.flatten_all()?.to_vec1::<f32>()?;
        let per = n_mels * t;
        for item in data.chunks_mut(per) {
            if clean > 0.0 && rng.random_bool(clean.clamp(0.0, 1.0)) {
                continue;
            }
            // Powers of the frontend's magnitudes.
            let mut p: Vec<f64> = item.iter().map(|&v| (2.0 * f64::from(v)).exp()).collect();
            if rng.random_bool(reverb.clamp(0.0, 1.0)) {
                let rt60 = rng.random_range(0.2..0.8);
                let drr_db = rng.random_range(0.0..10.0);
                // Power falls 60 dB over RT60: r per frame.
                let r = 10f64.powf(-6.0 * self.hop_s / rt60);
                let g = 10f64.powf(-drr_db / 10.0) * (1.0 - r);
                for m in 0..n_mels {
                    let row = &mut p[m * t..(m + 1) * t];
                    let mut tail = 0.0;
                    for v in row.iter_mut() {
                        let direct = *v;
                        *v = direct + tail;
                        tail = r * (tail + g * direct);
                    }
                }
            }
            let colour = &self.noise[rng.random_range(0..self.noise.len())];
            let offset = rng.random_range(0..=colour.frames - t);
            let snr = rng.random_range(snr_db..snr_db + SNR_SPAN_DB);
            let signal = p.iter().sum::<f64>() / p.len() as f64;
            let mut np = vec![0f64; per];
            for m in 0..n_mels {
                for i in 0..t {
                    np[m * t + i] = (2.0 * f64::from(colour.at(m, offset + i))).exp();
                }
            }
            let noise = np.iter().sum::<f64>() / np.len() as f64;
            let gain = signal / (noise * 10f64.powf(snr / 10.0));
            for ((v, p), n) in item.iter_mut().zip(&p).zip(&np) {
                *v = (0.5 * (p + gain * n).ln()) as f32;
            }
        }
        Ok(Tensor::from_vec(data, (b, n_mels, t), x.device())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;
    use voxswap_audio::{read_mono, ChannelMix};

    fn speech(fe: &FrontendConfig, frames: usize) -> Tensor {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/speech_m.wav");
        let a = read_mono(p, ChannelMix::Downmix).unwrap();
        let x = voxswap_audio::resample(&a.samples, a.sample_rate, fe.sample_rate).unwrap();
        let mel = LogMel::new(fe).unwrap().compute(&x);
        let mut d = Vec::new();
        for m in 0..mel.n_mels {
            d.extend_from_slice(&mel.data[m * mel.frames + 20..m * mel.frames + 20 + frames]);
        }
        Tensor::from_vec(d, (1, mel.n_mels, frames), &Device::Cpu).unwrap()
    }

    fn powers(x: &Tensor) -> Vec<f64> {
        x.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&v| (2.0 * f64::from(v)).exp())
            .collect()
    }

    /// Noise alone: the added power is the drawn fraction of the segment's (SNR within the
    /// 20 dB span above the lowest), nothing is taken away, and the same draw gives the same
    /// result.
    #[test]
    fn noise_lands_at_the_drawn_snr() {
        let fe = FrontendConfig::speech_16k();
        let c = Corruption::new(&fe, 1).unwrap();
        let x = speech(&fe, 128);
        for seed in 0..5 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let y = c.apply(&x, &mut rng, 10.0, 0.0, 0.0).unwrap();
            let mut rng2 = rand::rngs::StdRng::seed_from_u64(seed);
            assert_eq!(
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                c.apply(&x, &mut rng2, 10.0, 0.0, 0.0)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            );
            let (px, py) = (powers(&x), powers(&y));
            assert!(py.iter().zip(&px).all(|(a, b)| *a >= b * (1.0 - 1e-5)));
            let s: f64 = px.iter().sum();
            let added: f64 = py.iter().sum::<f64>() - s;
            let snr = 10.0 * (s / added).log10();
            assert!((10.0 - 0.01..30.0 + 0.01).contains(&snr), "SNR {snr:.2} dB");
        }
    }

    /// Reverberation: a tail after a sound stops, decaying, and no change before it.
    #[test]
    fn reverberation_leaves_a_decaying_tail() {
        let fe = FrontendConfig::speech_16k();
        let c = Corruption::new(&fe, 1).unwrap();
        // A burst of 20 frames at 0 dB in every band, then the frontend's floor.
        let floor = fe.log_floor.ln();
        let (n, t) = (fe.n_mels, 64);
        let d: Vec<f32> = (0..n * t).map(|i| if i % t < 20 { 0.0 } else { floor }).collect();
        let x = Tensor::from_vec(d, (1, n, t), &Device::Cpu).unwrap();
        // No noise to speak of: an SNR far above anything measurable.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let y = c
            .apply(&x, &mut rng, 200.0, 1.0, 0.0)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        for band in &y[0] {
            assert!((band[5] - 0.0).abs() < 0.5, "the burst itself: {}", band[5]);
            assert!(band[22] > floor + 5.0, "no tail right after the burst");
            assert!(band[22] > band[30] && band[30] > band[45], "the tail does not decay");
        }
        // Without reverberation the burst ends at once.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let y = c
            .apply(&x, &mut rng, 200.0, 0.0, 0.0)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        assert!(y[0][0][22] < floor + 1.0);
    }

    /// A share of clean items: with `clean` = 1 nothing changes, with 0.5 some items come out
    /// untouched and the others corrupted.
    #[test]
    fn clean_items_pass_untouched() {
        let fe = FrontendConfig::speech_16k();
        let c = Corruption::new(&fe, 1).unwrap();
        let x = speech(&fe, 32).repeat((16, 1, 1)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let y = c.apply(&x, &mut rng, 10.0, 0.5, 1.0).unwrap();
        assert_eq!(y.to_vec3::<f32>().unwrap(), x.to_vec3::<f32>().unwrap());
        let y = c.apply(&x, &mut rng, 10.0, 0.5, 0.5).unwrap();
        let (x, y) = (x.to_vec3::<f32>().unwrap(), y.to_vec3::<f32>().unwrap());
        let same = x.iter().zip(&y).filter(|(a, b)| a == b).count();
        assert!((3..=13).contains(&same), "{same} of 16 items untouched");
    }
}
