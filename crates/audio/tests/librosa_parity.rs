//! Parity with librosa, against the fixtures that `scripts/dev/make_fixtures.py` made
//! (tests/data/fixtures; the script, the librosa version and the shapes are in fixtures.json).

#![allow(clippy::unwrap_used)]
use std::path::PathBuf;

use voxswap_audio::{
    griffin_lim, read_mono, spectral_convergence, ChannelMix, FrontendConfig, GriffinLimConfig, LogMel, MelFilterbank,
    MelNorm, MelScale, PhaseInit, Stft,
};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

fn fixtures() -> serde_json::Value {
    let text = std::fs::read_to_string(data().join("fixtures/fixtures.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(name: &str) -> (Vec<usize>, Vec<f32>) {
    let shape: Vec<usize> = fixtures()["arrays"][name]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let bytes = std::fs::read(data().join(format!("fixtures/{name}.f32"))).unwrap();
    let vals: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(vals.len(), shape.iter().product::<usize>());
    (shape, vals)
}

/// librosa builds the weights in float64 and stores float32; so do we, so the only difference
/// is the last bit of a float32 rounding: 1e-6 absolute is far above it and far below any real
/// error (weights are of order 1e-3 to 1).
#[test]
fn filterbanks_equal_librosa() {
    let cases = [
        (
            "mel_fb_slaney_16k_400_80",
            16000,
            400,
            80,
            0.0,
            8000.0,
            MelScale::Slaney,
            MelNorm::Slaney,
        ),
        (
            "mel_fb_htk_22k_1024_64",
            22050,
            1024,
            64,
            50.0,
            10000.0,
            MelScale::Htk,
            MelNorm::None,
        ),
        (
            "mel_fb_slaney_htk_44k_1024_40",
            44100,
            1024,
            40,
            20.0,
            20000.0,
            MelScale::Htk,
            MelNorm::Slaney,
        ),
    ];
    for (name, sr, n_fft, n_mels, fmin, fmax, scale, norm) in cases {
        let (shape, want) = load(name);
        assert_eq!(shape, vec![n_mels, n_fft / 2 + 1]);
        let got = MelFilterbank::new(sr, n_fft, n_mels, fmin, fmax, scale, norm)
            .unwrap()
            .dense();
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err <= 1e-6, "{name}: max difference {err}");
    }
}

/// librosa's reference is computed in float64; ours in float32. Bands near the 1e-5 floor
/// carry the largest relative error of a float32 FFT, so the bound is on the log scale, as the
/// model sees it.
#[test]
fn log_mel_equals_librosa_on_speech() {
    let (shape, want) = load("logmel_speech_m");
    let audio = read_mono(data().join("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let mel = LogMel::new(&FrontendConfig::speech_16k())
        .unwrap()
        .compute(&audio.samples);
    assert_eq!(vec![mel.n_mels, mel.frames], shape);
    let err = mel
        .data
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err <= 1e-4, "max log-mel difference {err}");
}

/// At 32 iterations our Griffin-Lim (accelerated, random start) reaches a spectral convergence
/// at least as good as librosa's `griffinlim` (the better of its zero-phase start and the mean of
/// five random starts, same iterations). On this clip, 0.064 against 0.070.
#[test]
fn griffin_lim_is_at_least_as_good_as_librosa() {
    let values = &fixtures()["values"];
    let librosa_best = values["griffinlim_sc_32_zero_phase"]
        .as_f64()
        .unwrap()
        .min(values["griffinlim_sc_32_random_phase_mean5"].as_f64().unwrap());
    let audio = read_mono(data().join("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let mut stft = Stft::new(FrontendConfig::speech_16k().stft()).unwrap();
    let spec = stft.forward(&audio.samples);
    let mag = spec.magnitude();
    // The mean over the same number of random starts as the librosa figure.
    let sc = (0..5)
        .map(|seed| {
            let gl = GriffinLimConfig {
                init: PhaseInit::Random { seed },
                ..Default::default()
            };
            let y = griffin_lim(&mut stft, &mag, spec.frames, audio.samples.len(), gl);
            spectral_convergence(&mut stft, &mag, &y)
        })
        .sum::<f64>()
        / 5.0;
    eprintln!("spectral convergence after 32 iterations: voxswap {sc:.4}, librosa {librosa_best:.4}");
    assert!(sc <= librosa_best, "voxswap {sc} > librosa {librosa_best}");
}
