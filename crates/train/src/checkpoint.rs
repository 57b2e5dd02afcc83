//! Checkpoints: a folder `step-NNNNNNNN/` per checkpoint with the weights, the optimiser state,
//! the model config and `state.json` (step, seed). Written to a temporary folder and renamed,
//! so a checkpoint is either whole or absent; the newest `keep` are kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use voxswap_model::{io, ModelConfig};

use crate::error::file_err;
use crate::optim::Adam;
use crate::{Error, Result};

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Optimiser steps taken.
    pub step: u64,
    /// The run's seed (batches and noise of step `n` derive from it and `n`).
    pub seed: u64,
}

const OPTIM_FILE: &str = "optim.safetensors";
/// Weights of training-only layers (the speaker adversary, the phonetic head, the mel
/// discriminator), never part of a
/// model folder.
pub(crate) const AUX_FILE: &str = "training_only.safetensors";
/// [`AUX_FILE`]'s name in checkpoints written before the phonetic head existed.
const OLD_AUX_FILE: &str = "adversary.safetensors";

/// What a training-only tensor belongs to, for messages: the recipe setting that adds it.
fn layer_of(name: &str) -> &'static str {
    if name.starts_with("phonetic.") {
        "the phonetic head (train.lambda_phone)"
    } else if name.starts_with("discriminator.") {
        "the mel discriminator (train.lambda_gan)"
    } else {
        "the speaker adversary (train.lambda_adv)"
    }
}
const STATE_FILE: &str = "state.json";

/// The checkpoint folders under `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join(STATE_FILE).is_file().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Writes a checkpoint of `vars` (and of the training-only `aux`, if any) and `opt` at
/// `opt.step` under `dir`, then deletes all but the newest `keep`. Returns its folder.
///
/// # Errors
/// [`Error::File`] when it cannot be written; older checkpoints are then untouched.
pub fn save(
    dir: &Path,
    cfg: &ModelConfig,
    vars: &VarMap,
    aux: Option<&VarMap>,
    opt: &Adam,
    seed: u64,
    keep: usize,
) -> Result<PathBuf> {
    save_with(dir, opt, seed, keep, &|tmp: &Path| {
        io::save_model(tmp, cfg, vars)?;
        if let Some(aux) = aux {
            aux.save(tmp.join(AUX_FILE))
                .map_err(|e| file_err(&tmp.join(AUX_FILE), e))?;
        }
        Ok(())
    })
}

/// Writes a checkpoint at `opt.step` under `dir`: `write` puts the weights (and whatever
/// describes them) into the folder it is given, then the optimiser state and `state.json` are
/// added and the folder renamed into place; all but the newest `keep` are deleted. Returns its
/// folder.
///
/// # Errors
/// [`Error::File`] when it cannot be written; older checkpoints are then untouched.
pub fn save_with(
    dir: &Path,
    opt: &Adam,
    seed: u64,
    keep: usize,
    write_weights: &dyn Fn(&Path) -> Result<()>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, format!("cannot create: {e}")))?;
    let final_dir = dir.join(format!("step-{:08}", opt.step));
    let tmp = dir.join(format!(".tmp-step-{:08}-{}", opt.step, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let write = || -> Result<()> {
        std::fs::create_dir_all(&tmp).map_err(|e| file_err(&tmp, format!("cannot create: {e}")))?;
        write_weights(&tmp)?;
        candle_core::safetensors::save(&opt.state_tensors()?, tmp.join(OPTIM_FILE))
            .map_err(|e| file_err(&tmp.join(OPTIM_FILE), e))?;
        let state = serde_json::to_string_pretty(&State { step: opt.step, seed }).map_err(|e| file_err(&tmp, e))?;
        std::fs::write(tmp.join(STATE_FILE), state).map_err(|e| file_err(&tmp.join(STATE_FILE), e))?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| file_err(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| file_err(&final_dir, e))?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let all = list(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(final_dir)
}

/// The `state.json` of checkpoint folder `ckpt`.
///
/// # Errors
/// A missing or invalid file, named.
pub fn read_state(ckpt: &Path) -> Result<State> {
    let state_path = ckpt.join(STATE_FILE);
    serde_json::from_str(
        &std::fs::read_to_string(&state_path).map_err(|e| file_err(&state_path, format!("cannot read: {e}")))?,
    )
    .map_err(|e| file_err(&state_path, format!("invalid: {e}")))
}

/// Restores `opt` from checkpoint folder `ckpt` (at `state.step`).
///
/// # Errors
/// A missing or mismatched optimiser state, named.
pub fn restore_optim(ckpt: &Path, opt: &mut Adam, state: &State, device: &Device) -> Result<()> {
    let optim_path = ckpt.join(OPTIM_FILE);
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&optim_path, device)
        .map_err(|e| file_err(&optim_path, format!("not a readable safetensors file: {e}")))?;
    opt.load_state(&tensors, state.step).map_err(|e| Error::File {
        path: optim_path,
        detail: e,
    })
}

/// Restores `vars` (and the training-only `aux`, if any) and `opt` from checkpoint folder
/// `ckpt`; returns its state.
///
/// # Errors
/// A missing, corrupt or mismatched checkpoint, named (also a checkpoint without the
/// training-only layers the recipe asks for, or with ones it does not).
pub fn restore(
    ckpt: &Path,
    cfg: &ModelConfig,
    vars: &VarMap,
    aux: Option<&VarMap>,
    opt: &mut Adam,
    device: &Device,
) -> Result<State> {
    let state = read_state(ckpt)?;
    let mut saved_cfg = io::read_config(ckpt)?;
    // How the model converts, not what it learned: checkpoints from before the setting existed
    // resume under the recipe's.
    saved_cfg.norm_refresh = cfg.norm_refresh;
    if &saved_cfg != cfg {
        return Err(file_err(
            ckpt,
            "was trained with another model configuration than the recipe's",
        ));
    }
    let weights = io::read_weights(&io::weights_path(ckpt), cfg, device)?;
    for (name, var) in vars
        .data()
        .lock()
        .map_err(|_| file_err(ckpt, "parameter map lock poisoned"))?
        .iter()
    {
        let t = weights
            .get(name)
            .ok_or_else(|| file_err(ckpt, format!("tensor `{name}` missing")))?;
        var.set(t)?;
    }
    let aux_path = [AUX_FILE, OLD_AUX_FILE]
        .iter()
        .map(|f| ckpt.join(f))
        .find(|p| p.is_file());
    let mut saved = match &aux_path {
        Some(p) => candle_core::safetensors::load(p, device)
            .map_err(|e| file_err(p, format!("not a readable safetensors file: {e}")))?,
        None => HashMap::new(),
    };
    if let Some(aux) = aux {
        for (name, var) in aux
            .data()
            .lock()
            .map_err(|_| file_err(ckpt, "parameter map lock poisoned"))?
            .iter()
        {
            let t = saved.remove(name).ok_or_else(|| {
                file_err(
                    ckpt,
                    format!("was trained without {} that the recipe asks for", layer_of(name)),
                )
            })?;
            if t.dims() != var.dims() {
                return Err(file_err(
                    ckpt,
                    format!(
                        "tensor `{name}` of {} is {:?}, the recipe's is {:?} (another corpus or transcripts?)",
                        layer_of(name),
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t)?;
        }
    }
    if let Some(name) = saved.keys().min() {
        return Err(file_err(
            ckpt,
            format!("was trained with {}; the recipe has none", layer_of(name)),
        ));
    }
    restore_optim(ckpt, opt, &state, device)?;
    Ok(state)
}
