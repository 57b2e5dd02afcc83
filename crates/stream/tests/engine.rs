//! The engine on real speech with a trained causal model (tests/data/model/tiny-stream-synth):
//! chunking does not change a sample, the delay is what the stages report, voice switches
//! glide without a click.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use voxswap_audio::{read_mono, resample, ChannelMix, LogMel};
use voxswap_model::{SpeakerEmbedding, VoiceConverter};
use voxswap_stream::adapt::{adapt, measure_source};
use voxswap_stream::engine::ADAPT_DELAY_FRAMES;
use voxswap_stream::{Adaptation, Engine, EngineConfig, StreamingGl};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn model() -> VoiceConverter {
    VoiceConverter::load(&data("model/tiny-stream-synth"), &Device::Cpu).unwrap()
}

fn voice(conv: &VoiceConverter, file: &str) -> SpeakerEmbedding {
    let a = read_mono(data(file), ChannelMix::Downmix).unwrap();
    let x = resample(&a.samples, a.sample_rate, 16000).unwrap();
    conv.embed(&[LogMel::new(&conv.config().frontend).unwrap().compute(&x)])
        .unwrap()
}

fn engine(conv: &VoiceConverter, v: &SpeakerEmbedding, cfg: EngineConfig) -> Engine {
    let vocoder = Box::new(StreamingGl::new(&conv.config().frontend, 2, 8).unwrap());
    Engine::new(conv, v, vocoder, cfg).unwrap()
}

/// The whole input through the engine in pushes of `chunk` samples, then `finish`.
fn run(e: &mut Engine, x: &[f32], chunk: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for c in x.chunks(chunk) {
        let before = out.len();
        e.push(c, &mut out).unwrap();
        if e.config().input_rate == e.config().output_rate {
            // One sample out per sample in: a live output never waits and never runs dry.
            assert_eq!(out.len() - before, c.len());
        }
    }
    e.finish(&mut out).unwrap();
    assert_eq!(e.late_samples(), 0, "a stage reported too little latency");
    out
}

#[test]
fn chunk_sizes_do_not_change_a_sample() {
    let conv = model();
    let v = voice(&conv, "speech_f.wav");
    for rate in [16000u32, 44100] {
        let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
        let x = resample(&src.samples, src.sample_rate, rate).unwrap();
        let mut outs = Vec::new();
        for chunk in [1usize, 7, 480] {
            let mut e = engine(&conv, &v, EngineConfig::live(rate, rate));
            outs.push(run(&mut e, &x, chunk));
        }
        assert_eq!(outs[0], outs[1], "{rate} Hz: chunks of 1 and 7 differ");
        assert_eq!(outs[0], outs[2], "{rate} Hz: chunks of 1 and 480 differ");
        let e = engine(&conv, &v, EngineConfig::live(rate, rate));
        assert_eq!(outs[0].len(), x.len() + e.latency_samples());
        // Speech came out, at a speech-like level.
        let rms = (outs[0].iter().map(|v| v * v).sum::<f32>() / outs[0].len() as f32).sqrt();
        assert!(rms > 0.005, "{rate} Hz: rms {rms}");
    }
}

