//! How fast batches come out of the feature store against how fast training consumes them:
//! `cargo run --release -p voxswap-train --example batch_speed -- RECIPE [batches] [steps]`
//! (run it with RAYON_NUM_THREADS=1 and 2). Brings the recipe's store up to date first, then
//! times `batches` batches assembled as a training step assembles them (segments and, for
//! `speaker_reference = "other"`, as many reference segments: both are read here), then
//! `steps` training steps of the recipe's model on the same dataset (in a temporary run folder).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::Device;
use rand::SeedableRng;
use voxswap_train::recipe::Recipe;
use voxswap_train::trainer::{self, Quiet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("VOXSWAP_DEFAULT_MALLOC").is_none() {
        voxswap_train::keep_freed_memory();
    }
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: batch_speed RECIPE [batches] [steps]")?;
    let batches: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let steps: u64 = args.get(3).map_or(Ok(10), |s| s.parse())?;
    let mut recipe = Recipe::load(std::path::Path::new(path))?;
    let t0 = Instant::now();
    let data = trainer::load_dataset(&recipe, &|_, _| {})?;
    println!(
        "dataset of {} speakers from the feature store in {:.1} s (built or brought up to date first)",
        data.n_speakers(),
        t0.elapsed().as_secs_f64()
    );
    let batch = recipe.train.batch_size;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let t0 = Instant::now();
    for _ in 0..batches {
        let picks = data.pick(&mut rng, batch);
        let x = data.segments(&picks, &Device::Cpu)?;
        let r = data.segments(&data.references(&mut rng, &picks), &Device::Cpu)?;
        std::hint::black_box((x, r));
    }
    let per_batch = t0.elapsed().as_secs_f64() / batches as f64;
    let run = tempfile::tempdir()?;
    recipe.output.dir = run.path().to_path_buf();
    recipe.train.steps = steps;
    recipe.train.checkpoint_every = steps + 1;
    recipe.train.valid_every = steps + 1;
    let t0 = Instant::now();
    trainer::train_on(&recipe, &data, &Device::Cpu, &AtomicBool::new(false), &mut Quiet)?;
    let per_step = t0.elapsed().as_secs_f64() / steps as f64;
    println!(
        "threads {}: a batch of {batch} × {} frames (and its references) in {:.2} ms; a training step in {:.0} ms: \
         batches come {:.0}× faster than steps use them",
        rayon::current_num_threads(),
        recipe.data.segment_frames,
        per_batch * 1e3,
        per_step * 1e3,
        per_step / per_batch
    );
    Ok(())
}
