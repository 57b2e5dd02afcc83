//! Seeded parameter initialisation (candle's CPU `set_seed` is not available, and a training
//! run must be reproducible from its seed).

use candle_core::Tensor;
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

/// Sets every parameter of `vars` as PyTorch initialises `Conv1d` and `Linear`: weights and
/// biases uniform in ±1/√fan_in, fan_in the weight's input channels times its kernel size.
/// Parameters are visited in name order, so the result depends only on `seed` and the model.
///
/// # Errors
/// A bias without its weight, or a tensor that cannot be set.
pub fn init_pytorch_like(vars: &VarMap, seed: u64) -> Result<()> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::Config("parameter map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let weight_name = name.strip_suffix(".bias").map(|p| format!("{p}.weight"));
        let weight_dims = match &weight_name {
            Some(w) => data
                .get(w)
                .ok_or_else(|| Error::Config(format!("bias `{name}` has no weight `{w}`")))?
                .dims()
                .to_vec(),
            None => var.dims().to_vec(),
        };
        let fan_in: usize = weight_dims.iter().skip(1).product::<usize>().max(1);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let values: Vec<f32> = (0..var.elem_count()).map(|_| rng.random_range(-bound..bound)).collect();
        var.set(&Tensor::from_vec(values, var.dims(), var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}
