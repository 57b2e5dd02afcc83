//! What a new user trips over: files lost, overwritten, hidden or unreadable, loudness that must
//! match, clicks, flags, references that are not speech, and a binary outside its checkout.

use std::path::Path;
use std::time::{Duration, Instant};

use voxswap_audio::{read_mono, ChannelMix};

use crate::util::*;

/// Files in `dir` whose names start with a dot: what an interrupted or failed run left behind.
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// `n` copies of speech_m, speech_f and speech_s with half a second of silence after each, at
/// 16 kHz: real speech of about `n`·9.8 s.
fn long_speech(path: &Path, n: usize) {
    let mut x: Vec<i16> = Vec::new();
    let clips: Vec<Vec<f32>> = ["speech_m.wav", "speech_f.wav", "speech_s.wav"]
        .iter()
        .map(|c| read_mono(data(c), ChannelMix::Downmix).unwrap().samples)
        .collect();
    for _ in 0..n {
        for c in &clips {
            x.extend(c.iter().map(|v| (v * 32767.0) as i16));
            x.extend(std::iter::repeat_n(0i16, 8000));
        }
    }
    write_pcm16(path, &x, 16000);
}

#[test]
fn folder_conversion_names_every_failed_file_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(data("speech_m.wav"), src.join("good.wav")).unwrap();
    let bytes = std::fs::read(data("speech_f.wav")).unwrap();
    std::fs::write(src.join("truncated.wav"), &bytes[..30]).unwrap();
    std::fs::write(src.join("text.wav"), "not audio at all").unwrap();
    let out = dir.path().join("out");
    // stderr is a pipe here, not a terminal: the errors must still be there.
    let o = voxswap(&[
        &"convert",
        &src,
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("converted 1 of 3 files"), "{}", stdout(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines.iter().any(|l| l.contains("truncated.wav")), "{err}");
    assert!(lines.iter().any(|l| l.contains("text.wav")), "{err}");
    assert!(out.join("good.wav").is_file());
    assert!(hidden(&out).is_empty(), "{:?}", hidden(&out));
}

#[cfg(unix)]
#[test]
fn outputs_get_the_mode_of_new_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let out = dir.path().join("out.wav");
    // An existing 0644 output stays what the umask gives, not 0600.
    std::fs::write(&out, b"old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
    ]));
    let (got, want) = modes(&out);
    assert_eq!(got, want, "convert wrote mode {got:o}, a new file gets {want:o}");
    let png = dir.path().join("s.png");
    ok(&voxswap(&[&"spectrogram", &data("speech_m.wav"), &"-o", &png]));
    let (got, want) = modes(&png);
    assert_eq!(got, want, "spectrogram wrote mode {got:o}");
    let r = dir.path().join("r.wav");
    ok(&voxswap(&[
        &"resynth",
        &data("speech_m.wav"),
        &"-o",
        &r,
        &"--iterations",
        &"2",
    ]));
    let (got, want) = modes(&r);
    assert_eq!(got, want, "resynth wrote mode {got:o}");
}

