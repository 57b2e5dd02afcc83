//! The engine: input samples at any rate in, converted samples at the output rate out, with a
//! fixed, known delay.
//!
//! ```text
//! input rate ──resample──▶ 16 kHz ──streaming log-mel──▶ frames ──model step (F frames)──▶
//!   frames ──vocoder──▶ 16 kHz ──resample──▶ output rate ──gain, limiter──▶ delay line ──▶ out
//! ```
//!
//! Every stage reports how far its output can stay behind its input; the engine adds them up
//! into its latency `L` (output samples) and emits exactly one output sample per input sample
//! (at equal rates): output sample `n` is the conversion of input time `n − L`, silence before.
//! So the output never waits and never runs dry, whatever the chunk sizes pushed, and the same
//! input gives the same samples however it is cut into pushes (the model always steps `F`
//! frames at a time, and every other stage works in fixed blocks).

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use voxswap_audio::{ChunkResampler, FrontendConfig, Limiter};
use voxswap_model::{FrameModel, SpeakerEmbedding, StreamingConverter, VoiceConverter};

use crate::adapt::{adapt, measure_source, Adaptation};
use crate::features::FeatureFrames;
use crate::stats::ComputeStats;
use crate::vocoder::Vocoder;
use crate::{Error, Result};

/// How the engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Sample rate of the input, Hz.
    pub input_rate: u32,
    /// Sample rate of the output, Hz.
    pub output_rate: u32,
    /// Mel frames the model converts per step: 1 for live (10 ms), more for files (faster per
    /// frame, `(F − 1)` hops more latency).
    pub model_frames: usize,
    /// Input samples per resampler chunk, in milliseconds of audio.
    pub resampler_chunk_ms: f64,
    /// How long a voice switch glides from the old voice to the new, in milliseconds.
    pub glide_ms: f64,
    /// Gain applied to the converted audio before the limiter, dB.
    pub gain_db: f64,
    /// Whether a look-ahead limiter keeps the output's peaks under 0.99.
    pub limiter: bool,
    /// Skip the model: the vocoder resynthesises the input's own mels (to hear or measure the
    /// rest of the pipeline).
    pub resynthesis: bool,
    /// The voice adapted to the talker's (`convert`'s `--contrast` and `--spectrum`), measured
    /// on the past only: on the input's first 1, 2, 4, 8 and 16 s, then on its last
    /// [`ADAPT_WINDOW_S`] s every [`ADAPT_WINDOW_S`] s. Each measurement runs on the engine's
    /// adaptation thread and takes effect [`ADAPT_DELAY_FRAMES`] frames after the input it
    /// measured, gliding;
    /// until the first, the target's references' own spectrum correction applies.
    pub adaptation: Adaptation,
    /// Whether a live adaptation whose result is due but not ready holds the stream until it is
    /// (files and tests: the output then does not depend on the machine's speed), or applies
    /// when it is ready (`voxswap live`: the real-time thread never waits for another).
    pub adaptation_waits: bool,
}

/// Longest stretch of the talker's past that live adaptation measures, seconds (the 30 s
/// `convert` measures would cost a live stream too much compute).
pub const ADAPT_WINDOW_S: u64 = 16;
/// Frames (of 10 ms) between the end of the input a live adaptation measured and the frame its
/// result applies to: time for the measurement to run beside the stream. Fixed, so that a
/// stream's output does not depend on how fast the machine measured.
pub const ADAPT_DELAY_FRAMES: u64 = 100;

impl EngineConfig {
    /// Live settings: one frame per model step, 10 ms resampler chunks, 100 ms glides.
    pub fn live(input_rate: u32, output_rate: u32) -> Self {
        Self {
            input_rate,
            output_rate,
            model_frames: 1,
            resampler_chunk_ms: 10.0,
            glide_ms: 100.0,
            gain_db: 0.0,
            limiter: true,
            resynthesis: false,
            adaptation: Adaptation::DEFAULT,
            adaptation_waits: true,
        }
    }
}

