//! `voxswap`: one-shot voice conversion from the command line.
//!
//! Thin by design: argument parsing, validation into ready-built objects, and wiring of the
//! library crates. Errors print as one line with their whole chain.

mod convert;
mod data;
mod eval;
mod export;
mod info;
mod io;
mod live;
mod resynth;
mod speakers;
mod spectrogram;
mod train;
mod voice;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// voxswap converts speech into another voice (AdaIN-VC), from files and live.
///
/// Audio in: WAV (8/16/24/32-bit integer, 32/64-bit float, A-law, mu-law, IMA and MS ADPCM),
/// FLAC, MP3 and Ogg Vorbis, at any sample rate from 1 kHz to 384 kHz (convert: 8 kHz and up),
/// 1 to 8 channels (mixed to mono unless --channel picks one). Audio out: WAV.
///
/// Exit status: 0 on success, 1 when an input or the work fails, 2 for a bad flag; either way
/// one line on stderr says what is wrong. Ctrl-C leaves no partial output behind.
#[derive(Debug, Parser)]
#[command(name = "voxswap", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert speech into another voice: a source recording and a few seconds of the target
    /// voice (-t REF) or a speaker from a bank (--speaker), with the shipped model by default.
    /// Files or whole folders; any length in bounded memory; loudness matched to the source.
    Convert(convert::Args),
    /// Score conversions on parallel pairs: MCD after DTW, F0 error and correlation, and speaker
    /// similarity by voxswap's own encoder, as JSON.
    Eval(eval::Args),
    /// Convert a microphone live into one of several voices, switched with number keys, with
    /// the latency, levels, DSP load and under-runs shown.
    Live(live::Args),
    /// List the audio input and output devices with their rates and channel counts.
    Devices(live::DevicesArgs),
    /// Add a speaker to a speaker bank from reference recordings.
    Embed(speakers::EmbedArgs),
    /// List the speakers of a speaker bank.
    Speakers(speakers::ListArgs),
    /// Show an audio file's format, sample rate, channels, duration, peak and RMS level.
    Info(info::Args),
    /// Draw the log-mel spectrogram the model sees as a PNG, with time and frequency axes.
    Spectrogram(spectrogram::Args),
    /// Resynthesise a file from its log-mel spectrogram with Griffin-Lim: hear what the
    /// frontend keeps (and the ceiling that the Griffin-Lim vocoder allows).
    Resynth(resynth::Args),
    /// Train a model from a recipe (TOML). Resumes from the newest checkpoint; Ctrl-C writes a
    /// checkpoint and stops; progress, a JSONL log and a PNG of the loss curves as it goes.
    Train(train::Args),
    /// Export a training checkpoint (and a vocoder's) into a model folder, optionally in half
    /// precision (half the size, a faster live path).
    Export(export::Args),
    /// Inspect a corpus before training on it.
    #[command(subcommand)]
    Data(data::Command),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // train checkpoints and live finishes its recordings on Ctrl-C; they install their own.
    if !matches!(cli.command, Command::Train(_) | Command::Live(_)) {
        io::remove_partial_files_on_signal()?;
    }
    match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Live(a) => live::run(a),
        Command::Devices(a) => live::devices(a),
        Command::Embed(a) => speakers::embed(a),
        Command::Eval(a) => eval::run(a),
        Command::Speakers(a) => speakers::list(a),
        Command::Info(a) => info::run(a),
        Command::Spectrogram(a) => spectrogram::run(a),
        Command::Resynth(a) => resynth::run(a),
        Command::Train(a) => train::run(a),
        Command::Export(a) => export::run(a),
        Command::Data(c) => data::run(c),
    }
}

/// Parses the command line. A bad flag is one line on stderr and exit status 2 (clap's own
/// rendering adds a usage block and a tip); `--help` and `--version` print as clap prints them.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    Cli::try_parse().map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let text = e.to_string();
            let mut lines = text.lines();
            let first = lines.next().unwrap_or("error: bad arguments").trim_end();
            // "the following required arguments were not provided:" lists them on the lines
            // below: name them on the one line.
            let listed: Vec<&str> = match first.ends_with(':') {
                true => lines.take_while(|l| !l.trim().is_empty()).map(str::trim).collect(),
                false => Vec::new(),
            };
            let first = match listed.is_empty() {
                true => first.to_string(),
                false => format!("{first} {}", listed.join(", ")),
            };
            let first = if first.starts_with("error:") {
                first
            } else {
                format!("error: {first}")
            };
            eprintln!("{first} (voxswap --help explains every flag)");
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    voxswap_model::par::flush_denormals();
    let cli = match parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if io::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