#[test]
fn embed_goes_to_the_users_bank_and_never_replaces_silently() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let home = dir.path().join("data");
    let env = |args: &[&dyn AsRef<std::ffi::OsStr>]| voxswap_env(args, &[("XDG_DATA_HOME", Some(&home))], None);
    // A model bank with one speaker, as pretrained/ has.
    let model_bank = m.join("speakers");
    ok(&voxswap(&[
        &"embed",
        &data("speech_s.wav"),
        &"--name",
        &"shipped",
        &"--bank",
        &model_bank,
        &"--model",
        &m,
    ]));
    let shipped = std::fs::read(model_bank.join("shipped.json")).unwrap();

    let o = env(&[&"embed", &data("speech_f.wav"), &"--name", &"fiona", &"--model", &m]);
    assert!(ok(&o).contains("added `fiona`"), "{}", stdout(&o));
    let user_bank = home.join("voxswap/speakers");
    assert!(user_bank.join("fiona.json").is_file());
    assert!(!model_bank.join("fiona.json").exists());
    // The same name again: refused, then replaced with --force, and said so.
    let o = env(&[&"embed", &data("speech_m.wav"), &"--name", &"fiona", &"--model", &m]);
    assert_clean_error(&o, Path::new("speakers"), "already in");
    let o = env(&[
        &"embed",
        &data("speech_m.wav"),
        &"--name",
        &"fiona",
        &"--model",
        &m,
        &"--force",
    ]);
    assert!(ok(&o).contains("replaced `fiona`"), "{}", stdout(&o));
    // A name of the model's bank: refused (it would hide the shipped voice); the shipped entry
    // is never touched.
    let o = env(&[&"embed", &data("speech_m.wav"), &"--name", &"shipped", &"--model", &m]);
    assert_clean_error(&o, Path::new("speakers"), "one of the model's");
    assert_eq!(std::fs::read(model_bank.join("shipped.json")).unwrap(), shipped);
    // `speakers` lists both banks; --speaker finds speakers in either.
    let o = env(&[&"speakers", &"--model", &m, &"--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fiona", "shipped"]);
    let text = ok(&env(&[&"speakers", &"--model", &m]));
    assert!(
        text.contains(&user_bank.display().to_string()) && text.contains("shipped"),
        "{text}"
    );
    for name in ["fiona", "shipped", "fiona:0.5,shipped:0.5"] {
        let out = dir.path().join("x.wav");
        ok(&env(&[
            &"convert",
            &data("speech_m.wav"),
            &"--speaker",
            &name,
            &"-o",
            &out,
            &"--model",
            &m,
        ]));
    }
}

#[test]
fn outputs_never_overwrite_inputs_or_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    // a.wav and a.flac in one folder would both become a.wav: refused, nothing written.
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(data("speech_m.wav"), src.join("a.wav")).unwrap();
    std::fs::copy(data("speech_m.flac"), src.join("a.flac")).unwrap();
    let out = dir.path().join("out");
    let o = voxswap(&[
        &"convert",
        &src,
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
    ]);
    assert_clean_error(&o, Path::new("a.wav"), "would both be written");
    assert!(!out.join("a.wav").exists());

    // The output is the reference: refused, the reference intact.
    let reference = dir.path().join("ref.wav");
    std::fs::copy(data("speech_f.wav"), &reference).unwrap();
    let before = std::fs::read(&reference).unwrap();
    let o = voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"-t",
        &reference,
        &"-o",
        &reference,
        &"--model",
        &m,
    ]);
    assert_clean_error(&o, &reference, "would overwrite an input");
    assert_eq!(std::fs::read(&reference).unwrap(), before);
    // In a folder conversion, a reference inside the output folder under an output's name.
    std::fs::remove_file(src.join("a.flac")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let inside = out.join("a.wav");
    std::fs::copy(data("speech_f.wav"), &inside).unwrap();
    let o = voxswap(&[&"convert", &src, &"-t", &inside, &"-o", &out, &"--model", &m]);
    assert_clean_error(&o, &inside, "would overwrite an input");
    assert_eq!(std::fs::read(&inside).unwrap(), before);

    // Names that promise another format, and a folder's output named like a file.
    for name in ["out.mp3", "out.flac", "outfile"] {
        let p = dir.path().join(name);
        let o = voxswap(&[
            &"convert",
            &data("speech_m.wav"),
            &"-t",
            &reference,
            &"-o",
            &p,
            &"--model",
            &m,
        ]);
        assert_clean_error(&o, &p, "writes WAV files only");
        assert!(!p.exists());
    }
    let p = dir.path().join("x.wav");
    let o = voxswap(&[&"convert", &src, &"-t", &reference, &"-o", &p, &"--model", &m]);
    assert_clean_error(&o, &p, "give a folder");
    assert!(!p.exists());
    let p = dir.path().join("s.jpg");
    let o = voxswap(&[&"spectrogram", &data("speech_m.wav"), &"-o", &p]);
    assert_clean_error(&o, &p, "writes PNG files only");
}

