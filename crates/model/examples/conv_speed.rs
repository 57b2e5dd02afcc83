//! GFLOP/s of the conv1d op at training shapes:
//! `cargo run --release -p voxswap-model --example conv_speed [shape index]`.
use std::time::Instant;

use candle_core::{Device, Tensor, Var};

fn main() -> candle_core::Result<()> {
    // An optional argument picks one shape (0..4), for profiling.
    let only: Option<usize> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    for (i, (b, c_in, t, c_out, k)) in [
        (16, 128, 132, 128, 5),
        (16, 80, 135, 128, 8),
        (16, 1104, 128, 128, 1),
        (1, 128, 1004, 128, 5),
    ]
    .into_iter()
    .enumerate()
    {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let x = Var::randn(0f32, 1.0, (b, c_in, t), &Device::Cpu)?;
        let w = Var::randn(0f32, 1.0, (c_out, c_in, k), &Device::Cpu)?;
        let flops = 2.0 * (b * c_out * (t - k + 1) * c_in * k) as f64;
        let n = 20;
        let t0 = Instant::now();
        for _ in 0..n {
            voxswap_model::conv::conv1d(&x, &w, 1)?;
        }
        let fwd = t0.elapsed().as_secs_f64() / n as f64;
        let t0 = Instant::now();
        for _ in 0..n {
            let y = voxswap_model::conv::conv1d(&x, &w, 1)?;
            y.sum_all()?.backward()?;
        }
        let all = t0.elapsed().as_secs_f64() / n as f64;
        let cand = {
            let t0 = Instant::now();
            for _ in 0..n {
                x.conv1d(&w, 0, 1, 1, 1)?;
            }
            t0.elapsed().as_secs_f64() / n as f64
        };
        println!(
            "[{b},{c_in},{t}]*[{c_out},{c_in},{k}]: fwd {:.2} ms ({:.0} GFLOP/s; candle {:.2} ms), fwd+bwd {:.2} ms ({:.0} GFLOP/s)",
            fwd * 1e3,
            flops / fwd / 1e9,
            cand * 1e3,
            all * 1e3,
            3.0 * flops / all / 1e9
        );
        let _ = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?;
    }
    Ok(())
}
