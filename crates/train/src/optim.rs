//! Adam and AdamW with an AMSGrad option, gradient clipping by global norm, and learning-rate
//! schedules; the state is saved with checkpoints so a resumed run continues exactly.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Optimiser settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Decoupled weight decay (AdamW) instead of L2 added to the gradient (Adam).
    pub decoupled: bool,
    /// Keep the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    /// Clip gradients to this global L2 norm (0: no clipping).
    pub grad_clip: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// After warm-up: constant, or cosine decay to `min_lr_ratio · lr` at the last step.
    pub schedule: Schedule,
    /// Final learning rate as a fraction of `lr` (cosine).
    pub min_lr_ratio: f64,
}

/// Learning rate after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Constant.
    Constant,
    /// Cosine decay over the run.
    Cosine,
}

impl Default for AdamConfig {
    /// The AdaIN-VC reference trainer: Adam, lr 5e-4, β (0.9, 0.999), AMSGrad, L2 1e-4, clip 5.
    fn default() -> Self {
        Self {
            lr: 5e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
            decoupled: false,
            amsgrad: true,
            grad_clip: 5.0,
            warmup_steps: 0,
            schedule: Schedule::Constant,
            min_lr_ratio: 0.1,
        }
    }
}

impl AdamConfig {
    /// Learning rate at `step` (counted from 1) of a run of `total` steps.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        if step <= self.warmup_steps && self.warmup_steps > 0 {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let p = ((step - self.warmup_steps.min(step)) as f64 / span).min(1.0);
                let min = self.lr * self.min_lr_ratio;
                min + 0.5 * (self.lr - min) * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

/// Adam state over named parameters.
#[derive(Debug)]
pub struct Adam {
    cfg: AdamConfig,
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    vmax: Vec<Tensor>,
    /// Updates applied so far.
    pub step: u64,
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

impl Adam {
    /// Optimiser over `params` (sorted by name for a stable order), moments at zero.
    pub fn new(mut params: Vec<(String, Var)>, cfg: AdamConfig) -> Result<Self> {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        let m = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let vmax = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            params,
            m,
            v,
            vmax,
            step: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }

    /// One update from `grads`; `total_steps` sets the schedule.
    pub fn step(&mut self, grads: &GradStore, total_steps: u64) -> Result<StepInfo> {
        self.step += 1;
        let c = &self.cfg;
        let lr = c.lr_at(self.step, total_steps);
        let mut gs = Vec::with_capacity(self.params.len());
        let mut sq = 0.0f64;
        for (_, p) in &self.params {
            let g = match grads.get(p.as_tensor()) {
                Some(g) => g.clone(),
                None => p.as_tensor().zeros_like()?,
            };
            sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            gs.push(g);
        }
        let grad_norm = sq.sqrt();
        let clip = if c.grad_clip > 0.0 && grad_norm > c.grad_clip {
            c.grad_clip / (grad_norm + 1e-6)
        } else {
            1.0
        };
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for (i, (_, p)) in self.params.iter().enumerate() {
            let theta = p.as_tensor();
            let mut g = (&gs[i] * clip)?;
            if c.weight_decay > 0.0 && !c.decoupled {
                g = (g + (theta * c.weight_decay)?)?;
            }
            self.m[i] = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            self.v[i] = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let second = if c.amsgrad {
                self.vmax[i] = self.vmax[i].maximum(&self.v[i])?;
                &self.vmax[i]
            } else {
                &self.v[i]
            };
            // PyTorch's form: θ -= lr/bc1 · m / (√v / √bc2 + eps).
            let denom = ((second / bc2)?.sqrt()? + c.eps)?;
            let mut next = (theta - ((&self.m[i] / &denom)? * (lr / bc1))?)?;
            if c.weight_decay > 0.0 && c.decoupled {
                next = (next - (theta * (lr * c.weight_decay))?)?;
            }
            p.set(&next)?;
        }
        Ok(StepInfo { grad_norm, lr })
    }

    /// The moments as named tensors (`m.<name>`, `v.<name>`, `vmax.<name>`), for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
            out.insert(format!("vmax.{name}"), self.vmax[i].clone());
        }
        out
    }

    /// Restores the moments from [`state_tensors`](Self::state_tensors) and the step count.
    ///
    /// # Errors
    /// A moment missing or of the wrong shape (the checkpoint is of another model).
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> std::result::Result<(), String> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (kind, slot) in [
                ("m", &mut self.m[i]),
                ("v", &mut self.v[i]),
                ("vmax", &mut self.vmax[i]),
            ] {
                let key = format!("{kind}.{name}");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| format!("optimiser state `{key}` missing"))?;
                if t.dims() != p.dims() {
                    return Err(format!(
                        "optimiser state `{key}` has shape {:?}, expected {:?}",
                        t.dims(),
                        p.dims()
                    ));
                }
                *slot = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Adam with AMSGrad and L2 decay, against the update rule computed by hand in f64.
    #[test]
    fn matches_the_update_rule() {
        let p = Var::from_vec(vec![1.0f32, -2.0], 2, &Device::Cpu).unwrap();
        let cfg = AdamConfig {
            grad_clip: 0.0,
            ..Default::default()
        };
        let mut opt = Adam::new(vec![("p".into(), p.clone())], cfg.clone()).unwrap();
        let (mut th, mut m, mut v, mut vmax) = ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2], [0.0f64; 2]);
        for step in 1..=5 {
            // loss = Σ (step · θ²) / 2 → grad = step · θ
            let loss = (p.as_tensor().sqr().unwrap().sum_all().unwrap() * (step as f64 / 2.0)).unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 100).unwrap();
            for i in 0..2 {
                let g = step as f64 * th[i] + cfg.weight_decay * th[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                vmax[i] = vmax[i].max(v[i]);
                let (bc1, bc2) = (1.0 - 0.9f64.powi(step), 1.0 - 0.999f64.powi(step));
                th[i] -= cfg.lr / bc1 * m[i] / ((vmax[i] / bc2).sqrt() + cfg.eps);
            }
        }
        let got = p.as_tensor().to_vec1::<f32>().unwrap();
        for i in 0..2 {
            assert!((f64::from(got[i]) - th[i]).abs() < 1e-5, "{got:?} vs {th:?}");
        }
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        let p = Var::from_vec(vec![3.0f32, 4.0], 2, &Device::Cpu).unwrap();
        let cfg = AdamConfig {
            grad_clip: 1.0,
            ..Default::default()
        };
        let mut opt = Adam::new(vec![("p".into(), p.clone())], cfg).unwrap();
        let grads = (p.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5)
            .unwrap()
            .backward()
            .unwrap();
        let info = opt.step(&grads, 10).unwrap();
        assert!((info.grad_norm - 5.0).abs() < 1e-5);
    }

    #[test]
    fn schedules() {
        let c = AdamConfig {
            lr: 1.0,
            warmup_steps: 10,
            schedule: Schedule::Cosine,
            min_lr_ratio: 0.1,
            ..Default::default()
        };
        assert!((c.lr_at(5, 110) - 0.5).abs() < 1e-12);
        assert!((c.lr_at(10, 110) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(110, 110) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(60, 110) - 0.55).abs() < 1e-12);
    }
}
