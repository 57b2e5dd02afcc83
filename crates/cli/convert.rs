//! `voxswap convert`: speech into another voice, file to file or folder to folder, in bounded
//! memory, at the source's loudness.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use voxswap_audio::decode::has_audio_extension;
use voxswap_audio::{
    resample, AudioReader, BlockVocoder, ChunkResampler, FrontendConfig, GriffinLimConfig, Limiter, LoudnessMeter, Mel,
    StreamingLogMel, WavFormat, WavWriter,
};
use voxswap_model::bank;
use voxswap_model::{SpeakerEmbedding, VoiceConverter};

use voxswap_stream::adapt::{adapt, measure_source};
use voxswap_stream::{Adaptation, Engine, EngineConfig, StreamingGl};

use crate::io::{channel_mix, check_not_input, check_output, say, SynthArgs};
use crate::voice::{banks, embed_files, find_speaker, ModelArgs};

#[derive(Debug, clap::Args)]
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
    #[arg(long, value_name = "NAME[:W],...")]
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
    /// Vocoder: griffin-lim (the neural vocoder is not available in this version).
    #[arg(long, value_enum, default_value_t = Vocoder::GriffinLim)]
    vocoder: Vocoder,
    #[command(flatten)]
    synth: SynthArgs,
    /// Run the file through the streaming engine in 10 ms chunks, exactly as live conversion
    /// will: streaming Griffin-Lim (2 frames of look-ahead, 8 iterations a frame), the model a
    /// frame at a time, a fixed gain and a limiter instead of loudness matching, and --contrast
    /// and --spectrum measured on the past only (the first 1, 2, 4, 8 and 16 s, then the last
    /// 16 s every 16 s, each applied 1 s after the audio it measured; the reference's own
    /// spectrum correction before). Prints the latency of every stage and the compute time per
    /// frame.
    #[arg(long)]
    stream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Vocoder {
    /// Griffin-Lim phase reconstruction (no extra model).
    GriffinLim,
    /// A neural vocoder (not in this version).
    Neural,
}

/// `--contrast`'s default.
pub(crate) const DEFAULT_CONTRAST: f32 = Adaptation::DEFAULT.contrast;
/// Seconds of the source that give its speaker vector for `--contrast` and the conversion's
/// average spectrum for `--spectrum`.
const SOURCE_VOICE_SECONDS: u32 = 30;

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
    iterations: u32,
    rate: Option<u32>,
    format: WavFormat,
    channel: Option<usize>,
    /// Show a progress bar for this file (single-file conversions; folders show their own).
    progress: bool,
}

