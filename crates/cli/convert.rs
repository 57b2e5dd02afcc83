//! `voxswap convert`: speech into another voice, file to file or folder to folder, in bounded
//! memory, at the source's loudness.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use voxswap_audio::decode::has_audio_extension;
use voxswap_audio::WavFormat;
use voxswap_model::bank;
use voxswap_model::{NeuralVocoder, SpeakerEmbedding, VoiceConverter};
use voxswap_stream::file::{FileJob, FileReport};
use voxswap_stream::Adaptation;

use crate::io::{channel_mix, check_not_input, check_output, say, SynthArgs, VocoderArgs};
use crate::voice::{banks, embed_files, find_speaker, ModelArgs};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("voice").required(true).multiple(true).args(["targets", "speaker"])))]
pub struct Args {
    /// Source speech: an audio file, or a folder (every audio file in it, not recursing).
    source: PathBuf,
    /// Output WAV file, or a folder when the source is a folder (created if missing).
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// Reference recording of the target voice (a few seconds; repeat to average several).
    #[arg(short = 't', long = "target", value_name = "REF", conflicts_with = "speaker")]
    targets: Vec<PathBuf>,
    /// Target speaker(s) from a speaker bank: `alice`, or a mix `alice:0.7,bob:0.3`.
    #[arg(long, value_name = "NAME[:W],...", value_parser = crate::voice::parse_speaker_spec)]
    speaker: Option<String>,
    /// Speaker bank folder for --speaker (default: the model folder's `speakers/`).
    #[arg(long, value_name = "DIR")]
    bank: Option<PathBuf>,
    /// How far the target voice is pushed away from the source's: the conversion uses the
    /// speaker vector target + S·(target − source), the source's vector taken from its first
    /// 30 s. 0 gives the plain AdaIN-VC conversion; a little contrast keeps less of the source's
    /// voice (see pretrained/MODEL_CARD.md for what it measured), too much leaves the voices the
    /// model knows. S from 0 to 4.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_CONTRAST, value_parser = parse_contrast)]
    contrast: f32,
    /// How far the conversion's long-term average spectrum is moved to the target reference's:
    /// the model renders a voice it has not heard only part of the way. The conversion of the
    /// source's first 30 s shows by how much, and the correction is added to every frame. 0
    /// leaves the model's output as it is, 1 matches the reference's average spectrum. S from 0
    /// to 2.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SPECTRUM, value_parser = parse_spectrum)]
    spectrum: f32,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    vocoder: VocoderArgs,
    #[command(flatten)]
    synth: SynthArgs,
    /// Run the file through the streaming engine in 10 ms chunks, exactly as live conversion
    /// will: the neural vocoder a frame at a time (or streaming Griffin-Lim: 2 frames of
    /// look-ahead, 8 iterations a frame), the model a
    /// frame at a time, a fixed gain and a limiter instead of loudness matching, and --contrast
    /// and --spectrum measured on the past only (the first 1, 2, 4, 8 and 16 s, then the last
    /// 16 s every 16 s, each applied 1 s after the audio it measured; the reference's own
    /// spectrum correction before). Prints the latency of every stage and the compute time per
    /// frame.
    #[arg(long)]
    stream: bool,
}

/// `--contrast`'s default.
pub(crate) const DEFAULT_CONTRAST: f32 = Adaptation::DEFAULT.contrast;

/// `--spectrum`'s default.
pub(crate) const DEFAULT_SPECTRUM: f32 = Adaptation::DEFAULT.spectrum;

pub(crate) fn parse_contrast(s: &str) -> Result<f32, String> {
    crate::io::parse_in(s, 4.0)
}

pub(crate) fn parse_spectrum(s: &str) -> Result<f32, String> {
    crate::io::parse_in(s, 2.0)
}

/// Settings of one conversion.
struct Job<'a> {
    conv: &'a VoiceConverter,
    speaker: &'a SpeakerEmbedding,
    contrast: f32,
    spectrum: f32,
    neural: Option<&'a NeuralVocoder>,
    iterations: u32,
    rate: Option<u32>,
    format: WavFormat,
    channel: Option<usize>,
    /// Show a progress bar for this file (single-file conversions; folders show their own).
    progress: bool,
}

