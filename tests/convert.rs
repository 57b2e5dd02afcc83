//! `voxswap convert`, `embed` and `speakers` on real (synthetic) speech, with a small trained
//! causal model (tiny-stream): lengths, rates, loudness, folders, banks and mixes, and
//! a clear error for every bad input.

use std::path::Path;

use voxswap_audio::{read_mono, ChannelMix};

use crate::util::*;

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn converts_a_file_at_its_rate_and_loudness() {
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
    ]);
    assert!(ok(&o).contains("wrote"));
    let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let y = read_mono(&out, ChannelMix::Downmix).unwrap();
    assert_eq!(y.sample_rate, src.sample_rate);
    assert_eq!(y.samples.len(), src.samples.len());
    // Loudness as EBU R128 measures it.
    let lu = lufs(&out) - lufs(&data("speech_m.wav"));
    assert!(lu.abs() < 0.5, "loudness differs by {lu:.2} LU");
    // Not a copy of the source.
    assert_ne!(y.samples, src.samples);

    // A 44.1 kHz stereo 24-bit source: output at 44.1 kHz, same duration; --rate overrides.
    let o = voxswap(&[
        &"convert",
        &data("stereo_44k_24bit.wav"),
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
        &"--rate",
        &"22050",
        &"--float",
    ]);
    ok(&o);
    let src = read_mono(data("stereo_44k_24bit.wav"), ChannelMix::Downmix).unwrap();
    let y = read_mono(&out, ChannelMix::Downmix).unwrap();
    assert_eq!(y.sample_rate, 22050);
    let want = (src.samples.len() as f64 * 22050.0 / f64::from(src.sample_rate)).round() as usize;
    assert_eq!(y.samples.len(), want);
}

#[test]
fn converts_a_folder_into_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(data("speech_m.wav"), src.join("a.wav")).unwrap();
    std::fs::copy(data("speech_m.flac"), src.join("b.flac")).unwrap();
    std::fs::write(src.join("notes.txt"), "not audio").unwrap();
    let out = dir.path().join("out");
    let o = voxswap(&[
        &"convert",
        &src,
        &"-t",
        &data("speech_s.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
    ]);
    assert!(ok(&o).contains("converted 2 of 2 files"), "{}", stdout(&o));
    for n in ["a.wav", "b.wav"] {
        let y = read_mono(out.join(n), ChannelMix::Downmix).unwrap();
        assert!(y.duration_s() > 1.0);
    }
}

