//! Heap allocations of the engine's per-chunk path, counted by a global allocator: the figure
//! behind BENCHMARKS.md's "allocations per 10 ms chunk" (the live path's goal is none).
//!
//!     cargo run --release -p voxswap-stream --example frame_allocations -- [MODEL_DIR] [REF.wav] [SRC.wav]
//!
//! Defaults: pretrained/, examples/target_unseen.wav, tests/data/speech_m.wav. The source is
//! pushed in 10 ms chunks at 16 kHz after a 2 s warm-up; prints the pushing thread's
//! allocations and bytes per chunk (mean and largest), and those of the whole process (live
//! adaptation measures on a worker thread of its own).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use voxswap_audio::{read_mono, resample, ChannelMix, LogMel};
use voxswap_model::VoiceConverter;
use voxswap_stream::{Adaptation, Engine, EngineConfig, StreamingGl};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static ALL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread pushes (`const`: reading it does not allocate).
    static PUSHER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count(bytes: usize) {
    ALL.fetch_add(1, Ordering::Relaxed);
    if PUSHER.with(std::cell::Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a pointer System gave for this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let conv = VoiceConverter::load(arg(0, "pretrained").as_ref(), &candle_core::Device::Cpu)?;
    let fe = conv.config().frontend.clone();
    let at16 = |p: String| -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        let a = read_mono(p, ChannelMix::Downmix)?;
        Ok(resample(&a.samples, a.sample_rate, fe.sample_rate)?)
    };
    let reference = at16(arg(1, "examples/target_unseen.wav"))?;
    let voice = conv.embed(&[LogMel::new(&fe)?.compute(&reference)])?;
    let src = at16(arg(2, "tests/data/speech_m.wav"))?;
    for (name, adaptation) in [
        ("no adaptation", Adaptation::NONE),
        ("live adaptation", Adaptation::DEFAULT),
    ] {
        let vocoder = Box::new(StreamingGl::new(&fe, StreamingGl::LOOKAHEAD, StreamingGl::ITERATIONS)?);
        let cfg = EngineConfig {
            adaptation,
            ..EngineConfig::live(fe.sample_rate, fe.sample_rate)
        };
        let mut engine = Engine::new(&conv, &voice, vocoder, cfg)?;
        let chunk = fe.sample_rate as usize / 100;
        let mut out = Vec::with_capacity(fe.sample_rate as usize * 4);
        let warm = 2 * fe.sample_rate as usize;
        let mut counts = Vec::new();
        for (i, c) in src
            .chunks(chunk)
            .cycle()
            .take(src.len().max(warm * 4) / chunk)
            .enumerate()
        {
            out.clear();
            let (a0, b0, p0) = (
                ALLOCS.load(Ordering::Relaxed),
                BYTES.load(Ordering::Relaxed),
                ALL.load(Ordering::Relaxed),
            );
            PUSHER.with(|p| p.set(true));
            engine.push(c, &mut out)?;
            PUSHER.with(|p| p.set(false));
            if i * chunk >= warm {
                counts.push((
                    ALLOCS.load(Ordering::Relaxed) - a0,
                    BYTES.load(Ordering::Relaxed) - b0,
                    ALL.load(Ordering::Relaxed) - p0,
                ));
            }
        }
        let n = counts.len().max(1) as f64;
        let mean_a = counts.iter().map(|c| c.0).sum::<u64>() as f64 / n;
        let mean_b = counts.iter().map(|c| c.1).sum::<u64>() as f64 / n;
        let max_a = counts.iter().map(|c| c.0).max().unwrap_or(0);
        let mean_all = counts.iter().map(|c| c.2).sum::<u64>() as f64 / n;
        println!(
            "{name}: {} chunks of 10 ms after the warm-up: pushing thread {mean_a:.0} allocations ({:.0} kB) per chunk on average, at most {max_a}; whole process {mean_all:.0} per chunk",
            counts.len(),
            mean_b / 1024.0
        );
    }
    Ok(())
}
