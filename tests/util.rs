//! Helpers for the integration tests: run the binary, find the fixtures.

use std::path::{Path, PathBuf};
use std::process::Output;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

pub fn voxswap(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_voxswap"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().expect("running voxswap")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A successful run's stdout (the whole output in the failure message otherwise).
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    stdout(o)
}

/// A failed run: non-zero exit, one line on stderr that names `needle_path` and contains
/// `problem`, and no panic.
#[track_caller]
pub fn assert_clean_error(o: &Output, needle_path: &Path, problem: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    let name = needle_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(err.contains(&name), "error does not name {name}: {err}");
    assert!(
        err.to_lowercase().contains(&problem.to_lowercase()),
        "error does not say '{problem}': {err}"
    );
}

/// Mono 16-bit WAV bytes (via hound) of `samples` at `rate`.
pub fn write_pcm16(path: &Path, samples: &[i16], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

pub fn write_f32(path: &Path, samples: &[f32], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Runs the binary with extra environment variables (`("NAME", Some(value))`, or `None` to
/// remove one), in `cwd` when given.
pub fn voxswap_env(
    args: &[&dyn AsRef<std::ffi::OsStr>],
    env: &[(&str, Option<&dyn AsRef<std::ffi::OsStr>>)],
    cwd: Option<&Path>,
) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_voxswap"));
    for a in args {
        cmd.arg(a);
    }
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.output().expect("running voxswap")
}

/// A model folder: the tiny-stream preset trained for 600 steps on the synthetic corpus
/// (recipes/synth/config_tiny.toml with `preset = "tiny-stream"`), copied to `dir/model` so that
/// a bank can be created inside it.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(data("model/tiny-stream-synth").join(f), m.join(f)).unwrap();
    }
    m
}

/// Puts the parity fixture's tiny neural vocoder (random weights, the model's frontend) into
/// model folder `m`, as `vocoder.json` and `vocoder.safetensors` (the fixture's `param.*`
/// tensors under their own names).
pub fn add_tiny_vocoder(m: &Path) {
    std::fs::copy(data("model/vocoder_tiny.json"), m.join("vocoder.json")).unwrap();
    let fix =
        candle_core::safetensors::load(data("model/vocoder_tiny.safetensors"), &candle_core::Device::Cpu).unwrap();
    let params: std::collections::HashMap<String, candle_core::Tensor> = fix
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|k| (k.to_string(), v)))
        .collect();
    assert!(!params.is_empty());
    candle_core::safetensors::save(&params, m.join("vocoder.safetensors")).unwrap();
}

/// Integrated loudness (EBU R128) of a file's mono mix, LUFS.
pub fn lufs(path: &Path) -> f64 {
    let a = voxswap_audio::read_mono(path, voxswap_audio::ChannelMix::Downmix).unwrap();
    let mut m = voxswap_audio::LoudnessMeter::new(a.sample_rate).unwrap();
    m.push(&a.samples);
    m.lufs().unwrap()
}

/// Mode bits (0o777) of `path`, and those a new file gets in its folder under this process's
/// umask.
#[cfg(unix)]
pub fn modes(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::PermissionsExt;
    let probe = path.with_extension("probe");
    std::fs::write(&probe, b"").unwrap();
    let want = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
    std::fs::remove_file(&probe).unwrap();
    (std::fs::metadata(path).unwrap().permissions().mode() & 0o777, want)
}

/// Starts the binary with `args` and `env`, stdout discarded and stderr piped, for tests that
/// signal it or watch it while it runs.
pub fn spawn_voxswap(args: &[&dyn AsRef<std::ffi::OsStr>], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_voxswap"));
    for a in args {
        cmd.arg(a);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}