#[test]
fn embed_lists_and_converts_with_a_bank_and_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let bank = dir.path().join("bank");
    let o = voxswap(&[
        &"embed",
        &data("speech_f.wav"),
        &data("speech_f.wav"),
        &"--name",
        &"fiona",
        &"--bank",
        &bank,
        &"--model",
        &m,
    ]);
    assert!(ok(&o).contains("added `fiona`"), "{}", stdout(&o));
    ok(&voxswap(&[
        &"embed",
        &data("speech_s.wav"),
        &"--name",
        &"sam",
        &"--bank",
        &bank,
        &"--model",
        &m,
    ]));
    let o = voxswap(&[&"speakers", &"--bank", &bank, &"--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fiona", "sam"]);
    assert_eq!(v[0]["references"].as_array().unwrap().len(), 2);

    let out = |n: &str| dir.path().join(n);
    let run = |spec: &str, o: &Path| {
        voxswap(&[
            &"convert",
            &data("speech_m.wav"),
            &"--speaker",
            &spec,
            &"--bank",
            &bank,
            &"-o",
            &o,
            &"--model",
            &m,
        ])
    };
    ok(&run("fiona", &out("f.wav")));
    ok(&run("sam", &out("s.wav")));
    ok(&run("fiona:0.5,sam:0.5", &out("mix.wav")));
    // The bank embedding gives what the reference files give.
    let with_reference = |o: &Path, extra: &[&str]| {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![];
        let (src, reference) = (data("speech_m.wav"), data("speech_f.wav"));
        a.extend([
            &"convert" as &dyn AsRef<std::ffi::OsStr>,
            &src,
            &"-t",
            &reference,
            &"-o",
            &o,
            &"--model",
            &m,
        ]);
        a.extend(extra.iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
        ok(&voxswap(&a));
    };
    with_reference(&out("t.wav"), &[]);
    let read = |n: &str| read_mono(out(n), ChannelMix::Downmix).unwrap().samples;
    assert_eq!(read("f.wav"), read("t.wav"));
    let (f, s, mix) = (read("f.wav"), read("s.wav"), read("mix.wav"));
    assert_ne!(f, s);
    assert!(mix != f && mix != s);
    // An entry from before average spectra converts with its reference's correction, and
    // says so; one from before spectrum corrections converts without one, and says so.
    let mut entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bank.join("fiona.json")).unwrap()).unwrap();
    assert_eq!(entry["spectrum"].as_array().unwrap().len(), 80);
    assert_eq!(entry["average"].as_array().unwrap().len(), 80);
    entry.as_object_mut().unwrap().remove("average");
    entry["name"] = "old".into();
    std::fs::write(bank.join("old.json"), entry.to_string()).unwrap();
    let o = run("old", &out("older.wav"));
    assert!(stderr(&o).contains("`old` has no average spectrum"), "{}", stderr(&o));
    entry.as_object_mut().unwrap().remove("spectrum");
    std::fs::write(bank.join("old.json"), entry.to_string()).unwrap();
    let o = run("old", &out("old.wav"));
    assert!(
        stderr(&o).contains("`old` has no spectrum correction"),
        "{}",
        stderr(&o)
    );
    with_reference(&out("t0.wav"), &["--spectrum", "0"]);
    assert_eq!(read("old.wav"), read("t0.wav"));
    assert_ne!(read("old.wav"), f);
    let older = read("older.wav");
    assert!(older != f && older != read("t0.wav"));
    std::fs::remove_file(bank.join("old.json")).unwrap();

    // Unknown speaker and missing bank: named.
    let o = run("nobody", &out("x.wav"));
    assert!(
        stderr(&o).contains("no speaker `nobody`") && stderr(&o).contains("2 speakers"),
        "{}",
        stderr(&o)
    );
    // A near miss suggests the name.
    let o = run("fionna", &out("x.wav"));
    assert!(stderr(&o).contains("did you mean `fiona`?"), "{}", stderr(&o));
    let o = voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"--speaker",
        &"fiona",
        &"--bank",
        &out("nobank"),
        &"-o",
        &out("x.wav"),
        &"--model",
        &m,
    ]);
    assert_clean_error(&o, &out("nobank"), "no speaker bank");
    assert!(!out("x.wav").exists());
}

#[test]
fn bad_references_sources_and_models_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let silent = dir.path().join("silent.wav");
    write_pcm16(&silent, &vec![0i16; 32000], 16000);
    let short = dir.path().join("short.wav");
    let clip = read_mono(data("speech_f.wav"), ChannelMix::Downmix).unwrap();
    let s16: Vec<i16> = clip.samples[8000..8000 + 800]
        .iter()
        .map(|v| (v * 32767.0) as i16)
        .collect();
    write_pcm16(&short, &s16, clip.sample_rate);
    let out = dir.path().join("out.wav");
    let conv =
        |src: &Path, reference: &Path| voxswap(&[&"convert", &src, &"-t", &reference, &"-o", &out, &"--model", &m]);
    assert_clean_error(&conv(&data("speech_m.wav"), &silent), &silent, "no speech found");
    assert_clean_error(&conv(&data("speech_m.wav"), &short), &short, "too short");
    assert_clean_error(&conv(&silent, &data("speech_f.wav")), &silent, "source is silent");
    assert!(!out.exists());
    // A source too short to measure its voice converts without --contrast, and says so.
    let o = conv(&short, &data("speech_f.wav"));
    assert!(
        o.status.success() && stderr(&o).contains("warning") && stderr(&o).contains("no --contrast"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read_mono(&out, ChannelMix::Downmix).unwrap().samples.len(), 800);
    std::fs::remove_file(&out).unwrap();

    let o = voxswap(&[&"convert", &data("speech_m.wav"), &"-o", &out, &"--model", &m]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not provided") && stderr(&o).contains("--target") && stderr(&o).contains("--speaker"),
        "{}",
        stderr(&o)
    );
    // Every missing argument is named on the one line.
    let o = voxswap(&[&"convert"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("<SOURCE>") && err.contains("--output"), "{err}");
    let o = voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
        &"--vocoder",
        &"neural",
    ]);
    assert!(stderr(&o).contains("no neural vocoder"), "{}", stderr(&o));
    let nowhere = dir.path().join("nowhere");
    let o = voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &nowhere,
    ]);
    assert_clean_error(&o, &nowhere, "");
    let o = voxswap(&[&"embed", &data("speech_f.wav"), &"--name", &"../evil", &"--model", &m]);
    assert!(stderr(&o).contains("not a speaker name"), "{}", stderr(&o));
}

