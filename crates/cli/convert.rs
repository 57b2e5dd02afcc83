//! `voxswap convert`: speech into another voice, file to file or folder to folder, in bounded
//! memory; plus the model and reference handling `embed` shares.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use voxswap_audio::{
    resample, AudioReader, BlockVocoder, ChunkResampler, FrontendConfig, GriffinLimConfig, LogMel, Mel,
    StreamingLogMel, WavFormat, WavWriter,
};
use voxswap_model::bank::{self, SpeakerBank};
use voxswap_model::{SpeakerEmbedding, VoiceConverter};
use voxswap_train::data::AUDIO_EXTENSIONS;

use crate::io::{channel_mix, check_output, read_at_rate, say, SynthArgs};

/// Where the model comes from.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Model folder (config.json, model.safetensors). Default: $VOXSWAP_MODEL, else the
    /// `pretrained/` folder shipped with voxswap.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

impl ModelArgs {
    /// The model folder to use.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.model {
            return Ok(d.clone());
        }
        if let Some(d) = std::env::var_os("VOXSWAP_MODEL") {
            return Ok(PathBuf::from(d));
        }
        let mut candidates = vec![PathBuf::from("pretrained")];
        if let Ok(exe) = std::env::current_exe() {
            // target/release/voxswap → the checkout's pretrained/
            if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
                candidates.push(root.join("pretrained"));
            }
        }
        candidates
            .into_iter()
            .find(|d| d.join(voxswap_model::io::CONFIG_FILE).is_file())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no model found: pass --model DIR (a folder with config.json and model.safetensors), \
                     set VOXSWAP_MODEL, or run from the voxswap checkout, which ships pretrained/"
                )
            })
    }

    /// Loads the model and its weights' fingerprint.
    pub fn load(&self) -> anyhow::Result<(VoiceConverter, String, PathBuf)> {
        let dir = self.dir()?;
        let conv = VoiceConverter::load(&dir, &Device::Cpu)?;
        let fp = bank::fingerprint(&voxswap_model::io::weights_path(&dir))?;
        Ok((conv, fp, dir))
    }
}

/// A reference voice from files: the mean embedding (with its spectrum correction when
/// `spectrum`, see `VoiceConverter::embed`) and the seconds of audio it came from.
pub fn embed_files(
    conv: &VoiceConverter,
    files: &[PathBuf],
    channel: Option<usize>,
    spectrum: bool,
) -> anyhow::Result<(SpeakerEmbedding, f64)> {
    if files.is_empty() {
        bail!("no reference given: pass -t REF (a few seconds of the target voice)");
    }
    let fe = conv.config().frontend.clone();
    let mut logmel = LogMel::new(&fe)?;
    let mut embeddings = Vec::new();
    let mut seconds = 0.0;
    for f in files {
        let (audio, x) = read_at_rate(f, channel, fe.sample_rate)?;
        let peak = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        if peak < 1e-3 {
            bail!(
                "{}: reference is silent (peak {:.1} dBFS)",
                f.display(),
                20.0 * f64::from(peak.max(1e-12)).log10()
            );
        }
        seconds += audio.duration_s();
        // Each reference on its own (a too-short one is named); the mean of their vectors is
        // what `embed` of all of them gives (each spectrum correction is measured with its own
        // reference's vector, then averaged).
        let mel = [logmel.compute(&x)];
        let e = if spectrum {
            conv.embed(&mel)
        } else {
            conv.speaker_vector(&mel)
        };
        let e = e.with_context(|| format!("{}: reference", f.display()))?;
        embeddings.push(e);
    }
    let parts: Vec<(f32, &SpeakerEmbedding)> = embeddings.iter().map(|e| (1.0, e)).collect();
    Ok((SpeakerEmbedding::mix(&parts)?, seconds))
}

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
    /// model knows.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_CONTRAST, value_parser = parse_contrast)]
    contrast: f32,
    /// How far the conversion's long-term average spectrum is moved to the target reference's:
    /// the model renders a voice it has not heard only part of the way. The conversion of the
    /// source's first 30 s shows by how much, and the correction is added to every frame. 0
    /// leaves the model's output as it is, 1 matches the reference's average spectrum.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SPECTRUM, value_parser = parse_spectrum)]
    spectrum: f32,
    #[command(flatten)]
    model: ModelArgs,
    /// Vocoder: griffin-lim (the neural vocoder is not available in this version).
    #[arg(long, value_enum, default_value_t = Vocoder::GriffinLim)]
    vocoder: Vocoder,
    #[command(flatten)]
    synth: SynthArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Vocoder {
    /// Griffin-Lim phase reconstruction (no extra model).
    GriffinLim,
    /// A neural vocoder (not in this version).
    Neural,
}