/// The delay a train of tone bursts takes through the engine (resynthesis: the model skipped,
/// so that the output is the input's own sound) is the latency the stages add up to. Measured on
/// the bursts' energy envelopes (phase reconstruction from magnitudes places a click anywhere
/// within its window, but not a burst's onset), to within a millisecond.
#[test]
fn the_measured_delay_is_the_reported_latency() {
    let conv = model();
    let v = voice(&conv, "speech_f.wav");
    for (rate_in, rate_out) in [(16000u32, 16000u32), (48000, 48000), (44100, 16000)] {
        let mut cfg = EngineConfig::live(rate_in, rate_out);
        cfg.resynthesis = true;
        let mut e = engine(&conv, &v, cfg);
        // 60 ms bursts of a 440 Hz tone every 250 ms, 5 ms raised-cosine edges.
        let n = rate_in as usize * 2;
        let sr = f64::from(rate_in);
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = (i as f64 / sr) % 0.25;
                let edge = |u: f64| 0.5 - 0.5 * (std::f64::consts::PI * (u / 0.005).clamp(0.0, 1.0)).cos();
                let env = if t < 0.06 { edge(t).min(edge(0.06 - t)) } else { 0.0 };
                (0.5 * env * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / sr).sin()) as f32
            })
            .collect();
        let y = run(&mut e, &x, 160);
        let l = e.latency_samples() as i64;
        // Energy envelopes at the output rate (2.5 ms moving average of the square).
        let x_out = resample(&x, rate_in, rate_out).unwrap();
        let env = |v: &[f32]| -> Vec<f64> {
            let w = rate_out as usize / 400;
            let sq: Vec<f64> = v.iter().map(|s| f64::from(*s).powi(2)).collect();
            sq.windows(w).map(|c| c.iter().sum::<f64>()).collect()
        };
        let (ex, ey) = (env(&x_out), env(&y));
        let corr = |lag: i64| -> f64 {
            (0..ex.len())
                .filter_map(|i| ey.get(i + lag as usize).map(|v| v * ex[i]))
                .sum()
        };
        let per_ms = i64::from(rate_out / 1000);
        let best = (l - 10 * per_ms..=l + 10 * per_ms)
            .max_by(|a, b| corr(*a).total_cmp(&corr(*b)))
            .unwrap();
        assert!(
            (best - l).abs() <= per_ms,
            "{rate_in} → {rate_out} Hz: delay measured {best} samples, latency reported {l}"
        );
    }
}

#[test]
fn a_voice_switch_glides_without_a_click() {
    let conv = model();
    let (f, s) = (voice(&conv, "speech_f.wav"), voice(&conv, "speech_s.wav"));
    let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let x = &src.samples;
    // Without adaptation, so that the voices reached are the ones set.
    let plain = EngineConfig {
        adaptation: Adaptation::NONE,
        ..EngineConfig::live(16000, 16000)
    };
    let mut e = engine(&conv, &f, plain.clone());
    let mut y = Vec::new();
    let switch = 16000; // 1 s in, mid-speech
    e.push(&x[..switch], &mut y).unwrap();
    e.set_voice(&s).unwrap();
    // Mid-glide the voice is between the two.
    e.push(&x[switch..switch + 800], &mut y).unwrap();
    let mid = e.current_voice().unwrap();
    assert!(mid.values() != f.values() && mid.values() != s.values());
    e.push(&x[switch + 800..], &mut y).unwrap();
    e.finish(&mut y).unwrap();
    // The new voice is reached within the glide (100 ms).
    assert_eq!(e.current_voice().unwrap().values(), s.values());
    // The largest sample-to-sample step around the switch is no larger than in the speech
    // elsewhere.
    let l = e.latency_samples();
    let step = |v: &[f32]| v.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0f32, f32::max);
    let around = step(&y[switch + l - 800..switch + l + 2400]);
    let elsewhere = step(&y[l..switch + l - 800]).max(step(&y[switch + l + 2400..]));
    assert!(
        around <= elsewhere,
        "step {around} at the switch, {elsewhere} elsewhere"
    );
    // Against a switch with no glide, the output differs (the glide did something).
    let mut cfg = plain;
    cfg.glide_ms = 0.0;
    let mut e = engine(&conv, &f, cfg);
    let mut z = Vec::new();
    e.push(&x[..switch], &mut z).unwrap();
    e.set_voice(&s).unwrap();
    e.push(&x[switch..], &mut z).unwrap();
    e.finish(&mut z).unwrap();
    assert_eq!(y[..switch].to_vec(), z[..switch].to_vec());
    assert_ne!(y, z);
}

#[test]
fn bypass_gives_the_input_delayed_by_the_latency_after_a_crossfade() {
    let conv = model();
    let v = voice(&conv, "speech_f.wav");
    let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let x = &src.samples;
    let mut e = engine(&conv, &v, EngineConfig::live(16000, 16000));
    let l = e.latency_samples();
    let mut y = Vec::new();
    e.push(&x[..8000], &mut y).unwrap();
    e.set_bypass(true);
    assert!(e.bypass());
    e.push(&x[8000..], &mut y).unwrap();
    // From the switch on (output time 8000), 30 ms of crossfade, then the input itself.
    let fade_end = 8000 + 480;
    for n in fade_end..y.len() {
        assert_eq!(y[n], x[n - l], "sample {n}");
    }
    // The crossfade has no step larger than the signals' own.
    let step = |v: &[f32]| v.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0f32, f32::max);
    assert!(step(&y[7990..fade_end + 10]) <= step(&y[..7990]).max(step(&x[..])));
    // And back.
    e.set_bypass(false);
    let mut z = Vec::new();
    e.push(&x[..4800], &mut z).unwrap();
    assert!(!e.bypass());
    assert!(z[480..].iter().zip(&x[..]).any(|(a, b)| a != b));
}