/// The block pipeline (streaming resampler, streaming log-mel, streaming model, block
/// Griffin-Lim, loudness) gives audio whose log-mel is the model's offline conversion of the
/// whole file, frame for frame (up to Griffin-Lim's error and the loudness gain).
#[test]
fn the_file_pipeline_sounds_like_the_offline_conversion() {
    use voxswap_audio::{resample, FrontendConfig, LogMel};
    use voxswap_model::VoiceConverter;
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let fe = FrontendConfig::speech_16k();
    let conv = VoiceConverter::load(&m, &candle_core::Device::Cpu).unwrap();
    let src = read_mono(data("stereo_44k_24bit.wav"), ChannelMix::Downmix).unwrap();
    let x = resample(&src.samples, src.sample_rate, 16000).unwrap();
    let mut lm = LogMel::new(&fe).unwrap();
    let reference = read_mono(data("speech_f.wav"), ChannelMix::Downmix).unwrap();
    let target = conv.embed(&[lm.compute(&reference.samples)]).unwrap();
    // The source's own voice, which --contrast pushes the target away from (the whole source:
    // it is shorter than the 30 s the file pipeline takes).
    let voice = conv.embed(&[lm.compute(&x)]).unwrap();
    let mut outputs = Vec::new();
    // The defaults (contrast 0.5, spectrum 1), no contrast, a strong one, and no spectrum
    // correction.
    for (contrast, spectrum, args) in [
        (0.5, 1.0, vec![]),
        (0.0, 1.0, vec!["--contrast", "0"]),
        (1.0, 1.0, vec!["--contrast", "1"]),
        (0.5, 0.0, vec!["--spectrum", "0"]),
    ] {
        let case = format!("contrast {contrast}, spectrum {spectrum}");
        let out = dir.path().join(format!("out{contrast}-{spectrum}.wav"));
        let (source, reference) = (data("stereo_44k_24bit.wav"), data("speech_f.wav"));
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"convert", &source, &"-t", &reference, &"-o", &out, &"--model", &m, &"--rate", &"16000",
        ];
        a.extend(args.iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
        ok(&voxswap(&a));
        let spk = target.contrast(&voice, contrast).unwrap();
        let source_mel = lm.compute(&x);
        let matched = conv.match_spectrum(&source_mel, &spk, spectrum).unwrap();
        let want = conv.convert(&source_mel, &matched).unwrap();
        let y = read_mono(&out, ChannelMix::Downmix).unwrap().samples;
        let got = lm.compute(&y);
        assert_eq!(got.frames, want.frames);
        // Compare shapes, not levels: remove each one's mean log level over loud bins.
        let loud: Vec<(usize, usize)> = (2..want.frames - 2)
            .flat_map(|t| (0..fe.n_mels).map(move |k| (k, t)))
            .filter(|&(k, t)| want.at(k, t) > -6.0)
            .collect();
        assert!(loud.len() > 1000, "{case}: {} loud bins", loud.len());
        let mean =
            |m: &voxswap_audio::Mel| loud.iter().map(|&(k, t)| f64::from(m.at(k, t))).sum::<f64>() / loud.len() as f64;
        let distance = |want: &voxswap_audio::Mel, shift: usize| {
            let (mw, mg) = (mean(want), mean(&got));
            let near: Vec<_> = loud.iter().filter(|&&(_, t)| t + shift < want.frames).collect();
            near.iter()
                .map(|&&(k, t)| (f64::from(want.at(k, t)) - mw - (f64::from(got.at(k, t + shift)) - mg)).abs())
                .sum::<f64>()
                / near.len() as f64
        };
        let err = distance(&want, 0);
        assert!(err < 0.6, "{case}: mean log-mel difference {err:.3}");
        // Shifted by two frames, it is clearly worse: the test sees misalignment.
        let shifted = distance(&want, 2);
        assert!(shifted > err * 1.3, "{case}: aligned {err:.3}, shifted {shifted:.3}");
        // Without the correction, the output's average spectrum (each band's mean over the
        // loud frames, less the overall mean) is the uncorrected conversion's, clearly not the
        // corrected one's.
        if spectrum == 0.0 {
            let corrected = conv
                .convert(&source_mel, &conv.match_spectrum(&source_mel, &spk, 1.0).unwrap())
                .unwrap();
            let profile = |m: &voxswap_audio::Mel| -> Vec<f64> {
                let mu = mean(m);
                (0..fe.n_mels)
                    .map(|k| {
                        let v: Vec<f64> = loud
                            .iter()
                            .filter(|p| p.0 == k)
                            .map(|&(k, t)| f64::from(m.at(k, t)) - mu)
                            .collect();
                        v.iter().sum::<f64>() / v.len().max(1) as f64
                    })
                    .collect()
            };
            let gap = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64;
            let pg = profile(&got);
            let (right, wrong) = (gap(&pg, &profile(&want)), gap(&pg, &profile(&corrected)));
            assert!(wrong > 2.0 * right, "{case}: average spectrum {right:.3} from the uncorrected conversion, {wrong:.3} from the corrected one");
        }
        outputs.push(y);
    }
    // Each setting gives a different conversion.
    for i in 0..outputs.len() {
        for j in 0..i {
            assert!(outputs[i] != outputs[j], "settings {i} and {j} gave the same audio");
        }
    }
    // Out-of-range contrasts and spectrum strengths are refused before any work.
    for (bad, range) in [
        ("--contrast=-1", "0 to 4"),
        ("--contrast=5", "0 to 4"),
        ("--contrast=nan", "0 to 4"),
        ("--contrast=x", "0 to 4"),
        ("--spectrum=-0.5", "0 to 2"),
        ("--spectrum=3", "0 to 2"),
        ("--spectrum=inf", "0 to 2"),
    ] {
        let out = dir.path().join("bad.wav");
        let flag = bad.to_string();
        let o = voxswap(&[
            &"convert",
            &data("speech_m.wav"),
            &"-t",
            &data("speech_f.wav"),
            &"-o",
            &out,
            &"--model",
            &m,
            &flag,
        ]);
        assert!(
            !o.status.success() && stderr(&o).contains(&format!("not a number from {range}")),
            "{}",
            stderr(&o)
        );
        assert!(!out.exists());
    }
}

