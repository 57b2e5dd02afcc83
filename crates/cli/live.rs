//! `voxswap live` (microphone → converted voice → speakers, voices switched by key) and
//! `voxswap devices`.
//!
//! Threads: the input callback (or a file read at real-time pace) pushes mono samples into an
//! rtrb ring; the DSP thread runs the engine on whatever has arrived and pushes the result into
//! a second ring; the output callback (or a null sink at real-time pace) pops it. Callbacks only
//! convert formats, copy between the device buffer and a ring, fill silence on an under-run and
//! bump atomic counters. A recorder thread writes `--record` files; the main thread draws the
//! status and reads keys.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use voxswap_audio::{read_mono, ChannelMix, WavFormat, WavWriter};
use voxswap_model::bank;
use voxswap_model::SpeakerEmbedding;
use voxswap_stream::{Adaptation, Engine, EngineConfig, StreamingGl, Vocoder};

use crate::convert::{parse_contrast, parse_spectrum, DEFAULT_CONTRAST, DEFAULT_SPECTRUM};
use crate::io::{say, VocoderArgs};
use crate::voice::{banks, embed_files, find_speaker, ModelArgs};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("voice").required(true).multiple(true).args(["targets", "speaker"])))]
pub struct Args {
    /// A reference recording of a target voice: each -t is one voice (keys 1-9 switch).
    #[arg(short = 't', long = "target", value_name = "REF", conflicts_with = "speaker")]
    targets: Vec<PathBuf>,
    /// A voice from a speaker bank, `alice` or a mix `alice:0.7,bob:0.3`: each --speaker is one
    /// voice (keys 1-9 switch).
    #[arg(long, value_name = "NAME[:W],...", value_parser = crate::voice::parse_speaker_spec)]
    speaker: Vec<String>,
    /// Speaker bank folder for --speaker (default: yours and the model's).
    #[arg(long, value_name = "DIR")]
    bank: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    vocoder: VocoderArgs,
    /// Input device: a part of its name or its id from `voxswap devices` (default: the system's).
    #[arg(long, value_name = "NAME")]
    input: Option<String>,
    /// Output device: a part of its name or its id (default: the system's).
    #[arg(long, value_name = "NAME")]
    output: Option<String>,
    /// Sample rate of both devices in Hz, 8000 to 192000 (default: each device's own).
    #[arg(long, value_parser = clap::value_parser!(u32).range(8000..=192000))]
    rate: Option<u32>,
    /// Device buffer in frames, 16 to 16384 (default: the device's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=16384))]
    buffer: Option<u32>,
    /// Play this file as the microphone, at real-time pace, and stop at its end (demos, tests).
    #[arg(long, value_name = "FILE")]
    input_file: Option<PathBuf>,
    /// Send the output to no device (a sink that takes it at real-time pace).
    #[arg(long)]
    null_output: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// One status line a second on stdout instead of the interactive screen (for scripts and
    /// logs; Ctrl-C stops).
    #[arg(long)]
    no_tui: bool,
    /// Write the input and the output as WAV files into DIR (input.wav, output.wav).
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Silence the output starts with, ms, 0 to 1000: the margin against under-runs.
    #[arg(long, default_value_t = 30.0, value_parser = parse_margin)]
    margin_ms: f64,
    /// Linux with PulseAudio or PipeWire: the converted voice goes to a virtual microphone
    /// named `voxswap` (a null sink and its remapped monitor, made with pactl and removed on
    /// exit), which call and recording apps can pick like any microphone.
    #[arg(long, conflicts_with_all = ["null_output", "output"])]
    virtual_mic: bool,
    /// How long a voice switch glides, ms, 0 to 2000.
    #[arg(long, default_value_t = 100.0, value_parser = parse_glide)]
    glide_ms: f64,
    /// How far the target voice is pushed away from yours (as `convert --contrast`): your voice
    /// is measured on what you said so far (after 1, 2, 4, 8 and 16 s, then every 16 s), and
    /// the voice glides to the new setting 1 s after each measurement. S from 0 to 4.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_CONTRAST, value_parser = parse_contrast)]
    contrast: f32,
    /// How far the conversion's average spectrum is moved to the references' (as `convert
    /// --spectrum`), measured on your conversion so far, as --contrast is. S from 0 to 2.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SPECTRUM, value_parser = parse_spectrum)]
    spectrum: f32,
}

fn parse_margin(s: &str) -> Result<f64, String> {
    crate::io::parse_in(s, 1000.0)
}

fn parse_glide(s: &str) -> Result<f64, String> {
    crate::io::parse_in(s, 2000.0)
}

#[derive(Debug, clap::Args)]
pub struct DevicesArgs {}

