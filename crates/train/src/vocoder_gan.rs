//! Adversarial training of the neural vocoder (`[vocoder] lambda_adv`): the multi-period
//! discriminator of HiFi-GAN (Kong et al. 2020) and a multi-resolution spectrogram
//! discriminator after UnivNet's (Jang et al. 2021), both slimmed for a CPU, with least-squares
//! targets and HiFi-GAN's feature matching. L1 losses on log-mels and STFT magnitudes alone
//! leave buzzy, smeared harmonics: they reward the average of every phase the harmonics might
//! have, while a discriminator rewards only what real speech looks like. Training only: the
//! discriminators' weights live beside the vocoder's in a checkpoint
//! (`training_only.safetensors`) and never reach a vocoder folder.
//!
//! - Multi-period: the audio is folded into `p` columns of every `p`-th sample (periods 2, 3, 5,
//!   7, 11); convolutions run down each column (HiFi-GAN's `(k, 1)` 2-d kernels, as 1-d
//!   convolutions over the columns stacked into the batch), so each sub-discriminator sees the
//!   periodic structure of one pitch range.
//! - Multi-resolution: log-magnitude STFTs at three resolutions (FFT 512/1024/256, hop 128/256/
//!   64); convolutions over time with the frequency bins as channels.

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;
use voxswap_model::layers::{relu, PadConv, Padding};

use crate::vocoder_loss::DiffStft;
use crate::Result;

/// Periods of the multi-period discriminator.
pub const PERIODS: [usize; 5] = [2, 3, 5, 7, 11];
/// (FFT size, hop) of the multi-resolution discriminator's spectrograms.
pub const RESOLUTIONS: [(usize, usize); 3] = [(512, 128), (1024, 256), (256, 64)];
const SLOPE: f64 = 0.1;

fn leaky(h: &Tensor) -> Result<Tensor> {
    Ok((relu(h)? - relu(&h.neg()?)?.affine(SLOPE, 0.0)?)?)
}

/// A stack of 1-d convolutions with leaky ReLUs between them; the last gives the scores. Every
/// layer's output is a feature for feature matching.
#[derive(Debug, Clone)]
struct Stack {
    convs: Vec<PadConv>,
}

impl Stack {
    /// Layers `(c_in, c_out, kernel, stride)` at `vb` (`conv{i}`).
    fn new(layers: &[(usize, usize, usize, usize)], vb: &VarBuilder) -> Result<Self> {
        let convs = layers
            .iter()
            .enumerate()
            .map(|(i, &(ci, co, k, s))| PadConv::new(ci, co, k, s, Padding::Causal, vb.pp(format!("conv{i}"))))
            .collect::<voxswap_model::Result<Vec<_>>>()?;
        Ok(Self { convs })
    }

    /// The features of every layer; the last is the scores.
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut feats = Vec::with_capacity(self.convs.len());
        let mut h = x.clone();
        for (i, c) in self.convs.iter().enumerate() {
            h = c.forward(&h)?;
            if i + 1 < self.convs.len() {
                h = leaky(&h)?;
            }
            feats.push(h.clone());
        }
        Ok(feats)
    }

    fn params(&self) -> impl Iterator<Item = Tensor> + '_ {
        self.convs
            .iter()
            .flat_map(|c| std::iter::once(c.conv_weight().clone()).chain(c.conv_bias().cloned()))
    }
}

/// Every sub-discriminator of both kinds.
#[derive(Debug, Clone)]
pub struct WaveDiscriminators {
    periods: Vec<(usize, Stack)>,
    spectra: Vec<(DiffStft, Stack)>,
}

/// One sub-discriminator's view of a batch: its features, the last being the scores.
pub type Features = Vec<Tensor>;

impl WaveDiscriminators {
    /// The discriminators, weights at `vb` (`mpd{p}.conv{i}`, `mrd{n_fft}.conv{i}`).
    ///
    /// # Errors
    /// A tensor that cannot be made.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let device = vb.device().clone();
        let periods = PERIODS
            .iter()
            .map(|&p| -> Result<(usize, Stack)> {
                let layers = [
                    (1, 16, 5, 3),
                    (16, 32, 5, 3),
                    (32, 64, 5, 3),
                    (64, 64, 5, 1),
                    (64, 1, 3, 1),
                ];
                Ok((p, Stack::new(&layers, &vb.pp(format!("mpd{p}")))?))
            })
            .collect::<Result<Vec<_>>>()?;
        let spectra = RESOLUTIONS
            .iter()
            .map(|&(n_fft, hop)| -> Result<(DiffStft, Stack)> {
                let bins = n_fft / 2 + 1;
                let layers = [(bins, 64, 5, 1), (64, 64, 5, 2), (64, 64, 5, 2), (64, 1, 3, 1)];
                Ok((
                    DiffStft::new(n_fft, hop, n_fft, &device)?,
                    Stack::new(&layers, &vb.pp(format!("mrd{n_fft}")))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { periods, spectra })
    }

    /// The tensors they train.
    pub fn params(&self) -> Vec<Tensor> {
        self.periods
            .iter()
            .flat_map(|(_, s)| s.params())
            .chain(self.spectra.iter().flat_map(|(_, s)| s.params()))
            .collect()
    }

    /// Every sub-discriminator's features of audio `[B, L]`.
    ///
    /// # Errors
    /// Wrongly shaped audio.
    pub fn forward(&self, audio: &Tensor) -> Result<Vec<Features>> {
        let (b, l) = audio.dims2()?;
        let mut out = Vec::with_capacity(self.periods.len() + self.spectra.len());
        for (p, stack) in &self.periods {
            // Fold into p columns: [B, L] → [B, L/p, p] → [B·p, 1, L/p] (zeros after the end).
            let rows = l.div_ceil(*p);
            let x = audio.pad_with_zeros(1, 0, rows * p - l)?;
            let x = x
                .reshape((b, rows, *p))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * p, 1, rows))?;
            out.push(stack.forward(&x)?);
        }
        for (stft, stack) in &self.spectra {
            let m = (stft.magnitude(audio)? + 1e-5)?.log()?;
            out.push(stack.forward(&m)?);
        }
        Ok(out)
    }
}

