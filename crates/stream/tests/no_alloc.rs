//! The real-time path does not allocate: the engine (resamplers at different rates, streaming
//! log-mel, the model frame by frame, the frame-by-frame neural vocoder or streaming
//! Griffin-Lim, limiter, output queue), after warm-up, pushed 10 ms chunks of real speech under
//! a global allocator that counts this thread's allocations, in resynthesis mode and converting
//! through a voice glide and live adaptation (its measurements run on the engine's worker
//! thread, whose allocations are not the real-time thread's). Its own test binary: the counting
//! allocator is process-wide.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use candle_core::Device;
use voxswap_audio::{read_mono, resample, ChannelMix, LogMel};
use voxswap_model::VoiceConverter;
use voxswap_stream::{Adaptation, Engine, EngineConfig, NeuralFrames, StreamingGl, Vocoder};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the counter only reads and
// writes this thread's cells (`const` thread-locals: no allocation), and pauses counting while
// it prints.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            note("alloc", layout.size());
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            note("realloc", new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counts an allocation; the first few print where they come from (counting paused meanwhile:
/// the backtrace allocates).
fn note(kind: &str, bytes: usize) {
    let n = COUNT.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    if n <= 3 {
        COUNTING.with(|c| c.set(false));
        eprintln!(
            "{kind} of {bytes} bytes:\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        COUNTING.with(|c| c.set(true));
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

#[test]
fn resynthesis_path_does_not_allocate_after_warm_up() {
    check(true);
}

/// Converting with live adaptation, with a voice switch just before the counted pushes: the
/// glide's mixes are made in place, and measurements are asked for and applied in the counted
/// pushes.
#[test]
fn conversion_path_does_not_allocate_after_warm_up() {
    check(false);
}

fn check(resynthesis: bool) {
    use voxswap_model::vocoder::{new_trainable, VocoderConfig};
    let conv = VoiceConverter::load(&data("model/tiny-stream-synth"), &Device::Cpu).unwrap();
    let fe = conv.config().frontend.clone();
    let a = read_mono(data("speech_m.wav"), ChannelMix::Downmix).unwrap();
    let x16 = resample(&a.samples, a.sample_rate, 16000).unwrap();
    let voice = conv.embed(&[LogMel::new(&fe).unwrap().compute(&x16)]).unwrap();
    // A live device at 48 kHz in, 44.1 kHz out: both resamplers at work.
    // Twice the clip: live adaptation measures 1 s in and applies it 1 s later, then at 3 s.
    let x = resample(&[a.samples.clone(), a.samples.clone()].concat(), a.sample_rate, 48000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vars = candle_nn::VarMap::new();
    let vcfg = VocoderConfig::tiny(&fe);
    new_trainable(&vcfg, &vars, 2, &Device::Cpu).unwrap();
    voxswap_model::NeuralVocoder::save(dir.path(), &vcfg, &vars).unwrap();
    let neural = voxswap_model::NeuralVocoder::load(dir.path(), &Device::Cpu)
        .unwrap()
        .unwrap();
    let vocoders: Vec<(&str, Box<dyn Vocoder>)> = vec![
        ("neural, frame by frame", Box::new(NeuralFrames::new(&neural).unwrap())),
        ("streaming Griffin-Lim", Box::new(StreamingGl::new(&fe, 2, 8).unwrap())),
    ];
    for (name, vocoder) in vocoders {
        let mut cfg = EngineConfig::live(48000, 44100);
        cfg.resynthesis = resynthesis;
        cfg.adaptation = if resynthesis {
            Adaptation::NONE
        } else {
            Adaptation::DEFAULT
        };
        let mut e = Engine::new(&conv, &voice, vocoder, cfg).unwrap();
        let other = voxswap_model::SpeakerEmbedding::new(voice.values().iter().map(|v| -0.5 * v).collect());
        let mut out = Vec::with_capacity(x.len() * 2);
        let chunk = 480; // 10 ms at 48 kHz
        let (warm, rest) = x.split_at(x.len() / 3);
        for c in warm.chunks(chunk) {
            e.push(c, &mut out).unwrap();
        }
        let made = out.len();
        // A switch (itself allowed to allocate: a key press, not a chunk), then the glide.
        e.set_voice(&other).unwrap();
        let n = allocations(|| {
            for c in rest.chunks(chunk) {
                e.push(c, &mut out).unwrap();
            }
        });
        assert!(out.len() > made + rest.len() / 2, "{name}: too little output");
        // Live adaptation measured the talker and moved the voice away from the one chosen.
        let now = e.current_voice().unwrap();
        assert_eq!(
            now.values() != other.values(),
            !resynthesis,
            "{name}: adaptation applied {}",
            now.values() != other.values()
        );
        assert!(out[made..].iter().any(|v| *v != 0.0), "{name}: silent output");
        assert_eq!(
            n,
            0,
            "{name}: {n} allocations in {} pushes after warm-up",
            rest.len() / chunk
        );
    }
}
