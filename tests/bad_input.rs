//! Every kind of bad input gets a one-line error that names the file, a non-zero exit, no
//! panic and no output file.

use std::path::Path;

use rand::{Rng, SeedableRng};

use crate::util::*;

fn resynth_fails(input: &Path, problem: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let o = voxswap(&[&"resynth", &input, &"-o", &out]);
    assert_clean_error(&o, input, problem);
    assert!(!out.exists(), "output written despite the error");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "leftover files");
}

#[test]
fn missing_file() {
    resynth_fails(Path::new("/no/such/dir/missing.wav"), "no such file");
}

#[test]
fn directory_instead_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("folder.wav");
    std::fs::create_dir(&d).unwrap();
    resynth_fails(&d, "is a directory");
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.wav");
    std::fs::write(&p, b"").unwrap();
    resynth_fails(&p, "empty");
}

#[test]
fn truncated_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.wav");
    let bytes = std::fs::read(data("speech_m.wav")).unwrap();
    std::fs::write(&p, &bytes[..30]).unwrap();
    resynth_fails(&p, "truncated");
}

#[test]
fn truncated_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("short.wav");
    let bytes = std::fs::read(data("speech_m.wav")).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    resynth_fails(&p, "cut short");
}

#[test]
fn zero_length_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nothing.wav");
    write_pcm16(&p, &[], 16000);
    resynth_fails(&p, "no audio data");
}

#[test]
fn text_file_named_wav() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.wav");
    std::fs::write(&p, "these are my notes, not audio\n".repeat(20)).unwrap();
    resynth_fails(&p, "not a wav file");
}

#[test]
fn text_file_with_other_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "plain text\n".repeat(20)).unwrap();
    resynth_fails(&p, "not a recognised audio format");
}

#[test]
fn unsupported_codec() {
    // A real WAV whose format tag says GSM 6.10 (0x0031): neither hound nor Symphonia decodes it.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gsm.wav");
    let mut bytes = std::fs::read(data("speech_m.wav")).unwrap();
    let fmt = bytes.windows(4).position(|w| w == b"fmt ").unwrap();
    bytes[fmt + 8] = 0x31;
    bytes[fmt + 9] = 0x00;
    std::fs::write(&p, &bytes).unwrap();
    resynth_fails(&p, "WAV codec not supported");
}

#[test]
fn nan_sample() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nan.wav");
    let mut x = vec![0.1f32; 4000];
    x[1234] = f32::NAN;
    write_f32(&p, &x, 16000);
    resynth_fails(&p, "sample 1234 of channel 0 is not a finite number");
}

#[test]
fn infinite_sample() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("inf.wav");
    let mut x = vec![0.1f32; 4000];
    x[77] = f32::NEG_INFINITY;
    write_f32(&p, &x, 16000);
    resynth_fails(&p, "not a finite number (-inf)");
}

#[test]
fn absurd_sample_rate() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [3u32, 2_000_000] {
        let p = dir.path().join(format!("rate{rate}.wav"));
        write_pcm16(&p, &[0; 100], rate);
        let o = voxswap(&[&"info", &p]);
        assert_clean_error(&o, &p, &format!("sample rate {rate} Hz is outside"));
    }
}

#[test]
fn channel_out_of_range() {
    let p = data("stereo_44k_24bit.wav");
    let o = voxswap(&[&"info", &p, &"--channel", &"2"]);
    assert_clean_error(&o, &p, "channel 2 requested but the file has 2");
}

#[test]
fn unwritable_output_path() {
    let input = data("speech_m.wav");
    let out = Path::new("/no/such/folder/out.wav");
    let o = voxswap(&[&"resynth", &input, &"-o", &out]);
    assert_clean_error(&o, out, "does not exist");
    let dir = tempfile::tempdir().unwrap();
    let o = voxswap(&[&"resynth", &input, &"-o", &dir.path()]);
    assert_clean_error(&o, dir.path(), "is a directory");
    let png = Path::new("/no/such/folder/out.png");
    let o = voxswap(&[&"spectrogram", &input, &"-o", &png]);
    assert_clean_error(&o, png, "does not exist");
}

#[test]
fn output_over_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.wav");
    std::fs::copy(data("speech_m.wav"), &p).unwrap();
    let before = std::fs::read(&p).unwrap();
    let o = voxswap(&[&"resynth", &p, &"-o", &p]);
    assert_clean_error(&o, &p, "overwrite an input");
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

/// Many truncated and bit-flipped versions of real files through the decoder: each decodes or
/// fails with an error, and none panics.
#[test]
fn mangled_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut outcomes = (0, 0);
    for name in [
        "speech_m.wav",
        "stereo_44k_24bit.wav",
        "sine_1k_16k_f32.wav",
        "speech_m.flac",
        "speech_m.ogg",
        "speech_m.mp3",
    ] {
        let original = std::fs::read(data(name)).unwrap();
        let ext = Path::new(name).extension().unwrap().to_string_lossy().into_owned();
        for case in 0..120 {
            let mut bytes = original.clone();
            if case % 2 == 0 {
                // Truncation, denser near the header.
                let cut = if case < 60 {
                    rng.random_range(0..200.min(bytes.len()))
                } else {
                    rng.random_range(0..bytes.len())
                };
                bytes.truncate(cut);
            } else {
                let flips = 1 + case % 8;
                for _ in 0..flips {
                    let i = if case < 60 {
                        rng.random_range(0..64.min(bytes.len()))
                    } else {
                        rng.random_range(0..bytes.len())
                    };
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
            }
            let p = dir.path().join(format!("m{case}.{ext}"));
            std::fs::write(&p, &bytes).unwrap();
            match voxswap_audio::read_mono(&p, voxswap_audio::ChannelMix::Downmix) {
                Ok(a) => {
                    assert!(
                        a.samples.iter().all(|v| v.is_finite()),
                        "{name} case {case}: non-finite output"
                    );
                    outcomes.0 += 1;
                }
                Err(e) => {
                    assert!(
                        e.to_string().contains(&format!("m{case}.{ext}")),
                        "{name} case {case}: {e}"
                    );
                    outcomes.1 += 1;
                }
            }
        }
    }
    // Both outcomes occur: the cases really reach the decoders' error paths.
    assert!(
        outcomes.0 > 50 && outcomes.1 > 50,
        "decoded {} / rejected {}",
        outcomes.0,
        outcomes.1
    );
}

/// Sources at 1–7 kHz are refused by convert, offline and streamed, with one clear line and
/// nothing written (they once came out as full-scale noise, their loudness measured at +30 LUFS).
#[test]
fn convert_refuses_rates_below_8_khz() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let x: Vec<i16> = (0..4000).map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16).collect();
    let reference = data("speech_f.wav");
    for rate in [1000u32, 2000, 3000] {
        let p = dir.path().join(format!("low{rate}.wav"));
        write_pcm16(&p, &x, rate);
        for stream in [false, true] {
            let out = dir.path().join(format!("out{rate}{stream}.wav"));
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
                vec![&"convert", &p, &"-t", &reference, &"-o", &out, &"--model", &m];
            if stream {
                args.push(&"--stream");
            }
            let o = voxswap(&args);
            assert_clean_error(&o, &p, &format!("sample rate {rate} Hz is below the 8000 Hz"));
            assert!(!out.exists(), "{rate} Hz, stream {stream}: an output was written");
        }
    }
}
