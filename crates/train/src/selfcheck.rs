//! The device self-check: before training anywhere but on the CPU, one training step of the
//! small presets runs on that device and on the CPU with the same weights and the same batch,
//! and every gradient is compared.
//!
//! Why: candle's CPU backend computed every conv1d weight gradient wrong until voxswap patched
//! it (`vendor/candle-core/VOXSWAP_PATCH.md`); the CUDA and Metal backends had the same code
//! paths and are patched the same way, but they cannot be tested where no such device is, and a
//! device whose gradients are wrong trains a model that is silently bad. The check costs a
//! second and turns that into a clear refusal.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use voxswap_model::{init, AdaInVc, ModelConfig};

use crate::step::{forward_backward, StepBatch};
use crate::{Error, Result};

/// Largest relative difference (to the gradient's own largest magnitude) a device may show: f32
/// rounding in a different order of summation stays orders of magnitude below it; the conv1d bug
/// was of the order of 1.
pub const TOLERANCE: f64 = 1e-3;

/// What the self-check found.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfCheck {
    /// Gradients compared (over both presets).
    pub gradients: usize,
    /// The largest relative difference, and the parameter (`preset/name`) where it was.
    pub worst: f64,
    /// Where the largest difference was.
    pub worst_param: String,
}

impl SelfCheck {
    /// Whether every gradient is within [`TOLERANCE`].
    pub fn passed(&self) -> bool {
        self.worst <= TOLERANCE
    }
}

/// Runs one step of the `tiny` and `tiny-stream` presets on `device` and on the CPU with the same
/// weights and batch, and compares every gradient (see the module docs).
///
/// # Errors
/// Any tensor error on either device (a device that cannot run the model fails here).
pub fn check_device(device: &Device) -> Result<SelfCheck> {
    let mut report = SelfCheck {
        gradients: 0,
        worst: 0.0,
        worst_param: String::new(),
    };
    for cfg in [ModelConfig::tiny(), ModelConfig::tiny_stream()] {
        let (cpu_vars, cpu_model) = build(&cfg, &Device::Cpu)?;
        let (dev_vars, dev_model) = build(&cfg, device)?;
        // The device's weights are the CPU's.
        {
            let cpu = cpu_vars.data().lock().map_err(|_| poisoned())?;
            let dev = dev_vars.data().lock().map_err(|_| poisoned())?;
            for (name, v) in cpu.iter() {
                let d = dev
                    .get(name)
                    .ok_or_else(|| Error::Candle(candle_core::Error::Msg(format!("no `{name}` on the device"))))?;
                d.set(&v.as_tensor().to_device(device)?)?;
            }
        }
        let batch = batch(&cfg, &Device::Cpu)?;
        let dev_batch = StepBatch {
            target: batch.target.to_device(device)?,
            content: batch.content.to_device(device)?,
            speaker: batch.speaker.to_device(device)?,
            noise: batch.noise.to_device(device)?,
            speakers: None,
            pitch: batch.pitch.as_ref().map(|p| p.to_device(device)).transpose()?,
        };
        let cpu_params = named(&cpu_vars)?;
        let dev_params = named(&dev_vars)?;
        let cpu_vars_only: Vec<Var> = cpu_params.iter().map(|(_, v)| v.clone()).collect();
        let dev_vars_only: Vec<Var> = dev_params.iter().map(|(_, v)| v.clone()).collect();
        let g_cpu = forward_backward(&cpu_model, &cpu_vars_only, &batch, 10.0, 1.0)?.grads;
        let g_dev = forward_backward(&dev_model, &dev_vars_only, &dev_batch, 10.0, 1.0)?.grads;
        let r = compare(&cpu_params, &g_cpu, &dev_params, &g_dev)?;
        report.gradients += r.gradients;
        if r.worst > report.worst || report.worst_param.is_empty() {
            report.worst = r.worst;
            report.worst_param = format!("{}/{}", cfg.preset, r.worst_param);
        }
    }
    Ok(report)
}

