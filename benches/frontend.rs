//! Frontend benchmarks on real speech (the committed clips, repeated): log-mel of 60 s,
//! STFT and iSTFT of 60 s, Griffin-Lim on 10 s (32 iterations), resampling 60 s 48k→16k.
//! `scripts/dev/bench_vs_librosa.sh` runs these and librosa on the same inputs and prints ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use voxswap_audio::{griffin_lim, read_mono, resample, ChannelMix, FrontendConfig, GriffinLimConfig, LogMel, Stft};

/// `seconds` of 16 kHz speech: the test clips, concatenated and repeated.
fn speech(seconds: usize) -> Vec<f32> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    let mut clips = Vec::new();
    for name in ["speech_m.wav", "speech_f.wav", "speech_s.wav"] {
        clips.extend(
            read_mono(format!("{dir}{name}"), ChannelMix::Downmix)
                .expect("test clip")
                .samples,
        );
    }
    clips.iter().copied().cycle().take(seconds * 16_000).collect()
}

fn frontend(c: &mut Criterion) {
    let cfg = FrontendConfig::speech_16k();
    let x60 = speech(60);
    let mut g = c.benchmark_group("frontend");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(x60.len() as u64));

    let mut lm = LogMel::new(&cfg).expect("frontend");
    g.bench_function("logmel_60s", |b| b.iter(|| black_box(lm.compute(black_box(&x60)))));

    let mut stft = Stft::<f32>::new(cfg.stft()).expect("stft");
    let spec = stft.forward(&x60);
    g.bench_function("stft_60s", |b| b.iter(|| black_box(stft.forward(black_box(&x60)))));
    g.bench_function("istft_60s", |b| {
        b.iter(|| black_box(stft.inverse(black_box(&spec), Some(x60.len()))))
    });

    let x48 = resample(&x60, 16_000, 48_000).expect("resample");
    g.bench_function("resample_60s_48k_16k", |b| {
        b.iter(|| black_box(resample(black_box(&x48), 48_000, 16_000)))
    });
    g.finish();

    let x10 = speech(10);
    let spec10 = stft.forward(&x10);
    let mag10 = spec10.magnitude();
    let mut g = c.benchmark_group("vocoder");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("griffinlim_10s_32it", |b| {
        b.iter(|| {
            black_box(griffin_lim(
                &mut stft,
                &mag10,
                spec10.frames,
                x10.len(),
                GriffinLimConfig::default(),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
