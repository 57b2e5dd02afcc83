//! Files through the conversion pipeline, in bounded memory: [`convert_file`] (offline: the
//! model in blocks of 10 s, the neural vocoder or Griffin-Lim in blocks, the source's loudness
//! matched) and
//! [`stream_file`] (the live [`Engine`] on a file, 10 ms at a time). The command line only
//! parses arguments, shows progress and prints the reports.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use voxswap_audio::{
    resample, AudioReader, ChannelMix, ChunkResampler, FrontendConfig, GriffinLimConfig, Limiter, LoudnessMeter, Mel,
    WavFormat, WavWriter,
};
use voxswap_model::{NeuralVocoder, SpeakerEmbedding, VoiceConverter};

use crate::adapt::{adapt, measure_source, Adaptation};
use crate::features::{features_mel, FeatureFrames};
use crate::{
    BlockGl, ComputeStats, Engine, EngineConfig, Error, Neural, NeuralFrames, Result, StageLatency, StreamingGl,
    Vocoder,
};

/// Settings of one file's conversion.
#[derive(Debug, Clone)]
pub struct FileJob<'a> {
    /// The model.
    pub conv: &'a VoiceConverter,
    /// The target voice, before adaptation.
    pub voice: &'a SpeakerEmbedding,
    /// How the voice adapts to the source (offline: measured on its first 30 s; streaming: on
    /// the past, as live).
    pub adaptation: Adaptation,
    /// The neural vocoder; Griffin-Lim when `None`.
    pub neural: Option<&'a NeuralVocoder>,
    /// Griffin-Lim iterations (offline, without a neural vocoder).
    pub iterations: u32,
    /// Output sample rate (default: the source's).
    pub rate: Option<u32>,
    /// Output sample format.
    pub format: WavFormat,
    /// Which channel of the source, or the mono mix.
    pub mix: ChannelMix,
}

impl FileJob<'_> {
    /// The vocoder of an offline conversion: the neural one, or Griffin-Lim in blocks of
    /// [`BLOCK_FRAMES`].
    ///
    /// # Errors
    /// A neural vocoder made for another frontend than the model's.
    pub fn offline_vocoder(&self) -> Result<Box<dyn Vocoder>> {
        let fe = &self.conv.config().frontend;
        Ok(match self.neural {
            Some(v) => Box::new(neural(v, fe)?),
            None => {
                let gl = GriffinLimConfig {
                    n_iter: self.iterations as usize,
                    ..Default::default()
                };
                Box::new(BlockGl::new(fe, gl, BLOCK_FRAMES, OVERLAP_FRAMES)?)
            }
        })
    }

    /// The vocoder of a streamed conversion: the neural one, or streaming Griffin-Lim.
    ///
    /// # Errors
    /// A neural vocoder made for another frontend than the model's.
    pub fn stream_vocoder(&self) -> Result<Box<dyn Vocoder>> {
        let fe = &self.conv.config().frontend;
        Ok(match self.neural {
            Some(v) => Box::new(neural_frames(v, fe)?),
            None => Box::new(StreamingGl::new(fe, StreamingGl::LOOKAHEAD, StreamingGl::ITERATIONS)?),
        })
    }
}

/// A stream of the neural vocoder `v`, once it is known to read the frontend `fe`'s mels.
///
/// # Errors
/// [`Error::Input`] when the vocoder was trained on another frontend.
pub fn neural(v: &NeuralVocoder, fe: &FrontendConfig) -> Result<Neural> {
    check_frontend(v, fe)?;
    Ok(Neural::new(v))
}

/// The frame-by-frame form of the neural vocoder `v` (the live engine's), once it is known to
/// read the frontend `fe`'s mels.
///
/// # Errors
/// [`Error::Input`] when the vocoder was trained on another frontend.
pub fn neural_frames(v: &NeuralVocoder, fe: &FrontendConfig) -> Result<NeuralFrames> {
    check_frontend(v, fe)?;
    NeuralFrames::new(v)
}

fn check_frontend(v: &NeuralVocoder, fe: &FrontendConfig) -> Result<()> {
    if &v.config().frontend != fe {
        return Err(Error::Input(
            "the neural vocoder was trained on another frontend than the model's (vocoder.json and \
             config.json disagree); use --vocoder griffin-lim, or train the vocoder for this model"
                .into(),
        ));
    }
    Ok(())
}

