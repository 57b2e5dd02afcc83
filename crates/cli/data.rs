//! `voxswap data check`: what a corpus holds and what is wrong with it.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use voxswap_train::check::{self, CorpusReport};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Count speakers, utterances and hours of a corpus (DIR/<speaker>/**/<file>) and list its
    /// sample rates, clipped, silent, too-short and unreadable files. Exits with status 1 when a
    /// file cannot be decoded (training would stop on it), 0 otherwise.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Corpus folder: one folder per speaker, audio files at any depth below it.
    dir: PathBuf,
    /// Print the report as JSON (every listed file, no truncation).
    #[arg(long)]
    json: bool,
    /// Files listed per problem in the text report.
    #[arg(long, default_value_t = 5, value_name = "N")]
    list: usize,
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Check(a) => run_check(a),
    }
}

fn run_check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("checking {bar:30} {pos}/{len} files ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = check::check_corpus(&a.dir, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if a.json {
        crate::io::say(serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::io::say(text(&report, a.list))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn text(r: &CorpusReport, list: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let per: Vec<f64> = r.speakers.iter().map(|x| x.seconds / 60.0).collect();
    let (min, max) = per
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let _ = writeln!(s, "corpus      {}", r.root.display());
    let _ = writeln!(
        s,
        "speakers    {} ({:.1} to {:.1} min each)",
        r.speakers.len(),
        if per.is_empty() { 0.0 } else { min },
        max
    );
    let _ = writeln!(
        s,
        "utterances  {} ({:.1} s mean)",
        r.utterances,
        r.hours * 3600.0 / r.utterances.max(1) as f64
    );
    let _ = writeln!(s, "hours       {:.2}", r.hours);
    let rates: Vec<String> = r.sample_rates.iter().map(|(k, v)| format!("{k} Hz: {v}")).collect();
    let _ = writeln!(s, "rates       {}", rates.join(", "));
    let chans: Vec<String> = r.channels.iter().map(|(k, v)| format!("{k} ch: {v}")).collect();
    let _ = writeln!(s, "channels    {}", chans.join(", "));
    let _ = writeln!(s, "silence     {:.0}% of the audio", 100.0 * r.silent_share);
    let _ = writeln!(
        s,
        "(clipped: {} full-scale samples in a row; silent: over {:.0}% of 20 ms windows below {} dBFS; short: under {} s)",
        check::CLIP_RUN,
        100.0 * check::SILENT_SHARE,
        check::SILENCE_DBFS,
        check::SHORT_S
    );
    let mut problem = |title: &str, files: Vec<String>| {
        let _ = writeln!(s, "{title:<11} {}", files.len());
        for f in files.iter().take(list) {
            let _ = writeln!(s, "  {f}");
        }
        if files.len() > list {
            let _ = writeln!(s, "  … and {} more (--json lists all)", files.len() - list);
        }
    };
    let names = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
    problem("clipped", names(&r.clipped));
    problem("silent", names(&r.silent));
    problem("short", names(&r.short));
    problem(
        "unreadable",
        r.unreadable
            .iter()
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect(),
    );
    s.pop();
    s
}