/// `voxswap devices`: every input and output device with its rates and channel counts.
pub fn devices(_a: DevicesArgs) -> anyhow::Result<ExitCode> {
    let host = cpal::default_host();
    let default_in = host
        .default_input_device()
        .and_then(|d| d.id().ok())
        .map(|i| i.to_string());
    let default_out = host
        .default_output_device()
        .and_then(|d| d.id().ok())
        .map(|i| i.to_string());
    let devices: Vec<cpal::Device> = host.devices().context("listing audio devices")?.collect();
    if devices.is_empty() {
        say("no audio devices found")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for d in &devices {
        let id = d.id().map(|i| i.to_string()).unwrap_or_else(|_| "?".into());
        let name = d
            .description()
            .map(|x| x.name().to_string())
            .unwrap_or_else(|_| id.clone());
        let mark = |x: &Option<String>, what: &str| {
            if x.as_deref() == Some(id.as_str()) {
                format!(" [default {what}]")
            } else {
                String::new()
            }
        };
        text.push_str(&format!(
            "{name}  ({id}){}{}\n",
            mark(&default_in, "input"),
            mark(&default_out, "output")
        ));
        for (dir, configs) in [
            (
                "input",
                d.supported_input_configs()
                    .map(|c| c.collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
            (
                "output",
                d.supported_output_configs()
                    .map(|c| c.collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
        ] {
            if configs.is_empty() {
                continue;
            }
            let chans = configs.iter().map(cpal::SupportedStreamConfigRange::channels);
            let (c_lo, c_hi) = (chans.clone().min().unwrap_or(0), chans.max().unwrap_or(0));
            let lo = configs
                .iter()
                .map(cpal::SupportedStreamConfigRange::min_sample_rate)
                .min()
                .unwrap_or(0);
            let hi = configs
                .iter()
                .map(cpal::SupportedStreamConfigRange::max_sample_rate)
                .max()
                .unwrap_or(0);
            let ch = if c_lo == c_hi {
                format!("{c_lo}")
            } else {
                format!("{c_lo}–{c_hi}")
            };
            let rates = if lo == hi {
                format!("{lo} Hz")
            } else {
                format!("{lo}–{hi} Hz")
            };
            text.push_str(&format!("  {dir:<6} {rates}, {ch} channel(s)\n"));
        }
    }
    text.pop();
    say(text)?;
    Ok(ExitCode::SUCCESS)
}

/// What every thread shares: counters and commands (atomics), and the error that ended a run.
#[derive(Debug, Default)]
struct Shared {
    quit: AtomicBool,
    /// The DSP thread has delivered its first output: from then on an empty ring is an
    /// under-run (before, the output device is only filling its first buffer).
    started: AtomicBool,
    /// The input has ended (file input); the DSP thread finishes the stream and quits.
    input_done: AtomicBool,
    underruns: AtomicU64,
    overruns: AtomicU64,
    in_peak: AtomicU32,
    out_peak: AtomicU32,
    dsp_busy_ns: AtomicU64,
    /// Voice requested by a key (index + 1; 0 = none pending); `usize::MAX` = the mix of 1 and 2.
    voice_cmd: AtomicUsize,
    bypass: AtomicBool,
    /// Worst DSP step, µs, since the last status.
    dsp_max_us: AtomicU64,
    /// Audio callbacks so far of the input (0) and the output (1): a device that reported an
    /// error and still calls back has recovered.
    callbacks: [AtomicU64; 2],
    /// A device error not yet known to be recovered from: its message, the device (0 input,
    /// 1 output), its callback count when it came, and when (set from cpal's error callback,
    /// never from an audio callback).
    device_error: std::sync::Mutex<Option<(String, usize, u64, Instant)>>,
    /// Device errors recovered from, and the last one's message.
    device_errors: AtomicU64,
    recovered: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn peak(slot: &AtomicU32, v: f32) {
        let mut cur = slot.load(Ordering::Relaxed);
        while v > f32::from_bits(cur) {
            match slot.compare_exchange_weak(cur, v.to_bits(), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
    }

    fn take_peak(slot: &AtomicU32) -> f32 {
        f32::from_bits(slot.swap(0, Ordering::Relaxed))
    }
}

static SHARED: std::sync::OnceLock<Arc<Shared>> = std::sync::OnceLock::new();

/// Set to a number of milliseconds, the DSP thread fails that long after it starts: how the
/// tests check that a failing conversion ends the run with its error.
const DSP_FAULT_ENV: &str = "VOXSWAP_TEST_DSP_FAILS_AFTER_MS";

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let shared = Arc::new(Shared::default());
    let _ = SHARED.set(shared.clone());
    ctrlc::set_handler(|| {
        if let Some(s) = SHARED.get() {
            if s.quit.swap(true, Ordering::SeqCst) {
                voxswap_audio::partial::remove_all();
                std::process::exit(130);
            }
        }
    })
    .context("installing the Ctrl-C handler")?;
    // Fault injection for the tests: the DSP thread fails after this many ms (read before any
    // thread starts).
    let dsp_fails_after = std::env::var(DSP_FAULT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    if a.targets.is_empty() && a.speaker.is_empty() {
        bail!("no voice given: pass -t REF (a few seconds of a voice; one -t per voice) or --speaker NAME");
    }
    if let Some(d) = &a.record {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create folder", d.display()))?;
    }
    let (conv, fp, model_dir) = a.model.load()?;
    let neural = a.vocoder.load(&model_dir)?;
    // The voices, each a value: references' embeddings with their spectrum corrections, or
    // bank entries and mixes of them.
    let mut voices: Vec<(String, SpeakerEmbedding)> = Vec::new();
    for t in &a.targets {
        let (e, _) = embed_files(&conv, std::slice::from_ref(t), None, true)?;
        let name = t
            .file_stem()
            .map_or_else(|| t.display().to_string(), |s| s.to_string_lossy().into_owned());
        voices.push((name, e));
    }
    let dirs = banks(a.bank.as_deref(), &model_dir);
    for spec in &a.speaker {
        let parts = bank::parse_mix(spec)?;
        let entries = parts
            .iter()
            .map(|(n, w)| Ok((*w, find_speaker(&dirs, n)?.embedding_for(&fp)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let refs: Vec<(f32, &SpeakerEmbedding)> = entries.iter().map(|(w, e)| (*w, e)).collect();
        voices.push((spec.clone(), SpeakerEmbedding::mix(&refs)?));
    }
    if voices.len() > 9 {
        bail!("{} voices: keys 1-9 switch between at most 9", voices.len());
    }

    // The virtual microphone: made before the output opens, so that it opens on it.
    let _virtual_mic = if a.virtual_mic {
        Some(VirtualMic::create()?)
    } else {
        None
    };

    // Input: a device or a file.
    let host = cpal::default_host();
    let file_input = match &a.input_file {
        Some(p) => Some(read_mono(p, ChannelMix::Downmix)?),
        None => None,
    };
    let in_dev = match (&file_input, &a.input) {
        (Some(_), _) => None,
        (None, name) => Some(pick(&host, name.as_deref(), true)?),
    };
    let out_dev = if a.null_output {
        None
    } else {
        Some(pick(&host, a.output.as_deref(), false)?)
    };
    let (in_rate, in_channels, in_format) = match (&file_input, &in_dev) {
        (Some(f), _) => (f.sample_rate, 1, cpal::SampleFormat::F32),
        (None, Some(d)) => stream_params(d, true, a.rate)?,
        (None, None) => unreachable_device()?,
    };
    let (out_rate, out_channels, out_format) = match &out_dev {
        Some(d) => stream_params(d, false, a.rate)?,
        None => (a.rate.unwrap_or(in_rate), 1, cpal::SampleFormat::F32),
    };

    let fe = conv.config().frontend.clone();
    let vocoder: Box<dyn Vocoder> = match &neural {
        Some(v) => Box::new(voxswap_stream::file::neural_frames(v, &fe)?),
        None => Box::new(StreamingGl::new(&fe, StreamingGl::LOOKAHEAD, StreamingGl::ITERATIONS)?),
    };
    let mut cfg = EngineConfig::live(in_rate, out_rate);
    cfg.glide_ms = a.glide_ms;
    cfg.adaptation = Adaptation {
        contrast: a.contrast,
        spectrum: a.spectrum,
    };
    // The DSP thread never waits for a measurement of the talker: a late one applies when ready.
    cfg.adaptation_waits = false;
    let mut engine = Engine::new(&conv, &voices[0].1, vocoder, cfg)?;
    let algorithmic_ms = engine.latency_ms();

    // Rings sized in milliseconds: a second each way is far more than any buffer.
    let (mut in_prod, mut in_cons) = rtrb::RingBuffer::<f32>::new(in_rate as usize);
    let (mut out_prod, mut out_cons) = rtrb::RingBuffer::<f32>::new(out_rate as usize);
    let margin = (a.margin_ms * 1e-3 * f64::from(out_rate)).round() as usize;
    for _ in 0..margin {
        let _ = out_prod.push(0.0);
    }
    let (rec_in, rec_out) = match &a.record {
        Some(d) => {
            let (pi, ci) = rtrb::RingBuffer::<f32>::new(in_rate as usize * 4);
            let (po, co) = rtrb::RingBuffer::<f32>::new(out_rate as usize * 4);
            (
                Some((pi, ci, d.join("input.wav"))),
                Some((po, co, d.join("output.wav"))),
            )
        }
        None => (None, None),
    };
    let (mut rec_in_prod, rec_in_rest) = match rec_in {
        Some((p, c, path)) => (Some(p), Some((c, path))),
        None => (None, None),
    };
    let (mut rec_out_prod, rec_out_rest) = match rec_out {
        Some((p, c, path)) => (Some(p), Some((c, path))),
        None => (None, None),
    };

    // The recorder: a non-real-time thread.
    let recorder = {
        let shared = shared.clone();
        let (ri, ro) = (rec_in_rest, rec_out_rest);
        std::thread::Builder::new()
            .name("voxswap-record".into())
            .spawn(move || -> anyhow::Result<()> {
                let open = |x: Option<(rtrb::Consumer<f32>, PathBuf)>,
                            rate: u32|
                 -> anyhow::Result<Option<(rtrb::Consumer<f32>, WavWriter)>> {
                    Ok(match x {
                        Some((c, p)) => Some((c, WavWriter::create(&p, rate, WavFormat::Float32)?)),
                        None => None,
                    })
                };
                let mut writers = [open(ri, in_rate)?, open(ro, out_rate)?];
                if writers.iter().all(Option::is_none) {
                    return Ok(());
                }
                let mut buf = Vec::with_capacity(8192);
                loop {
                    let done = shared.quit.load(Ordering::SeqCst);
                    for (c, w) in writers.iter_mut().flatten() {
                        buf.clear();
                        while let Ok(v) = c.pop() {
                            buf.push(v);
                        }
                        w.write(&buf)?;
                    }
                    if done {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                for (_, w) in writers.into_iter().flatten() {
                    w.finish()?;
                }
                Ok(())
            })?
    };

    // The DSP thread: owns the engine.
    let dsp = {
        let shared = shared.clone();
        let voices: Vec<SpeakerEmbedding> = voices.iter().map(|(_, v)| v.clone()).collect();
        std::thread::Builder::new()
            .name("voxswap-dsp".into())
            .spawn(move || -> anyhow::Result<Engine> {
                voxswap_model::par::flush_denormals();
                let mut input = Vec::with_capacity(in_rate as usize);
                let mut output = Vec::with_capacity(out_rate as usize * 2);
                let t_start = Instant::now();
                loop {
                    if shared.quit.load(Ordering::SeqCst) {
                        break;
                    }
                    if dsp_fails_after.is_some_and(|d| t_start.elapsed() >= d) {
                        bail!("injected failure ({DSP_FAULT_ENV})");
                    }
                    // Commands from keys.
                    match shared.voice_cmd.swap(0, Ordering::SeqCst) {
                        0 => {}
                        usize::MAX if voices.len() >= 2 => {
                            engine.set_voice(&SpeakerEmbedding::mix(&[(0.5, &voices[0]), (0.5, &voices[1])])?)?
                        }
                        k if k <= voices.len() => engine.set_voice(&voices[k - 1])?,
                        _ => {}
                    }
                    let by = shared.bypass.load(Ordering::Relaxed);
                    if by != engine.bypass() {
                        engine.set_bypass(by);
                    }
                    input.clear();
                    let n = in_cons.slots();
                    if n == 0 {
                        if shared.input_done.load(Ordering::SeqCst) {
                            let t0 = Instant::now();
                            output.clear();
                            engine.finish(&mut output)?;
                            deliver(&output, &mut out_prod, rec_out_prod.as_mut(), &shared);
                            shared
                                .dsp_busy_ns
                                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                            // Let the output drain, then stop.
                            while out_prod.slots() < out_prod.buffer().capacity() && !shared.quit.load(Ordering::SeqCst)
                            {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            shared.quit.store(true, Ordering::SeqCst);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    if let Ok(chunk) = in_cons.read_chunk(n) {
                        let (a, b) = chunk.as_slices();
                        input.extend_from_slice(a);
                        input.extend_from_slice(b);
                        chunk.commit_all();
                    }
                    if let Some(p) = rec_in_prod.as_mut() {
                        for &v in &input {
                            let _ = p.push(v);
                        }
                    }
                    let t0 = Instant::now();
                    output.clear();
                    engine.push(&input, &mut output)?;
                    let dt = t0.elapsed();
                    shared.dsp_busy_ns.fetch_add(dt.as_nanos() as u64, Ordering::Relaxed);
                    shared.dsp_max_us.fetch_max(dt.as_micros() as u64, Ordering::Relaxed);
                    deliver(&output, &mut out_prod, rec_out_prod.as_mut(), &shared);
                }
                Ok(engine)
            })?
    };

    // Input side.
    let _in_stream = match (file_input, in_dev) {
        (Some(f), _) => {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("voxswap-file-input".into())
                .spawn(move || {
                    let chunk = (f.sample_rate / 100).max(1) as usize;
                    let start = Instant::now();
                    for (i, c) in f.samples.chunks(chunk).enumerate() {
                        if shared.quit.load(Ordering::SeqCst) {
                            return;
                        }
                        let due = start + Duration::from_secs_f64((i * chunk) as f64 / f64::from(f.sample_rate));
                        if let Some(w) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(w);
                        }
                        let mut peak = 0f32;
                        for &v in c {
                            peak = peak.max(v.abs());
                            if in_prod.push(v).is_err() {
                                shared.overruns.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Shared::peak(&shared.in_peak, peak);
                    }
                    shared.input_done.store(true, Ordering::SeqCst);
                })?;
            None
        }
        (None, Some(d)) => Some(input_stream(
            &d,
            in_rate,
            in_channels,
            in_format,
            a.buffer,
            in_prod,
            shared.clone(),
        )?),
        (None, None) => unreachable_device()?,
    };
    // Output side.
    let _out_stream = match out_dev {
        Some(d) => Some(output_stream(
            &d,
            out_rate,
            out_channels,
            out_format,
            a.buffer,
            out_cons,
            shared.clone(),
        )?),
        None => {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("voxswap-null-output".into())
                .spawn(move || {
                    let chunk = (out_rate / 100).max(1) as usize;
                    let start = Instant::now();
                    let mut i = 0usize;
                    while !shared.quit.load(Ordering::SeqCst) {
                        let due = start + Duration::from_secs_f64((i * chunk) as f64 / f64::from(out_rate));
                        if let Some(w) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(w);
                        }
                        let mut peak = 0f32;
                        for _ in 0..chunk {
                            match out_cons.pop() {
                                Ok(v) => peak = peak.max(v.abs()),
                                Err(_) => {
                                    if !shared.input_done.load(Ordering::SeqCst) {
                                        shared.underruns.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                        }
                        Shared::peak(&shared.out_peak, peak);
                        i += 1;
                    }
                })?;
            None
        }
    };

    // The status, keys, and the end.
    let mut tui = if a.no_tui { None } else { Some(Tui::start()?) };
    let names: Vec<String> = voices.iter().map(|(n, _)| n.clone()).collect();
    let started = Instant::now();
    let mut last = Instant::now();
    let mut busy_before = 0u64;
    let mut current = 0usize;
    let buffers_ms = a.margin_ms + a.buffer.map_or(0.0, |b| 2.0 * f64::from(b) * 1e3 / f64::from(out_rate));
    let status = |shared: &Shared, secs: f64, load: f64, current: &str| {
        format!(
            "{secs:6.1} s  voice {current}{}  in {:>5.1} dBFS  out {:>5.1} dBFS  latency {algorithmic_ms:.1} ms + {buffers_ms:.0} ms buffers  dsp {:>4.1}% (worst step {:.1} ms)  under-runs {}  over-runs {}",
            if shared.bypass.load(Ordering::Relaxed) { " (bypass)" } else { "" },
            db(Shared::take_peak(&shared.in_peak)),
            db(Shared::take_peak(&shared.out_peak)),
            load * 100.0,
            shared.dsp_max_us.swap(0, Ordering::Relaxed) as f64 / 1e3,
            shared.underruns.load(Ordering::Relaxed),
            shared.overruns.load(Ordering::Relaxed),
        )
    };
    let mut failure = None;
    while !shared.quit.load(Ordering::SeqCst) {
        // The DSP thread only returns on quit, or with an error: end the run with it.
        if dsp.is_finished() {
            shared.quit.store(true, Ordering::SeqCst);
            break;
        }
        if let Some(e) = device_failure(&shared) {
            failure = Some(e);
            shared.quit.store(true, Ordering::SeqCst);
            break;
        }
        if a.seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s) {
            shared.quit.store(true, Ordering::SeqCst);
            break;
        }
        if let Some(t) = tui.as_mut() {
            if let Some(k) = t.key(Duration::from_millis(100))? {
                match k {
                    Key::Quit => shared.quit.store(true, Ordering::SeqCst),
                    Key::Voice(i) if i < names.len() => {
                        current = i;
                        shared.voice_cmd.store(i + 1, Ordering::SeqCst);
                    }
                    Key::Mix if names.len() >= 2 => {
                        current = usize::MAX;
                        shared.voice_cmd.store(usize::MAX, Ordering::SeqCst);
                    }
                    Key::Bypass => {
                        let b = shared.bypass.load(Ordering::Relaxed);
                        shared.bypass.store(!b, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        if last.elapsed() >= Duration::from_secs(1) {
            let busy = shared.dsp_busy_ns.load(Ordering::Relaxed);
            let load = (busy - busy_before) as f64 / last.elapsed().as_nanos() as f64;
            busy_before = busy;
            last = Instant::now();
            let cur = if current == usize::MAX {
                format!("{} + {}", names[0], names[1])
            } else {
                names[current].clone()
            };
            let line = status(&shared, started.elapsed().as_secs_f64(), load, &cur);
            match tui.as_mut() {
                Some(t) => t.draw(&names, &line)?,
                None => say(line)?,
            }
        }
    }
    drop(tui);
    let engine = dsp
        .join()
        .map_err(|_| anyhow::anyhow!("the DSP thread panicked"))?
        .context("live conversion stopped: the conversion (DSP) thread failed")?;
    recorder
        .join()
        .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))??;
    let st = engine.compute_stats();
    let wall = started.elapsed().as_secs_f64();
    say(format!(
        "stopped after {wall:.1} s: algorithmic latency {algorithmic_ms:.1} ms (+ {buffers_ms:.0} ms of buffers); dsp {:.1}% of one core (mean step {:.2} ms, p99 {:.2} ms, max {:.2} ms); under-runs {}, over-runs {}",
        shared.dsp_busy_ns.load(Ordering::Relaxed) as f64 / 1e9 / wall * 100.0,
        st.mean().as_secs_f64() * 1e3,
        st.quantile(0.99).as_secs_f64() * 1e3,
        st.max().as_secs_f64() * 1e3,
        shared.underruns.load(Ordering::Relaxed),
        shared.overruns.load(Ordering::Relaxed),
    ))?;
    if let Some(e) = failure {
        bail!("live conversion stopped after {wall:.1} s: {e}");
    }
    let recovered = shared.device_errors.load(Ordering::Relaxed);
    if recovered > 0 {
        let last = shared.recovered.lock().ok().and_then(|r| r.clone()).unwrap_or_default();
        eprintln!("warning: {recovered} device error(s) recovered from, the audio went on (the last: {last})");
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a device that reported an error may go without calling back before the run ends.
const DEVICE_GRACE: Duration = Duration::from_millis(500);

/// A device error the devices have not recovered from (no audio callback for
/// [`DEVICE_GRACE`] since it came), as the message to end the run with; an error they have
/// recovered from is counted and forgotten.
fn device_failure(shared: &Shared) -> Option<String> {
    let mut slot = shared.device_error.lock().ok()?;
    let (msg, device, at_callbacks, when) = slot.as_ref()?;
    if shared.callbacks[*device].load(Ordering::Relaxed) > *at_callbacks + 2 {
        shared.device_errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = shared.recovered.lock() {
            *r = Some(msg.clone());
        }
        *slot = None;
        return None;
    }
    (when.elapsed() >= DEVICE_GRACE).then(|| msg.clone())
}

fn db(v: f32) -> f64 {
    20.0 * f64::from(v.max(1e-6)).log10()
}

/// Pushes the engine's output to the output ring (counting what does not fit) and the recorder.
fn deliver(out: &[f32], ring: &mut rtrb::Producer<f32>, rec: Option<&mut rtrb::Producer<f32>>, shared: &Shared) {
    if !out.is_empty() {
        shared.started.store(true, Ordering::Relaxed);
    }
    for &v in out {
        if ring.push(v).is_err() {
            shared.overruns.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(r) = rec {
        for &v in out {
            let _ = r.push(v);
        }
    }
}

fn unreachable_device<T>() -> anyhow::Result<T> {
    bail!("no input: pass --input-file FILE or connect a microphone")
}

/// The device whose name or id contains `name` (the default one without a name).
fn pick(host: &cpal::Host, name: Option<&str>, input: bool) -> anyhow::Result<cpal::Device> {
    let what = if input { "input" } else { "output" };
    match name {
        None => if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        }
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no {what} device (see `voxswap devices`; --input-file and --null-output run without devices)"
            )
        }),
        Some(n) => {
            let list: Vec<cpal::Device> = if input {
                host.input_devices().context("listing input devices")?.collect()
            } else {
                host.output_devices().context("listing output devices")?.collect()
            };
            list.into_iter()
                .find(|d| {
                    d.id().is_ok_and(|i| i.to_string().contains(n))
                        || d.description().is_ok_and(|x| x.name().contains(n))
                })
                .ok_or_else(|| anyhow::anyhow!("no {what} device matches `{n}` (see `voxswap devices`)"))
        }
    }
}

/// Rate, channels and sample format to open a device with: `rate` if it supports it, else its
/// default; f32 or i16 samples.
fn stream_params(d: &cpal::Device, input: bool, rate: Option<u32>) -> anyhow::Result<(u32, u16, cpal::SampleFormat)> {
    let def = if input {
        d.default_input_config()
    } else {
        d.default_output_config()
    }
    .context("reading the device's default configuration")?;
    let rate = rate.unwrap_or(def.sample_rate());
    let configs: Vec<cpal::SupportedStreamConfigRange> = if input {
        d.supported_input_configs()
            .context("reading the device's configurations")?
            .collect()
    } else {
        d.supported_output_configs()
            .context("reading the device's configurations")?
            .collect()
    };
    for fmt in [cpal::SampleFormat::F32, cpal::SampleFormat::I16] {
        if let Some(c) = configs
            .iter()
            .find(|c| c.sample_format() == fmt && c.min_sample_rate() <= rate && rate <= c.max_sample_rate())
        {
            return Ok((rate, c.channels().min(def.channels()).max(1), fmt));
        }
    }
    bail!("the device supports neither f32 nor 16-bit samples at {rate} Hz (see `voxswap devices`)")
}

fn stream_config(rate: u32, channels: u16, buffer: Option<u32>) -> cpal::StreamConfig {
    cpal::StreamConfig {
        channels,
        sample_rate: rate,
        buffer_size: buffer.map_or(cpal::BufferSize::Default, cpal::BufferSize::Fixed),
    }
}

fn on_error(shared: Arc<Shared>, device: usize) -> impl FnMut(cpal::Error) + Send + 'static {
    let which = if device == 0 { "input" } else { "output" };
    move |e| {
        // An x-run is counted and recovered from; anything else (a device gone) ends the run,
        // and the run says why.
        // Other errors (a device gone, or a transient one: the PulseAudio ALSA plugin sometimes
        // fails a call as a stream starts) end the run when the devices stop calling back;
        // the main loop decides (`device_failure`).
        if matches!(e.kind(), cpal::ErrorKind::Xrun) {
            shared.underruns.fetch_add(1, Ordering::Relaxed);
        } else if let Ok(mut slot) = shared.device_error.lock() {
            slot.get_or_insert_with(|| {
                (
                    format!("the {which} device failed: {e}"),
                    device,
                    shared.callbacks[device].load(Ordering::Relaxed),
                    Instant::now(),
                )
            });
        }
    }
}

/// The input callback: real-time safe (mono mix into the ring, a peak, counters).
fn input_stream(
    d: &cpal::Device,
    rate: u32,
    channels: u16,
    format: cpal::SampleFormat,
    buffer: Option<u32>,
    ring: rtrb::Producer<f32>,
    shared: Arc<Shared>,
) -> anyhow::Result<cpal::Stream> {
    let cfg = stream_config(rate, channels, buffer);
    let stream = match format {
        cpal::SampleFormat::F32 => build_input::<f32>(d, cfg, ring, shared),
        _ => build_input::<i16>(d, cfg, ring, shared),
    }
    .context("opening the input device")?;
    stream.play().context("starting the input device")?;
    Ok(stream)
}

fn build_input<T>(
    d: &cpal::Device,
    cfg: cpal::StreamConfig,
    mut ring: rtrb::Producer<f32>,
    shared: Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: cpal::SizedSample,
    f32: cpal::FromSample<T>,
{
    let ch = usize::from(cfg.channels);
    let err = on_error(shared.clone(), 0);
    d.build_input_stream(
        cfg,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            shared.callbacks[0].fetch_add(1, Ordering::Relaxed);
            let mut peak = 0f32;
            for f in data.chunks(ch) {
                let v = f.iter().map(|s| s.to_sample::<f32>()).sum::<f32>() / ch as f32;
                peak = peak.max(v.abs());
                if ring.push(v).is_err() {
                    shared.overruns.fetch_add(1, Ordering::Relaxed);
                }
            }
            Shared::peak(&shared.in_peak, peak);
        },
        err,
        None,
    )
}

/// The output callback: real-time safe (from the ring to every channel, silence on under-run).
fn output_stream(
    d: &cpal::Device,
    rate: u32,
    channels: u16,
    format: cpal::SampleFormat,
    buffer: Option<u32>,
    ring: rtrb::Consumer<f32>,
    shared: Arc<Shared>,
) -> anyhow::Result<cpal::Stream> {
    let cfg = stream_config(rate, channels, buffer);
    let stream = match format {
        cpal::SampleFormat::F32 => build_output::<f32>(d, cfg, ring, shared),
        _ => build_output::<i16>(d, cfg, ring, shared),
    }
    .context("opening the output device")?;
    stream.play().context("starting the output device")?;
    Ok(stream)
}

fn build_output<T>(
    d: &cpal::Device,
    cfg: cpal::StreamConfig,
    mut ring: rtrb::Consumer<f32>,
    shared: Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: cpal::SizedSample + cpal::FromSample<f32>,
{
    use cpal::Sample;
    let ch = usize::from(cfg.channels);
    let err = on_error(shared.clone(), 1);
    d.build_output_stream(
        cfg,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            shared.callbacks[1].fetch_add(1, Ordering::Relaxed);
            let mut peak = 0f32;
            for f in data.chunks_mut(ch) {
                let v = next_sample(&mut ring, &shared);
                peak = peak.max(v.abs());
                f.fill(v.clamp(-1.0, 1.0).to_sample::<T>());
            }
            Shared::peak(&shared.out_peak, peak);
        },
        err,
        None,
    )
}

fn next_sample(ring: &mut rtrb::Consumer<f32>, shared: &Shared) -> f32 {
    ring.pop().unwrap_or_else(|_| {
        if shared.started.load(Ordering::Relaxed) {
            shared.underruns.fetch_add(1, Ordering::Relaxed);
        }
        0.0
    })
}

/// The `voxswap` virtual microphone: a PulseAudio null sink that voxswap plays into, and a
/// source remapped from its monitor that other programs record from. Removed when dropped (also
/// after Ctrl-C, which ends the main loop).
struct VirtualMic {
    modules: Vec<String>,
}

impl VirtualMic {
    const SINK: &'static str = "voxswap_out";

    fn create() -> anyhow::Result<Self> {
        let load = |args: &[&str]| -> anyhow::Result<String> {
            let o = std::process::Command::new("pactl")
                .arg("load-module")
                .args(args)
                .output()
                .context("--virtual-mic needs pactl (PulseAudio or PipeWire's pulse server)")?;
            if !o.status.success() {
                bail!(
                    "--virtual-mic: pactl load-module {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let mut mic = Self { modules: Vec::new() };
        mic.modules.push(load(&[
            "module-null-sink",
            &format!("sink_name={}", Self::SINK),
            "sink_properties=device.description=voxswap-output",
        ])?);
        mic.modules.push(load(&[
            "module-remap-source",
            &format!("master={}.monitor", Self::SINK),
            "source_name=voxswap",
            "source_properties=device.description=voxswap",
        ])?);
        // libpulse (and the ALSA pulse plugin cpal goes through) opens this sink by default.
        std::env::set_var("PULSE_SINK", Self::SINK);
        Ok(mic)
    }
}

impl Drop for VirtualMic {
    fn drop(&mut self) {
        for m in self.modules.iter().rev() {
            let _ = std::process::Command::new("pactl").args(["unload-module", m]).status();
        }
    }
}

/// A key press.
enum Key {
    Quit,
    Voice(usize),
    Mix,
    Bypass,
    Other,
}

/// The interactive screen: raw mode on an alternate screen, restored when dropped.
struct Tui {
    out: std::io::Stdout,
}

impl Tui {
    fn start() -> anyhow::Result<Self> {
        use crossterm::{cursor, execute, terminal};
        terminal::enable_raw_mode().context("the terminal has no raw mode (use --no-tui)")?;
        let mut out = std::io::stdout();
        execute!(out, terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(Self { out })
    }

    fn key(&mut self, wait: Duration) -> anyhow::Result<Option<Key>> {
        use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
        if !event::poll(wait)? {
            return Ok(None);
        }
        Ok(match event::read()? {
            Event::Key(k) if k.kind == KeyEventKind::Press => Some(match k.code {
                KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                KeyCode::Char(c @ '1'..='9') => Key::Voice(c as usize - '1' as usize),
                KeyCode::Char('m') => Key::Mix,
                KeyCode::Char('b') => Key::Bypass,
                _ => Key::Other,
            }),
            _ => None,
        })
    }

    fn draw(&mut self, names: &[String], status: &str) -> anyhow::Result<()> {
        use crossterm::{cursor, queue, terminal};
        use std::io::Write;
        queue!(
            self.out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        let mut lines = vec![
            "voxswap live: keys 1-9 voice, m mix 1+2, b bypass, q quit".to_string(),
            String::new(),
        ];
        for (i, n) in names.iter().enumerate() {
            lines.push(format!("  {}  {n}", i + 1));
        }
        lines.push(String::new());
        lines.push(status.to_string());
        for (i, l) in lines.iter().enumerate() {
            queue!(self.out, cursor::MoveTo(0, i as u16))?;
            write!(self.out, "{l}")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        use crossterm::{cursor, execute, terminal};
        let _ = execute!(self.out, cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}
