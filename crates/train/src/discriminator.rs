//! A discriminator on the decoder's mels (`train.lambda_gan`), the second stage of Chou et al.
//! 2018 (arXiv 1804.02812) as a recipe switch: an L1 loss alone rewards the blurred mean of what
//! a voice might sound like, which smears formants and harmonics (and, into a voice the decoder
//! never heard, the words with them). A small convolutional critic scores patches of mel frames
//! as real (the corpus's) or made (the decoder's reconstructions and conversions), with least
//! squares targets (LSGAN: real 1, made 0); the decoder is asked to make patches it scores 1.
//! Training only: its weights live beside the model's in a checkpoint and never reach a model
//! folder.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use voxswap_model::layers::{relu, PadConv, Padding};

use crate::Result;

/// Channels of the hidden layers.
pub const HIDDEN: usize = 128;
/// Slope of the leaky ReLUs for negative inputs.
const SLOPE: f64 = 0.2;

/// Mel frames → one realness score per patch: convolutions over time with the mel bands as
/// channels (kernels 5, 5, 5, 3; the second and third stride 2: a score every 4 frames, each
/// reading about 40 frames), leaky ReLUs between them.
#[derive(Debug, Clone)]
pub struct MelDiscriminator {
    convs: Vec<PadConv>,
}

impl MelDiscriminator {
    /// A discriminator of `n_mels`-band mels, weights at `vb` (`conv{i}.weight`, `.bias`).
    ///
    /// # Errors
    /// A tensor that cannot be made.
    pub fn new(n_mels: usize, vb: VarBuilder) -> Result<Self> {
        let layers = [
            (n_mels, HIDDEN, 5, 1),
            (HIDDEN, HIDDEN, 5, 2),
            (HIDDEN, HIDDEN, 5, 2),
            (HIDDEN, 1, 3, 1),
        ];
        let convs = layers
            .iter()
            .enumerate()
            .map(|(i, &(ci, co, k, s))| PadConv::new(ci, co, k, s, Padding::Causal, vb.pp(format!("conv{i}"))))
            .collect::<voxswap_model::Result<Vec<_>>>()?;
        Ok(Self { convs })
    }

    /// Mels `[B, n_mels, T]` → scores `[B, 1, ⌈T / 4⌉]`.
    ///
    /// # Errors
    /// A wrongly shaped mel.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let mut h = mel.clone();
        for (i, c) in self.convs.iter().enumerate() {
            h = c.forward(&h)?;
            if i + 1 < self.convs.len() {
                // leaky ReLU: relu(h) − slope · relu(−h).
                h = (relu(&h)? - relu(&h.neg()?)?.affine(SLOPE, 0.0)?)?;
            }
        }
        Ok(h)
    }

    /// The tensors it trains (to keep the decoder's loss from training it).
    pub fn params(&self) -> Vec<Tensor> {
        self.convs
            .iter()
            .flat_map(|c| std::iter::once(c.conv_weight().clone()).chain(c.conv_bias().cloned()))
            .collect()
    }

    /// The decoder's loss: the mean of `(D(made) − 1)²` (gradients reach `made` and, unwanted,
    /// the discriminator: drop those, see [`Self::params`]).
    ///
    /// # Errors
    /// A wrongly shaped mel.
    pub fn generator_loss(&self, made: &Tensor) -> Result<Tensor> {
        Ok(self.forward(made)?.affine(1.0, -1.0)?.sqr()?.mean_all()?)
    }

    /// The discriminator's loss: the mean of `(D(real) − 1)²` plus the mean of `D(made)²`, with
    /// `made` detached (its gradients reach the discriminator only).
    ///
    /// # Errors
    /// Wrongly shaped mels.
    pub fn discriminator_loss(&self, real: &Tensor, made: &Tensor) -> Result<Tensor> {
        let r = self.forward(real)?.affine(1.0, -1.0)?.sqr()?.mean_all()?;
        let f = self.forward(&made.detach())?.sqr()?.mean_all()?;
        Ok((r + f)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Adam, AdamConfig};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// Scores come every 4 frames; the decoder's loss leaves `made` with a gradient; trained
    /// alone, the discriminator learns to tell sharp mels (harmonic stripes) from the blurred
    /// ones an L1 average leaves, and its loss falls towards 0 from about 1.
    #[test]
    fn tells_sharp_mels_from_blurred_ones() {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let d = MelDiscriminator::new(16, VarBuilder::from_varmap(&vars, DType::F32, &dev)).unwrap();
        voxswap_model::init::init_pytorch_like(&vars, 3).unwrap();
        // Sharp: stripes every other band moving with time; blurred: their local mean.
        let sharp: Vec<f32> = (0..2 * 16 * 32)
            .map(|i| {
                let (b, m, t) = (i / 512, (i / 32) % 16, i % 32);
                if (m + t / 8 + b) % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let real = Tensor::from_vec(sharp, (2, 16, 32), &dev).unwrap();
        let made = real.affine(0.1, 0.0).unwrap();
        assert_eq!(d.forward(&real).unwrap().dims(), &[2, 1, 8]);
        let made_var = candle_core::Var::from_tensor(&made).unwrap();
        let g = d.generator_loss(made_var.as_tensor()).unwrap().backward().unwrap();
        assert!(g.get(made_var.as_tensor()).is_some());
        let mut opt = Adam::new(
            crate::optim::named_vars(&[&vars]),
            AdamConfig {
                lr: 1e-3,
                ..AdamConfig::default()
            },
        )
        .unwrap();
        let first = d.discriminator_loss(&real, &made).unwrap().to_scalar::<f32>().unwrap();
        let mut last = first;
        for _ in 0..200 {
            let l = d.discriminator_loss(&real, &made).unwrap();
            last = l.to_scalar::<f32>().unwrap();
            opt.step(&l.backward().unwrap(), 200).unwrap();
        }
        assert!(first > 0.3 && last < 0.05, "loss {first} → {last}");
        let score = |x: &Tensor| d.forward(x).unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(
            score(&real) > 0.8 && score(&made) < 0.2,
            "{} {}",
            score(&real),
            score(&made)
        );
    }
}
