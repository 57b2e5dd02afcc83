//! Times the phases of a training step (forward, loss, backward, optimiser) for a preset, with
//! each op parallel, then the step as the trainer runs it (batch shards per thread):
//! `cargo run --release -p voxswap-train --example step_phases -- stream [steps] [batch]`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use voxswap_model::{init, AdaInVc, ModelConfig};
use voxswap_train::loss::ae_loss;
use voxswap_train::optim::{Adam, AdamConfig};
use voxswap_train::step::{forward_backward, StepBatch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("VOXSWAP_DEFAULT_MALLOC").is_none() {
        voxswap_train::keep_freed_memory();
    }
    let args: Vec<String> = std::env::args().collect();
    let cfg = ModelConfig::preset(args.get(1).map_or("stream", String::as_str))?;
    let steps: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let batch: usize = args.get(3).map_or(Ok(16), |s| s.parse())?;
    let dev = Device::Cpu;
    let vars = VarMap::new();
    let model = AdaInVc::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &dev))?;
    init::init_pytorch_like(&vars, 0)?;
    let params = vars
        .data()
        .lock()
        .map_err(|_| "lock")?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let trained = vars.all_vars();
    let mut opt = Adam::new(params, AdamConfig::default())?;
    let x = Tensor::randn(0f32, 1.0, (batch, 80, 128), &dev)?;
    let noise = Tensor::randn(0f32, 1.0, (batch, cfg.content.c_out, 128 / cfg.frame_multiple()), &dev)?;
    let mut t = [0f64; 4];
    for i in 0..=steps {
        let t0 = Instant::now();
        let out = model.forward(&x, &noise)?;
        let t1 = Instant::now();
        let loss = ae_loss(&x, &out, 10.0, 1.0)?;
        let t2 = Instant::now();
        let grads = loss.total.backward()?;
        let t3 = Instant::now();
        opt.step(&grads, 1_000_000)?;
        let t4 = Instant::now();
        if i > 0 {
            for (acc, d) in t.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
                *acc += d.as_secs_f64() * 1e3 / steps as f64;
            }
        }
    }
    println!(
        "{}: forward {:.1} ms, loss {:.1} ms, backward {:.1} ms, optimiser {:.1} ms, total {:.1} ms",
        cfg.preset,
        t[0],
        t[1],
        t[2],
        t[3],
        t.iter().sum::<f64>()
    );
    // As the trainer runs it: one batch shard per thread (voxswap_train::step).
    let mut t = [0f64; 2];
    for i in 0..=steps {
        let t0 = Instant::now();
        let sg = forward_backward(&model, &trained, &StepBatch::plain(&x, &noise), 10.0, 1.0)?;
        let t1 = Instant::now();
        opt.step(&sg.grads, 1_000_000)?;
        let t2 = Instant::now();
        if i > 0 {
            for (acc, d) in t.iter_mut().zip([t1 - t0, t2 - t1]) {
                *acc += d.as_secs_f64() * 1e3 / steps as f64;
            }
        }
    }
    println!(
        "{}: sharded over {} thread(s): forward+loss+backward {:.1} ms, optimiser {:.1} ms, total {:.1} ms",
        cfg.preset,
        voxswap_model::par::threads(),
        t[0],
        t[1],
        t.iter().sum::<f64>()
    );
    Ok(())
}
