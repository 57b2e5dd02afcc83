//! `voxswap convert --stream`: the file through the live engine, as live conversion will run.

use voxswap_audio::{read_mono, ChannelMix, LogMel};
use voxswap_model::VoiceConverter;
use voxswap_stream::{Engine, EngineConfig, StreamingGl};

use crate::util::*;

#[test]
fn convert_stream_is_the_engine_in_chunks_and_reports_its_latency() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let out = dir.path().join("out.wav");
    let o = voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
        &"--stream",
        &"--float",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("algorithmic latency") && text.contains("vocoder: griffin-lim"),
        "{text}"
    );
    assert!(text.contains("compute per 10 ms frame"), "{text}");

    // The same through the library, pushed in chunks of 480 samples: the same samples, once the
    // engine's latency is cut off.
    let conv = VoiceConverter::load(&m, &candle_core::Device::Cpu).unwrap();
    let reference = read_mono(data("speech_f.wav"), ChannelMix::Downmix).unwrap();
    // The reference as the CLI reads it: brought to the corpus's speech level first.
    let mut r = reference.samples.clone();
    let level = voxswap_audio::speech_level(&r, reference.sample_rate);
    let gain = 10f64.powf((-18.0 - level.speech_db) / 20.0) as f32;
    r.iter_mut().for_each(|v| *v *= gain);
    let voice = conv
        .embed(&[LogMel::new(&conv.config().frontend).unwrap().compute(&r)])
        .unwrap();
    let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let vocoder = Box::new(StreamingGl::new(&conv.config().frontend, 2, 8).unwrap());
    let mut e = Engine::new(
        &conv,
        &voice,
        vocoder,
        EngineConfig::live(src.sample_rate, src.sample_rate),
    )
    .unwrap();
    let mut y = Vec::new();
    for c in src.samples.chunks(480) {
        e.push(c, &mut y).unwrap();
    }
    e.finish(&mut y).unwrap();
    let y = &y[e.latency_samples()..];
    let got = read_mono(&out, ChannelMix::Downmix).unwrap().samples;
    assert_eq!(got.len(), src.samples.len());
    assert_eq!(got, y);
    assert!(
        text.contains(&format!("algorithmic latency {:.1} ms", e.latency_ms())),
        "{text}"
    );
}

/// At 11,025 and 22,050 Hz (where 10 ms is no whole number of samples, and the resamplers work
/// in blocks of 40 and 20 ms) the engine is never late: no converted sample is replaced by
/// silence, and the output keeps the input's length. A file converted this way once came out
/// with 25 ms of silence every 40 ms.
#[test]
fn the_stream_is_never_late_at_rates_without_whole_10_ms() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let conv = VoiceConverter::load(&m, &candle_core::Device::Cpu).unwrap();
    let reference = read_mono(data("speech_f.wav"), ChannelMix::Downmix).unwrap();
    let voice = conv
        .embed(&[LogMel::new(&conv.config().frontend)
            .unwrap()
            .compute(&reference.samples)])
        .unwrap();
    let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    for rate in [11025u32, 22050] {
        let x = voxswap_audio::resample(&src.samples, src.sample_rate, rate).unwrap();
        let vocoder = Box::new(StreamingGl::new(&conv.config().frontend, 2, 8).unwrap());
        let mut e = Engine::new(&conv, &voice, vocoder, EngineConfig::live(rate, rate)).unwrap();
        let mut y = Vec::new();
        for c in x.chunks((rate / 100) as usize) {
            e.push(c, &mut y).unwrap();
        }
        assert_eq!(e.late_samples(), 0, "{rate} Hz: {} samples late", e.late_samples());
        e.finish(&mut y).unwrap();
        assert_eq!(y.len(), x.len() + e.latency_samples(), "{rate} Hz");
    }
}