#[cfg(unix)]
#[test]
fn an_interrupted_conversion_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let src = dir.path().join("long.wav");
    long_speech(&src, 60);
    for signal in ["TERM", "INT"] {
        let out_dir = dir.path().join(format!("out-{signal}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = out_dir.join("out.wav");
        let reference = data("speech_f.wav");
        let mut child = spawn_voxswap(&[&"convert", &src, &"-t", &reference, &"-o", &out, &"--model", &m], &[]);
        // Wait until it writes its partial files, then signal it.
        let t0 = Instant::now();
        while hidden(&out_dir).is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(60), "no partial file appeared");
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before it could be interrupted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let k = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(k.success());
        let status = child.wait().unwrap();
        assert!(!status.success(), "{signal}: exited with success");
        assert!(hidden(&out_dir).is_empty(), "{signal} left {:?}", hidden(&out_dir));
        assert!(!out.exists(), "{signal} left an output");
    }
}

/// The loudness of the output (EBU R128 integrated) is the source's within 0.5 LU, for a short,
/// a long, a noisy and a clipped source, and no sample exceeds full scale.
#[test]
fn converted_loudness_matches_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let speech = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap().samples;
    let short = data("speech_m.wav");
    let long = dir.path().join("long.wav");
    long_speech(&long, 62); // ten minutes
                            // Speech in white noise at about 10 dB SNR, and speech driven 12 dB into clipping.
    let mut state = 12345u32;
    let noisy: Vec<i16> = speech
        .iter()
        .map(|v| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            ((v + 0.03 * n) * 32767.0).clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let noisy_p = dir.path().join("noisy.wav");
    write_pcm16(&noisy_p, &noisy, 16000);
    let clipped: Vec<i16> = speech
        .iter()
        .map(|v| (v * 4.0 * 32767.0).clamp(-32767.0, 32767.0) as i16)
        .collect();
    let clipped_p = dir.path().join("clipped.wav");
    write_pcm16(&clipped_p, &clipped, 16000);
    for src in [short, long, noisy_p, clipped_p] {
        let out = dir.path().join("out.wav");
        let o = voxswap(&[
            &"convert",
            &src,
            &"-t",
            &data("speech_f.wav"),
            &"-o",
            &out,
            &"--model",
            &m,
        ]);
        assert!(ok(&o).contains("LUFS"), "{}", stdout(&o));
        let (a, b) = (lufs(&src), lufs(&out));
        assert!(
            (a - b).abs() <= 0.5,
            "{}: source {a:.2} LUFS, output {b:.2} LUFS",
            src.display()
        );
        let y = read_mono(&out, ChannelMix::Downmix).unwrap().samples;
        assert!(
            y.iter().all(|v| v.abs() <= 0.99 + 1.0 / 32768.0),
            "{}: a peak over 0.99",
            src.display()
        );
    }
}

/// No click at the start: the shipped model's first 20 ms stay near the source's level (a
/// sample of 0.59 came out where the source held 0.05).
#[test]
fn no_click_at_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = root.join("examples/target_unseen.wav");
    let speech = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    // Also after a noisy lead-in of 0.3 s at about -40 dBFS.
    let mut state = 7u32;
    let mut noisy: Vec<i16> = (0..4800)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 16) as i16 as f32 * 0.01 * 2.0) as i16
        })
        .collect();
    noisy.extend(speech.samples.iter().map(|v| (v * 32767.0) as i16));
    let noisy_p = dir.path().join("lead-in.wav");
    write_pcm16(&noisy_p, &noisy, 16000);
    for src in [data("speech_m.wav"), data("speech_f.wav"), noisy_p] {
        let out = dir.path().join("out.wav");
        let o = voxswap_env(
            &[&"convert", &src, &"-t", &reference, &"-o", &out],
            &[("VOXSWAP_MODEL", None)],
            Some(root),
        );
        ok(&o);
        // Peaks of the first 20 ms in 5 ms windows: the output may be louder than the source
        // (the target voice, the loudness gain), but not by more than 12 dB over the source
        // near that time, and never above -30 dBFS where the source is quieter than that.
        let peaks = |p: &Path| -> Vec<f32> {
            let a = read_mono(p, ChannelMix::Downmix).unwrap();
            a.samples[..480]
                .chunks(80)
                .map(|c| c.iter().fold(0f32, |m, v| m.max(v.abs())))
                .collect()
        };
        let (s, y) = (peaks(&src), peaks(&out));
        for w in 0..4usize {
            // The analysis and synthesis windows (25 ms) smear energy by up to 12.5 ms.
            let near = s[w.saturating_sub(1)..w + 3].iter().fold(0f32, |m, v| m.max(*v));
            assert!(
                y[w] <= (4.0 * near).max(0.0316),
                "{}: {}-{} ms: peak {:.3}, source {near:.3}",
                src.display(),
                5 * w,
                5 * w + 5,
                y[w]
            );
        }
    }
}