/// Live adaptation measures the talker's first second on its own thread and, ADAPT_DELAY_FRAMES
/// frames later, glides to exactly the voice offline adaptation gives for that second; a voice
/// switch keeps adapting (contrast with the talker's measured voice at once).
#[test]
fn live_adaptation_reaches_the_voice_measured_on_the_past() {
    let conv = model();
    let target = voice(&conv, "speech_f.wav");
    let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let x = resample(&src.samples, src.sample_rate, 16000).unwrap();
    let mut e = engine(&conv, &target, EngineConfig::live(16000, 16000));
    // Before any measurement: the references' own correction.
    let start = adapt(&conv, &target, None, Adaptation::DEFAULT).unwrap();
    assert_eq!(e.current_voice().unwrap(), start);
    // The measurement of the first second applies at frame 100 + ADAPT_DELAY_FRAMES, and its
    // glide takes 10 frames; the next (of 2 s) not before frame 300.
    let upto = (100 + ADAPT_DELAY_FRAMES as usize + 30) * 160;
    assert!(x.len() > upto, "the test clip is too short");
    let mut y = Vec::new();
    e.push(&x[..upto], &mut y).unwrap();
    let measured = measure_source(&conv, &x[..16000]).unwrap();
    assert!(measured.is_some(), "a second of speech should be measurable");
    let want = adapt(&conv, &target, measured.as_ref(), Adaptation::DEFAULT).unwrap();
    let got = e.current_voice().unwrap();
    assert_eq!(got, want);
    assert_ne!(want, start);
    assert_eq!(e.base_voice(), &target);
    // A switch: contrast with the talker's voice measured so far, the references' correction
    // until this voice is measured.
    let other = voice(&conv, "speech_s.wav");
    let mut cfg = EngineConfig::live(16000, 16000);
    cfg.glide_ms = 0.0;
    let mut e = engine(&conv, &target, cfg);
    e.push(&x[..upto], &mut y).unwrap();
    e.set_voice(&other).unwrap();
    let s = measured.unwrap().voice;
    let want = other.spectrum_strength(1.0).unwrap().contrast(&s, 0.5).unwrap();
    assert_eq!(e.current_voice().unwrap(), want);
    assert_eq!(e.base_voice(), &other);
}

/// The engine with the neural vocoder (a tiny one with fresh weights, saved and loaded as a model
/// folder's): the vocoder stage adds no latency, and chunk sizes change no sample.
#[test]
fn the_neural_vocoder_streams_without_look_ahead() {
    use voxswap_model::vocoder::{new_trainable, VocoderConfig};
    let conv = model();
    let v = voice(&conv, "speech_f.wav");
    let fe = conv.config().frontend.clone();
    let dir = tempfile::tempdir().unwrap();
    let vars = candle_nn::VarMap::new();
    let cfg = VocoderConfig::tiny(&fe);
    new_trainable(&cfg, &vars, 2, &Device::Cpu).unwrap();
    voxswap_model::NeuralVocoder::save(dir.path(), &cfg, &vars).unwrap();
    let neural = voxswap_model::NeuralVocoder::load(dir.path(), &Device::Cpu)
        .unwrap()
        .unwrap();
    assert!(voxswap_model::NeuralVocoder::load(&data("model"), &Device::Cpu)
        .unwrap()
        .is_none());
    let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let mut outs = Vec::new();
    for chunk in [1usize, 7, 480] {
        let vocoder = Box::new(voxswap_stream::Neural::new(&neural));
        let mut e = Engine::new(&conv, &v, vocoder, EngineConfig::live(16000, 16000)).unwrap();
        let stages = e.stages();
        let voc = stages.iter().find(|s| s.stage.starts_with("vocoder: neural")).unwrap();
        assert_eq!(voc.seconds, 0.0);
        assert!(e.latency_ms() < 30.0, "{} ms", e.latency_ms());
        outs.push(run(&mut e, &src.samples, chunk));
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
    assert!(outs[0].iter().any(|v| *v != 0.0));
}
