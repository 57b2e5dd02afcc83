//! `voxswap train`: train a model from a recipe, resumably, with progress and curves.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use voxswap_train::recipe::Recipe;
use voxswap_train::trainer::{self, LogRecord, Observer, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe (TOML): data, model preset, steps, optimiser, output folder. A run resumes from
    /// the newest checkpoint in its output folder.
    #[arg(long, value_name = "TOML")]
    config: PathBuf,
    /// Where to compute: cpu, cuda:N (build with --features cuda) or metal (--features metal).
    /// On a GPU, one training step is first run there and on the CPU and every gradient
    /// compared; training is refused if they differ. GPU training is unverified: no GPU run
    /// has been recorded yet (BENCHMARKS.md).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: DeviceArg,
    /// Only fill the feature cache (log-mels of the whole corpus), then stop.
    #[arg(long)]
    features_only: bool,
    /// Train the neural vocoder of the recipe's [vocoder] section instead of the model (same
    /// corpus; its run folder is [vocoder] dir, by default vocoder/ in the model's). A model
    /// folder gets it by copying vocoder.json and vocoder.safetensors from a checkpoint.
    #[arg(long, conflicts_with = "features_only")]
    vocoder: bool,
    /// Write the newest checkpoint's weights, in half precision, with its step, to the
    /// recipe's [train] snapshot folder (replacing what is there), then stop: the copy a long
    /// run keeps in the repository so that a new machine resumes from it.
    #[arg(long, conflicts_with_all = ["features_only", "vocoder"])]
    snapshot: bool,
}

#[derive(Debug, Clone)]
pub enum DeviceArg {
    Cpu,
    Cuda(usize),
    Metal,
}

fn parse_device(s: &str) -> Result<DeviceArg, String> {
    match s {
        "cpu" => Ok(DeviceArg::Cpu),
        "metal" => Ok(DeviceArg::Metal),
        _ => match s.strip_prefix("cuda:").map(str::parse) {
            Some(Ok(n)) => Ok(DeviceArg::Cuda(n)),
            _ => Err(format!("`{s}` is not a device: use cpu, cuda:N or metal")),
        },
    }
}