#[test]
fn bad_flags_are_one_line_with_exit_status_2_and_help_states_ranges() {
    for (flag, value) in [("--rate", "0"), ("--contrast", "100"), ("--spectrum", "5")] {
        let o = voxswap(&[
            &"convert",
            &data("speech_m.wav"),
            &"-t",
            &data("speech_f.wav"),
            &"-o",
            &"x.wav",
            &flag,
            &value,
        ]);
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("error:") && err.contains(flag), "{err}");
    }
    let help = ok(&voxswap(&[&"convert", &"--help"]));
    for range in ["8000 to 192000", "1 to 1000", "from 0 to 4", "from 0 to 2"] {
        assert!(help.contains(range), "--help does not state `{range}`");
    }
    let top = ok(&voxswap(&[&"--help"]));
    assert!(top.contains("exit status") || top.contains("Exit status"), "{top}");
}

#[test]
fn references_must_be_speech_and_their_level_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    // 5 s of hiss at -60 dBFS: no speech, for embed and convert.
    let mut state = 99u32;
    let hiss: Vec<i16> = (0..80000)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 16) as i16 as f32 * 1.7e-3) as i16
        })
        .collect();
    let hiss_p = dir.path().join("hiss.wav");
    write_pcm16(&hiss_p, &hiss, 16000);
    let out = dir.path().join("out.wav");
    let o = voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"-t",
        &hiss_p,
        &"-o",
        &out,
        &"--model",
        &m,
    ]);
    assert_clean_error(&o, &hiss_p, "no speech found");
    let o = voxswap(&[
        &"embed",
        &hiss_p,
        &"--name",
        &"hiss",
        &"--bank",
        &dir.path().join("b"),
        &"--model",
        &m,
    ]);
    assert_clean_error(&o, &hiss_p, "no speech found");
    // The same reference 30 dB quieter (about -40 dBFS) gives the same voice: up to float
    // rounding, which Griffin-Lim's iterations amplify to a few thousandths (unnormalised, the
    // quiet reference's log-mel sits 3.5 nats lower, which the speaker encoder reads as
    // another voice).
    let f = read_mono(data("speech_f.wav"), ChannelMix::Downmix).unwrap();
    let quiet_p = dir.path().join("quiet.wav");
    write_f32(
        &quiet_p,
        &f.samples.iter().map(|v| v * 0.0316).collect::<Vec<_>>(),
        f.sample_rate,
    );
    let loud = dir.path().join("loud.wav");
    let quiet = dir.path().join("quiet-out.wav");
    for (r, o) in [(data("speech_f.wav"), &loud), (quiet_p, &quiet)] {
        ok(&voxswap(&[
            &"convert",
            &data("speech_m.wav"),
            &"-t",
            &r,
            &"-o",
            o,
            &"--model",
            &m,
            &"--float",
        ]));
    }
    let (a, b) = (
        read_mono(&loud, ChannelMix::Downmix).unwrap().samples,
        read_mono(&quiet, ChannelMix::Downmix).unwrap().samples,
    );
    let diff: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    assert!(
        diff < 2e-2 * norm,
        "a quieter reference changed the conversion by {:.2e}",
        diff / norm
    );
}

#[test]
fn channel_picks_the_sources_channel_only() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let out = dir.path().join("out.wav");
    // A stereo source, a mono reference.
    let o = voxswap(&[
        &"convert",
        &data("stereo_44k_24bit.wav"),
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
        &"--channel",
        &"1",
    ]);
    ok(&o);
    assert!(out.is_file());
}

