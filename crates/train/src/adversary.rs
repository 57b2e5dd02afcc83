//! The adversarial speaker classifier of Chou et al. 2018 (arXiv 1804.02812), as a recipe switch
//! (`train.lambda_adv`): a small classifier reads the content code and names the training
//! speaker; through a gradient-reversal layer the content encoder is pushed the other way, so
//! that the code keeps less of the voice. Training only: its weights live beside the model's in
//! a checkpoint and never reach a model folder.

use candle_core::{Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use crate::Result;

/// Hidden width of the classifier.
pub const HIDDEN: usize = 256;

/// Content code → training speaker: a per-frame layer with ReLU, the mean over time, a linear
/// layer to one logit per speaker.
#[derive(Debug, Clone)]
pub struct SpeakerAdversary {
    hidden: Linear,
    out: Linear,
}

impl SpeakerAdversary {
    /// A classifier of `n_speakers` from codes of `c_code` channels, weights at `vb`.
    ///
    /// # Errors
    /// A tensor that cannot be made.
    pub fn new(c_code: usize, n_speakers: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            hidden: candle_nn::linear(c_code, HIDDEN, vb.pp("hidden"))?,
            out: candle_nn::linear(HIDDEN, n_speakers, vb.pp("out"))?,
        })
    }

    /// Code `[B, c_code, T]` → logits `[B, n_speakers]`.
    ///
    /// # Errors
    /// A wrongly shaped code.
    pub fn forward(&self, code: &Tensor) -> Result<Tensor> {
        let h = self.hidden.forward(&code.transpose(1, 2)?.contiguous()?)?.relu()?;
        Ok(self.out.forward(&h.mean(D::Minus2)?)?)
    }

    /// The classifier's cross-entropy on `code` (read through [`reverse_gradient`]) against the
    /// speakers `labels` (`[B]`, u32): minimising it trains the classifier and, reversed, pushes
    /// the code away from what identifies the speaker.
    ///
    /// # Errors
    /// Wrongly shaped inputs.
    pub fn loss(&self, code: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let logits = self.forward(&reverse_gradient(code)?)?;
        Ok(candle_nn::loss::cross_entropy(&logits, labels)?)
    }
}

/// The identity going forward; going back, the gradient with its sign flipped
/// (`2·stop_gradient(x) − x`).
///
/// # Errors
/// From the tensor operations.
pub fn reverse_gradient(x: &Tensor) -> Result<Tensor> {
    Ok((x.detach().affine(2.0, 0.0)? - x)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn reversal_is_the_identity_forward_and_flips_the_gradient() {
        let x = Var::from_tensor(&Tensor::new(&[[0.5f32, -1.25, 3.0]], &Device::Cpu).unwrap()).unwrap();
        let y = reverse_gradient(x.as_tensor()).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
        let w = Tensor::new(&[[2.0f32, -3.0, 0.5]], &Device::Cpu).unwrap();
        let g = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = g.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(gx, vec![vec![-2.0, 3.0, -0.5]]);
    }

    /// The classifier's own weights descend its loss while the code's gradient ascends it: a
    /// step along each gradient lowers the loss for the classifier and raises it for the code.
    #[test]
    fn the_classifier_learns_while_the_code_unlearns() {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let adv = SpeakerAdversary::new(4, 3, VarBuilder::from_varmap(&vars, DType::F32, &dev)).unwrap();
        let code = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 4, 10), &dev).unwrap()).unwrap();
        let labels = Tensor::new(&[0u32, 1, 2, 0, 1, 2], &dev).unwrap();
        let loss = |adv: &SpeakerAdversary, c: &Tensor| {
            adv.forward(c)
                .and_then(|l| Ok(candle_nn::loss::cross_entropy(&l, &labels)?))
        };
        let l0 = loss(&adv, code.as_tensor()).unwrap().to_scalar::<f32>().unwrap();
        let grads = adv.loss(code.as_tensor(), &labels).unwrap().backward().unwrap();
        let lr = 0.05;
        for v in vars.all_vars() {
            let g = grads.get(v.as_tensor()).unwrap();
            v.set(&(v.as_tensor() - g.affine(lr, 0.0).unwrap()).unwrap()).unwrap();
        }
        let l1 = loss(&adv, code.as_tensor()).unwrap().to_scalar::<f32>().unwrap();
        assert!(l1 < l0, "the classifier's step raised its loss: {l0} -> {l1}");
        let gc = grads.get(code.as_tensor()).unwrap();
        let moved = (code.as_tensor() - gc.affine(lr, 0.0).unwrap()).unwrap();
        let l2 = loss(&adv, &moved).unwrap().to_scalar::<f32>().unwrap();
        assert!(l2 > l1, "the code's step lowered the classifier's loss: {l1} -> {l2}");
    }
}
