//! Model benchmarks: a training step (forward, backward, AMSGrad Adam; the trainer's step, one
//! batch shard per thread) on a batch of
//! 16 × 80 mels × 128 frames, and converting 10 s (1000 frames), for the paper and the stream
//! presets. `scripts/dev/bench_vs_pytorch.sh` runs these and the PyTorch reference in one go.

use std::hint::black_box;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use voxswap_model::{init, AdaInVc, ModelConfig};
use voxswap_train::optim::{Adam, AdamConfig};
use voxswap_train::step::{forward_backward, StepBatch};

fn build(cfg: &ModelConfig) -> (AdaInVc, VarMap) {
    let vars = VarMap::new();
    let model = AdaInVc::new(cfg, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).expect("model");
    init::init_pytorch_like(&vars, 0).expect("init");
    (model, vars)
}

fn models(c: &mut Criterion) {
    // As `voxswap` does at start-up.
    voxswap_train::keep_freed_memory();
    let dev = Device::Cpu;
    let mut g = c.benchmark_group("model");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2));
    for cfg in [ModelConfig::paper(), ModelConfig::stream()] {
        let (model, vars) = build(&cfg);
        let params = vars
            .data()
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let trained = vars.all_vars();
        let mut opt = Adam::new(params, AdamConfig::default()).expect("adam");
        let x = Tensor::randn(0f32, 1.0, (16, 80, 128), &dev).expect("x");
        let noise = Tensor::randn(0f32, 1.0, (16, cfg.content.c_out, 128 / cfg.frame_multiple()), &dev).expect("noise");
        g.bench_function(format!("train_step_{}", cfg.preset), |b| {
            b.iter(|| {
                // As the trainer runs it: one batch shard per thread.
                let sg = forward_backward(&model, &trained, &StepBatch::plain(&x, &noise), 10.0, 1.0)
                    .expect("forward and backward");
                black_box(opt.step(&sg.grads, 1_000_000).expect("step"));
            })
        });
        let src = Tensor::randn(0f32, 1.0, (1, 80, 1000), &dev).expect("src");
        let spk = model
            .speaker
            .forward(&src.narrow(2, 0, 300).expect("ref"))
            .expect("spk");
        g.bench_function(format!("convert_10s_{}", cfg.preset), |b| {
            b.iter(|| black_box(model.convert(&src, &spk).expect("convert")))
        });
    }
    g.finish();
}

criterion_group!(benches, models);
criterion_main!(benches);
