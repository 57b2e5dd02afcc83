//! The recipes' `run.sh` on miniature fake copies of each corpus layout (VCTK 0.92 and 0.80,
//! LibriTTS), built here from synthetic speech, and the synthetic corpus generator on two espeak-ng
//! voices; plus `voxswap data check`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `bash recipes/<name>/run.sh --config <config> ARGS`, with this build's binary.
fn run_recipe(name: &str, config: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("recipes").join(name).join("run.sh"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("VOXSWAP_BIN", env!("CARGO_BIN_EXE_voxswap"))
        .output()
        .expect("running bash")
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The training half of a recipe config: the tiny model for a few steps.
fn train_sections(work: &Path) -> String {
    format!(
        "[data]\ncorpus = \"{w}/data/corpus/train\"\ncache = \"{w}/data/cache\"\nsegment_frames = 32\nvalid_per_speaker = 1\n\n\
         [model]\npreset = \"tiny-stream\"\n\n\
         [train]\nsteps = 6\nbatch_size = 2\ncheckpoint_every = 3\nvalid_every = 3\nlog_every = 3\n\n\
         [output]\ndir = \"{w}/exp\"\n\n[export]\ndir = \"{w}/model\"\nhalf = true\n",
        w = work.display()
    )
}

fn clip(i: usize) -> PathBuf {
    data(["speech_m.wav", "speech_f.wav", "speech_s.wav"][i % 3])
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(o.status.success(), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
}

#[test]
fn vctk_092_prepares_links_mic1_and_splits_speakers_then_trains_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("VCTK-Corpus-0.92");
    for (k, spk) in ["p225", "p226", "p300"].iter().enumerate() {
        let a = root.join("wav48_silence_trimmed").join(spk);
        let t = root.join("txt").join(spk);
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&t).unwrap();
        for u in 1..=3 {
            let stem = format!("{spk}_{u:03}");
            // The shipped layout: FLAC, two microphones per utterance.
            std::fs::copy(data("speech_m.flac"), a.join(format!("{stem}_mic1.flac"))).unwrap();
            std::fs::copy(data("speech_m.flac"), a.join(format!("{stem}_mic2.flac"))).unwrap();
            std::fs::write(t.join(format!("{stem}.txt")), format!("Sentence {u} of speaker {k}.\n")).unwrap();
        }
    }
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[prepare]\nroot = \"{}\"\nwork = \"data\"\nvalid_speakers = \"p225 p226 s5\"\n\n{}\n\
             [vocoder]\nsteps = 4\nbatch_size = 2\nsegment_frames = 16\nsize = \"tiny\"\nlog_every = 2\n",
            root.display(),
            // With the phonetic head, on the transcripts stage 1 writes.
            train_sections(dir.path())
                .replace(
                    "valid_per_speaker = 1\n",
                    &format!(
                        "valid_per_speaker = 1\nphonemes = \"{}/data/corpus/train/phonemes.tsv\"\n",
                        dir.path().display()
                    )
                )
                .replace(
                    "log_every = 3\n",
                    "log_every = 3\nlambda_phone = 1.0\nphone_batch = 1\n"
                )
        ),
    )
    .unwrap();
    let o = run_recipe("vctk", &config, &["--stop-stage", "1"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("VCTK 0.92"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("9 utterances: 1 training speakers, 2 validation speakers"),
        "{}",
        stdout(&o)
    );
    let corpus = dir.path().join("data/corpus");
    // Speakers' folders, and the transcripts as text and as phonemes.
    assert_eq!(
        names(&corpus.join("train")),
        ["p300", "phonemes.tsv", "transcripts.tsv"].map(String::from).into()
    );
    assert_eq!(
        names(&corpus.join("valid")),
        ["p225", "p226", "phonemes.tsv", "transcripts.tsv"]
            .map(String::from)
            .into()
    );
    let files = names(&corpus.join("train/p300"));
    assert_eq!(files, (1..=3).map(|u| format!("p300_{u:03}_mic1.flac")).collect());
    // Links, not copies.
    assert!(corpus.join("train/p300/p300_001_mic1.flac").is_symlink());
    // The transcripts in espeak-ng's phonemes, by corpus-relative path, for the phonetic head.
    let tsv = std::fs::read_to_string(corpus.join("train/phonemes.tsv")).unwrap();
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(lines.len(), 3, "{tsv}");
    assert!(
        lines[0].starts_with("p300/p300_001_mic1.flac\ts E n t @ n s w V n "),
        "{tsv}"
    );
    assert!(
        lines[1].starts_with("p300/p300_002_mic1.flac\ts E n t @ n s t u: "),
        "{tsv}"
    );
    let valid = std::fs::read_to_string(corpus.join("valid/phonemes.tsv")).unwrap();
    assert_eq!(valid.lines().count(), 6, "{valid}");
    assert!(valid.contains("p226/p226_003_mic1.flac\t"), "{valid}");

    // Stage 1 again: the same corpus.
    assert_ok(&run_recipe("vctk", &config, &["--stage", "1", "--stop-stage", "1"]));
    assert_eq!(names(&corpus.join("train/p300")), files);

    // Features, training, export.
    let o = run_recipe("vctk", &config, &["--stage", "2"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("speakers    1"), "{out}");
    assert!(out.contains("features of 3 utterances"), "{out}");
    // Stage 5: p225 → p226 and back on utterances 002 and 003 (001 is the reference).
    assert!(out.contains("4 conversions"), "{out}");
    assert!(out.contains("\"mcd_db\""), "{out}");
    let pairs = std::fs::read_to_string(dir.path().join("exp/eval/step-00000006/pairs.tsv")).unwrap();
    assert!(pairs.contains("p225_to_p226_002_mic1.wav"), "{pairs}");
    assert!(pairs.contains("p226/p226_001_mic1.flac"), "{pairs}");
    assert!(out.contains("finished at step 6"), "{out}");
    // One of the three is held out for validation.
    let all = format!("{out}{}", stderr(&o));
    assert!(all.contains("2 training utterances transcribed, 0 not"), "{all}");
    assert!(out.contains("step-00000006 → "), "{out}");
    let model = dir.path().join("model");
    assert!(model.join("config.json").is_file() && model.join("model.safetensors").is_file());
    // Stage 4 trained the [vocoder] section; stage 6 put it beside the model, both in half
    // precision as [export] half asks.
    assert!(out.contains("finished at step 4; vocoder:"), "{out}");
    assert!(out.contains("step-00000004 → "), "{out}");
    assert!(model.join("vocoder.json").is_file() && model.join("vocoder.safetensors").is_file());
    for f in ["model.safetensors", "vocoder.safetensors"] {
        let t = candle_core::safetensors::load(model.join(f), &candle_core::Device::Cpu).unwrap();
        assert!(t.values().all(|t| t.dtype() == candle_core::DType::F16), "{f}");
    }
}

#[test]
fn vctk_080_layout_and_a_missing_download() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("VCTK-Corpus");
    for spk in ["p225", "p226"] {
        let a = root.join("wav48").join(spk);
        std::fs::create_dir_all(&a).unwrap();
        for u in 1..=2 {
            std::fs::copy(clip(u), a.join(format!("{spk}_{u:03}.wav"))).unwrap();
        }
    }
    let config = dir.path().join("config.toml");
    let write = |root: &Path| {
        std::fs::write(
            &config,
            format!(
                "[prepare]\nroot = \"{}\"\nvalid_speakers = \"p225\"\n\n{}",
                root.display(),
                train_sections(dir.path())
            ),
        )
        .unwrap();
    };
    write(&root);
    let o = run_recipe("vctk", &config, &["--stop-stage", "1"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("VCTK 0.80"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("4 utterances: 1 training speakers, 1 validation speakers"),
        "{}",
        stdout(&o)
    );

    write(&dir.path().join("nowhere"));
    let o = run_recipe("vctk", &config, &["--stop-stage", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("VCTK not found"), "{}", stderr(&o));
    assert!(stderr(&o).contains("nowhere"), "{}", stderr(&o));
}

#[test]
fn libritts_prepares_speakers_of_train_and_valid_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("LibriTTS");
    let mut k = 0;
    for (subset, spk, chapter) in [
        ("train-clean-100", "19", "198"),
        ("train-clean-100", "26", "495"),
        ("train-clean-100", "26", "496"),
        ("dev-clean", "84", "121123"),
    ] {
        let d = root.join(subset).join(spk).join(chapter);
        std::fs::create_dir_all(&d).unwrap();
        for u in 0..2 {
            let stem = format!("{spk}_{chapter}_{u:06}_000000");
            // LibriTTS is 24 kHz.
            let a = voxswap_audio::read_mono(clip(k), voxswap_audio::ChannelMix::Downmix).unwrap();
            let x = voxswap_audio::resample(&a.samples, a.sample_rate, 24000).unwrap();
            voxswap_audio::write_wav(
                d.join(format!("{stem}.wav")),
                &x,
                24000,
                voxswap_audio::WavFormat::Pcm16,
            )
            .unwrap();
            std::fs::write(d.join(format!("{stem}.normalized.txt")), "Some text.").unwrap();
            k += 1;
        }
    }
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[prepare]\nroot = \"{}\"\ntrain_subsets = \"train-clean-100\"\nvalid_subsets = \"dev-clean\"\n\n{}",
            root.display(),
            train_sections(dir.path())
        ),
    )
    .unwrap();
    let o = run_recipe("libritts", &config, &["--stop-stage", "2"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("2 training speakers (train-clean-100), 1 validation speakers (dev-clean)"),
        "{out}"
    );
    let corpus = dir.path().join("data/corpus");
    assert_eq!(
        names(&corpus.join("train")),
        ["19", "26", "phonemes.tsv", "transcripts.tsv"].map(String::from).into()
    );
    assert_eq!(
        names(&corpus.join("valid")),
        ["84", "phonemes.tsv", "transcripts.tsv"].map(String::from).into()
    );
    // Speaker 26's two chapters are one speaker; the data check sees 24 kHz and 6 training files.
    assert!(out.contains("utterances  6"), "{out}");
    assert!(out.contains("24000 Hz: 6"), "{out}");
    assert!(out.contains("features of 6 utterances"), "{out}");
    // The normalised transcripts in phonemes, by corpus-relative path.
    let tsv = std::fs::read_to_string(corpus.join("train/phonemes.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), 6, "{tsv}");
    assert!(
        tsv.lines().next().unwrap() == "19/198/19_198_000000_000000.wav\ts V m t E k s t",
        "{tsv}"
    );

    // A subset that is not there is named.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("\"dev-clean\"", "\"test-clean\""),
    )
    .unwrap();
    let o = run_recipe("libritts", &config, &["--stop-stage", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("subset test-clean not found"), "{}", stderr(&o));
}

#[test]
fn run_sh_rejects_bad_arguments() {
    let o = Command::new("bash")
        .arg(repo().join("recipes/synth/run.sh"))
        .arg("--stage")
        .arg("two")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("whole numbers"), "{}", stderr(&o));
    let o = Command::new("bash")
        .arg(repo().join("recipes/synth/run.sh"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(stdout(&o).contains("--stop-stage"), "{}", stdout(&o));
    assert!(stdout(&o).contains("6  export"), "{}", stdout(&o));
}

#[test]
fn synth_generates_a_parallel_corpus_and_a_rerun_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("voices.tsv"),
        "# name\tengine\tvoice\tsplit\nes_a\tespeak\ten-us+m3\ttrain\nes_b\tespeak\ten-gb+f2\ttrain\nes_c\tespeak\ten-gb-scotland\tvalid\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[prepare]\nwork = \"data\"\nvoices = \"voices.tsv\"\nsentences = 8\nutterances_per_speaker = 4\nshared_sentences = 2\n\n{}",
            train_sections(dir.path())
        ),
    )
    .unwrap();
    let o = run_recipe("synth", &config, &["--stage", "1", "--stop-stage", "1"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("3 voices, 12 utterances, 12 to synthesise"),
        "{}",
        stdout(&o)
    );
    let corpus = dir.path().join("data/corpus");
    // Every voice reads the 2 shared sentences and 2 of a window that moves on by 2 per voice.
    assert_eq!(
        names(&corpus.join("train/es_a")),
        ["s0001.wav", "s0002.wav", "s0003.wav", "s0004.wav"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        names(&corpus.join("train/es_b")),
        ["s0001.wav", "s0002.wav", "s0005.wav", "s0006.wav"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        names(&corpus.join("valid/es_c")),
        ["s0001.wav", "s0002.wav", "s0007.wav", "s0008.wav"]
            .map(String::from)
            .into()
    );
    let sentences = std::fs::read_to_string(corpus.join("train/sentences.txt")).unwrap();
    assert_eq!(sentences.lines().count(), 8);
    assert!(sentences.lines().all(|l| l.ends_with('.') && l.split(' ').count() >= 7));
    // Real speech at 16 kHz, about as long as the sentence.
    let a = voxswap_audio::read_mono(corpus.join("train/es_a/s0001.wav"), voxswap_audio::ChannelMix::Downmix).unwrap();
    assert_eq!(a.sample_rate, 16000);
    assert!(a.duration_s() > 1.0 && a.duration_s() < 8.0, "{}", a.duration_s());
    let peak = a.samples.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!((peak - 0.708).abs() < 0.01, "peak-normalised to -3 dBFS: {peak}");
    // Different voices, same sentence: different audio.
    let b = voxswap_audio::read_mono(corpus.join("train/es_b/s0001.wav"), voxswap_audio::ChannelMix::Downmix).unwrap();
    assert_ne!(a.samples.len(), b.samples.len());

    // Phoneme transcripts (recipes/synth/phonemes.sh) of every utterance, keyed by path: the
    // shared sentence s0001 the same for every voice.
    let tsv = std::fs::read_to_string(corpus.join("train/phonemes.tsv")).unwrap();
    let lines: Vec<(&str, &str)> = tsv.lines().map(|l| l.split_once('\t').unwrap()).collect();
    assert_eq!(lines.len(), 8, "{tsv}");
    assert_eq!(lines[0].0, "es_a/s0001.wav");
    let of = |k: &str| lines.iter().find(|(p, _)| *p == k).unwrap().1;
    assert_eq!(of("es_a/s0001.wav"), of("es_b/s0001.wav"));
    assert_ne!(of("es_a/s0001.wav"), of("es_a/s0002.wav"));
    let phones: Vec<&str> = of("es_a/s0001.wav").split(' ').collect();
    assert!(
        phones.len() >= 15 && phones.iter().all(|p| !p.is_empty() && !p.starts_with(['\'', '_'])),
        "{phones:?}"
    );
    assert!(corpus.join("valid/phonemes.tsv").is_file());

    let o = run_recipe("synth", &config, &["--stage", "1", "--stop-stage", "1"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("12 utterances, 0 to synthesise"), "{}", stdout(&o));
    assert!(
        !stdout(&o).contains("transcribed"),
        "transcripts remade: {}",
        stdout(&o)
    );
}

#[test]
fn data_check_reports_a_corpus() {
    let dir = tempfile::tempdir().unwrap();
    for (k, spk) in ["alice", "bob"].iter().enumerate() {
        let d = dir.path().join(spk);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(clip(k), d.join("1.wav")).unwrap();
        std::fs::copy(data("speech_m.flac"), d.join("2.flac")).unwrap();
    }
    std::fs::write(dir.path().join("bob/3.wav"), b"RIFF....WAVEfmt nonsense").unwrap();
    let o = voxswap(&[&"data", &"check", &dir.path(), &"--json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "an unreadable file fails the check: {}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["utterances"], 4);
    assert_eq!(v["speakers"].as_array().unwrap().len(), 2);
    assert_eq!(v["unreadable"].as_array().unwrap().len(), 1);
    let hours = v["hours"].as_f64().unwrap();
    assert!(hours > 4.0 * 1.5 / 3600.0 && hours < 4.0 * 4.0 / 3600.0, "{hours}");

    std::fs::remove_file(dir.path().join("bob/3.wav")).unwrap();
    let o = voxswap(&[&"data", &"check", &dir.path()]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("speakers    2"), "{out}");
    assert!(out.contains("utterances  4"), "{out}");
    assert!(out.contains("unreadable  0"), "{out}");
}

/// Every recipe config committed under recipes/ (the long runs, the side-by-side ablation runs)
/// loads: known keys, values in range, a known preset.
#[test]
fn every_committed_recipe_config_loads() {
    fn tomls(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir()
                && !matches!(
                    p.file_name().and_then(|n| n.to_str()),
                    Some("data" | "data_more" | "exp")
                )
            {
                tomls(&p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    tomls(&repo().join("recipes"), &mut all);
    assert!(all.len() >= 6, "{all:?}");
    for p in &all {
        let r = voxswap_train::recipe::Recipe::load(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        r.model_config().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}