impl Job<'_> {
    fn file(&self) -> FileJob<'_> {
        FileJob {
            conv: self.conv,
            voice: self.speaker,
            adaptation: Adaptation {
                contrast: self.contrast,
                spectrum: self.spectrum,
            },
            neural: self.neural,
            iterations: self.iterations,
            rate: self.rate,
            format: self.format,
            mix: channel_mix(self.channel),
        }
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    // Outputs are checked before the model loads: a bad name fails at once.
    let is_folder = a.source.is_dir();
    let mut inputs: Vec<&Path> = vec![a.source.as_path()];
    inputs.extend(a.targets.iter().map(PathBuf::as_path));
    if is_folder {
        if a.output.is_file() {
            bail!("{}: is a file; the output of a folder is a folder", a.output.display());
        }
        if !a.output.exists() && has_audio_extension(&a.output) {
            bail!(
                "{}: looks like a file name, but the source {} is a folder: give a folder for the outputs",
                a.output.display(),
                a.source.display()
            );
        }
    } else {
        check_output(&a.output, "wav", &inputs)?;
    }
    let (conv, fp, model_dir) = a.model.load()?;
    let neural = a.vocoder.load(&model_dir)?;
    let speaker = match &a.speaker {
        Some(spec) => {
            let banks = banks(a.bank.as_deref(), &model_dir);
            let parts = bank::parse_mix(spec)?;
            let entries = parts
                .iter()
                .map(|(n, w)| Ok((*w, find_speaker(&banks, n)?.embedding_for(&fp)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if a.spectrum > 0.0 {
                for ((n, _), (_, e)) in parts.iter().zip(&entries) {
                    if e.spectrum().is_none() {
                        eprintln!(
                            "warning: speaker `{n}` has no spectrum correction (embedded by an older \
                             voxswap): no --spectrum; embed it again to get one"
                        );
                    } else if e.average().is_none() {
                        eprintln!(
                            "warning: speaker `{n}` has no average spectrum (embedded by an older \
                             voxswap): --spectrum uses the correction measured on its reference \
                             alone; embed it again to match the conversion itself"
                        );
                    }
                }
            }
            let refs: Vec<(f32, &SpeakerEmbedding)> = entries.iter().map(|(w, e)| (*w, e)).collect();
            SpeakerEmbedding::mix(&refs)?
        }
        // --channel picks the source's channel; references are mixed to mono.
        None => embed_files(&conv, &a.targets, None, a.spectrum > 0.0)?.0,
    };
    let job = Job {
        conv: &conv,
        speaker: &speaker,
        contrast: a.contrast,
        spectrum: a.spectrum,
        neural: neural.as_ref(),
        iterations: a.synth.iterations,
        rate: a.synth.rate,
        format: a.synth.format(),
        channel: a.synth.channel,
        progress: !is_folder,
    };
    if is_folder {
        if a.stream {
            bail!("--stream converts one file at a time (as live conversion would); give a file");
        }
        return run_folder(&a.source, &a.output, &a.targets, &job);
    }
    if a.stream {
        return stream_file(&a.source, &a.output, &job);
    }
    let done = convert_file(&a.source, &a.output, &job)?;
    let loudness = match done.lufs {
        Some(l) => format!("loudness {l:.1} LUFS as the source's"),
        None => "level as the source's".to_string(),
    };
    let limited = if done.limited_db > 0.05 {
        format!(", peaks limited by up to {:.1} dB", done.limited_db)
    } else {
        String::new()
    };
    say(format!(
        "wrote {} ({:.2} s at {} Hz{}, {loudness}: gain {:+.1} dB{limited})",
        a.output.display(),
        done.seconds,
        done.rate,
        channels_note(done.channels),
        done.gain_db
    ))?;
    if done.clipped > 0 {
        eprintln!(
            "warning: {} samples clipped to [-1, 1]; use --float to keep them",
            done.clipped
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_folder(src: &Path, out: &Path, references: &[PathBuf], job: &Job) -> anyhow::Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("{}: cannot read folder", src.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && has_audio_extension(p))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no audio files (wav, flac, mp3, ogg) in this folder", src.display());
    }
    // Every output name, checked before anything is converted: two sources that would write
    // the same file (a.wav and a.flac), or an output that is one of the inputs.
    let dests: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            let stem = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.join(format!("{stem}.wav"))
        })
        .collect();
    for (i, d) in dests.iter().enumerate() {
        if let Some(j) = dests[..i].iter().position(|e| e == d) {
            bail!(
                "{} and {} would both be written to {}; rename one of them (nothing converted)",
                files[j].display(),
                files[i].display(),
                d.display()
            );
        }
    }
    let inputs: Vec<&Path> = files.iter().chain(references).map(PathBuf::as_path).collect();
    for d in &dests {
        check_not_input(d, &inputs)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create folder", out.display()))?;
    let bar = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg} [{elapsed}, {eta} left]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut failed = 0;
    for (f, dest) in files.iter().zip(&dests) {
        bar.set_message(
            f.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        match convert_file(f, dest, job) {
            Ok(_) => {
                crate::io::FINISHED_OUTPUTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Err(e) => {
                // On stderr whether or not it is a terminal (a hidden bar's println prints nothing).
                bar.suspend(|| eprintln!("error: {e:#}"));
                failed += 1;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    say(format!(
        "converted {} of {} files into {}",
        files.len() - failed,
        files.len(),
        out.display()
    ))?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `convert --stream`: the file through the live engine, 10 ms at a time; the output aligned
/// with the source (the engine's latency cut off) and as long.
/// ", 2 identical channels" for an output of several channels (the source's layout), nothing
/// for mono.
fn channels_note(channels: u16) -> String {
    match channels {
        1 => String::new(),
        n => format!(", {n} identical channels"),
    }
}

fn stream_file(src: &Path, out: &Path, job: &Job) -> anyhow::Result<ExitCode> {
    let bar = progress_bar("streaming", job.progress);
    let r = voxswap_stream::file::stream_file(src, out, &job.file(), &mut |done, total| {
        bar.set_length(total.unwrap_or(0));
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    let loudness = match (r.lufs, r.source_lufs) {
        (Some(o), Some(s)) => format!(
            "; loudness {o:.1} LUFS, the source's {s:.1} ({:+.1} LU: a stream is not loudness-matched)",
            o - s
        ),
        _ => String::new(),
    };
    say(format!(
        "wrote {} ({:.2} s at {} Hz{}, streamed in 10 ms chunks{loudness})",
        out.display(),
        r.seconds,
        r.rate,
        channels_note(r.channels)
    ))?;
    say(format!("algorithmic latency {:.1} ms:", r.latency_ms))?;
    for s in &r.stages {
        say(format!("  {:>6.1} ms  {}", s.seconds * 1e3, s.stage))?;
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    say(format!(
        "compute per {:.0} ms frame: mean {:.2} ms, p99 {:.2} ms, max {:.2} ms; the whole stream (reading, features, writing too) ran {:.1}× faster than real time",
        job.conv.config().frontend.hop_ms(),
        ms(r.compute.mean()),
        ms(r.compute.quantile(0.99)),
        ms(r.compute.max()),
        r.speed
    ))?;
    if r.clipped > 0 {
        eprintln!("warning: {} samples clipped to [-1, 1]", r.clipped);
    }
    Ok(ExitCode::SUCCESS)
}

/// One file offline (see [`voxswap_stream::file::convert_file`]), its warnings on stderr.
fn convert_file(src: &Path, out: &Path, job: &Job) -> anyhow::Result<FileReport> {
    let bar = progress_bar("converting", job.progress);
    let mut first = true;
    let r = voxswap_stream::file::convert_file(src, out, &job.file(), &mut |done, total| {
        if std::mem::take(&mut first) && total.unwrap_or(0) == 0 {
            // The file does not say how long it is.
            bar.set_style(
                ProgressStyle::with_template("converting {spinner} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
        }
        bar.set_length(total.unwrap_or(0));
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let r = r?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    Ok(r)
}

/// A progress bar for one file, hidden unless `show`.
fn progress_bar(what: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template(&format!("{what} {{bar:30}} {{percent}}% [{{elapsed}}, {{eta}} left]"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}
