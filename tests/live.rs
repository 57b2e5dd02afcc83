//! `voxswap live` through the whole pipeline (threads, rings, engine) without a sound card: a
//! file played as the microphone at real-time pace, the output taken by a null sink at the same
//! pace; and `voxswap devices`.

use voxswap_audio::{read_mono, ChannelMix};

use crate::util::*;

#[test]
fn live_on_fake_devices_keeps_time_and_equals_convert_stream() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    // Ten seconds of speech.
    let mut x: Vec<i16> = Vec::new();
    while x.len() < 160_000 {
        for c in ["speech_m.wav", "speech_s.wav"] {
            let a = read_mono(data(c), ChannelMix::Downmix).unwrap();
            x.extend(a.samples.iter().map(|v| (v * 32767.0) as i16));
        }
    }
    x.truncate(160_000);
    let src = dir.path().join("mic.wav");
    write_pcm16(&src, &x, 16000);
    let rec = dir.path().join("rec");
    let t0 = std::time::Instant::now();
    let o = voxswap(&[
        &"live",
        &"-t",
        &data("speech_f.wav"),
        &"--model",
        &m,
        &"--input-file",
        &src,
        &"--null-output",
        &"--no-tui",
        &"--record",
        &rec,
        &"--margin-ms",
        &"200",
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    // Real-time pace: ten seconds of input take about ten seconds.
    let wall = t0.elapsed().as_secs_f64();
    assert!(wall > 9.5, "{wall} s");
    let text = stdout(&o);
    assert!(text.contains("under-runs 0, over-runs 0"), "{text}");
    // A status line a second, with the latency.
    assert!(
        text.lines().filter(|l| l.contains("latency 49.9 ms")).count() >= 8,
        "{text}"
    );

    // What came out is what `convert --stream` makes of the same file, after the latency.
    let out = dir.path().join("stream.wav");
    let o = voxswap(&[
        &"convert",
        &src,
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
    let want = read_mono(&out, ChannelMix::Downmix).unwrap().samples;
    let got = read_mono(rec.join("output.wav"), ChannelMix::Downmix).unwrap().samples;
    // The recording starts with the latency's silence: 49.9 ms, 798 samples.
    let latency = got.len() - want.len();
    assert!((latency as f64 - 49.9e-3 * 16000.0).abs() < 1.0, "{latency}");
    assert!(got[..latency].iter().all(|v| *v == 0.0));
    assert_eq!(&got[latency..], &want[..]);
    let input = read_mono(rec.join("input.wav"), ChannelMix::Downmix).unwrap().samples;
    assert_eq!(input.len(), x.len());
}

#[test]
fn live_needs_a_voice_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let o = voxswap(&[
        &"live",
        &"--model",
        &m,
        &"--input-file",
        &data("speech_m.wav"),
        &"--null-output",
        &"--no-tui",
    ]);
    assert_clean_error(&o, std::path::Path::new(""), "no voice given");
    let missing = dir.path().join("nope.wav");
    let o = voxswap(&[
        &"live",
        &"-t",
        &data("speech_f.wav"),
        &"--model",
        &m,
        &"--input-file",
        &missing,
        &"--null-output",
        &"--no-tui",
    ]);
    assert_clean_error(&o, &missing, "cannot read");
    let o = voxswap(&[&"devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
