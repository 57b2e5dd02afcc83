//! The AdaIN-VC training loss: λ_rec · L1 reconstruction + λ_kl · KL of the content code
//! against a standard normal (+ the VQ loss of a vector-quantised code).

use candle_core::Tensor;
use voxswap_model::AeOutput;

use crate::Result;

/// The loss and its parts (each a scalar tensor).
#[derive(Debug, Clone)]
pub struct Loss {
    /// λ_rec · rec + λ_kl · kl.
    pub total: Tensor,
    /// Mean absolute error of the reconstruction.
    pub rec: Tensor,
    /// `0.5 · mean(exp(log_var) + mu² − 1 − log_var)`.
    pub kl: Tensor,
}

/// The loss of `out` against the input `x` (with a vector-quantised code, its VQ loss added
/// with weight 1, as VQ-VAE's).
pub fn ae_loss(x: &Tensor, out: &AeOutput, lambda_rec: f64, lambda_kl: f64) -> Result<Loss> {
    let rec = (&out.mel - x)?.abs()?.mean_all()?;
    let kl = ((out.log_var.exp()? + out.mu.sqr()?)? - 1.0)?
        .sub(&out.log_var)?
        .mean_all()?
        .affine(0.5, 0.0)?;
    let mut total = (rec.affine(lambda_rec, 0.0)? + kl.affine(lambda_kl, 0.0)?)?;
    if let Some(vq) = &out.vq {
        total = (total + vq)?;
    }
    Ok(Loss { total, rec, kl })
}
