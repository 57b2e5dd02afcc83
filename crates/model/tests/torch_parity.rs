//! Parity with the PyTorch reference (scripts/dev/torch_reference/adain_vc.py), against the fixture
//! that scripts/dev/torch_reference/make_fixtures.py made: same weights, same input and noise; the
//! forward outputs agree within 1e-4 and every parameter's gradient of the loss within 1e-3
//! relative (max-norm of the difference over max-norm of the reference). The reference runs in
//! float64, so these bounds measure voxswap's float32 error and nothing else.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use voxswap_model::{AdaInVc, ModelConfig};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/model")
        .join(name)
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn setup(preset: &str) -> (AdaInVc, VarMap, HashMap<String, Tensor>) {
    let cfg: ModelConfig =
        serde_json::from_str(&std::fs::read_to_string(data(&format!("{preset}_config.json"))).unwrap()).unwrap();
    let fix = candle_core::safetensors::load(data(&format!("adain_vc_{preset}.safetensors")), &Device::Cpu).unwrap();
    let vars = VarMap::new();
    let model = AdaInVc::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    let mut n = 0;
    for (name, var) in vars.data().lock().unwrap().iter() {
        let want = fix
            .get(&format!("param.{name}"))
            .unwrap_or_else(|| panic!("reference has no {name}"));
        assert_eq!(var.dims(), want.dims(), "{name}");
        var.set(want).unwrap();
        n += 1;
    }
    let n_ref = fix.keys().filter(|k| k.starts_with("param.")).count();
    assert_eq!(n, n_ref, "parameter count differs from the reference");
    (model, vars, fix)
}

/// The reference trainer's loss: 10 · L1 + 0.5 · KL (λ_kl as in the fixture), + the VQ loss.
fn loss(x: &Tensor, out: &voxswap_model::AeOutput) -> (Tensor, Tensor, Tensor) {
    let rec = (&out.mel - x).unwrap().abs().unwrap().mean_all().unwrap();
    let kl = ((out.log_var.exp().unwrap() + out.mu.sqr().unwrap()).unwrap() - 1.0)
        .unwrap()
        .sub(&out.log_var)
        .unwrap()
        .mean_all()
        .unwrap()
        .affine(0.5, 0.0)
        .unwrap();
    let mut total = (rec.affine(10.0, 0.0).unwrap() + kl.affine(0.5, 0.0).unwrap()).unwrap();
    if let Some(vq) = &out.vq {
        total = (total + vq).unwrap();
    }
    (total, rec, kl)
}

/// The paper's model, the causal streaming model, the causal model with reference attention and
/// the one with a vector-quantised code, each against its reference.
const PRESETS: [&str; 4] = ["tiny", "tiny-stream", "tiny-attn", "tiny-vq"];

#[test]
fn forward_matches_pytorch() {
    for preset in PRESETS {
        forward_matches(preset);
    }
}

fn forward_matches(preset: &str) {
    let (model, _vars, fix) = setup(preset);
    let out = model.forward(&fix["input"], &fix["noise"]).unwrap();
    for (name, got) in [
        ("out.mu", &out.mu),
        ("out.log_sigma", &out.log_var),
        ("out.emb", &out.speaker),
        ("out.dec", &out.mel),
    ] {
        let want = &fix[name];
        assert_eq!(got.dims(), want.dims(), "{name}");
        let err = max_abs(&(got - want).unwrap());
        assert!(err <= 1e-4, "{preset} {name}: max difference {err}");
    }
    let (total, rec, kl) = loss(&fix["input"], &out);
    assert_eq!(out.vq.is_some(), fix.contains_key("out.vq"), "{preset}: VQ loss");
    let vq = out.vq.clone().unwrap_or_else(|| total.zeros_like().unwrap());
    let mut parts = vec![("out.loss", &total), ("out.rec", &rec), ("out.kl", &kl)];
    if fix.contains_key("out.vq") {
        parts.push(("out.vq", &vq));
    }
    for (name, got) in parts {
        let want = fix[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        let got = got.to_scalar::<f32>().unwrap();
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{name}: {got} vs {want}"
        );
    }
}

#[test]
fn gradients_match_pytorch() {
    for preset in PRESETS {
        gradients_match(preset);
    }
}

fn gradients_match(preset: &str) {
    let (model, vars, fix) = setup(preset);
    let out = model.forward(&fix["input"], &fix["noise"]).unwrap();
    let (total, _, _) = loss(&fix["input"], &out);
    let grads = total.backward().unwrap();
    let vars: Vec<(String, Var)> = vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Biases followed by instance norm have a true gradient of zero (the norm removes
    // constants): their reference holds float64 rounding, ours float32 rounding. So relative
    // errors are taken against at least 1e-4 of the largest gradient anywhere.
    let floor = vars
        .iter()
        .map(|(name, _)| max_abs(&fix[&format!("grad.{name}")]))
        .fold(0.0, f32::max)
        * 1e-4;
    let mut worst = (0.0f32, String::new());
    for (name, var) in &vars {
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let want = &fix[&format!("grad.{name}")];
        let rel = max_abs(&(got - want).unwrap()) / max_abs(want).max(floor);
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
        assert!(rel <= 1e-3, "{preset} {name}: relative gradient error {rel}");
    }
    eprintln!("{preset}: worst relative gradient error {:.2e} ({})", worst.0, worst.1);
}