/// Compares the gradients of two copies of the same parameters (paired by name).
///
/// # Errors
/// A gradient that one side has and the other lacks, or a tensor error.
pub fn compare(
    a_params: &[(String, Var)],
    a: &GradStore,
    b_params: &[(String, Var)],
    b: &GradStore,
) -> Result<SelfCheck> {
    let mut report = SelfCheck {
        gradients: 0,
        worst: 0.0,
        worst_param: String::new(),
    };
    for (name, va) in a_params {
        let Some((_, vb)) = b_params.iter().find(|(n, _)| n == name) else {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "no parameter `{name}` on the other side"
            ))));
        };
        let (ga, gb) = (a.get(va.as_tensor()), b.get(vb.as_tensor()));
        let (ga, gb) = match (ga, gb) {
            (None, None) => continue,
            (Some(x), Some(y)) => (x.to_device(&Device::Cpu)?, y.to_device(&Device::Cpu)?),
            _ => {
                report.worst = f64::INFINITY;
                report.worst_param = format!("{name} (a gradient on one side only)");
                return Ok(report);
            }
        };
        let scale = max_abs(&ga)?.max(1e-12);
        let diff = max_abs(&(ga - gb)?)?;
        let rel = if diff.is_finite() { diff / scale } else { f64::INFINITY };
        report.gradients += 1;
        if rel > report.worst || report.worst_param.is_empty() {
            report.worst = rel;
            report.worst_param = name.clone();
        }
    }
    Ok(report)
}

fn poisoned() -> Error {
    Error::Candle(candle_core::Error::Msg("parameter lock poisoned".into()))
}

fn max_abs(t: &Tensor) -> Result<f64> {
    Ok(t.abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

fn build(cfg: &ModelConfig, device: &Device) -> Result<(VarMap, AdaInVc)> {
    let vars = VarMap::new();
    let model = AdaInVc::new(cfg, VarBuilder::from_varmap(&vars, DType::F32, device))?;
    init::init_pytorch_like(&vars, 0)?;
    Ok((vars, model))
}

fn named(vars: &VarMap) -> Result<Vec<(String, Var)>> {
    let mut v: Vec<(String, Var)> = vars
        .data()
        .lock()
        .map_err(|_| poisoned())?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// A fixed batch of 4 log-mel-like segments of 64 frames (values around the frontend's range)
/// and the VAE noise.
fn batch(cfg: &ModelConfig, device: &Device) -> Result<StepBatch> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let (b, t) = (4, 64);
    let n_mels = cfg.frontend.n_mels;
    let x: Vec<f32> = (0..b * n_mels * t).map(|_| rng.random_range(-8.0f32..0.0)).collect();
    let x = Tensor::from_vec(x, (b, n_mels, t), device)?;
    let code = cfg.content.c_out;
    let frames = t / cfg.frame_multiple();
    let noise: Vec<f32> = (0..b * code * frames).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let noise = Tensor::from_vec(noise, (b, code, frames), device)?;
    Ok(StepBatch::plain(&x, &noise))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_passes_its_own_check_and_a_wrong_gradient_fails_it() {
        let r = check_device(&Device::Cpu).unwrap();
        assert!(r.passed(), "{r:?}");
        assert!(r.gradients > 10, "{r:?}");
        // A device that computed one gradient transposed, as the conv1d bug did.
        let (vars, model) = build(&ModelConfig::tiny(), &Device::Cpu).unwrap();
        let params = named(&vars).unwrap();
        let only: Vec<Var> = params.iter().map(|(_, v)| v.clone()).collect();
        let b = batch(&ModelConfig::tiny(), &Device::Cpu).unwrap();
        let good = forward_backward(&model, &only, &b, 10.0, 1.0).unwrap().grads;
        let mut bad = forward_backward(&model, &only, &b, 10.0, 1.0).unwrap().grads;
        let (name, v) = params
            .iter()
            .find(|(_, v)| v.as_tensor().rank() == 3 && v.as_tensor().dim(1).unwrap() == v.as_tensor().dim(0).unwrap())
            .expect("a square conv kernel");
        let g = bad.get(v.as_tensor()).unwrap().clone();
        bad.insert(v.as_tensor(), g.transpose(0, 1).unwrap().contiguous().unwrap());
        let r = compare(&params, &good, &params, &bad).unwrap();
        assert!(!r.passed(), "{r:?}");
        assert_eq!(&r.worst_param, name);
    }
}
