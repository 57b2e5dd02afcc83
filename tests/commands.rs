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

/// `export` writes a checkpoint and a vocoder into a model folder, in half precision with
/// --half (half the bytes), keeping a bank already there; `convert` runs on it with the neural
/// vocoder, close to the full-precision folder's result; a checkpoint that is not one is a
/// clean error.
#[test]
fn export_writes_a_model_folder_in_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny_model(dir.path());
    add_tiny_vocoder(&ckpt);
    let (full, half) = (dir.path().join("full"), dir.path().join("half"));
    // A bank embedded with the checkpoint's weights, in the folder the half export goes to.
    ok(&voxswap(&[
        &"embed",
        &data("speech_f.wav"),
        &"--name",
        &"keep",
        &"--bank",
        &half.join("speakers"),
        &"--model",
        &ckpt,
    ]));
    let o = voxswap(&[&"export", &ckpt, &full, &"--vocoder", &ckpt]);
    assert!(!stderr(&o).contains("note"), "{}", stderr(&o));
    let o = voxswap(&[&"export", &ckpt, &half, &"--vocoder", &ckpt, &"--half"]);
    let text = ok(&o);
    assert!(text.contains("half precision") && text.contains("vocoder"), "{text}");
    assert!(
        half.join("speakers/keep.json").is_file(),
        "a file already there was removed"
    );
    // The bank's embedding belongs to the single-precision weights: export says so.
    let err = stderr(&o);
    assert!(err.contains("1 speaker(s)") && err.contains("embedded again"), "{err}");
    {
        // As readable as any file the user creates (not a temporary file's private mode).
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let probe = dir.path().join("probe");
        std::fs::write(&probe, "").unwrap();
        for f in [
            "model.safetensors",
            "vocoder.safetensors",
            "config.json",
            "vocoder.json",
        ] {
            assert_eq!(mode(&half.join(f)), mode(&probe), "{f}");
        }
    }
    for f in ["model.safetensors", "vocoder.safetensors"] {
        let (a, b) = (
            std::fs::metadata(full.join(f)).unwrap().len(),
            std::fs::metadata(half.join(f)).unwrap().len(),
        );
        assert!(b * 10 < a * 6, "{f}: {b} bytes in half against {a}");
    }
    let mut outs = Vec::new();
    for m in [&full, &half] {
        let out = dir
            .path()
            .join(format!("{}.wav", m.file_name().unwrap().to_string_lossy()));
        ok(&voxswap(&[
            &"convert",
            &data("speech_m.wav"),
            &"-t",
            &data("speech_f.wav"),
            &"-o",
            &out,
            &"--model",
            m,
            &"--vocoder",
            &"neural",
        ]));
        outs.push(read_mono(&out, ChannelMix::Downmix).unwrap().samples);
    }
    assert_eq!(outs[0].len(), outs[1].len());
    let energy = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>();
    let diff: Vec<f32> = outs[0].iter().zip(&outs[1]).map(|(a, b)| a - b).collect();
    assert!(energy(&outs[0]) > 0.0);
    assert!(
        energy(&diff) < 0.01 * energy(&outs[0]),
        "half precision changed the conversion by {} of its energy",
        energy(&diff) / energy(&outs[0])
    );
    let missing = dir.path().join("no_such_checkpoint");
    assert_clean_error(&voxswap(&[&"export", &missing, &half]), &missing, "config.json");
}