/// What an offline conversion did.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// Seconds written.
    pub seconds: f64,
    /// Sample rate written.
    pub rate: u32,
    /// Channels written (the source's layout, each the converted mix; one with `--channel`).
    pub channels: u16,
    /// The source's loudness (LUFS, all its channels as BS.1770 adds them), when it is long
    /// enough to gate.
    pub lufs: Option<f64>,
    /// Gain applied, dB.
    pub gain_db: f64,
    /// How far the limiter lowered the loudest peak, dB (0 when it did not act).
    pub limited_db: f64,
    /// Samples clipped to [−1, 1] by an integer output format.
    pub clipped: u64,
    /// Things the user should know (a source too short to measure, loudness not reached).
    pub warnings: Vec<String>,
}

/// Seconds of the source that give its speaker vector for `--contrast` and the conversion's
/// average spectrum for `--spectrum`.
pub const SOURCE_VOICE_SECONDS: u32 = 30;

/// Frames the model converts at a time (and Griffin-Lim's block): 10 s.
pub const BLOCK_FRAMES: usize = 1000;

/// The lowest source and output rate a conversion takes: below it a recording holds too little
/// of speech's band (up to 4 kHz) for the model, and its loudness (EBU R128's K-weighting, a
/// shelf at 1.5 kHz) cannot be measured, so it could not be matched.
pub const MIN_CONVERT_RATE: u32 = 8000;

/// Refuses a source or output rate below [`MIN_CONVERT_RATE`], naming the file.
fn check_rates(src: &Path, src_rate: u32, out_rate: u32) -> Result<()> {
    for (what, rate) in [("sample rate", src_rate), ("output rate", out_rate)] {
        if rate < MIN_CONVERT_RATE {
            return Err(Error::Input(format!(
                "{}: {what} {rate} Hz is below the {MIN_CONVERT_RATE} Hz that conversion needs (speech reaches 4 kHz); \
                 resample the source first (sox in.wav -r 16000 out.wav) or choose --rate {MIN_CONVERT_RATE} or more",
                src.display()
            )));
        }
    }
    Ok(())
}
/// Frames of crossfaded overlap between Griffin-Lim blocks.
pub const OVERLAP_FRAMES: usize = 20;
/// Loudness is matched within this (LU) before the output is written...
const LOUDNESS_TOLERANCE_LU: f64 = 0.1;
/// ... in at most this many measuring passes over the conversion...
const LOUDNESS_STEPS: usize = 8;
/// ... raising the gain by at most this much (dB) beyond what loudness alone asks, for the
/// limiter to take off the peaks again.
const MAX_LIMITING_DB: f64 = 20.0;

