//! candle's CPU conv1d and conv_transpose1d (and so conv1d's gradients) against direct sums.
//! Guards the patch in vendor/candle-core: without it the weight and input gradients of conv1d
//! were wrong by as much as the gradients themselves.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor, Var};

fn randn(shape: (usize, usize, usize)) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
}

#[test]
fn conv1d_gradients_equal_direct_sums() {
    for (cin, cout, k, t, stride) in [
        (3, 4, 1, 10, 1),
        (16, 80, 1, 64, 1),
        (16, 16, 5, 68, 1),
        (16, 16, 5, 36, 2),
        (16, 16, 5, 35, 2),
        (80, 4, 4, 67, 1),
    ] {
        let x = Var::from_tensor(&randn((2, cin, t))).unwrap();
        let w = Var::from_tensor(&randn((cout, cin, k))).unwrap();
        let t_out = (t - k) / stride + 1;
        let g = randn((2, cout, t_out));
        let y = x.as_tensor().conv1d(w.as_tensor(), 0, stride, 1, 1).unwrap();
        let grads = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = grads.get(w.as_tensor()).unwrap().to_vec3::<f32>().unwrap();
        let gx = grads.get(x.as_tensor()).unwrap().to_vec3::<f32>().unwrap();
        let (xv, wv, gv) = (
            x.as_tensor().to_vec3::<f32>().unwrap(),
            w.as_tensor().to_vec3::<f32>().unwrap(),
            g.to_vec3::<f32>().unwrap(),
        );
        // dL/dw[o,i,j] = Σ_b Σ_τ g[b,o,τ] · x[b,i,τ·stride + j]
        for o in 0..cout {
            for i in 0..cin {
                for j in 0..k {
                    let s: f32 = (0..2)
                        .map(|b| {
                            (0..t_out)
                                .map(|tau| gv[b][o][tau] * xv[b][i][tau * stride + j])
                                .sum::<f32>()
                        })
                        .sum();
                    assert!(
                        (s - gw[o][i][j]).abs() < 1e-3,
                        "weight grad ({cin},{cout},{k},{t},{stride})"
                    );
                }
            }
        }
        // dL/dx[b,i,p] = Σ_o Σ_j g[b,o,(p − j)/stride] · w[o,i,j]
        for b in 0..2 {
            for i in 0..cin {
                for p in 0..t {
                    let mut s = 0.0f32;
                    for o in 0..cout {
                        for j in 0..k.min(p + 1) {
                            if (p - j) % stride == 0 && (p - j) / stride < t_out {
                                s += gv[b][o][(p - j) / stride] * wv[o][i][j];
                            }
                        }
                    }
                    assert!(
                        (s - gx[b][i][p]).abs() < 1e-3,
                        "input grad ({cin},{cout},{k},{t},{stride})"
                    );
                }
            }
        }
    }
}