/// A live adaptation under way: the frame it applies to and the voice generation it measured
/// for (its result comes from the worker, in order).
#[derive(Debug, Clone, Copy)]
struct AdaptJob {
    frame: u64,
    generation: u64,
}

/// What the engine asks of the adaptation worker.
enum Request {
    /// The voice chosen by the user (before adaptation) from now on.
    Base(SpeakerEmbedding),
    /// Measure the talker's last window of input, up to the `upto`-th sample written to the
    /// ring, and adapt the base voice to it.
    Measure { upto: u64 },
}

/// A measurement's result: the talker's voice (if the window held speech) and the adapted voice.
type Measured = Result<(Option<SpeakerEmbedding>, SpeakerEmbedding)>;

/// Live adaptation's state (see [`EngineConfig::adaptation`]). The measurements run on a worker
/// thread of their own, started with the engine: the engine's thread only writes the input to a
/// lock-free ring and sends small requests through a bounded channel (neither allocates), and
/// the worker keeps the talker's history.
struct LiveAdapt {
    how: Adaptation,
    /// Model-rate input sample at which the next measurement starts, and the step to the one
    /// after.
    next: u64,
    interval: u64,
    window: usize,
    jobs: VecDeque<AdaptJob>,
    /// Bumped by every voice switch: measurements of an older voice are dropped.
    generation: u64,
    /// The talker's own voice, from the latest measurement.
    source: Option<SpeakerEmbedding>,
    audio: rtrb::Producer<f32>,
    /// Samples written to the ring (fewer than came in only if the worker stalled).
    written: u64,
    requests: mpsc::SyncSender<Request>,
    results: mpsc::Receiver<Measured>,
}

/// Requests the engine may have queued (one a second at most, after the first).
const ADAPT_QUEUE: usize = 64;

