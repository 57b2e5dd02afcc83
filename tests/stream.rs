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