/// `--contrast`'s default.
const DEFAULT_CONTRAST: f32 = 0.5;
/// Seconds of the source that give its speaker vector for `--contrast` and the conversion's
/// average spectrum for `--spectrum`.
const SOURCE_VOICE_SECONDS: u32 = 30;

/// `--spectrum`'s default.
const DEFAULT_SPECTRUM: f32 = 1.0;

fn parse_contrast(s: &str) -> Result<f32, String> {
    parse_in(s, 4.0)
}

fn parse_spectrum(s: &str) -> Result<f32, String> {
    parse_in(s, 2.0)
}

fn parse_in(s: &str, max: f32) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number from 0 to {max}")),
    }
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
}

/// What one conversion did.
struct Done {
    seconds: f64,
    rate: u32,
    gain_db: f64,
    clipped: u64,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.vocoder == Vocoder::Neural {
        bail!("--vocoder neural: this version has no neural vocoder; use --vocoder griffin-lim");
    }
    let (conv, fp, model_dir) = a.model.load()?;
    let speaker = match &a.speaker {
        Some(spec) => {
            let dir = a.bank.clone().unwrap_or_else(|| model_dir.join("speakers"));
            let bank = SpeakerBank::open(&dir)?;
            let parts = bank::parse_mix(spec)?;
            let entries = parts
                .iter()
                .map(|(n, w)| Ok((*w, bank.get(n)?.embedding_for(&fp)?)))
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
        None => embed_files(&conv, &a.targets, a.synth.channel, a.spectrum > 0.0)?.0,
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
    };
    if a.source.is_dir() {
        return run_folder(&a.source, &a.output, &job);
    }
    check_output(&a.output, &a.source)?;
    let done = convert_file(&a.source, &a.output, &job)?;
    say(format!(
        "wrote {} ({:.2} s at {} Hz, gain {:+.1} dB to match the source's loudness)",
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

fn run_folder(src: &Path, out: &Path, job: &Job) -> anyhow::Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("{}: cannot read folder", src.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(x)))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no audio files (wav, flac, mp3, ogg) in this folder", src.display());
    }
    if out.is_file() {
        bail!("{}: is a file; the output of a folder is a folder", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create folder", out.display()))?;
    let bar = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg} [{elapsed}, {eta} left]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut failed = 0;
    for f in &files {
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = out.join(format!("{name}.wav"));
        bar.set_message(name.clone());
        if let Err(e) = check_output(&dest, f).and_then(|()| convert_file(f, &dest, job)) {
            bar.println(format!("error: {e:#}"));
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

/// Frames the model converts at a time (and Griffin-Lim's block): 10 s.
const BLOCK_FRAMES: usize = 1000;
/// Frames of crossfaded overlap between Griffin-Lim blocks.
const OVERLAP_FRAMES: usize = 20;

/// Source → 16 kHz → log-mel → model → Griffin-Lim → 16 kHz float temp file (pass 2), then
/// gain and resampling to the output rate (pass 3). Every stage runs on blocks, so memory does
/// not grow with the input's length (for causal models; offline models hold the whole mel).
fn convert_file(src: &Path, out: &Path, job: &Job) -> anyhow::Result<Done> {
    let fe: FrontendConfig = job.conv.config().frontend.clone();
    // Pass 1: the source's level, and its voice from its beginning.
    let keep = if job.contrast > 0.0 || job.spectrum > 0.0 {
        SOURCE_VOICE_SECONDS
    } else {
        0
    };
    let (src_rate, src_rms, src_peak, head) = level(src, job.channel, keep)?;
    if src_peak < 1e-3 {
        bail!(
            "{}: source is silent (peak {:.1} dBFS); nothing to convert",
            src.display(),
            20.0 * f64::from(src_peak.max(1e-12)).log10()
        );
    }
    let head = if keep > 0 {
        let x = resample(&head, src_rate, fe.sample_rate).with_context(|| format!("resampling {}", src.display()))?;
        Some(LogMel::new(&fe)?.compute(&x))
    } else {
        None
    };
    let mut speaker = job.speaker.clone();
    if let (Some(head), true) = (&head, job.contrast > 0.0) {
        match job.conv.speaker_vector(std::slice::from_ref(head)) {
            Ok(voice) => speaker = speaker.contrast(&voice, job.contrast)?,
            Err(e) => eprintln!("warning: {}: no --contrast: {e}", src.display()),
        }
    }
    // The correction that brings this conversion's average spectrum to the reference's,
    // measured on the conversion of the source's beginning (the reference's own correction
    // when that cannot be measured).
    let speaker = match head
        .as_ref()
        .map(|h| job.conv.match_spectrum(h, &speaker, job.spectrum))
    {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("warning: {}: --spectrum from the reference alone: {e}", src.display());
            speaker.spectrum_strength(job.spectrum)?
        }
        None => speaker.spectrum_strength(job.spectrum)?,
    };
    let speaker = &speaker;
    let out_rate = job.rate.unwrap_or(src_rate);

    // Pass 2: convert at the model's rate into a temporary float file beside the output.
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".voxswap-convert-")
        .suffix(".wav")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot write a temporary file", dir.display()))?;
    let tmp_path = tmp.path().to_path_buf();
    let mut sink = Sink {
        writer: WavWriter::create(&tmp_path, fe.sample_rate, WavFormat::Float32)?,
        sum_sq: 0.0,
        n: 0,
        peak: 0.0,
    };
    let mut reader = AudioReader::open(src, channel_mix(job.channel))?;
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
    let Sink {
        writer,
        sum_sq,
        n,
        peak,
        ..
    } = sink;
    writer.finish()?;

    // Pass 3: loudness to the source's, resampled to the output rate.
    let rms = (sum_sq / n.max(1) as f64).sqrt();
    if rms <= 1e-9 {
        bail!("{}: the conversion came out silent", src.display());
    }
    let mut gain = src_rms / rms;
    if f64::from(peak) * gain > 0.99 && job.format == WavFormat::Pcm16 {
        gain = 0.99 / f64::from(peak);
    }
    let mut writer = WavWriter::create(out, out_rate, job.format)?;
    let mut from_model = ChunkResampler::new(fe.sample_rate, out_rate)?;
    let mut r = AudioReader::open(&tmp_path, channel_mix(None))?;
    let mut y = Vec::new();
    loop {
        buf.clear();
        if r.read(&mut buf, 1 << 15)? == 0 {
            break;
        }
        buf.iter_mut().for_each(|v| *v *= gain as f32);
        y.clear();
        from_model.push(&buf, &mut y)?;
        writer.write(&y)?;
    }
    y.clear();
    from_model.finish(&mut y)?;
    writer.write(&y)?;
    let report = writer.finish()?;
    drop(tmp);
    Ok(Done {
        seconds: report.samples as f64 / f64::from(out_rate),
        rate: out_rate,
        gain_db: 20.0 * gain.log10(),
        clipped: report.clipped,
    })
}

/// The converted audio at the model's rate, on its way to a temporary file, measured.
struct Sink {
    writer: WavWriter,
    sum_sq: f64,
    n: u64,
    peak: f32,
}

impl Sink {
    fn emit(&mut self, w: &[f32]) -> anyhow::Result<()> {
        for &v in w {
            self.sum_sq += f64::from(v) * f64::from(v);
            self.peak = self.peak.max(v.abs());
        }
        self.n += w.len() as u64;
        self.writer.write(w)?;
        Ok(())
    }
}

/// Sample rate, RMS and peak of a file's mono mix (or channel), read in chunks, and its first
/// `head_seconds` of samples.
fn level(path: &Path, channel: Option<usize>, head_seconds: u32) -> anyhow::Result<(u32, f64, f32, Vec<f32>)> {
    let mut r = AudioReader::open(path, channel_mix(channel))?;
    let rate = r.info().sample_rate;
    let (mut sum_sq, mut peak) = (0f64, 0f32);
    let head_len = rate as usize * head_seconds as usize;
    let mut head = Vec::new();
    let n = r.for_each_chunk(|buf| {
        for &v in buf {
            sum_sq += f64::from(v) * f64::from(v);
            peak = peak.max(v.abs());
        }
        let room = head_len - head.len();
        head.extend_from_slice(&buf[..room.min(buf.len())]);
    })?;
    if n == 0 {
        bail!("{}: no audio in the file", path.display());
    }
    Ok((rate, (sum_sq / n as f64).sqrt(), peak, head))
}
