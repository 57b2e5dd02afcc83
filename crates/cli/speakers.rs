//! `voxswap embed` (add a speaker to a bank) and `voxswap speakers` (list a bank).

use std::path::PathBuf;
use std::process::ExitCode;

use voxswap_model::bank::{check_name, BankEntry, SpeakerBank};

use crate::convert::{embed_files, ModelArgs};
use crate::io::say;

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Reference recordings of the speaker (a few seconds or more in all; averaged).
    #[arg(required = true, value_name = "REF")]
    references: Vec<PathBuf>,
    /// The speaker's name in the bank (letters, digits, `_`, `-`, `.`).
    #[arg(long)]
    name: String,
    /// Speaker bank folder (created if missing; default: the model folder's `speakers/`).
    #[arg(long, value_name = "DIR")]
    bank: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Use one channel (counted from 0) instead of the mono mix.
    #[arg(long, value_name = "N")]
    channel: Option<usize>,
    /// Print the stored entry as JSON.
    #[arg(long)]
    json: bool,
}

pub fn embed(a: EmbedArgs) -> anyhow::Result<ExitCode> {
    check_name(&a.name)?;
    let (conv, fp, dir) = a.model.load()?;
    let (emb, seconds) = embed_files(&conv, &a.references, a.channel, true)?;
    let bank = SpeakerBank::create(&a.bank.unwrap_or_else(|| dir.join("speakers")))?;
    let entry = BankEntry {
        name: a.name.clone(),
        model: fp,
        embedding: emb.values().to_vec(),
        spectrum: emb.spectrum().map(<[f32]>::to_vec),
        average: emb.average().map(<[f32]>::to_vec),
        references: a.references.iter().map(|p| p.display().to_string()).collect(),
        seconds,
    };
    bank.put(&entry)?;
    if a.json {
        say(serde_json::to_string_pretty(&entry)?)?;
    } else {
        say(format!(
            "added `{}` to {} ({} reference{}, {seconds:.1} s)",
            a.name,
            bank.dir().display(),
            a.references.len(),
            if a.references.len() == 1 { "" } else { "s" }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Speaker bank folder (default: the model folder's `speakers/`).
    #[arg(long, value_name = "DIR")]
    bank: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON (name, references, seconds, model fingerprint; no embeddings).
    #[arg(long)]
    json: bool,
}

pub fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let dir = match a.bank {
        Some(d) => d,
        None => a.model.dir()?.join("speakers"),
    };
    let bank = SpeakerBank::open(&dir)?;
    let entries = bank.list()?;
    if a.json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name, "references": e.references, "seconds": e.seconds, "model": e.model
                })
            })
            .collect();
        say(serde_json::to_string_pretty(&v)?)?;
    } else if entries.is_empty() {
        say(format!("{}: no speakers", bank.dir().display()))?;
    } else {
        let mut s = String::new();
        for e in &entries {
            s.push_str(&format!(
                "{:<24} {:>6.1} s  {} reference{}\n",
                e.name,
                e.seconds,
                e.references.len(),
                if e.references.len() == 1 { "" } else { "s" }
            ));
        }
        s.pop();
        say(s)?;
    }
    Ok(ExitCode::SUCCESS)
}
