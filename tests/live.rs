//! `voxswap live` through the whole pipeline (threads, rings, engine) without a sound card: a
//! file played as the microphone at real-time pace, the output taken by a null sink at the same
//! pace; and `voxswap devices`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use voxswap_audio::{read_mono, ChannelMix};

use crate::util::*;

/// Plays speech_m.wav into the mic sink over and over until the returned flag is set: however
/// long `voxswap live` takes to start (a loaded CI machine runs many tests at once), the
/// microphone is speaking while it runs.
fn play_into_mic() -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let speech = data("speech_m.wav");
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let player = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            let _ = std::process::Command::new("paplay")
                .arg("--device=vs_mic")
                .arg(&speech)
                .status();
        }
    });
    (done, player)
}

/// Records `device` (16 kHz mono) into `path` until the returned child is killed.
fn record(device: &str, path: &std::path::Path) -> std::process::Child {
    std::process::Command::new("parecord")
        .args([
            format!("--device={device}").as_str(),
            "--file-format=wav",
            "--channels=1",
            "--rate=16000",
        ])
        .arg(path)
        .spawn()
        .unwrap()
}

/// Stops a recorder.
fn stop(mut r: std::process::Child) {
    let _ = std::process::Command::new("kill").arg(r.id().to_string()).status();
    let _ = r.wait();
}

/// 100 ms stretches of `path` louder than −40 dBFS.
fn loud_stretches(path: &std::path::Path) -> usize {
    let y = read_mono(path, ChannelMix::Downmix).unwrap().samples;
    y.chunks(1600)
        .filter(|c| (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32).sqrt() > 0.01)
        .count()
}

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
    // A missing voice is a missing flag: exit status 2, both ways of giving one named.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not provided") && stderr(&o).contains("--target") && stderr(&o).contains("--speaker"),
        "{}",
        stderr(&o)
    );
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

/// The real path: cpal through ALSA into the PulseAudio server that `scripts/test.sh` starts
/// (null sinks, scripts/audio_server.sh): speech played into `vs_mic` is the microphone, and
/// what voxswap plays into `vs_out` is recorded from its monitor. Runs where
/// `VOXSWAP_AUDIO_SERVER=1` says such a server is up (the README's test command); elsewhere it
/// says it is skipped.
#[test]
fn live_through_a_pulseaudio_server() {
    if std::env::var_os("VOXSWAP_AUDIO_SERVER").is_none() {
        eprintln!("skipped: no audio server (scripts/test.sh starts one and sets VOXSWAP_AUDIO_SERVER=1)");
        return;
    }
    let up = std::process::Command::new("pactl")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(up, "no PulseAudio server");
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let captured = dir.path().join("captured.wav");
    let rec = record("vs_out.monitor", &captured);
    let (playing, player) = play_into_mic();
    let o = voxswap(&[
        &"live",
        &"-t",
        &data("speech_f.wav"),
        &"--model",
        &m,
        &"--no-tui",
        &"--seconds",
        &"6",
        &"--rate",
        &"16000",
        &"--buffer",
        &"480",
    ]);
    playing.store(true, Ordering::SeqCst);
    player.join().unwrap();
    stop(rec);
    let text = ok(&o);
    assert!(
        text.contains("stopped after") && text.contains("latency 49.9 ms"),
        "{text}"
    );
    // Converted speech reached the server: loud and quiet stretches, as the input has.
    let loud = loud_stretches(&captured);
    assert!(loud >= 10, "{loud} loud 100 ms stretches captured; live said:\n{text}");
    eprintln!("{}", text.lines().last().unwrap_or_default());
}

/// `--virtual-mic`: another program records the converted voice from the `voxswap` source, and
/// the source is gone once live stops.
#[test]
fn live_feeds_a_virtual_microphone_and_removes_it() {
    if std::env::var_os("VOXSWAP_AUDIO_SERVER").is_none() {
        eprintln!("skipped: no audio server (scripts/test.sh starts one and sets VOXSWAP_AUDIO_SERVER=1)");
        return;
    }
    let sources = || {
        let o = std::process::Command::new("pactl")
            .args(["list", "short", "sources"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let captured = dir.path().join("mic.wav");
    let cap = captured.clone();
    let recorder = std::thread::spawn(move || {
        // Wait for the source to exist, then record from it as a call program would.
        for _ in 0..600 {
            if sources().contains("voxswap\t") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let r = record("voxswap", &cap);
        std::thread::sleep(std::time::Duration::from_secs(3));
        stop(r);
    });
    let (playing, player) = play_into_mic();
    let o = voxswap(&[
        &"live",
        &"-t",
        &data("speech_f.wav"),
        &"--model",
        &m,
        &"--no-tui",
        &"--seconds",
        &"5",
        &"--rate",
        &"16000",
        &"--buffer",
        &"480",
        &"--virtual-mic",
    ]);
    recorder.join().unwrap();
    playing.store(true, Ordering::SeqCst);
    player.join().unwrap();
    ok(&o);
    assert!(
        !sources().contains("voxswap\t"),
        "the virtual microphone is still there: {}",
        sources()
    );
    let loud = loud_stretches(&captured);
    assert!(
        loud >= 5,
        "{loud} loud 100 ms stretches recorded from the virtual microphone; live said:\n{}",
        stdout(&o)
    );
}

/// When the conversion thread fails, the run ends at once with its error (exit 1) instead of
/// counting on until the user presses q (with a file input it never ended).
#[test]
fn a_failing_conversion_ends_the_run_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let (reference, source) = (data("speech_f.wav"), data("speech_m.wav"));
    let mut child = spawn_voxswap(
        &[
            &"live",
            &"--model",
            &m,
            &"-t",
            &reference,
            &"--input-file",
            &source,
            &"--null-output",
            &"--no-tui",
        ],
        &[("VOXSWAP_TEST_DSP_FAILS_AFTER_MS", "300")],
    );
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the run went on after its conversion thread failed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("conversion (DSP) thread failed") && err.contains("injected failure"),
        "{err}"
    );
}