/// What one conversion did.
struct Done {
    seconds: f64,
    rate: u32,
    /// The source's loudness (LUFS), when it is long enough to gate.
    lufs: Option<f64>,
    gain_db: f64,
    /// How far the limiter lowered the loudest peak, dB (0 when it did not act).
    limited_db: f64,
    clipped: u64,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.vocoder == Vocoder::Neural {
        bail!("--vocoder neural: this version has no neural vocoder; use --vocoder griffin-lim");
    }
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
        return stream_file(&a.source, &a.output, &conv, &speaker, &job);
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
        "wrote {} ({:.2} s at {} Hz, {loudness}: gain {:+.1} dB{limited})",
        a.output.display(),
        done.seconds,
        done.rate,
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
        if let Err(e) = convert_file(f, dest, job) {
            // On stderr whether or not it is a terminal (a hidden bar's println prints nothing).
            bar.suspend(|| eprintln!("error: {e:#}"));
            failed += 1;
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
fn stream_file(
    src: &Path,
    out: &Path,
    conv: &VoiceConverter,
    speaker: &SpeakerEmbedding,
    job: &Job,
) -> anyhow::Result<ExitCode> {
    let fe = conv.config().frontend.clone();
    let mut reader = AudioReader::open(src, channel_mix(job.channel))?;
    let src_rate = reader.info().sample_rate;
    let out_rate = job.rate.unwrap_or(src_rate);
    let vocoder = Box::new(StreamingGl::new(&fe, StreamingGl::LOOKAHEAD, StreamingGl::ITERATIONS)?);
    let cfg = EngineConfig {
        adaptation: Adaptation {
            contrast: job.contrast,
            spectrum: job.spectrum,
        },
        ..EngineConfig::live(src_rate, out_rate)
    };
    let mut engine = Engine::new(conv, speaker, vocoder, cfg)?;
    let mut skip = engine.latency_samples();
    let mut writer = WavWriter::create(out, out_rate, job.format)?;
    let bar = ProgressBar::new(reader.info().frames.unwrap_or(0)).with_style(
        ProgressStyle::with_template("streaming {bar:30} {percent}% [{elapsed}, {eta} left]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let chunk = (src_rate / 100).max(1) as usize;
    let (mut buf, mut y) = (Vec::new(), Vec::new());
    let mut write = |y: &mut Vec<f32>, skip: &mut usize| -> anyhow::Result<()> {
        let k = (*skip).min(y.len());
        *skip -= k;
        writer.write(&y[k..])?;
        y.clear();
        Ok(())
    };
    let t0 = std::time::Instant::now();
    loop {
        buf.clear();
        if reader.read(&mut buf, chunk)? == 0 {
            break;
        }
        engine.push(&buf, &mut y)?;
        write(&mut y, &mut skip)?;
        bar.set_position(reader.frames_read());
    }
    engine.finish(&mut y)?;
    write(&mut y, &mut skip)?;
    let wall = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let report = writer.finish()?;
    let seconds = report.samples as f64 / f64::from(out_rate);
    say(format!(
        "wrote {} ({seconds:.2} s at {out_rate} Hz, streamed in 10 ms chunks)",
        out.display()
    ))?;
    say(format!("algorithmic latency {:.1} ms:", engine.latency_ms()))?;
    for s in engine.stages() {
        say(format!("  {:>6.1} ms  {}", s.seconds * 1e3, s.stage))?;
    }
    let st = engine.compute_stats();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    say(format!(
        "compute per {:.0} ms frame: mean {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1}× faster than real time",
        fe.hop_ms(),
        ms(st.mean()),
        ms(st.quantile(0.99)),
        ms(st.max()),
        seconds / wall.max(1e-9)
    ))?;
    if report.clipped > 0 {
        eprintln!("warning: {} samples clipped to [-1, 1]", report.clipped);
    }
    Ok(ExitCode::SUCCESS)
}

/// Frames the model converts at a time (and Griffin-Lim's block): 10 s.
const BLOCK_FRAMES: usize = 1000;
/// Frames of crossfaded overlap between Griffin-Lim blocks.
const OVERLAP_FRAMES: usize = 20;
/// Loudness is matched within this (LU) before the output is written...
const LOUDNESS_TOLERANCE_LU: f64 = 0.1;
/// ... in at most this many measuring passes over the conversion...
const LOUDNESS_STEPS: usize = 8;
/// ... raising the gain by at most this much (dB) beyond what loudness alone asks, for the
/// limiter to take off the peaks again.
const MAX_LIMITING_DB: f64 = 20.0;

/// Source → 16 kHz → log-mel → model → Griffin-Lim → 16 kHz float temp file (pass 2), then
/// gain to the source's loudness, resampling to the output rate and the peak limiter (pass 3).
/// Every stage runs on blocks, so memory does not grow with the input's length (for causal
/// models; offline models hold the whole mel).
fn convert_file(src: &Path, out: &Path, job: &Job) -> anyhow::Result<Done> {
    let fe: FrontendConfig = job.conv.config().frontend.clone();
    // Pass 1: the source's loudness, and its voice from its beginning.
    let keep = if job.contrast > 0.0 || job.spectrum > 0.0 {
        SOURCE_VOICE_SECONDS
    } else {
        0
    };
    let (src_rate, src_loud, src_peak, head) = level(src, job.channel, keep)?;
    if src_peak < 1e-3 {
        bail!(
            "{}: source is silent (peak {:.1} dBFS); nothing to convert",
            src.display(),
            20.0 * f64::from(src_peak.max(1e-12)).log10()
        );
    }
    let source = if keep > 0 {
        let x = resample(&head, src_rate, fe.sample_rate).with_context(|| format!("resampling {}", src.display()))?;
        let measured = measure_source(job.conv, &x)?;
        if measured.is_none() {
            eprintln!(
                "warning: {}: source too short ({:.2} s) to measure its voice: no --contrast or --spectrum matching",
                src.display(),
                head.len() as f64 / f64::from(src_rate)
            );
        }
        measured
    } else {
        None
    };
    // Contrast with the source's voice, then the correction that brings this conversion's
    // average spectrum to the reference's, measured on the conversion of the source's beginning
    // (the reference's own correction when that cannot be measured).
    let how = Adaptation {
        contrast: job.contrast,
        spectrum: job.spectrum,
    };
    let speaker = adapt(job.conv, job.speaker, source.as_ref(), how)?;
    let speaker = &speaker;
    let out_rate = job.rate.unwrap_or(src_rate);

    // Pass 2: convert at the model's rate into a temporary float file beside the output.
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp_path = voxswap_audio::partial::PartialFile::create(dir, ".voxswap-convert-", ".wav")
        .with_context(|| format!("{}: cannot write a temporary file", dir.display()))?;
    let mut sink = Sink {
        writer: WavWriter::create(tmp_path.path(), fe.sample_rate, WavFormat::Float32)?,
        loud: LoudnessMeter::new(fe.sample_rate)?,
        n: 0,
        peak: 0.0,
    };
    let mut reader = AudioReader::open(src, channel_mix(job.channel))?;
    let bar = if job.progress {
        let total = reader.info().frames.unwrap_or(0);
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template("converting {bar:30} {percent}% [{elapsed}, {eta} left]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        if total == 0 {
            bar.set_style(
                ProgressStyle::with_template("converting {spinner} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut to_model = ChunkResampler::new(src_rate, fe.sample_rate)?;
    let mut logmel = StreamingLogMel::new(&fe)?;
    let mut stream = job.conv.stream(speaker)?;
    let gl = GriffinLimConfig {
        n_iter: job.iterations as usize,
        ..Default::default()
    };
    let mut vocoder = BlockVocoder::new(&fe, gl, BLOCK_FRAMES, OVERLAP_FRAMES)?;
    let n_mels = fe.n_mels;
    let mut frames: Vec<f32> = Vec::new(); // frame-major mel frames waiting for the model
    let mut wave = Vec::new();
    let mut n_model_samples = 0u64;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut x16 = Vec::new();
    // The model on `frames` (all of them when `last`), its output into the vocoder.
    let mut convert_frames = |frames: &mut Vec<f32>, last: bool, wave: &mut Vec<f32>| -> anyhow::Result<()> {
        let n = frames.len() / n_mels;
        let take = match &stream {
            Some(_) if last || n >= BLOCK_FRAMES => n,
            None if last => n,
            _ => return Ok(()),
        };
        if take == 0 {
            return Ok(());
        }
        let mel = Mel::from_frames(n_mels, &frames[..take * n_mels]);
        let converted = match stream.as_mut() {
            Some(s) => {
                let x = Tensor::from_slice(&mel.data, (1, n_mels, take), &Device::Cpu)?;
                let y = s.step(&x)?.squeeze(0)?.to_vec2::<f32>()?;
                Mel {
                    n_mels,
                    frames: take,
                    data: y.concat(),
                }
            }
            None => job.conv.convert(&mel, speaker)?,
        };
        frames.drain(..take * n_mels);
        for t in 0..converted.frames {
            vocoder.push(&converted.frame(t), wave)?;
        }
        if last {
            vocoder.finish(wave)?;
        }
        Ok(())
    };
    loop {
        buf.clear();
        if reader.read(&mut buf, 1 << 15)? == 0 {
            break;
        }
        bar.set_position(reader.frames_read());
        x16.clear();
        to_model.push(&buf, &mut x16)?;
        n_model_samples += x16.len() as u64;
        logmel.push(&x16, |f| frames.extend_from_slice(f));
        convert_frames(&mut frames, false, &mut wave)?;
        sink.emit(&wave)?;
        wave.clear();
    }
    x16.clear();
    to_model.finish(&mut x16)?;
    n_model_samples += x16.len() as u64;
    logmel.push(&x16, |f| frames.extend_from_slice(f));
    logmel.finish(|f| frames.extend_from_slice(f));
    convert_frames(&mut frames, true, &mut wave)?;
    // The vocoder gives a hop per frame: cut back to the source's length.
    let keep = n_model_samples.saturating_sub(sink.n).min(wave.len() as u64) as usize;
    sink.emit(&wave[..keep])?;
    bar.finish_and_clear();
    let Sink { writer, loud, peak, .. } = sink;
    writer.finish()?;

    // Pass 3: the gain that matches the source's loudness (as the limiter will leave it),
    // resampling to the output rate, the limiter.
    let initial_gain_db = loud
        .gain_to_match(&src_loud)
        .ok_or_else(|| anyhow::anyhow!("{}: the conversion came out silent", src.display()))?;
    let mut gain_db = initial_gain_db;
    let mut short_lu = 0.0;
    if f64::from(peak) * 10f64.powf(gain_db / 20.0) > 0.99 {
        // The limiter will lower the loudest peaks, and with them some loudness: measure what
        // it leaves and make up for it (secant steps: under heavy limiting a dB of gain buys
        // less than a dB of loudness).
        let mut last: Option<(f64, f64)> = None;
        for _ in 0..LOUDNESS_STEPS {
            let (after, _) = gain_and_limit(tmp_path.path(), gain_db, fe.sample_rate, None)?;
            let Some(d) = after.gain_to_match(&src_loud) else { break };
            short_lu = d;
            if d.abs() <= LOUDNESS_TOLERANCE_LU || gain_db >= initial_gain_db + MAX_LIMITING_DB {
                break;
            }
            // dB of gain per LU of loudness, from the last two steps (1 without limiting).
            let slope = match last {
                Some((g, l)) if (l - d).abs() > 1e-3 => ((gain_db - g) / (l - d)).clamp(1.0, 10.0),
                _ => 1.0,
            };
            last = Some((gain_db, d));
            gain_db = (gain_db + slope * d).min(initial_gain_db + MAX_LIMITING_DB);
        }
    }
    if short_lu > 0.5 {
        eprintln!(
            "warning: {}: the conversion is {short_lu:.1} LU quieter than the source: its peaks would need more \
             than {MAX_LIMITING_DB} dB of limiting to match it",
            out.display()
        );
    }
    let mut writer = WavWriter::create(out, out_rate, job.format)?;
    let (_, limiter) = gain_and_limit(tmp_path.path(), gain_db, out_rate, Some(&mut writer))?;
    let report = writer.finish()?;
    drop(tmp_path);
    Ok(Done {
        seconds: report.samples as f64 / f64::from(out_rate),
        rate: out_rate,
        lufs: src_loud.lufs(),
        gain_db,
        limited_db: -20.0 * limiter.min_gain().log10(),
        clipped: report.clipped,
    })
}

/// Reads the conversion at the model's rate from `tmp`, applies `gain_db`, resamples it to
/// `rate` and limits its peaks; writes it to `writer` when given. Returns the loudness of the
/// result and the limiter (which knows how far it acted).
fn gain_and_limit(
    tmp: &Path,
    gain_db: f64,
    rate: u32,
    mut writer: Option<&mut WavWriter>,
) -> anyhow::Result<(LoudnessMeter, Limiter)> {
    let gain = 10f64.powf(gain_db / 20.0) as f32;
    let mut r = AudioReader::open(tmp, channel_mix(None))?;
    let mut resampler = ChunkResampler::new(r.info().sample_rate, rate)?;
    let mut limiter = Limiter::output(rate)?;
    let mut meter = LoudnessMeter::new(rate)?;
    let mut skip = limiter.latency();
    let (mut buf, mut y, mut z) = (Vec::new(), Vec::new(), Vec::new());
    let mut emit = |z: &mut Vec<f32>, skip: &mut usize| -> anyhow::Result<()> {
        let k = (*skip).min(z.len());
        *skip -= k;
        meter.push(&z[k..]);
        if let Some(w) = writer.as_deref_mut() {
            w.write(&z[k..])?;
        }
        z.clear();
        Ok(())
    };
    loop {
        buf.clear();
        if r.read(&mut buf, 1 << 15)? == 0 {
            break;
        }
        buf.iter_mut().for_each(|v| *v *= gain);
        y.clear();
        resampler.push(&buf, &mut y)?;
        limiter.push(&y, &mut z);
        emit(&mut z, &mut skip)?;
    }
    y.clear();
    resampler.finish(&mut y)?;
    limiter.push(&y, &mut z);
    limiter.finish(&mut z);
    emit(&mut z, &mut skip)?;
    Ok((meter, limiter))
}

/// The converted audio at the model's rate, on its way to a temporary file, measured.
struct Sink {
    writer: WavWriter,
    loud: LoudnessMeter,
    n: u64,
    peak: f32,
}

impl Sink {
    fn emit(&mut self, w: &[f32]) -> anyhow::Result<()> {
        self.peak = w.iter().fold(self.peak, |m, v| m.max(v.abs()));
        self.loud.push(w);
        self.n += w.len() as u64;
        self.writer.write(w)?;
        Ok(())
    }
}

/// Sample rate, loudness and peak of a file's mono mix (or channel), read in chunks, and its
/// first `head_seconds` of samples.
fn level(
    path: &Path,
    channel: Option<usize>,
    head_seconds: u32,
) -> anyhow::Result<(u32, LoudnessMeter, f32, Vec<f32>)> {
    let mut r = AudioReader::open(path, channel_mix(channel))?;
    let rate = r.info().sample_rate;
    let mut loud = LoudnessMeter::new(rate)?;
    let mut peak = 0f32;
    let head_len = rate as usize * head_seconds as usize;
    let mut head = Vec::new();
    let n = r.for_each_chunk(|buf| {
        peak = buf.iter().fold(peak, |m, v| m.max(v.abs()));
        loud.push(buf);
        let room = head_len - head.len();
        head.extend_from_slice(&buf[..room.min(buf.len())]);
    })?;
    if n == 0 {
        bail!("{}: no audio in the file", path.display());
    }
    Ok((rate, loud, peak, head))
}
