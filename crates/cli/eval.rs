//! `voxswap eval`: objective metrics of conversions on parallel pairs, as JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Serialize;
use voxswap_audio::{LogMel, Mel};
use voxswap_eval::{cosine, score_pair, PairScores, Yin};

use crate::io::{read_at_rate, say};
use crate::voice::{embed_files, ModelArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A converted file (or use --manifest for many).
    #[arg(required_unless_present = "manifest", conflicts_with = "manifest")]
    converted: Option<PathBuf>,
    /// The target speaker saying the same sentence (the parallel reference for MCD and F0).
    #[arg(long, value_name = "WAV", requires = "converted")]
    reference: Option<PathBuf>,
    /// The source recording (for the similarity to the source speaker: leakage).
    #[arg(long, value_name = "WAV")]
    source: Option<PathBuf>,
    /// Other recordings of the target speaker (speaker similarity; default: the reference).
    #[arg(long = "target", value_name = "WAV")]
    targets: Vec<PathBuf>,
    /// Tab-separated file with a header line and columns `converted`, `reference`, and
    /// optionally `source` and `targets` (`;`-separated). Relative paths are relative to it.
    #[arg(long, value_name = "TSV")]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

struct Pair {
    converted: PathBuf,
    reference: PathBuf,
    source: Option<PathBuf>,
    targets: Vec<PathBuf>,
}

#[derive(Serialize)]
struct PairReport {
    converted: String,
    reference: String,
    #[serde(flatten)]
    scores: PairScores,
    /// Cosine of voxswap's own speaker embeddings (not an independent judge).
    similarity_to_target_voxswap_encoder: f64,
    similarity_to_source_voxswap_encoder: Option<f64>,
}

fn read_manifest(path: &Path) -> anyhow::Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .with_context(|| format!("{}: empty manifest", path.display()))?
        .split('\t')
        .collect();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(c), Some(r)) = (col("converted"), col("reference")) else {
        bail!(
            "{}: the header needs the columns `converted` and `reference`",
            path.display()
        );
    };
    let (s, t) = (col("source"), col("targets"));
    let abs = |p: &str| {
        let p = Path::new(p.trim());
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |k: usize| f.get(k).copied().filter(|v| !v.trim().is_empty());
        let (Some(cv), Some(rv)) = (get(c), get(r)) else {
            bail!(
                "{}: line {}: `converted` or `reference` is empty",
                path.display(),
                i + 2
            );
        };
        out.push(Pair {
            converted: abs(cv),
            reference: abs(rv),
            source: s.and_then(get).map(abs),
            targets: t
                .and_then(get)
                .map(|v| v.split(';').filter(|x| !x.trim().is_empty()).map(abs).collect())
                .unwrap_or_default(),
        });
    }
    if out.is_empty() {
        bail!("{}: no pairs", path.display());
    }
    Ok(out)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let pairs = match (&a.manifest, &a.converted) {
        (Some(m), _) => read_manifest(m)?,
        (None, Some(c)) => vec![Pair {
            converted: c.clone(),
            reference: a
                .reference
                .clone()
                .context("--reference WAV is needed: the target speaker saying the same sentence")?,
            source: a.source.clone(),
            targets: a.targets.clone(),
        }],
        (None, None) => bail!("give a converted file or --manifest"),
    };
    let (conv, _, _) = a.model.load()?;
    let fe = conv.config().frontend.clone();
    let mut lm = LogMel::new(&fe)?;
    let yin = Yin {
        sample_rate: fe.sample_rate,
        hop: fe.hop_length,
        ..Yin::speech_16k()
    };
    let mut load = |p: &Path| -> anyhow::Result<(Mel, Vec<f32>)> {
        let (_, x) = read_at_rate(p, None, fe.sample_rate)?;
        Ok((lm.compute(&x), x))
    };
    let mut reports = Vec::new();
    for p in &pairs {
        let (cm, cx) = load(&p.converted)?;
        let (rm, rx) = load(&p.reference)?;
        let scores = score_pair((&rm, &rx), (&cm, &cx), &yin);
        let emb = conv
            .speaker_vector(std::slice::from_ref(&cm))
            .with_context(|| format!("{}: converted", p.converted.display()))?;
        let targets = if p.targets.is_empty() {
            std::slice::from_ref(&p.reference)
        } else {
            &p.targets[..]
        };
        let target = embed_files(&conv, targets, None, false)?.0;
        let source = match &p.source {
            Some(s) => Some(cosine(
                emb.values(),
                embed_files(&conv, std::slice::from_ref(s), None, false)?.0.values(),
            )),
            None => None,
        };
        reports.push(PairReport {
            converted: p.converted.display().to_string(),
            reference: p.reference.display().to_string(),
            scores,
            similarity_to_target_voxswap_encoder: cosine(emb.values(), target.values()),
            similarity_to_source_voxswap_encoder: source,
        });
    }
    let mean = |f: &dyn Fn(&PairReport) -> Option<f64>| {
        let v: Vec<f64> = reports.iter().filter_map(f).filter(|x| x.is_finite()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let summary = serde_json::json!({
        "pairs": reports.len(),
        "mcd_db": mean(&|r| Some(r.scores.mcd_db)),
        "f0_rmse_hz": mean(&|r| r.scores.f0_rmse_hz),
        "f0_corr": mean(&|r| r.scores.f0_corr),
        "voicing_error": mean(&|r| Some(r.scores.voicing_error)),
        "similarity_to_target_voxswap_encoder": mean(&|r| Some(r.similarity_to_target_voxswap_encoder)),
        "similarity_to_source_voxswap_encoder": mean(&|r| r.similarity_to_source_voxswap_encoder),
        "note": "MCD: cepstra of voxswap's 80-band log-mel (coefficients 1-24) after DTW; F0: YIN; \
                 similarities: voxswap's own speaker encoder, not an independent judge",
        "per_pair": reports,
    });
    let text = serde_json::to_string_pretty(&summary)?;
    if let Some(p) = &a.json {
        std::fs::write(p, &text).with_context(|| format!("{}: cannot write", p.display()))?;
    }
    say(text)?;
    Ok(ExitCode::SUCCESS)
}