#[test]
fn eval_scores_parallel_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let resynth = dir.path().join("resynth.wav");
    ok(&voxswap(&[&"resynth", &data("speech_m.wav"), &"-o", &resynth]));
    let score = |test: &Path, reference: &Path| -> serde_json::Value {
        let o = voxswap(&[
            &"eval",
            &test,
            &"--reference",
            &reference,
            &"--source",
            &data("speech_f.wav"),
            &"--model",
            &m,
        ]);
        serde_json::from_str(&ok(&o)).unwrap()
    };
    let same = score(&data("speech_m.wav"), &data("speech_m.wav"));
    assert!(same["mcd_db"].as_f64().unwrap().abs() < 1e-9, "{same}");
    assert!((same["f0_corr"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{same}");
    assert!((same["similarity_to_target_voxswap_encoder"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    // Griffin-Lim resynthesis: close in spectrum and pitch; another voice: far.
    let gl = score(&resynth, &data("speech_m.wav"));
    let other = score(&data("speech_f.wav"), &data("speech_m.wav"));
    let mcd = |v: &serde_json::Value| v["mcd_db"].as_f64().unwrap();
    assert!(mcd(&gl) < 2.0, "{gl}");
    assert!(mcd(&other) > 2.0 * mcd(&gl), "{other}");
    assert!(gl["f0_corr"].as_f64().unwrap() > 0.9, "{gl}");
    assert!(gl["f0_rmse_hz"].as_f64().unwrap() < 10.0, "{gl}");

    // A manifest with relative paths, and a JSON file.
    std::fs::copy(data("speech_m.wav"), dir.path().join("m.wav")).unwrap();
    let manifest = dir.path().join("pairs.tsv");
    std::fs::write(
        &manifest,
        "converted\treference\tsource\ttargets\nresynth.wav\tm.wav\t\tm.wav;m.wav\nm.wav\tm.wav\t\t\n",
    )
    .unwrap();
    let report = dir.path().join("report.json");
    ok(&voxswap(&[
        &"eval",
        &"--manifest",
        &manifest,
        &"--model",
        &m,
        &"--json",
        &report,
    ]));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["pairs"], 2);
    assert_eq!(v["per_pair"].as_array().unwrap().len(), 2);
    assert!((v["mcd_db"].as_f64().unwrap() - mcd(&gl) / 2.0).abs() < 1e-6, "{v}");
    std::fs::write(&manifest, "converted\tsource\nm.wav\tm.wav\n").unwrap();
    let o = voxswap(&[&"eval", &"--manifest", &manifest, &"--model", &m]);
    assert!(
        stderr(&o).contains("columns `converted` and `reference`"),
        "{}",
        stderr(&o)
    );
}

/// The shipped model, found without --model, with its speaker bank: the quick start's command,
/// and a bank voice by name and in a mix. Guards pretrained/ (weights, config, bank fingerprints).
#[test]
fn the_shipped_model_converts_out_of_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/target_unseen.wav");
    ok(&voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"-t",
        &target,
        &"-o",
        &out,
    ]));
    let src = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let y = read_mono(&out, ChannelMix::Downmix).unwrap();
    assert_eq!(y.samples.len(), src.samples.len());
    let lu = lufs(&out) - lufs(&data("speech_m.wav"));
    assert!(lu.abs() < 0.5, "loudness differs by {lu:.2} LU");

    // A long input keeps the source's level all through (no drift of the model's running
    // statistics; before refreshed passes, 25 s of speech came out with most of it 20 dB below
    // the source and a few loud frames setting the loudness gain).
    let long = dir.path().join("long.wav");
    let pieces: Vec<Vec<f32>> = ["speech_m.wav", "speech_f.wav"]
        .iter()
        .map(|n| {
            let a = read_mono(data(n), ChannelMix::Downmix).unwrap();
            voxswap_audio::resample(&a.samples, a.sample_rate, 16000).unwrap()
        })
        .collect();
    let mut x = Vec::new();
    while x.len() < 30 * 16000 {
        x.extend_from_slice(&pieces[x.len() / 16000 % 2]);
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&long, spec).unwrap();
    x.iter().for_each(|&v| w.write_sample(v).unwrap());
    w.finalize().unwrap();
    ok(&voxswap(&[&"convert", &long, &"-t", &target, &"-o", &out]));
    let y = read_mono(&out, ChannelMix::Downmix).unwrap().samples;
    assert_eq!(y.len(), x.len());
    // 100 ms levels where the source speaks, source against conversion, by thirds of the file.
    let level = |s: &[f32]| 20.0 * rms(s).max(1e-9).log10();
    let hop = 1600;
    let frames: Vec<(f64, f64)> = (0..x.len() / hop)
        .map(|i| (level(&x[i * hop..][..hop]), level(&y[i * hop..][..hop])))
        .filter(|&(lx, _)| lx > -40.0)
        .collect();
    let third = frames.len() / 3;
    for (k, part) in frames.chunks(third).take(3).enumerate() {
        let mut d: Vec<f64> = part.iter().map(|(lx, ly)| ly - lx).collect();
        d.sort_by(f64::total_cmp);
        let median = d[d.len() / 2];
        assert!(
            median.abs() < 4.0,
            "third {k}: conversion {median:+.1} dB from the source"
        );
    }

    let o = voxswap(&[&"speakers", &"--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    // The shipped bank: Kokoro's 44 training base voices and the 67 synthetic ones.
    assert_eq!(v.as_array().unwrap().len(), 111);
    assert!(v.as_array().unwrap().iter().any(|s| s["name"] == "af_heart"));
    let first = v[0]["name"].as_str().unwrap().to_string();
    let second = v[1]["name"].as_str().unwrap().to_string();
    let o = voxswap(&[&"convert", &data("speech_m.wav"), &"--speaker", &first, &"-o", &out]);
    ok(&o);
    // The bank carries the voices' spectrum corrections and average spectra.
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let mix = format!("{first}:0.5,{second}:0.5");
    ok(&voxswap(&[
        &"convert",
        &data("speech_m.wav"),
        &"--speaker",
        &mix,
        &"-o",
        &out,
    ]));
}

/// `--vocoder`: auto takes the model folder's neural vocoder when it has one and Griffin-Lim
/// otherwise; neural without one, or one made for another frontend, is a clear error.
#[test]
fn vocoder_choice_follows_the_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let (src, reference) = (data("speech_m.wav"), data("speech_f.wav"));
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"convert", &src, &"-t", &reference, &"--model", &m, &"--float"];
        args.extend(extra.iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
        args.push(&"-o");
        let o = voxswap(&[args.as_slice(), &[&out]].concat());
        (o, out)
    };
    let (o, gl_out) = run("gl.wav", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let gl = read_mono(&gl_out, ChannelMix::Downmix).unwrap().samples;

    add_tiny_vocoder(&m);
    let (o, auto_out) = run("auto.wav", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, neural_out) = run("neural.wav", &["--vocoder", "neural"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, forced_out) = run("forced.wav", &["--vocoder", "griffin-lim"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let auto = read_mono(&auto_out, ChannelMix::Downmix).unwrap().samples;
    let neural = read_mono(&neural_out, ChannelMix::Downmix).unwrap().samples;
    let forced = read_mono(&forced_out, ChannelMix::Downmix).unwrap().samples;
    assert_eq!(auto, neural, "auto did not take the folder's vocoder");
    assert_eq!(forced, gl, "--vocoder griffin-lim did not give Griffin-Lim");
    assert_eq!(neural.len(), gl.len());
    assert!(rms(&neural) > 1e-3, "the neural vocoder wrote silence");
    assert_ne!(neural, gl);

    // The streamed conversion names the vocoder it runs, and adds no latency for it.
    let (o, _) = run("stream.wav", &["--stream"]);
    let text = stdout(&o);
    assert!(text.contains("0.0 ms  vocoder: neural"), "{text}");

    // A vocoder for another frontend.
    let cfg = m.join("vocoder.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"fmax\": 8000.0", "\"fmax\": 7600.0")).unwrap();
    let (o, _) = run("other.wav", &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("another frontend"), "{}", stderr(&o));
}

/// A source-filter vocoder with an F0 network (`phase = "source"`, `f0_net`; fresh weights, its
/// F0 held by its network's bias at 200 Hz, its gains by the head's: harmonics only) in the
/// model folder: `convert` renders through it,
/// offline and streamed (the frame-by-frame vocoder), audio periodic at that F0.
#[test]
fn source_filter_vocoder_converts_offline_and_streamed() {
    use voxswap_model::vocoder::{new_trainable, F0NetConfig, NeuralVocoder, PhaseMode, VocoderConfig};
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let fe = voxswap_model::VoiceConverter::load(&m, &candle_core::Device::Cpu)
        .unwrap()
        .config()
        .frontend
        .clone();
    let mut cfg = VocoderConfig::tiny(&fe);
    cfg.phase = PhaseMode::Source;
    cfg.f0_net = Some(F0NetConfig {
        channels: 8,
        blocks: 1,
        bins: 48,
    });
    let vars = candle_nn::VarMap::new();
    new_trainable(&cfg, &vars, 3, &candle_core::Device::Cpu).unwrap();
    // The F0 network's logits peaked at the bin nearest 200 Hz, which decodes to about that.
    let at = voxswap_model::excitation::f0_bin(200.0, 48).round() as usize;
    let f0_logits: Vec<f32> = (0..48).map(|j| if j == at { 10.0 } else { 0.0 }).collect();
    let period = 16000.0 / voxswap_model::excitation::decode_f0(&f0_logits);
    // The harmonics at gain 1 and the noise at nothing, whatever the mels.
    let bins = cfg.n_bins();
    for (name, var) in vars.data().lock().unwrap().iter() {
        if name == "head.weight" {
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        } else if name == "head.bias" {
            let b: Vec<f32> = (0..2 * bins).map(|j| if j < bins { 0.0 } else { -30.0 }).collect();
            var.set(&candle_core::Tensor::from_vec(b, 2 * bins, &candle_core::Device::Cpu).unwrap())
                .unwrap();
        } else if name == "f0.head.weight" {
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        } else if name == "f0.head.bias" {
            let b = f0_logits.clone();
            var.set(&candle_core::Tensor::from_vec(b, 48, &candle_core::Device::Cpu).unwrap())
                .unwrap();
        }
    }
    NeuralVocoder::save(&m, &cfg, &vars).unwrap();
    let (src, reference) = (data("speech_m.wav"), data("speech_f.wav"));
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"convert",
            &src,
            &"-t",
            &reference,
            &"--model",
            &m,
            &"--float",
            &"--vocoder",
            &"neural",
            &"--rate",
            &"16000",
        ];
        args.extend(extra.iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
        args.push(&"-o");
        let o = voxswap(&[args.as_slice(), &[&out]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        read_mono(&out, ChannelMix::Downmix).unwrap().samples
    };
    for (name, extra) in [("offline.wav", &[][..]), ("stream.wav", &["--stream"][..])] {
        let y = run(name, extra);
        assert!(rms(&y) > 1e-3, "{name}: silence");
        // The output repeats every period (about 80 samples), and not every half period.
        let mid = &y[y.len() / 4..y.len() / 2];
        let corr = |lag: f32| {
            let lag = lag.round() as usize;
            let a: f32 = mid.iter().zip(&mid[lag..]).map(|(p, q)| p * q).sum();
            a / mid.iter().map(|p| p * p).sum::<f32>()
        };
        let (full, half) = (corr(period), corr(period / 2.0));
        assert!(
            full > 0.5 && full > half + 0.3,
            "{name}: period {period}: {full} {half}"
        );
    }
}

/// A stereo source comes out stereo (both channels the conversion) at the loudness of the two
/// channels together, offline; streamed, it keeps the layout and says how loud it came out
/// beside the source. It once came out mono, matched to the mono mix (3 LU too quiet) while
/// saying "as the source's".
#[test]
fn stereo_keeps_its_layout_and_loudness() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path());
    let speech = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let src = dir.path().join("stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: speech.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&src, spec).unwrap();
    for &v in &speech.samples {
        w.write_sample((v * 30000.0) as i16).unwrap();
        w.write_sample((v * 15000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    let stereo_lufs = |p: &Path| -> (u16, f64) {
        let mut r = hound::WavReader::open(p).unwrap();
        let spec = r.spec();
        let x: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Int => r.samples::<i16>().map(|v| f32::from(v.unwrap()) / 32768.0).collect(),
            hound::SampleFormat::Float => r.samples::<f32>().map(|v| v.unwrap()).collect(),
        };
        let mut meter =
            voxswap_audio::LoudnessMeter::with_channels(spec.sample_rate, usize::from(spec.channels)).unwrap();
        meter.push_interleaved(&x);
        (spec.channels, meter.lufs().unwrap())
    };
    let (_, want) = stereo_lufs(&src);
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
    assert!(o.status.success(), "{}", stderr(&o));
    let (channels, got) = stereo_lufs(&out);
    assert_eq!(channels, 2);
    assert!((got - want).abs() < 0.5, "output {got:.2} LUFS, source {want:.2}");
    assert!(stdout(&o).contains("2 identical channels"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("loudness {want:.1} LUFS")),
        "{}",
        stdout(&o)
    );
    // Streamed: the same layout, and the output's loudness said beside the source's.
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
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (channels, got) = stereo_lufs(&out);
    assert_eq!(channels, 2);
    let text = stdout(&o);
    assert!(
        text.contains(&format!("loudness {got:.1} LUFS, the source's {want:.1}")),
        "{text}"
    );
    // --channel picks one: mono out.
    let o = voxswap(&[
        &"convert",
        &src,
        &"-t",
        &data("speech_f.wav"),
        &"-o",
        &out,
        &"--model",
        &m,
        &"--channel",
        &"1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stereo_lufs(&out).0, 1);
}
