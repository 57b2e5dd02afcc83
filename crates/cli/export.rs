//! `voxswap export`: a training checkpoint (and a vocoder's) into a model folder that `convert`
//! and `live` load, optionally in half precision.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::io::say;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checkpoint (or model folder) to export: a folder with config.json and model.safetensors,
    /// e.g. exp/run/checkpoints/step-00065000.
    checkpoint: PathBuf,
    /// Model folder to write (created if missing). Its config.json, model.safetensors and, with
    /// --vocoder, vocoder.json and vocoder.safetensors are replaced; other files (a speaker bank)
    /// are kept.
    out: PathBuf,
    /// A vocoder checkpoint (a folder with vocoder.json and vocoder.safetensors) to put beside
    /// the model, e.g. exp/run/vocoder/checkpoints/step-00030000.
    #[arg(long, value_name = "DIR")]
    vocoder: Option<PathBuf>,
    /// Write the weights in half precision: files half the size, and the frame-by-frame live
    /// path reads half the memory per frame (the model's step about 1.8×, the vocoder's 1.6×
    /// faster; BENCHMARKS.md). Each weight moves by at most 2^-11 of itself; the conversion
    /// changes accordingly little, but it does change.
    #[arg(long)]
    half: bool,
}

fn size(path: &Path) -> String {
    std::fs::metadata(path).map_or_else(|_| "?".into(), |m| format!("{:.1} MB", m.len() as f64 / 1e6))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let precision = if a.half { "half" } else { "single" };
    voxswap_model::io::export_model(&a.checkpoint, &a.out, a.half)
        .with_context(|| format!("exporting the model of {}", a.checkpoint.display()))?;
    let weights = voxswap_model::io::weights_path(&a.out);
    say(format!(
        "model of {} → {} ({}, {precision} precision)",
        a.checkpoint.display(),
        weights.display(),
        size(&weights)
    ))?;
    // A bank already in the folder belongs to the weights it was embedded with.
    let bank = a.out.join("speakers");
    if bank.is_dir() {
        let now = voxswap_model::bank::fingerprint(&weights)?;
        // The export is done: a bank that cannot be read is reported, not an error.
        let stale = match voxswap_model::bank::SpeakerBank::open(&bank).and_then(|b| b.list()) {
            Ok(entries) => entries.iter().filter(|e| e.model != now).count(),
            Err(e) => {
                eprintln!("note: the speaker bank beside the model cannot be checked: {e}");
                0
            }
        };
        if stale > 0 {
            eprintln!(
                "note: {stale} speaker(s) in {} were embedded with other weights; `convert --speaker` \
                 refuses them until they are embedded again (voxswap embed … --bank {} --force)",
                bank.display(),
                bank.display()
            );
        }
    }
    if let Some(v) = &a.vocoder {
        voxswap_model::vocoder::export_vocoder(v, &a.out, a.half)
            .with_context(|| format!("exporting the vocoder of {}", v.display()))?;
        let weights = a.out.join(voxswap_model::vocoder::WEIGHTS_FILE);
        say(format!(
            "vocoder of {} → {} ({}, {precision} precision)",
            v.display(),
            weights.display(),
            size(&weights)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
