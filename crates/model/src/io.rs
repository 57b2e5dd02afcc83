//! Model folders: `config.json` beside `model.safetensors`, written atomically and checked
//! tensor by tensor when read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::{AdaInVc, Error, ModelConfig, Result};

/// File name of the configuration in a model folder.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights in a model folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";

pub(crate) fn file_err(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Reads and validates `dir/config.json`.
///
/// # Errors
/// A missing or unreadable file, invalid JSON, an unknown field, an inconsistent configuration.
pub fn read_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, format!("cannot read: {e}")))?;
    let cfg: ModelConfig =
        serde_json::from_str(&text).map_err(|e| file_err(&path, format!("invalid model config: {e}")))?;
    cfg.validate().map_err(|e| file_err(&path, e))?;
    Ok(cfg)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub(crate) fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.part-{}", std::process::id()));
    // The permissions of a file created here (the user's umask applied). safetensors writes
    // through a private temporary file of its own (mode 0600) renamed onto `tmp`; the result
    // gets these back, so that a model folder is as readable as any other file the user makes.
    let mode = std::fs::File::create(&tmp)
        .and_then(|f| f.metadata())
        .map(|m| m.permissions())
        .map_err(|e| file_err(&tmp, format!("cannot write: {e}")))?;
    let result = write(&tmp)
        .and_then(|()| std::fs::set_permissions(&tmp, mode).map_err(|e| file_err(&tmp, format!("cannot write: {e}"))))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| file_err(path, format!("cannot write: {e}"))));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves a model folder (created if missing): the configuration and the parameters of `vars`.
///
/// # Errors
/// The folder cannot be created or a file cannot be written; nothing half-written is left.
pub fn save_model(dir: &Path, cfg: &ModelConfig, vars: &VarMap) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, format!("cannot create folder: {e}")))?;
    let json = serde_json::to_string_pretty(cfg).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&dir.join(WEIGHTS_FILE), |tmp| {
        vars.save(tmp).map_err(|e| file_err(tmp, e))
    })?;
    write_atomic(&dir.join(CONFIG_FILE), |tmp| {
        std::fs::write(tmp, json.as_bytes()).map_err(|e| file_err(tmp, format!("cannot write: {e}")))
    })
}

/// The name and shape of every parameter a configuration needs.
pub fn expected_tensors(cfg: &ModelConfig) -> Result<HashMap<String, Vec<usize>>> {
    let vars = VarMap::new();
    AdaInVc::new(cfg, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu))?;
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::Config("parameter map lock poisoned".into()))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect())
}

/// Reads `path` (safetensors) and checks that it holds exactly the tensors `cfg` needs, with
/// their shapes; returns them as f32 on `device`.
///
/// # Errors
/// A missing or corrupt file, a missing, extra or wrongly shaped tensor, each named.
pub fn read_weights(path: &Path, cfg: &ModelConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(file_err(path, "no such file"));
    }
    let tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| file_err(path, format!("not a readable safetensors file: {e}")))?;
    let expected = expected_tensors(cfg)?;
    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    for name in names {
        let t = tensors.get(name).ok_or_else(|| Error::Tensor {
            path: path.to_path_buf(),
            name: name.clone(),
            detail: "missing (does config.json belong to these weights?)".into(),
        })?;
        if t.dims() != expected[name].as_slice() {
            return Err(Error::Tensor {
                path: path.to_path_buf(),
                name: name.clone(),
                detail: format!(
                    "shape {:?} in the file, the model expects {:?}",
                    t.dims(),
                    expected[name]
                ),
            });
        }
    }
    if let Some(extra) = tensors.keys().filter(|k| !expected.contains_key(*k)).min() {
        return Err(Error::Tensor {
            path: path.to_path_buf(),
            name: extra.clone(),
            detail: "not part of this model (does config.json belong to these weights?)".into(),
        });
    }
    tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?)))
        .collect::<Result<HashMap<_, _>>>()
}

/// Loads a model folder for inference.
///
/// # Errors
/// See [`read_config`] and [`read_weights`].
pub fn load_model(dir: &Path, device: &Device) -> Result<AdaInVc> {
    let cfg = read_config(dir)?;
    let tensors = read_weights(&dir.join(WEIGHTS_FILE), &cfg, device)?;
    AdaInVc::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, device))
}

/// The folder's weights path.
pub fn weights_path(dir: &Path) -> PathBuf {
    dir.join(WEIGHTS_FILE)
}

/// Writes `tensors` to `path` (safetensors, atomically), in half precision when `half`. Every
/// weight must fit half precision's range: one that does not is an error naming it, not an
/// infinity in the file.
///
/// Half precision halves the file and what a frame reads from memory in the frame-by-frame
/// paths ([`crate::FrameModel`], [`crate::FrameVocoder`] read weights that are exactly halves
/// as halves); every weight moves by at most 2⁻¹¹ of itself.
///
/// # Errors
/// A weight out of half precision's range; a file that cannot be written.
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>, half: bool) -> Result<()> {
    let mut out = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = if half {
            let h = t.to_dtype(DType::F16)?;
            let finite = h
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(Error::Tensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    detail: "has a value beyond half precision's range (±65504): export it in full precision".into(),
                });
            }
            h
        } else {
            t.to_dtype(DType::F32)?
        };
        out.insert(name.clone(), t);
    }
    write_atomic(path, |tmp| {
        candle_core::safetensors::save(&out, tmp).map_err(|e| file_err(tmp, e))
    })
}

/// Copies the model of folder or checkpoint `src` (`config.json`, `model.safetensors`) into
/// model folder `dst` (created if missing; other files there are kept), checked tensor by
/// tensor as [`read_weights`] checks them, in half precision when `half` (see
/// [`save_tensors`]). Files are replaced atomically.
///
/// # Errors
/// See [`read_config`], [`read_weights`] and [`save_tensors`]; a folder that cannot be created.
pub fn export_model(src: &Path, dst: &Path, half: bool) -> Result<()> {
    let cfg = read_config(src)?;
    let tensors = read_weights(&src.join(WEIGHTS_FILE), &cfg, &Device::Cpu)?;
    std::fs::create_dir_all(dst).map_err(|e| file_err(dst, format!("cannot create folder: {e}")))?;
    save_tensors(&dst.join(WEIGHTS_FILE), &tensors, half)?;
    let json = serde_json::to_string_pretty(&cfg).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&dst.join(CONFIG_FILE), |tmp| {
        std::fs::write(tmp, json.as_bytes()).map_err(|e| file_err(tmp, format!("cannot write: {e}")))
    })
}

/// Rounds every variable of `vars` to the nearest half-precision number, in place: the weights
/// `voxswap export --half` writes, for training-side code and tests that want them without a
/// file.
///
/// # Errors
/// A variable that cannot be set.
pub fn round_to_half(vars: &VarMap) -> Result<()> {
    for v in vars.all_vars() {
        v.set(&v.as_tensor().to_dtype(DType::F16)?.to_dtype(DType::F32)?)?;
    }
    Ok(())
}