impl DeviceArg {
    pub fn open(&self) -> anyhow::Result<Device> {
        Ok(match self {
            Self::Cpu => Device::Cpu,
            Self::Cuda(n) => Device::new_cuda(*n).with_context(|| format!("opening cuda:{n}"))?,
            Self::Metal => Device::new_metal(0).context("opening the Metal device")?,
        })
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

struct Bar {
    bar: ProgressBar,
    /// Without a terminal the bar is hidden: a line of progress is printed instead, at most
    /// once per [`QUIET_LINE_EVERY`].
    last_line: Option<std::time::Instant>,
}

/// How often training without a terminal prints its progress.
const QUIET_LINE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl Bar {
    fn new(bar: ProgressBar) -> Self {
        Self { bar, last_line: None }
    }

    /// A line above the bar, or on stderr when the bar is hidden (no terminal), where the bar
    /// would swallow it.
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Without a terminal, the bar's state as a line now and then.
    fn line_if_hidden(&mut self, step: u64, what: &str) {
        if !self.bar.is_hidden() || self.last_line.is_some_and(|t| t.elapsed() < QUIET_LINE_EVERY) {
            return;
        }
        self.last_line = Some(std::time::Instant::now());
        let total = self.bar.length().unwrap_or(0);
        eprintln!("step {step}/{total}: {what}");
    }
}

impl Observer for Bar {
    fn start(&mut self, start: u64, total: u64, resumed: Option<&Path>) {
        self.bar.set_length(total);
        self.bar.set_position(start);
        self.bar.reset_eta();
        if let Some(p) = resumed {
            self.say(format!("resuming from {} (step {start})", p.display()));
        }
    }

    fn record(&mut self, r: &LogRecord) {
        match r {
            LogRecord::Train {
                step,
                loss,
                rec,
                kl,
                steps_per_s,
                phone,
                gen,
                disc,
                vq,
                ..
            } => {
                self.bar.set_position(*step);
                let mut phone = phone.map_or(String::new(), |p| format!(", phonemes {p:.3}"));
                if let (Some(g), Some(d)) = (gen, disc) {
                    phone.push_str(&format!(", gan {g:.3}/{d:.3}"));
                }
                if let Some(v) = vq {
                    phone.push_str(&format!(", vq {v:.3}"));
                }
                let msg = format!("loss {loss:.4} (rec {rec:.4}, kl {kl:.3}{phone}), {steps_per_s:.2} steps/s");
                self.line_if_hidden(*step, &msg);
                self.bar.set_message(msg);
            }
            LogRecord::Valid { step, rec, kl, .. } => {
                self.say(format!("step {step}: validation rec {rec:.4}, kl {kl:.3}"));
            }
            LogRecord::VocoderTrain {
                step,
                loss,
                mel,
                stft,
                steps_per_s,
                adv,
                disc,
                f0,
                ..
            } => {
                self.bar.set_position(*step);
                let gan = match (adv, disc) {
                    (Some(a), Some(d)) => format!(", gan {a:.3}/{d:.3}"),
                    _ => String::new(),
                };
                let f0 = f0.map(|f| format!(", F0 {:.0} cents", cents(f))).unwrap_or_default();
                let msg = format!("loss {loss:.4} (mel {mel:.4}, stft {stft:.3}{gan}{f0}), {steps_per_s:.2} steps/s");
                self.line_if_hidden(*step, &msg);
                self.bar.set_message(msg);
            }
            LogRecord::VocoderValid { step, mel, stft, f0 } => {
                let f0 = f0.map(|f| format!(", F0 {:.0} cents", cents(f))).unwrap_or_default();
                self.say(format!("step {step}: validation mel {mel:.4}, stft {stft:.3}{f0}"));
            }
        }
    }

    fn checkpoint(&mut self, p: &Path) {
        self.say(format!("checkpoint {}", p.display()));
    }

    fn note(&mut self, text: &str) {
        self.bar.suspend(|| eprintln!("{text}"));
    }

    fn self_check(&mut self, r: &voxswap_train::selfcheck::SelfCheck) {
        self.bar.suspend(|| {
            eprintln!(
                "device self-check passed: {} gradients of one step within {:.1e} of the CPU's",
                r.gradients, r.worst
            );
        });
    }
}

/// `--snapshot`: the newest checkpoint, exported in half precision, and its step, into the
/// recipe's snapshot folder (written beside it, then moved into place).
fn snapshot(recipe: &Recipe, config: &Path) -> anyhow::Result<ExitCode> {
    let dir = recipe
        .train
        .snapshot
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{}: the recipe names no [train] snapshot folder", config.display()))?;
    let (step, ckpt) = voxswap_train::checkpoint::list(&trainer::checkpoints_dir(recipe))
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no checkpoint in {} to snapshot", recipe.output.dir.display()))?;
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{}: not a folder name", dir.display()))?;
    let tmp = dir.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let _ = std::fs::remove_dir_all(&tmp);
    voxswap_model::io::export_model(&ckpt, &tmp, true).with_context(|| format!("exporting {}", ckpt.display()))?;
    std::fs::write(tmp.join(trainer::SNAPSHOT_STEP_FILE), format!("{step}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    let old = dir.with_file_name(format!(".{}.old", name.to_string_lossy()));
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).with_context(|| format!("replacing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("writing {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    println!("snapshot of step {step} ({}) in {}", ckpt.display(), dir.display());
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    // Training allocates and frees the same large buffers every step; conversion does not.
    voxswap_train::keep_freed_memory();
    let recipe = Recipe::load(&a.config)?;
    let device = a.device.open()?;
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: the checkpoint being written is atomic, so leaving is safe.
            std::process::exit(130);
        }
        eprintln!("\nstopping: writing a checkpoint (Ctrl-C again to quit at once)");
    })
    .context("installing the Ctrl-C handler")?;
    let features = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("features {bar:30} {pos}/{len} files ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let on_features = |done: usize, total: usize| {
        features.set_length(total as u64);
        features.set_position(done as u64);
    };
    if a.snapshot {
        return snapshot(&recipe, &a.config);
    }
    if a.features_only {
        let (utts, frames) = trainer::extract_features(&recipe, &on_features)?;
        features.finish_and_clear();
        let fe = recipe.model_config()?.frontend;
        let hours = frames as f64 * fe.hop_length as f64 / f64::from(fe.sample_rate) / 3600.0;
        println!(
            "features of {utts} utterances ({hours:.2} h) in {}",
            recipe.data.cache.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let bar = ProgressBar::new(recipe.train.steps).with_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed} elapsed, {eta} left]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut observer = Bar::new(bar.clone());
    let (outcome, run_dir, what) = if a.vocoder {
        let dir = recipe
            .vocoder_dir()
            .ok_or_else(|| anyhow::anyhow!("{}: the recipe has no [vocoder] section", a.config.display()))?;
        let outcome = voxswap_train::vocoder_train::train_vocoder(&recipe, &device, &STOP, &mut observer);
        (outcome, dir, "vocoder")
    } else {
        let outcome = trainer::train(&recipe, &device, &STOP, &mut observer, &on_features);
        (outcome, recipe.output.dir.clone(), "model")
    };
    features.finish_and_clear();
    bar.finish_and_clear();
    match outcome? {
        Outcome::Finished { step, checkpoint } => {
            println!("finished at step {step}; {what}: {}", checkpoint.display());
            println!(
                "log: {}; curves: {}",
                run_dir.join("train.jsonl").display(),
                run_dir.join("loss.png").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted { step, checkpoint } => {
            println!(
                "stopped at step {step}; checkpoint {} (run the same command to resume)",
                checkpoint.display()
            );
            Ok(ExitCode::from(130))
        }
    }
}

/// A mean absolute natural-log F0 difference in cents.
fn cents(log_diff: f32) -> f32 {
    log_diff * 1200.0 / std::f32::consts::LN_2
}