impl LiveAdapt {
    /// Starts the worker measuring with `conv`, adapting `base` as `how` says.
    fn start(conv: &VoiceConverter, base: &SpeakerEmbedding, how: Adaptation, sample_rate: u32) -> Result<Self> {
        let second = u64::from(sample_rate);
        let window = (ADAPT_WINDOW_S * second) as usize;
        // The worker drains the ring at least every 100 ms; a second of room is plenty.
        let (audio, mut ring) = rtrb::RingBuffer::new(window + sample_rate as usize);
        let (requests, inbox) = mpsc::sync_channel::<Request>(ADAPT_QUEUE);
        let (reply, results) = mpsc::channel::<Measured>();
        requests
            .try_send(Request::Base(base.clone()))
            .map_err(|_| Error::Adaptation("its worker did not take the voice".into()))?;
        let conv = conv.clone();
        std::thread::Builder::new()
            .name("voxswap-adapt".into())
            .spawn(move || {
                let mut history: VecDeque<f32> = VecDeque::with_capacity(window + 1);
                let mut base: Option<SpeakerEmbedding> = None;
                // Model-rate samples moved from the ring into `history` so far.
                let mut taken = 0u64;
                let take = |ring: &mut rtrb::Consumer<f32>, n: usize, history: &mut VecDeque<f32>| {
                    let n = n.min(ring.slots());
                    if let Ok(chunk) = ring.read_chunk(n) {
                        history.extend(chunk);
                    }
                    let over = history.len().saturating_sub(window);
                    history.drain(..over);
                    n as u64
                };
                loop {
                    match inbox.recv_timeout(std::time::Duration::from_millis(100)) {
                        Ok(Request::Base(b)) => base = Some(b),
                        Ok(Request::Measure { upto }) => {
                            // The engine wrote the samples before it asked.
                            while taken < upto {
                                let got = take(&mut ring, (upto - taken) as usize, &mut history);
                                if got == 0 {
                                    break;
                                }
                                taken += got;
                            }
                            let audio = history.make_contiguous();
                            let measured = match &base {
                                Some(b) => measure_source(&conv, audio).and_then(|src| {
                                    let voice = adapt(&conv, b, src.as_ref(), how)?;
                                    Ok((src.map(|s| s.voice), voice))
                                }),
                                None => Err(Error::Adaptation("no voice to adapt".into())),
                            };
                            if reply.send(measured).is_err() {
                                return;
                            }
                        }
                        // Keeps the ring from filling between measurements.
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            let n = ring.slots();
                            taken += take(&mut ring, n, &mut history);
                        }
                        // The engine is gone.
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(|e| Error::Adaptation(format!("cannot start its thread: {e}")))?;
        Ok(Self {
            how,
            next: second,
            interval: second,
            window,
            jobs: VecDeque::with_capacity(ADAPT_QUEUE),
            generation: 0,
            source: None,
            audio,
            written: 0,
            requests,
            results,
        })
    }
}

/// How long bypass fades between the converted voice and the input, seconds.
const BYPASS_FADE_S: f64 = 0.03;

/// One stage's share of the latency.
#[derive(Debug, Clone, PartialEq)]
pub struct StageLatency {
    /// What the stage is.
    pub stage: String,
    /// Its latency in seconds.
    pub seconds: f64,
}

/// How the engine runs the model.
enum ModelPath {
    /// Frame by frame in plain loops, allocation-free (the `stream` preset and its kind), with
    /// the converted frames' buffer.
    Frames(Box<FrameModel>, Vec<f32>),
    /// Through candle's tensors (presets the frame model cannot run).
    Tensors(Box<StreamingConverter>),
}

/// The conversion pipeline (see the module docs).
pub struct Engine {
    cfg: EngineConfig,
    fe: FrontendConfig,
    conv: VoiceConverter,
    model: ModelPath,
    to_model: ChunkResampler,
    /// The log-mel frames (and pitch frames, for a model that reads them) waiting for the model.
    features: FeatureFrames,
    vocoder: Box<dyn Vocoder>,
    from_model: ChunkResampler,
    limiter: Limiter,
    gain: f32,
    /// The input at the output rate, for bypass; `dry[0]` is input sample `dry_made − len`.
    dry_resampler: ChunkResampler,
    dry: VecDeque<f32>,
    dry_buf: Vec<f32>,
    /// Bypass mix: 0 converted, 1 the input; moves towards `bypass_target` by `fade_step` a
    /// sample.
    bypass: f32,
    bypass_target: f32,
    fade_step: f32,
    // The voice: gliding from `from` to `to`, `glide_pos` of `glide_frames` frames done.
    from: SpeakerEmbedding,
    to: SpeakerEmbedding,
    glide_frames: usize,
    glide_pos: usize,
    // Buffers, reused.
    x16: Vec<f32>,
    wave16: Vec<f32>,
    wave_out: Vec<f32>,
    limited: Vec<f32>,
    /// Converted output-rate samples not yet emitted; `pending[0]` is converted sample `made`
    /// − `pending.len()`.
    pending: VecDeque<f32>,
    /// Samples (16 kHz) into the model side, and out of the vocoder.
    n16_in: u64,
    n16_out: u64,
    /// Input samples pushed; output samples emitted; limiter samples still to skip.
    n_in: u64,
    n_out: u64,
    skip_limiter: usize,
    latency: usize,
    late: u64,
    /// Late samples whose converted value, when it comes, is dropped (it was replaced by 0).
    debt: u64,
    stats: ComputeStats,
    /// The voice chosen by the user, before adaptation.
    base: SpeakerEmbedding,
    adapt: Option<LiveAdapt>,
    /// Model frames converted.
    frames_done: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .field("latency", &self.latency)
            .field("n_in", &self.n_in)
            .finish()
    }
}

/// Samples in a second at `rate` (buffer capacities).
fn second(rate: u32) -> usize {
    rate as usize
}

impl Engine {
    /// An engine converting to `voice` with the causal model of `conv` and `vocoder`.
    ///
    /// # Errors
    /// [`Error::Config`] for a model that cannot stream or inconsistent settings; a voice of the
    /// wrong size; a rate the resamplers refuse.
    pub fn new(
        conv: &VoiceConverter,
        voice: &SpeakerEmbedding,
        vocoder: Box<dyn Vocoder>,
        cfg: EngineConfig,
    ) -> Result<Self> {
        let fe = conv.config().frontend.clone();
        if cfg.model_frames == 0 {
            return Err(Error::Config("the model must step at least one frame at a time".into()));
        }
        if !(cfg.glide_ms.is_finite() && cfg.glide_ms >= 0.0 && cfg.gain_db.is_finite()) {
            return Err(Error::Config(format!(
                "glide {} ms and gain {} dB must be finite (glide ≥ 0)",
                cfg.glide_ms, cfg.gain_db
            )));
        }
        let chunk = |rate: u32| ((cfg.resampler_chunk_ms * 1e-3 * f64::from(rate)).round() as usize).max(1);
        let to_model = ChunkResampler::with_chunk(cfg.input_rate, fe.sample_rate, chunk(cfg.input_rate))?;
        let from_model = ChunkResampler::with_chunk(fe.sample_rate, cfg.output_rate, chunk(fe.sample_rate))?;
        let limiter = Limiter::output(cfg.output_rate)?;
        let dry_resampler = ChunkResampler::with_chunk(cfg.input_rate, cfg.output_rate, chunk(cfg.input_rate))?;
        let adapt = match cfg.adaptation.measures_source() && !cfg.resynthesis {
            true => Some(LiveAdapt::start(conv, voice, cfg.adaptation, fe.sample_rate)?),
            false => None,
        };
        // Until the first measurement: the target with its references' correction, scaled.
        let start_voice = adapt_or_plain(conv, voice, None, cfg.adaptation)?;
        let model = match conv.frame_model(&start_voice)? {
            Some(m) => ModelPath::Frames(Box::new(m), Vec::with_capacity(cfg.model_frames * fe.n_mels)),
            None => {
                ModelPath::Tensors(Box::new(conv.stream(&start_voice)?.ok_or_else(|| {
                    Error::Config(format!("preset `{}` cannot stream", conv.config().preset))
                })?))
            }
        };
        let (sr16, frames_cap) = (
            second(fe.sample_rate),
            second(fe.sample_rate) / fe.hop_length * fe.n_mels,
        );
        let features = FeatureFrames::new(
            &fe,
            conv.config().decoder.f0 && !cfg.resynthesis,
            frames_cap / fe.n_mels,
        )?;
        let mut e = Self {
            features,
            gain: 10f64.powf(cfg.gain_db / 20.0) as f32,
            dry_resampler,
            // Buffers sized for pushes of up to a second (the audio threads' callbacks are far
            // shorter), so that they do not grow in the real-time thread after the start.
            dry: VecDeque::with_capacity(second(cfg.output_rate)),
            dry_buf: Vec::with_capacity(second(cfg.output_rate)),
            bypass: 0.0,
            bypass_target: 0.0,
            fade_step: 1.0 / (BYPASS_FADE_S * f64::from(cfg.output_rate)).max(1.0) as f32,
            fe,
            conv: conv.clone(),
            model,
            to_model,
            vocoder,
            from_model,
            skip_limiter: if cfg.limiter { limiter.latency() } else { 0 },
            limiter,
            from: start_voice.clone(),
            to: start_voice,
            glide_frames: 0,
            glide_pos: 0,
            x16: Vec::with_capacity(sr16),
            wave16: Vec::with_capacity(sr16),
            wave_out: Vec::with_capacity(second(cfg.output_rate)),
            limited: Vec::with_capacity(second(cfg.output_rate)),
            pending: VecDeque::with_capacity(second(cfg.output_rate)),
            n16_in: 0,
            n16_out: 0,
            n_in: 0,
            n_out: 0,
            latency: 0,
            late: 0,
            debt: 0,
            stats: ComputeStats::default(),
            base: voice.clone(),
            adapt,
            frames_done: 0,
            cfg,
        };
        e.latency = e.compute_latency();
        Ok(e)
    }

    /// Each stage's latency, in the order the audio passes them.
    pub fn stages(&self) -> Vec<StageLatency> {
        let sr16 = f64::from(self.fe.sample_rate);
        let out = f64::from(self.cfg.output_rate);
        let hop = self.fe.hop_length as f64;
        let m = self.fe.sample_rate;
        let mut v = Vec::new();
        // A resampler between equal rates passes samples through: no stage.
        if self.cfg.input_rate != m {
            v.push(StageLatency {
                stage: format!("resampling {} → {m} Hz", self.cfg.input_rate),
                seconds: self.to_model.latency_samples() as f64 / sr16,
            });
        }
        v.push(StageLatency {
            stage: "framing (a frame every hop) and the analysis window's look-ahead".into(),
            seconds: (hop - 1.0 + self.features.latency_samples() as f64) / sr16,
        });
        v.push(StageLatency {
            stage: format!("model steps of {} frame(s)", self.cfg.model_frames),
            seconds: (self.cfg.model_frames - 1) as f64 * hop / sr16,
        });
        v.push(StageLatency {
            stage: format!("vocoder: {}", self.vocoder.name()),
            seconds: self.vocoder.latency_samples() as f64 / sr16,
        });
        if self.cfg.output_rate != m {
            v.push(StageLatency {
                stage: format!("resampling {m} → {} Hz", self.cfg.output_rate),
                seconds: self.from_model.latency_samples() as f64 / out,
            });
        }
        if self.cfg.limiter {
            v.push(StageLatency {
                stage: "limiter look-ahead".into(),
                seconds: self.limiter.latency() as f64 / out,
            });
        }
        v
    }

    fn compute_latency(&self) -> usize {
        let seconds: f64 = self.stages().iter().map(|s| s.seconds).sum();
        // Stages at other rates round up; one sample of margin for the resamplers' fractions.
        let extra =
            usize::from(self.cfg.input_rate != self.fe.sample_rate || self.cfg.output_rate != self.fe.sample_rate);
        (seconds * f64::from(self.cfg.output_rate) - 1e-9).ceil() as usize + extra
    }

    /// The algorithmic latency, in output samples: output sample `n` is the conversion of input
    /// time `n − latency`.
    pub fn latency_samples(&self) -> usize {
        self.latency
    }

    /// The algorithmic latency in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        self.latency as f64 * 1e3 / f64::from(self.cfg.output_rate)
    }

    /// Compute time per model step (model and vocoder over `model_frames` frames).
    pub fn compute_stats(&self) -> &ComputeStats {
        &self.stats
    }

    /// Output samples that were due before the pipeline had them (0 unless a stage's latency is
    /// reported too low: a bug, which tests look for).
    pub fn late_samples(&self) -> u64 {
        self.late
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Switches to `voice`, gliding from the voice of the moment over the configured glide time
    /// (at once with a glide of 0).
    ///
    /// # Errors
    /// A voice of the wrong size.
    pub fn set_voice(&mut self, voice: &SpeakerEmbedding) -> Result<()> {
        // Checked now, not at the next frame.
        self.conv.speaker_tensors(voice)?;
        self.base = voice.clone();
        let voice = &match &mut self.adapt {
            None => voice.clone(),
            Some(a) => {
                // Contrast with the talker's voice as last measured; the spectrum matching
                // waits for a measurement of this voice, started now.
                a.generation += 1;
                a.next = a.next.min(self.n16_in + 1);
                a.requests
                    .send(Request::Base(voice.clone()))
                    .map_err(|_| Error::Adaptation("its thread has ended".into()))?;
                let plain = voice.spectrum_strength(a.how.spectrum)?;
                match &a.source {
                    Some(s) if a.how.contrast > 0.0 => plain.contrast(s, a.how.contrast)?,
                    _ => plain,
                }
            }
        };
        self.glide_to(voice)
    }

    /// Glides from the voice of the moment to `voice`.
    fn glide_to(&mut self, voice: &SpeakerEmbedding) -> Result<()> {
        self.glide_to_owned(voice.clone())
    }

    /// [`Self::glide_to`] taking the voice: between glides (a live adaptation's result on the
    /// real-time thread) it only moves embeddings, without allocating.
    fn glide_to_owned(&mut self, voice: SpeakerEmbedding) -> Result<()> {
        let now = if self.glide_pos >= self.glide_frames {
            None
        } else {
            Some(self.current_voice()?)
        };
        let old = std::mem::replace(&mut self.to, voice);
        self.from = now.unwrap_or(old);
        let frame_ms = self.fe.hop_ms();
        self.glide_frames = (self.cfg.glide_ms / frame_ms).round() as usize;
        self.glide_pos = 0;
        if self.glide_frames == 0 {
            apply_to(&mut self.model, &self.conv, &self.to)?;
        }
        Ok(())
    }

    /// Bypass on: the input comes out (delayed by the same latency), crossfaded over 30 ms;
    /// off: the converted voice again.
    pub fn set_bypass(&mut self, on: bool) {
        self.bypass_target = if on { 1.0 } else { 0.0 };
    }

    /// Whether bypass is on (or fading in).
    pub fn bypass(&self) -> bool {
        self.bypass_target > 0.5
    }

    /// The voice chosen with [`Engine::new`] or [`Engine::set_voice`], before adaptation.
    pub fn base_voice(&self) -> &SpeakerEmbedding {
        &self.base
    }

    /// The voice the next frame is converted with (adapted, and gliding).
    ///
    /// # Errors
    /// Embeddings that cannot be mixed (not expected: both were checked).
    pub fn current_voice(&self) -> Result<SpeakerEmbedding> {
        if self.glide_pos >= self.glide_frames {
            return Ok(self.to.clone());
        }
        let w = self.glide_pos as f32 / self.glide_frames as f32;
        Ok(SpeakerEmbedding::mix(&[(1.0 - w, &self.from), (w, &self.to)])?)
    }

    fn apply_voice(&mut self, v: &SpeakerEmbedding) -> Result<()> {
        apply_to(&mut self.model, &self.conv, v)
    }

    /// The gliding voice at the next frame: the frame model mixes in place (no allocation),
    /// the tensor stream gets the mix.
    fn apply_glide(&mut self) -> Result<()> {
        let w = self.glide_pos as f32 / self.glide_frames as f32;
        match &mut self.model {
            ModelPath::Frames(m, _) => m.set_mix(&self.from, &self.to, w)?,
            ModelPath::Tensors(_) => {
                let v = self.current_voice()?;
                self.apply_voice(&v)?;
            }
        }
        Ok(())
    }

    /// Converts `input` (mono, at the input rate); appends to `out` one output sample per input
    /// sample (at equal rates; `round(n · out/in)` in all otherwise).
    ///
    /// # Errors
    /// From the model or the vocoder (not expected once built).
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        self.n_in += input.len() as u64;
        self.dry_buf.clear();
        self.dry_resampler.push(input, &mut self.dry_buf)?;
        self.dry.extend(&self.dry_buf);
        self.x16.clear();
        self.to_model.push(input, &mut self.x16)?;
        self.feed_adaptation();
        self.n16_in += self.x16.len() as u64;
        self.features.push(&self.x16);
        self.run_frames(false)?;
        self.emit(out, false);
        Ok(())
    }

    /// Ends the input: converts what is left and appends the rest of the output, so that in all
    /// `latency + round(inputs · out/in)` samples have come out (the first `latency` silent).
    ///
    /// # Errors
    /// From the model or the vocoder.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        self.dry_buf.clear();
        self.dry_resampler.finish(&mut self.dry_buf)?;
        self.dry.extend(&self.dry_buf);
        self.x16.clear();
        self.to_model.finish(&mut self.x16)?;
        self.n16_in += self.x16.len() as u64;
        self.features.push(&self.x16);
        self.features.finish();
        self.run_frames(true)?;
        self.emit(out, true);
        Ok(())
    }