/// Source → 16 kHz → log-mel → model → vocoder → 16 kHz float temp file (pass 2), then
/// gain to the source's loudness, resampling to the output rate and the peak limiter (pass 3).
/// Every stage runs on blocks, so memory does not grow with the input's length (for causal
/// models; offline models hold the whole mel). `progress` hears of the source frames read (and
/// their total when the file says it).
///
/// # Errors
/// A file that cannot be read or written, a silent source or conversion, the model.
pub fn convert_file(
    src: &Path,
    out: &Path,
    job: &FileJob,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<FileReport> {
    let mut warnings = Vec::new();
    let fe: FrontendConfig = job.conv.config().frontend.clone();
    let info = AudioReader::open(src, job.mix)?.info().clone();
    let src_rate = info.sample_rate;
    check_rates(src, src_rate, job.rate.unwrap_or(src_rate))?;
    // Pass 1: the source's loudness, and its voice from its beginning.
    let keep = if job.adaptation.measures_source() {
        SOURCE_VOICE_SECONDS
    } else {
        0
    };
    let (src_loud, src_peak, head) = level(src, job.mix, keep)?;
    if src_peak < 1e-3 {
        return Err(Error::Input(format!(
            "{}: source is silent (peak {:.1} dBFS); nothing to convert",
            src.display(),
            20.0 * f64::from(src_peak.max(1e-12)).log10()
        )));
    }
    let source = if keep > 0 {
        let x = resample(&head, src_rate, fe.sample_rate)?;
        let measured = measure_source(job.conv, &x)?;
        if measured.is_none() {
            warnings.push(format!(
                "{}: source too short ({:.2} s) to measure its voice: no --contrast or --spectrum matching",
                src.display(),
                head.len() as f64 / f64::from(src_rate)
            ));
        }
        measured
    } else {
        None
    };
    // Contrast with the source's voice, then the correction that brings this conversion's
    // average spectrum to the reference's, measured on the conversion of the source's beginning
    // (the reference's own correction when that cannot be measured).
    let speaker = adapt(job.conv, job.voice, source.as_ref(), job.adaptation)?;
    let speaker = &speaker;
    let out_rate = job.rate.unwrap_or(src_rate);

    // Pass 2: convert at the model's rate into a temporary float file beside the output.
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp_path = voxswap_audio::partial::PartialFile::create(dir, ".voxswap-convert-", ".wav")
        .map_err(|e| Error::Input(format!("{}: cannot write a temporary file: {e}", dir.display())))?;
    let channels = out_channels(&info, job.mix);
    let mut sink = Sink {
        writer: WavWriter::create(tmp_path.path(), fe.sample_rate, WavFormat::Float32)?,
        loud: LoudnessMeter::new(fe.sample_rate)?.as_copies(usize::from(channels)),
        n: 0,
        peak: 0.0,
    };
    let mut reader = AudioReader::open(src, job.mix)?;
    let total = reader.info().frames;
    progress(0, total);
    let mut to_model = ChunkResampler::new(src_rate, fe.sample_rate)?;
    let mut features = FeatureFrames::new(&fe, job.conv.config().decoder.f0, BLOCK_FRAMES)?;
    let mut stream = job.conv.stream(speaker)?;
    let mut vocoder = job.offline_vocoder()?;
    let n_mels = fe.n_mels;
    let mut wave = Vec::new();
    let mut n_model_samples = 0u64;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut x16 = Vec::new();
    // The model on `frames` (all of them when `last`), its output into the vocoder.
    let mut convert_frames = |frames: &mut FeatureFrames, last: bool, wave: &mut Vec<f32>| -> Result<()> {
        let n = frames.ready();
        let take = match &stream {
            Some(_) if last || n >= BLOCK_FRAMES => n,
            None if last => n,
            _ => return Ok(()),
        };
        if take == 0 {
            return Ok(());
        }
        let (m, p) = frames.frames(take);
        let mel = features_mel(n_mels, m, p);
        let converted = match stream.as_mut() {
            Some(s) => {
                let x = Tensor::from_slice(&mel.data, (1, mel.n_mels, take), &Device::Cpu)?;
                let (x, pitch) = match mel.n_mels - n_mels {
                    0 => (x, None),
                    p => (x.narrow(1, 0, n_mels)?, Some(x.narrow(1, n_mels, p)?)),
                };
                let y = s.step_pitched(&x, pitch.as_ref())?.squeeze(0)?.to_vec2::<f32>()?;
                Mel {
                    n_mels,
                    frames: take,
                    data: y.concat(),
                }
            }
            None => job.conv.convert(&mel, speaker)?,
        };
        frames.drain(take);
        vocoder.push_mel(&converted, wave)?;
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
        progress(reader.frames_read(), total);
        x16.clear();
        to_model.push(&buf, &mut x16)?;
        n_model_samples += x16.len() as u64;
        features.push(&x16);
        convert_frames(&mut features, false, &mut wave)?;
        sink.emit(&wave)?;
        wave.clear();
    }
    x16.clear();
    to_model.finish(&mut x16)?;
    n_model_samples += x16.len() as u64;
    features.push(&x16);
    features.finish();
    convert_frames(&mut features, true, &mut wave)?;
    // The vocoder gives a hop per frame: cut back to the source's length.
    let keep = n_model_samples.saturating_sub(sink.n).min(wave.len() as u64) as usize;
    sink.emit(&wave[..keep])?;
    let Sink { writer, loud, peak, .. } = sink;
    writer.finish()?;

    // Pass 3: the gain that matches the source's loudness (as the limiter will leave it),
    // resampling to the output rate, the limiter.
    let initial_gain_db = loud
        .gain_to_match(&src_loud)
        .ok_or_else(|| Error::Input(format!("{}: the conversion came out silent", src.display())))?;
    let mut gain_db = initial_gain_db;
    let mut short_lu = 0.0;
    if f64::from(peak) * 10f64.powf(gain_db / 20.0) > 0.99 {
        // The limiter will lower the loudest peaks, and with them some loudness: measure what
        // it leaves and make up for it (secant steps: under heavy limiting a dB of gain buys
        // less than a dB of loudness).
        let mut last: Option<(f64, f64)> = None;
        for _ in 0..LOUDNESS_STEPS {
            let (after, _) = gain_and_limit(tmp_path.path(), gain_db, fe.sample_rate, None, channels)?;
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
        warnings.push(format!(
            "{}: the conversion is {short_lu:.1} LU quieter than the source: its peaks would need more \
             than {MAX_LIMITING_DB} dB of limiting to match it",
            out.display()
        ));
    }
    let mut writer = WavWriter::create_copies(out, out_rate, job.format, channels)?;
    let (_, limiter) = gain_and_limit(tmp_path.path(), gain_db, out_rate, Some(&mut writer), channels)?;
    let report = writer.finish()?;
    drop(tmp_path);
    Ok(FileReport {
        seconds: report.samples as f64 / f64::from(out_rate),
        rate: out_rate,
        channels,
        lufs: src_loud.lufs(),
        gain_db,
        limited_db: -20.0 * limiter.min_gain().log10(),
        clipped: report.clipped,
        warnings,
    })
}

/// Reads the conversion at the model's rate from `tmp`, applies `gain_db`, resamples it to
/// `rate` and limits its peaks; writes it to `writer` when given. Returns the loudness of the
/// result as heard from `channels` identical channels, and the limiter (which knows how far it
/// acted).
fn gain_and_limit(
    tmp: &Path,
    gain_db: f64,
    rate: u32,
    mut writer: Option<&mut WavWriter>,
    channels: u16,
) -> Result<(LoudnessMeter, Limiter)> {
    let gain = 10f64.powf(gain_db / 20.0) as f32;
    let mut r = AudioReader::open(tmp, ChannelMix::Downmix)?;
    let mut resampler = ChunkResampler::new(r.info().sample_rate, rate)?;
    let mut limiter = Limiter::output(rate)?;
    let mut meter = LoudnessMeter::new(rate)?.as_copies(usize::from(channels));
    let mut skip = limiter.latency();
    let (mut buf, mut y, mut z) = (Vec::new(), Vec::new(), Vec::new());
    let mut emit = |z: &mut Vec<f32>, skip: &mut usize| -> Result<()> {
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
    fn emit(&mut self, w: &[f32]) -> Result<()> {
        self.peak = w.iter().fold(self.peak, |m, v| m.max(v.abs()));
        self.loud.push(w);
        self.n += w.len() as u64;
        self.writer.write(w)?;
        Ok(())
    }
}

/// Channels a conversion of a file with `info` writes: the source's layout when its channels
/// are mixed (each output channel the converted mix), one when `--channel` picks one.
fn out_channels(info: &voxswap_audio::AudioInfo, mix: ChannelMix) -> u16 {
    match mix {
        ChannelMix::Downmix => u16::try_from(info.channels).unwrap_or(1),
        ChannelMix::Select(_) => 1,
    }
}

/// Loudness of a file of several channels as a listener hears them together (BS.1770 adds
/// their powers): one reader a channel, read in step and interleaved.
fn loudness_of_channels(path: &Path, info: &voxswap_audio::AudioInfo) -> Result<LoudnessMeter> {
    let mut readers = (0..info.channels)
        .map(|c| AudioReader::open(path, ChannelMix::Select(c)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut m = LoudnessMeter::with_channels(info.sample_rate, info.channels)?;
    let mut bufs = vec![Vec::new(); info.channels];
    let mut frames = Vec::new();
    loop {
        let mut n = usize::MAX;
        for (r, b) in readers.iter_mut().zip(&mut bufs) {
            b.clear();
            n = n.min(r.read(b, 1 << 15)?);
        }
        if n == 0 {
            break;
        }
        frames.clear();
        for t in 0..n {
            frames.extend(bufs.iter().map(|b| b[t]));
        }
        m.push_interleaved(&frames);
    }
    Ok(m)
}

/// Whether a file's loudness needs all its channels read apart (they are mixed, and several).
fn several_channels(info: &voxswap_audio::AudioInfo, mix: ChannelMix) -> bool {
    matches!(mix, ChannelMix::Downmix) && info.channels > 1
}

/// Loudness as a listener hears it (see [`loudness_of_channels`]), peak of the mono mix (or
/// channel), and its first `head_seconds` of samples, in one pass over a mono file (a second
/// one, a channel apart, for several channels).
fn level(path: &Path, mix: ChannelMix, head_seconds: u32) -> Result<(LoudnessMeter, f32, Vec<f32>)> {
    let mut r = AudioReader::open(path, mix)?;
    let info = r.info().clone();
    let several = several_channels(&info, mix);
    let mut loud = LoudnessMeter::new(info.sample_rate)?;
    let mut peak = 0f32;
    let head_len = info.sample_rate as usize * head_seconds as usize;
    let mut head = Vec::new();
    let n = r.for_each_chunk(|buf| {
        peak = buf.iter().fold(peak, |m, v| m.max(v.abs()));
        if !several {
            loud.push(buf);
        }
        let room = head_len - head.len();
        head.extend_from_slice(&buf[..room.min(buf.len())]);
    })?;
    if n == 0 {
        return Err(Error::Input(format!("{}: no audio in the file", path.display())));
    }
    if several {
        loud = loudness_of_channels(path, &info)?;
    }
    Ok((loud, peak, head))
}

/// What a streamed conversion did.
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// Seconds written.
    pub seconds: f64,
    /// Sample rate written.
    pub rate: u32,
    /// Channels written (the source's layout, each the converted mix; one with `--channel`).
    pub channels: u16,
    /// The output's integrated loudness (a stream cannot match the source's: it would need
    /// the whole source first), and the source's, LUFS.
    pub lufs: Option<f64>,
    /// The source's integrated loudness, LUFS.
    pub source_lufs: Option<f64>,
    /// Samples clipped to [−1, 1] by an integer output format.
    pub clipped: u64,
    /// The engine's algorithmic latency, ms, and its stages.
    pub latency_ms: f64,
    /// Each stage's share of it.
    pub stages: Vec<StageLatency>,
    /// Compute time per model step.
    pub compute: ComputeStats,
    /// Audio seconds per second of wall time.
    pub speed: f64,
}

/// `src` through the live [`Engine`] (the neural vocoder or streaming Griffin-Lim, a frame per
/// model step, live
/// adaptation), pushed 10 ms at a time, into `out`: the samples live conversion would play,
/// with the engine's latency cut off (the output is aligned with the source and as long).
///
/// # Errors
/// A file that cannot be read or written, the model.
pub fn stream_file(
    src: &Path,
    out: &Path,
    job: &FileJob,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<StreamReport> {
    let mut reader = AudioReader::open(src, job.mix)?;
    let src_rate = reader.info().sample_rate;
    let total = reader.info().frames;
    let out_rate = job.rate.unwrap_or(src_rate);
    check_rates(src, src_rate, out_rate)?;
    let vocoder = job.stream_vocoder()?;
    let cfg = EngineConfig {
        adaptation: job.adaptation,
        ..EngineConfig::live(src_rate, out_rate)
    };
    let mut engine = Engine::new(job.conv, job.voice, vocoder, cfg)?;
    let mut skip = engine.latency_samples();
    let info = reader.info().clone();
    let channels = out_channels(&info, job.mix);
    // The source's loudness as the listener hears it, measured as it streams past (its
    // channels apart, after, when there are several).
    let several = several_channels(&info, job.mix);
    let mut src_loud = LoudnessMeter::new(src_rate)?;
    let mut writer = WavWriter::create_copies(out, out_rate, job.format, channels)?;
    let mut loud = LoudnessMeter::new(out_rate)?.as_copies(usize::from(channels));
    let chunk = (src_rate / 100).max(1) as usize;
    let (mut buf, mut y) = (Vec::new(), Vec::new());
    let mut write = |y: &mut Vec<f32>, skip: &mut usize| -> Result<()> {
        let k = (*skip).min(y.len());
        *skip -= k;
        writer.write(&y[k..])?;
        loud.push(&y[k..]);
        y.clear();
        Ok(())
    };
    let t0 = Instant::now();
    progress(0, total);
    loop {
        buf.clear();
        if reader.read(&mut buf, chunk)? == 0 {
            break;
        }
        if !several {
            src_loud.push(&buf);
        }
        engine.push(&buf, &mut y)?;
        write(&mut y, &mut skip)?;
        progress(reader.frames_read(), total);
    }
    engine.finish(&mut y)?;
    write(&mut y, &mut skip)?;
    let wall = t0.elapsed().as_secs_f64();
    let report = writer.finish()?;
    let seconds = report.samples as f64 / f64::from(out_rate);
    Ok(StreamReport {
        seconds,
        rate: out_rate,
        channels,
        lufs: loud.lufs(),
        source_lufs: if several {
            loudness_of_channels(src, &info)?.lufs()
        } else {
            src_loud.lufs()
        },
        clipped: report.clipped,
        latency_ms: engine.latency_ms(),
        stages: engine.stages(),
        compute: engine.compute_stats().clone(),
        speed: seconds / wall.max(1e-9),
    })
}
