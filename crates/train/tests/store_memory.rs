//! Training from the feature store runs in memory bounded by its batches, not by its corpus:
//! the same steps on a store of 1 hour and on one of 200 hours (a sparse file: 23 GB of frames
//! that take no disk) leave the process's resident memory within a few megabytes of each other.
//! Alone in its test binary, so that no other test's memory is counted.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use rand::{Rng, SeedableRng};
use voxswap_train::data::{Dataset, Utterance};
use voxswap_train::recipe::Recipe;
use voxswap_train::store::FeatureStore;
use voxswap_train::trainer::{self, Outcome, Quiet};

/// Resident memory of this process, MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// A store of `hours` of 10 s utterances of 80 bands, 36 per speaker; the frames of the first
/// `random` utterances are random values, the others holes (zeros on disk, no space used).
fn store(dir: &Path, hours: usize, random: usize) -> (Vec<Utterance>, FeatureStore, Vec<usize>) {
    let n_mels = 80;
    let frames = 1000;
    let n = hours * 360;
    let mut s = FeatureStore::open(dir, n_mels).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut utts = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let rel = format!("s{:05}/u{i:07}.wav", i / 36);
        let values: Option<Vec<f32>> =
            (i < random).then(|| (0..frames * n_mels).map(|_| rng.random_range(-11.0..2.0)).collect());
        ids.push(s.append_raw(&rel, frames, values.as_deref()).unwrap());
        utts.push(Utterance {
            speaker: format!("s{:05}", i / 36),
            path: PathBuf::from(rel),
        });
    }
    (utts, s, ids)
}

fn recipe(dir: &Path, run: &str) -> Recipe {
    let path = dir.join(format!("{run}.toml"));
    std::fs::write(
        &path,
        format!(
            "[data]\ncorpus = \"corpus\"\ncache = \"cache\"\nsegment_frames = 64\nvalid_per_speaker = 0\n\n\
             [model]\npreset = \"tiny-stream\"\n\n\
             [train]\nsteps = 8\nbatch_size = 8\nseed = 1\ncheckpoint_every = 100\nvalid_every = 100\nlog_every = 4\n\n\
             [output]\ndir = \"{run}\"\n"
        ),
    )
    .unwrap();
    Recipe::load(&path).unwrap()
}

fn train(dir: &Path, run: &str, utts: &[Utterance], s: FeatureStore, ids: &[usize]) {
    let data = Dataset::from_store(Path::new("corpus"), utts, s, ids, 64, 0).unwrap();
    let out = trainer::train_on(
        &recipe(dir, run),
        &data,
        &Device::Cpu,
        &AtomicBool::new(false),
        &mut Quiet,
    )
    .unwrap();
    assert!(matches!(out, Outcome::Finished { step: 8, .. }), "{out:?}");
}

#[test]
fn memory_is_bounded_by_the_batch_not_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    // Warm-up: the same run on a tiny store, so that allocator pools and the model's buffers
    // exist before the measurements.
    let (u, s, ids) = store(&dir.path().join("warm"), 1, 20);
    train(dir.path(), "warm", &u, s, &ids);

    let before = rss_mb();
    let (u, s, ids) = store(&dir.path().join("small"), 1, 360);
    train(dir.path(), "small", &u, s, &ids);
    let small = rss_mb();

    let (u, s, ids) = store(&dir.path().join("large"), 200, 360);
    let apparent = std::fs::metadata(dir.path().join("large").join(voxswap_train::store::DATA_FILE))
        .unwrap()
        .len();
    assert!(apparent > 20_000_000_000, "{apparent} bytes of frames");
    {
        use std::os::unix::fs::MetadataExt;
        let used = std::fs::metadata(dir.path().join("large").join(voxswap_train::store::DATA_FILE))
            .unwrap()
            .blocks()
            * 512;
        assert!(
            used < 1_000_000_000,
            "the temporary folder's filesystem wrote {used} bytes: it needs sparse files"
        );
    }
    train(dir.path(), "large", &u, s, &ids);
    let large = rss_mb();
    eprintln!(
        "resident memory: {before:.0} MB before, {small:.0} MB after 8 steps on 1 h, {large:.0} MB after 8 steps on \
         200 h ({:.1} GB of frames)",
        apparent as f64 / 1e9
    );
    // 72,000 index entries are a few MB; the frames (23 GB) must not be held.
    assert!(large - small < 64.0, "200 h took {:.0} MB more than 1 h", large - small);
}
