//! `voxswap embed` (add a speaker to a bank) and `voxswap speakers` (list a bank).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use voxswap_model::bank::{check_name, BankEntry, SpeakerBank};

use crate::io::say;
use crate::voice::{banks, embed_files, user_bank_dir, ModelArgs};

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Reference recordings of the speaker (a few seconds or more in all; averaged).
    #[arg(required = true, value_name = "REF")]
    references: Vec<PathBuf>,
    /// The speaker's name in the bank (letters, digits, `_`, `-`, `.`).
    #[arg(long)]
    name: String,
    /// Speaker bank folder (created if missing). Default: your own bank,
    /// $XDG_DATA_HOME/voxswap/speakers (~/.local/share/voxswap/speakers), which `speakers` and
    /// `convert --speaker` read together with the model's.
    #[arg(long, value_name = "DIR")]
    bank: Option<PathBuf>,
    /// Replace a speaker of the same name in the bank (or hide the model's speaker of that
    /// name behind yours).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    model: ModelArgs,
    /// Use one channel (counted from 0) of every reference instead of the mono mix.
    #[arg(long, value_name = "N")]
    channel: Option<usize>,
    /// Print the stored entry as JSON.
    #[arg(long)]
    json: bool,
}

pub fn embed(a: EmbedArgs) -> anyhow::Result<ExitCode> {
    check_name(&a.name)?;
    let bank_dir = match &a.bank {
        Some(d) => d.clone(),
        None => user_bank_dir().ok_or_else(|| {
            anyhow::anyhow!("no home folder to keep your speaker bank in (HOME is not set): pass --bank DIR")
        })?,
    };
    let (conv, fp, model_dir) = a.model.load()?;
    // Refused before the work: a name that would replace a speaker, or hide the model's.
    let existing = SpeakerBank::open(&bank_dir).is_ok_and(|b| b.contains(&a.name));
    let model_bank = model_dir.join("speakers");
    let hides = a.bank.is_none()
        && SpeakerBank::open(&model_bank).is_ok_and(|b| b.contains(&a.name))
        && model_bank.canonicalize().ok() != bank_dir.canonicalize().ok();
    if !a.force {
        if existing {
            bail!(
                "speaker `{}` is already in {}; pick another name, or pass --force to replace it",
                a.name,
                bank_dir.display()
            );
        }
        if hides {
            bail!(
                "speaker `{}` is one of the model's ({}); pick another name, or pass --force to hide it behind yours",
                a.name,
                model_bank.display()
            );
        }
    }
    let (emb, seconds) = embed_files(&conv, &a.references, a.channel, true)?;
    let bank = SpeakerBank::create(&bank_dir)?;
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
            "{} `{}` {} {} ({} reference{}, {seconds:.1} s){}",
            if existing { "replaced" } else { "added" },
            a.name,
            if existing { "in" } else { "to" },
            bank.dir().display(),
            a.references.len(),
            if a.references.len() == 1 { "" } else { "s" },
            if hides {
                "; it hides the model's speaker of that name"
            } else {
                ""
            }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Speaker bank folder. Default: your own bank ($XDG_DATA_HOME/voxswap/speakers) and the
    /// model folder's `speakers/`.
    #[arg(long, value_name = "DIR")]
    bank: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON (name, bank, references, seconds, model fingerprint; no embeddings).
    #[arg(long)]
    json: bool,
}

pub fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let dirs = match &a.bank {
        Some(d) => vec![d.clone()],
        None => banks(None, &a.model.dir()?),
    };
    // (bank, entry), the user's bank first; a name in an earlier bank hides later ones.
    let mut entries: Vec<(PathBuf, BankEntry)> = Vec::new();
    for d in &dirs {
        let bank = SpeakerBank::open(d)?;
        for e in bank.list()? {
            if !entries.iter().any(|(_, x)| x.name == e.name) {
                entries.push((d.clone(), e));
            }
        }
    }
    if a.json {
        let v: Vec<_> = entries
            .iter()
            .map(|(d, e)| {
                serde_json::json!({
                    "name": e.name, "bank": d, "references": e.references, "seconds": e.seconds, "model": e.model
                })
            })
            .collect();
        say(serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    for d in &dirs {
        let here: Vec<&BankEntry> = entries.iter().filter(|(b, _)| b == d).map(|(_, e)| e).collect();
        let plural = if here.len() == 1 { "" } else { "s" };
        s.push_str(&format!("{} ({} speaker{plural})\n", d.display(), here.len()));
        for e in here {
            s.push_str(&format!(
                "  {:<24} {:>6.1} s  {} reference{}\n",
                e.name,
                e.seconds,
                e.references.len(),
                if e.references.len() == 1 { "" } else { "s" }
            ));
        }
    }
    s.pop();
    say(s)?;
    Ok(ExitCode::SUCCESS)
}