#[test]
fn messages_say_what_they_mean() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let out = dir.path().join("out.wav");
    // A 0.05 s source: a warning about the source, not "reference 1" or "bad input".
    let speech = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let short = dir.path().join("short.wav");
    write_f32(&short, &speech.samples[4800..5600], 16000);
    let o = voxswap(&[
        &"convert",
        &short,
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
    ]);
    ok(&o);
    let err = stderr(&o);
    assert!(err.contains("source too short"), "{err}");
    assert!(!err.contains("reference 1") && !err.contains("bad input"), "{err}");
    // A weight that is not a number says so.
    let o = voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"--speaker",
        &"a:nan",
        &"-o",
        &out,
        &"--model",
        &m,
    ]);
    assert!(stderr(&o).contains("`nan` is not a number"), "{}", stderr(&o));
    // ... as a bad flag, like any other (exit status 2).
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // `data check` names an unreadable file once.
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("spk")).unwrap();
    std::fs::copy(data("speech_m.wav"), corpus.join("spk/a.wav")).unwrap();
    std::fs::write(corpus.join("spk/bad.wav"), "text").unwrap();
    let o = voxswap(&[&"data", &"check", &corpus]);
    let line = stdout(&o)
        .lines()
        .find(|l| l.contains("bad.wav"))
        .unwrap_or_default()
        .to_string();
    assert_eq!(line.matches("bad.wav").count(), 1, "{}", stdout(&o));
}

/// A binary copied out of the checkout finds the model where an installed tool keeps it, and
/// says where it looked when there is none.
#[test]
fn an_installed_binary_finds_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("voxswap");
    std::fs::copy(env!("CARGO_BIN_EXE_voxswap"), &bin).unwrap();
    let home = dir.path().join("data");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let run = || {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args([
            "convert".as_ref(),
            data("speech_m.wav").as_os_str(),
            "-t".as_ref(),
            data("speech_f.wav").as_os_str(),
            "-o".as_ref(),
            "out.wav".as_ref(),
        ])
        .current_dir(&work)
        .env("XDG_DATA_HOME", &home)
        .env_remove("VOXSWAP_MODEL");
        cmd.output().unwrap()
    };
    let o = run();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no model found") && stderr(&o).contains("voxswap/model"),
        "{}",
        stderr(&o)
    );
    tiny_model(&home.join("voxswap"));
    let o = run();
    ok(&o);
    assert!(work.join("out.wav").is_file());
}

/// A long file shows its progress on a terminal (a pseudo-terminal from `script`).
#[cfg(target_os = "linux")]
#[test]
fn a_single_long_file_shows_progress_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let src = dir.path().join("long.wav");
    long_speech(&src, 10);
    let out = dir.path().join("out.wav");
    let cmd = format!(
        "{} convert {} -t {} -o {} --model {}",
        env!("CARGO_BIN_EXE_voxswap"),
        src.display(),
        data("speech_f.wav").display(),
        out.display(),
        m.display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("converting"), "no progress shown: {text}");
    assert!(out.is_file());
}

/// An interrupted folder conversion keeps the files it finished and says so (it once said
/// "nothing written" with them on disk), and leaves nothing of the file it was writing.
#[test]
fn interrupted_folder_conversion_says_what_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let src = dir.path().join("in");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(data("speech_m.wav"), src.join("a.wav")).unwrap();
    long_speech(&src.join("b.wav"), 60);
    let out = dir.path().join("out");
    let reference = data("speech_f.wav");
    let mut child = spawn_voxswap(&[&"convert", &src, &"-t", &reference, &"-o", &out, &"--model", &m], &[]);
    let t0 = Instant::now();
    while !out.join("a.wav").exists() || hidden(&out).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(120), "the second file never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let k = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the 1 finished before it are kept"), "{err}");
    assert!(out.join("a.wav").exists() && !out.join("b.wav").exists());
    assert!(hidden(&out).is_empty(), "left {:?}", hidden(&out));
}