/// The generator's losses against the discriminators' views of real and generated audio:
/// the least-squares adversarial loss `Σ mean((D(fake) − 1)²)` and feature matching
/// `Σ mean|f(real) − f(fake)|` over every sub-discriminator's layers, the real features held
/// fixed. (Gradients also reach the discriminators: drop those, see
/// [`WaveDiscriminators::params`].)
///
/// # Errors
/// Views of different shapes.
pub fn generator_losses(real: &[Features], fake: &[Features]) -> Result<(Tensor, Tensor)> {
    let mut adv = Vec::with_capacity(fake.len());
    let mut fm = Vec::new();
    for (r, f) in real.iter().zip(fake) {
        let score = f
            .last()
            .ok_or_else(|| candle_core::Error::Msg("a discriminator without layers".into()))?;
        adv.push(score.affine(1.0, -1.0)?.sqr()?.mean_all()?);
        for (a, b) in r.iter().zip(f) {
            fm.push((a.detach() - b)?.abs()?.mean_all()?);
        }
    }
    Ok((
        Tensor::stack(&adv, 0)?.sum(D::Minus1)?,
        Tensor::stack(&fm, 0)?.sum(D::Minus1)?,
    ))
}

/// The discriminators' least-squares loss `Σ mean((D(real) − 1)²) + mean(D(fake)²)`, from their
/// views of real audio and of generated audio (computed from the generated audio detached).
///
/// # Errors
/// Empty views.
pub fn discriminator_loss(real: &[Features], fake: &[Features]) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(2 * real.len());
    for (r, f) in real.iter().zip(fake) {
        let (Some(rs), Some(fs)) = (r.last(), f.last()) else {
            return Err(candle_core::Error::Msg("a discriminator without layers".into()).into());
        };
        parts.push(rs.affine(1.0, -1.0)?.sqr()?.mean_all()?);
        parts.push(fs.sqr()?.mean_all()?);
    }
    Ok(Tensor::stack(&parts, 0)?.sum(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Adam, AdamConfig};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    const N: usize = 2048;

    /// A harmonic tone (real) and the same with its phases smeared by noise (fake).
    fn audio(noisy: bool) -> Tensor {
        let mut rng = 12345u64;
        let mut noise = || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((rng >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let x: Vec<f32> = (0..2 * N)
            .map(|i| {
                let t = (i % N) as f32 / 16000.0;
                let f0 = if i < N { 140.0 } else { 210.0 };
                let clean: f32 = (1..=6)
                    .map(|h| (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin() / h as f32)
                    .sum();
                if noisy {
                    0.3 * clean + 0.6 * noise()
                } else {
                    0.5 * clean
                }
            })
            .collect();
        Tensor::from_vec(x, (2, N), &Device::Cpu).unwrap()
    }

    /// Shapes; the generator's losses reach its audio; the discriminators alone learn to tell
    /// harmonic audio from noisy audio: their loss halves, and every sub-discriminator scores
    /// the harmonic audio above the noisy audio.
    #[test]
    fn learns_to_tell_harmonics_from_noise() {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let d = WaveDiscriminators::new(VarBuilder::from_varmap(&vars, DType::F32, &dev)).unwrap();
        voxswap_model::init::init_pytorch_like(&vars, 5).unwrap();
        let (real, fake) = (audio(false), audio(true));
        let views = d.forward(&real).unwrap();
        assert_eq!(views.len(), 8);
        // Period 2: 2 columns per item; 2048 / 2 rows, strided by 3 three times.
        assert_eq!(views[0].last().unwrap().dims(), &[4, 1, 38]);
        let g = Var::from_tensor(&fake).unwrap();
        let (adv0, fm) = generator_losses(&views, &d.forward(g.as_tensor()).unwrap()).unwrap();
        let grads = (&adv0 + &fm).unwrap().backward().unwrap();
        assert!(grads.get(g.as_tensor()).is_some_and(|t| t
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0));
        let mut opt = Adam::new(
            crate::optim::named_vars(&[&vars]),
            AdamConfig {
                lr: 1e-3,
                ..AdamConfig::default()
            },
        )
        .unwrap();
        let loss = |d: &WaveDiscriminators| {
            discriminator_loss(&d.forward(&real).unwrap(), &d.forward(&fake).unwrap()).unwrap()
        };
        let first = loss(&d).to_scalar::<f32>().unwrap();
        for _ in 0..40 {
            let l = loss(&d);
            opt.step(&l.backward().unwrap(), 40).unwrap();
        }
        let last = loss(&d).to_scalar::<f32>().unwrap();
        assert!(last < 0.5 * first, "discriminator loss {first} → {last}");
        // Every sub-discriminator scores the harmonic audio nearer 1 than the noisy audio.
        let score = |x: &Tensor| -> Vec<f32> {
            d.forward(x)
                .unwrap()
                .iter()
                .map(|f| f.last().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap())
                .collect()
        };
        let (r, f) = (score(&real), score(&fake));
        let gap: Vec<f32> = r.iter().zip(&f).map(|(r, f)| r - f).collect();
        assert!(gap.iter().all(|g| *g > 0.1), "real {r:?}, noisy {f:?}");
        assert!(
            gap.iter().sum::<f32>() / gap.len() as f32 > 0.5,
            "real {r:?}, noisy {f:?}"
        );
    }
}
