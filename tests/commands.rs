//! The commands on real audio.

use voxswap_audio::{read_mono, ChannelMix, FrontendConfig, LogMel};

use crate::util::*;

#[test]
fn info_reports_format_and_levels() {
    let o = voxswap(&[&"info", &data("sine_1k_16k_f32.wav"), &"--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["format"], "WAV, 32-bit float");
    assert_eq!(v["sample_rate_hz"], 16000);
    assert_eq!(v["channels"], 1);
    assert_eq!(v["frames"], 16000);
    // A 0.5-amplitude sine: peak 0.5 (-6.02 dBFS), RMS 0.5/√2 (-9.03 dBFS).
    assert!((v["peak"].as_f64().unwrap() - 0.5).abs() < 3e-3);
    assert!((v["rms_dbfs"].as_f64().unwrap() + 9.03).abs() < 0.02);
    let o = voxswap(&[&"info", &data("stereo_44k_24bit.wav")]);
    let text = stdout(&o);
    assert!(
        text.contains("24-bit integer PCM") && text.contains("44100 Hz") && text.contains("channels:  2"),
        "{text}"
    );
}

#[test]
fn spectrogram_writes_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.png");
    let o = voxswap(&[
        &"spectrogram",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--width",
        &"640",
        &"--height",
        &"300",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 640);
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 300);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn resynth_keeps_the_mel_and_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    // From 44.1 kHz stereo: the output is at 44.1 kHz, and its mel is close to the input's.
    let input = data("stereo_44k_24bit.wav");
    let out = dir.path().join("r.wav");
    let o = voxswap(&[&"resynth", &input, &"-o", &out, &"--channel", &"0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = read_mono(&input, ChannelMix::Select(0)).unwrap();
    let b = read_mono(&out, ChannelMix::Downmix).unwrap();
    assert_eq!(b.sample_rate, 44100);
    assert_eq!(b.samples.len(), a.samples.len());
    let cfg = FrontendConfig::speech_16k();
    let mut lm = LogMel::new(&cfg).unwrap();
    let ma = lm.compute(&voxswap_audio::resample(&a.samples, 44100, 16000).unwrap());
    let mb = lm.compute(&voxswap_audio::resample(&b.samples, 44100, 16000).unwrap());
    let (mut d, mut n) = (0.0f32, 0);
    for (x, y) in ma.data.iter().zip(&mb.data) {
        if *x > -5.0 {
            d += (x - y).abs();
            n += 1;
        }
    }
    assert!(n > 1000);
    assert!(d / (n as f32) < 0.2, "mean log-mel distance {}", d / n as f32);
}

#[test]
fn help_explains_each_command() {
    let o = voxswap(&[&"--help"]);
    let text = stdout(&o);
    for cmd in ["info", "spectrogram", "resynth"] {
        assert!(text.contains(cmd), "{text}");
    }
    let o = voxswap(&[&"resynth", &"--help"]);
    assert!(stdout(&o).contains("Griffin-Lim iterations"));
}
