//! Work spread over candle's CPU worker pool (`candle_core::utils::barrier_pool`), the pool
//! candle's own elementwise ops use: the calling thread takes a share, the pool's workers the
//! rest, and they spin briefly between ops instead of sleeping. With `RAYON_NUM_THREADS=1` the
//! pool has no workers and everything runs on the calling thread, in the same order.
//!
//! Each piece of work writes only its own piece of the output, so the results do not depend on
//! the number of threads. Keeping all of a training step's parallel work on this one pool
//! matters on small machines: a second pool's threads (rayon's) competed with this pool's
//! spinning workers for the cores and made a two-thread step up to 30% slower, run to run.

use candle_core::utils::barrier_pool;

/// Below this many output elements, work stays on the calling thread (waking the pool costs
/// more than it saves).
const MIN_PARALLEL: usize = 1 << 15;

/// A pointer that may cross to another thread; see [`for_each_chunk_mut`].
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: users hand each thread a disjoint part of what the pointer addresses.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    pub(crate) fn at(self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

thread_local! {
    /// Set on the threads of [`per_thread`]: parallel work nested in it runs inline.
    static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes the calling thread and every worker of the pool treat subnormal floats as zero
/// (x86-64: MXCSR's flush-to-zero and denormals-are-zero bits; aarch64: FPCR's FZ bit), for
/// the life of those threads. Values below 1.2e-38 change nothing a model computes, but on
/// some processors each operation on one takes a slow path: on an Intel Xeon a training run
/// slowed from 2.0 to 1.1 steps/s as such values appeared in its tensors. Idempotent.
pub fn flush_denormals() {
    barrier_pool().execute(|_| flush_denormals_here());
    flush_denormals_here();
}

#[cfg(target_arch = "x86_64")]
fn flush_denormals_here() {
    let mut csr: u32 = 0;
    // SAFETY: reads and writes the thread's SSE control register; setting FTZ (bit 15) and DAZ
    // (bit 6) changes only how subnormal floats round, never memory.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= 0x8040;
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
    }
}

#[cfg(target_arch = "aarch64")]
fn flush_denormals_here() {
    // SAFETY: sets FPCR.FZ (bit 24) of the calling thread: subnormal inputs and results are zero.
    unsafe {
        let mut fpcr: u64;
        std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack));
        fpcr |= 1 << 24;
        std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack));
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn flush_denormals_here() {}

/// Threads available to the caller: the pool's workers and the caller itself, or 1 inside
/// [`per_thread`].
pub fn threads() -> usize {
    if INSIDE.with(std::cell::Cell::get) {
        1
    } else {
        barrier_pool().n_workers() + 1
    }
}

/// Runs `f(i, n)` once for each of `n = threads()` parts of a job, each part on its own thread
/// (the caller's included) with everything it does in turn running on that thread alone; the
/// results in part order. For work that splits into independent parts better than each of its
/// operations splits, such as a training step over a batch.
pub fn per_thread<R: Send, F: Fn(usize, usize) -> R + Sync>(f: F) -> Vec<R> {
    let n = threads();
    if n == 1 {
        return vec![f(0, 1)];
    }
    let slots: Vec<std::sync::Mutex<Option<R>>> = (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    barrier_pool().execute(|tid| {
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                INSIDE.with(|f| f.set(self.0));
            }
        }
        let _restore = Restore(INSIDE.with(|f| f.replace(true)));
        let r = f(tid, n);
        *slots[tid].lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .expect("BarrierPool::execute runs every thread's part (a worker's panic is re-raised)")
        })
        .collect()
}

/// Calls `f(i)` for every `i` in `0..n`, spread over the pool (the caller takes a share); for
/// a few large independent jobs, such as one per model parameter.
pub fn for_each_index<F: Fn(usize) + Sync>(n: usize, f: F) {
    if threads() < 2 || n < 2 {
        (0..n).for_each(f);
        return;
    }
    barrier_pool().execute_chunked(n, |range| range.for_each(&f));
}

/// Runs `f(tid)` for every `tid` in `0..threads()`, one per thread, the caller taking one.
pub(crate) fn for_each_thread<F: Fn(usize) + Sync>(f: F) {
    if threads() == 1 {
        f(0);
    } else {
        barrier_pool().execute(f);
    }
}