    /// Adds the model-rate input `x16` (which starts at sample `n16_in`) to the talker's
    /// history, starting a measurement at every scheduled sample it passes.
    fn feed_adaptation(&mut self) {
        let Some(a) = &mut self.adapt else { return };
        let hop = self.fe.hop_length as u64;
        let mut pos = self.n16_in;
        let mut rest = &self.x16[..];
        while !rest.is_empty() {
            let take = rest.len().min((a.next - pos) as usize);
            // Into the worker's ring (what does not fit, if it ever stalls, it never hears).
            let room = take.min(a.audio.slots());
            if let Ok(chunk) = a.audio.write_chunk_uninit(room) {
                a.written += chunk.fill_from_iter(rest[..room].iter().copied()) as u64;
            }
            rest = &rest[take..];
            pos += take as u64;
            if pos == a.next {
                // A full queue (the worker far behind) skips this measurement.
                if a.requests.try_send(Request::Measure { upto: a.written }).is_ok() {
                    a.jobs.push_back(AdaptJob {
                        frame: pos / hop + ADAPT_DELAY_FRAMES,
                        generation: a.generation,
                    });
                }
                a.interval = (a.interval * 2).min(a.window as u64);
                a.next = pos + a.interval;
            }
        }
    }

    /// Applies the live adaptations due at the next frame (waiting for them if they are still
    /// running).
    fn apply_adaptation(&mut self) -> Result<()> {
        let Some(a) = &mut self.adapt else { return Ok(()) };
        let mut voice = None;
        while a.jobs.front().is_some_and(|j| j.frame <= self.frames_done) {
            // Results come in the order asked. A late one is waited for (it then applies at a
            // fixed frame, and the output does not depend on the machine's speed), polling: a
            // blocking receive would allocate its waiting context on this thread; or, live,
            // applied at the first frame it is ready.
            let (source, adapted) = match a.results.try_recv() {
                Ok(r) => r?,
                Err(mpsc::TryRecvError::Empty) if self.cfg.adaptation_waits => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    continue;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(Error::Adaptation("its thread ended without a result".into()))
                }
            };
            let Some(job) = a.jobs.pop_front() else { break };
            if job.generation == a.generation {
                if source.is_some() {
                    a.source = source;
                }
                voice = Some(adapted);
            }
        }
        match voice {
            Some(v) => self.glide_to_owned(v),
            None => Ok(()),
        }
    }

    /// The model and vocoder over the pending frames, `model_frames` at a time (all of them
    /// when `last`), then the output side.
    fn run_frames(&mut self, last: bool) -> Result<()> {
        let n_mels = self.fe.n_mels;
        let f = self.cfg.model_frames;
        self.wave16.clear();
        loop {
            let have = self.features.ready();
            let take = if have >= f {
                f
            } else if last && have > 0 {
                have
            } else {
                break;
            };
            self.apply_adaptation()?;
            let t0 = Instant::now();
            if self.glide_pos < self.glide_frames {
                self.apply_glide()?;
                self.glide_pos = (self.glide_pos + take).min(self.glide_frames);
                if self.glide_pos == self.glide_frames {
                    apply_to(&mut self.model, &self.conv, &self.to)?;
                }
            }
            let (chunk, pitch) = self.features.frames(take);
            let p = self.features.pitch_channels();
            if self.cfg.resynthesis {
                for t in 0..take {
                    self.vocoder
                        .push(&chunk[t * n_mels..(t + 1) * n_mels], &mut self.wave16)?;
                }
            } else {
                match &mut self.model {
                    ModelPath::Frames(m, y) => {
                        y.resize(take * n_mels, 0.0);
                        for (t, (x, y)) in chunk.chunks_exact(n_mels).zip(y.chunks_exact_mut(n_mels)).enumerate() {
                            m.step_pitched(x, &pitch[t * p..(t + 1) * p], y)?;
                        }
                        for y in y.chunks_exact(n_mels) {
                            self.vocoder.push(y, &mut self.wave16)?;
                        }
                    }
                    ModelPath::Tensors(m) => {
                        // Frame-major to [1, n_mels, take].
                        let x = Tensor::from_slice(chunk, (1, take, n_mels), &Device::Cpu)?.transpose(1, 2)?;
                        let pt = match p {
                            0 => None,
                            p => Some(Tensor::from_slice(pitch, (1, take, p), &Device::Cpu)?.transpose(1, 2)?),
                        };
                        let y = m.step_pitched(&x, pt.as_ref())?.squeeze(0)?.t()?.contiguous()?;
                        let y = y.flatten_all()?.to_vec1::<f32>()?;
                        for t in 0..take {
                            self.vocoder.push(&y[t * n_mels..(t + 1) * n_mels], &mut self.wave16)?;
                        }
                    }
                }
            }
            self.stats.record(t0.elapsed());
            self.features.drain(take);
            self.frames_done += take as u64;
        }
        if last {
            self.vocoder.finish(&mut self.wave16)?;
        }
        // Never more audio than came in (the vocoder's last block may run past the input).
        let room = self.n16_in.saturating_sub(self.n16_out) as usize;
        self.wave16.truncate(room);
        if last {
            self.wave16.resize(room, 0.0);
        }
        self.n16_out += self.wave16.len() as u64;
        self.wave_out.clear();
        self.from_model.push(&self.wave16, &mut self.wave_out)?;
        if last {
            self.from_model.finish(&mut self.wave_out)?;
        }
        if self.gain != 1.0 {
            self.wave_out.iter_mut().for_each(|v| *v *= self.gain);
        }
        if self.cfg.limiter {
            self.limited.clear();
            self.limiter.push(&self.wave_out, &mut self.limited);
            if last {
                self.limiter.finish(&mut self.limited);
            }
            let k = self.skip_limiter.min(self.limited.len());
            self.skip_limiter -= k;
            self.pending.extend(&self.limited[k..]);
        } else {
            self.pending.extend(&self.wave_out);
        }
        Ok(())
    }

    /// Emits output up to the input's length at the output rate (and everything when `last`).
    fn emit(&mut self, out: &mut Vec<f32>, last: bool) {
        let due = (self.n_in as f64 * f64::from(self.cfg.output_rate) / f64::from(self.cfg.input_rate)).round() as u64;
        let due = if last { due + self.latency as u64 } else { due };
        while self.debt > 0 && self.pending.pop_front().is_some() {
            self.debt -= 1;
        }
        while self.n_out < due {
            let wet = if self.n_out < self.latency as u64 {
                0.0
            } else if let Some(v) = self.pending.pop_front() {
                v
            } else if last {
                0.0
            } else {
                self.late += 1;
                self.debt += 1;
                0.0
            };
            let dry = if self.n_out < self.latency as u64 {
                0.0
            } else {
                self.dry.pop_front().unwrap_or(0.0)
            };
            if self.bypass != self.bypass_target {
                let d = self.bypass_target - self.bypass;
                self.bypass += d.clamp(-self.fade_step, self.fade_step);
            }
            let dry = dry.clamp(-1.0, 1.0);
            let v = if self.bypass == 0.0 {
                wet
            } else if self.bypass == 1.0 {
                dry
            } else {
                (1.0 - self.bypass) * wet + self.bypass * dry
            };
            out.push(v);
            self.n_out += 1;
        }
    }
}

/// Sets the model's voice to `v` (the frame model in place, without allocating).
fn apply_to(model: &mut ModelPath, conv: &VoiceConverter, v: &SpeakerEmbedding) -> Result<()> {
    match model {
        ModelPath::Frames(m, _) => m.set_embedding(v)?,
        ModelPath::Tensors(m) => {
            let (spk, offset) = conv.speaker_tensors(v)?;
            m.set_speaker(spk)?;
            m.set_offset(offset);
        }
    }
    Ok(())
}

/// `voice` as a stream starts with it: adapted without a source measurement (the references'
/// own spectrum correction, scaled) when adaptation is on, as it is otherwise.
fn adapt_or_plain(
    conv: &VoiceConverter,
    voice: &SpeakerEmbedding,
    source: Option<&crate::adapt::SourceVoice>,
    how: Adaptation,
) -> Result<SpeakerEmbedding> {
    if how.measures_source() {
        adapt(conv, voice, source, how)
    } else {
        Ok(voice.clone())
    }
}