/// Calls `f(i, piece)` for the `i`-th `chunk`-long piece of `out` (the last may be shorter),
/// the pieces spread over the pool when `out` is large.
pub(crate) fn for_each_chunk_mut<T: Send, F: Fn(usize, &mut [T]) + Sync>(out: &mut [T], chunk: usize, f: F) {
    let chunk = chunk.max(1);
    let (len, pieces) = (out.len(), out.len().div_ceil(chunk));
    if len < MIN_PARALLEL || pieces < 2 || threads() < 2 {
        for (i, piece) in out.chunks_mut(chunk).enumerate() {
            f(i, piece);
        }
        return;
    }
    let ptr = SendPtr(out.as_mut_ptr());
    barrier_pool().execute_chunked(pieces, |range| {
        for i in range {
            let start = i * chunk;
            // SAFETY: pieces `i` are disjoint ranges of `out`, each visited once, and `out` is
            // borrowed mutably for the whole call.
            let piece = unsafe { std::slice::from_raw_parts_mut(ptr.at(start), chunk.min(len - start)) };
            f(i, piece);
        }
    });
}

/// A new `len`-element buffer filled by `fill(i, piece)` for its `i`-th `chunk`-long piece
/// (spread over the pool like [`for_each_chunk_mut`]), without a zeroing pass first.
///
/// # Safety
/// `fill` must write every element of each piece it is given.
pub(crate) unsafe fn filled<F>(len: usize, chunk: usize, fill: F) -> Vec<f32>
where
    F: Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
{
    let mut out = Vec::with_capacity(len);
    for_each_chunk_mut(&mut out.spare_capacity_mut()[..len], chunk, fill);
    // SAFETY: the caller's `fill` wrote all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// [`for_each_chunk_mut`] over groups of whole rows (`row`-long), each group at least
/// `MIN_PARALLEL / 8` elements, so that per-group scratch space is allocated rarely:
/// `f(first_row, rows)`.
pub(crate) fn for_each_rows_mut<T: Send, F: Fn(usize, &mut [T]) + Sync>(out: &mut [T], row: usize, f: F) {
    let row = row.max(1);
    let per_group = (MIN_PARALLEL / 8).div_ceil(row).max(1);
    for_each_chunk_mut(out, per_group * row, |i, rows| f(i * per_group, rows));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The calling thread flushes subnormal floats to zero.
    fn denormals_flushed() -> bool {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        std::hint::black_box(tiny * 0.5) == 0.0
    }

    /// After `flush_denormals`, the caller and every pool worker flush subnormal results.
    #[test]
    fn denormals_flush_on_every_thread() {
        flush_denormals();
        assert!(denormals_flushed());
        let flushed: Vec<AtomicBool> = (0..=barrier_pool().n_workers())
            .map(|_| AtomicBool::new(false))
            .collect();
        barrier_pool().execute(|i| flushed[i].store(denormals_flushed(), Ordering::SeqCst));
        assert!(flushed.iter().all(|f| f.load(Ordering::SeqCst)));
    }

    #[test]
    fn per_thread_runs_each_part_once_with_nested_work_inline() {
        let parts = per_thread(|i, n| {
            // Nested parallel helpers run on this thread alone.
            assert_eq!(threads(), 1);
            let mut v = vec![0usize; 3 * MIN_PARALLEL];
            for_each_chunk_mut(&mut v, 1000, |c, piece| piece.fill(c));
            (i, n, v[2500])
        });
        let n = threads();
        assert_eq!(parts.len(), n);
        for (k, (i, m, v)) in parts.into_iter().enumerate() {
            assert_eq!((i, m, v), (k, n, 2));
        }
        assert_eq!(threads(), n, "the flag is cleared afterwards");
    }

    #[test]
    fn every_index_is_visited_once() {
        let seen: Vec<std::sync::atomic::AtomicUsize> = (0..100).map(|_| Default::default()).collect();
        for_each_index(seen.len(), |i| {
            seen[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(seen.iter().all(|s| s.load(std::sync::atomic::Ordering::Relaxed) == 1));
    }

    #[test]
    fn every_chunk_is_visited_once_with_its_index() {
        for len in [0, 5, 1000, MIN_PARALLEL + 7, 3 * MIN_PARALLEL] {
            let mut v = vec![0usize; len];
            for_each_chunk_mut(&mut v, 100, |i, piece| {
                for (j, x) in piece.iter_mut().enumerate() {
                    *x += i * 100 + j + 1;
                }
            });
            assert!(v.iter().enumerate().all(|(k, &x)| x == k + 1), "len {len}");
            let mut w = vec![0usize; len];
            for_each_rows_mut(&mut w, 37, |first, rows| {
                for (r, row) in rows.chunks_mut(37).enumerate() {
                    row.fill(first + r + 1);
                }
            });
            assert!(w.iter().enumerate().all(|(k, &x)| x == k / 37 + 1), "len {len}");
        }
    }
}
