//! The center's allocator, and what keeps its memory returned after a burst.
//!
//! mimalloc keeps a heap per thread. Blocks freed by another thread, and pages emptied while
//! their own thread waits, are only taken back when that thread allocates again: a worker that
//! parks after a connect storm, and then serves only idle push channels, keeps the storm's
//! pages resident. Each worker therefore collects its heap when it parks, at most once per
//! [`COLLECT_EVERY`]. And the process runs without transparent huge pages
//! ([`no_huge_pages`]). Together they took the center's growth per idle connected device from
//! 25 to 17 KB (BENCHMARKS.md, "B3: the storm's pages returned").

use std::cell::Cell;
use std::time::{Duration, Instant};

/// mimalloc: the services allocate and free small buffers at a high rate on several threads,
/// where glibc's allocator spends a third of the time and fragments.
#[cfg(not(feature = "heap-count"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The measurement build (`--features heap-count`): the same allocator, counting what is live.
#[cfg(feature = "heap-count")]
#[global_allocator]
static ALLOCATOR: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

/// A worker collects its heap at most this often: often enough that a center returns a
/// burst's memory within seconds, rarely enough that the walk over its pages costs nothing
/// measurable under load.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// No transparent huge pages for this process. mimalloc asks for them on its arenas
/// (`MADV_HUGEPAGE`), and a 2 MiB huge page stays resident whole while any of the 64 KiB pages
/// in it holds a live block: after a connect storm that kept half of the allocator's memory
/// resident for nothing (BENCHMARKS.md, "B3: the storm's pages returned"). Called first in
/// `main`; a kernel without the setting leaves the process as it was.
pub fn no_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// For the runtime's `on_thread_park`: give back what this thread's heap no longer uses, if
/// it has not done so within [`COLLECT_EVERY`].
pub fn on_park() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    LAST.with(|last| {
        if last
            .get()
            .is_some_and(|t| now.duration_since(t) < COLLECT_EVERY)
        {
            return;
        }
        last.set(Some(now));
        collect();
    });
}

/// Collect the calling thread's heap: take in blocks other threads freed, free its empty
/// pages, and return to the kernel the arenas' memory freed more than the purge delay (1 s)
/// ago.
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` has no preconditions: it may be called from any thread at any time
    // and only reorganises the allocator's own bookkeeping; no Rust reference is involved.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// With `FLEETCARE_HEAP_LOG=<path>`, write `<ms since start> <live bytes> <peak live bytes>`
/// to `<path>.<pid>` every 250 ms, from a thread of its own.
#[cfg(feature = "heap-count")]
pub fn log() {
    use std::io::Write;
    let Some(mut path) = std::env::var_os("FLEETCARE_HEAP_LOG") else {
        return;
    };
    path.push(format!(".{}", std::process::id()));
    let Ok(mut out) = std::fs::File::create(&path) else {
        eprintln!(
            "FLEETCARE_HEAP_LOG: cannot create {}",
            path.to_string_lossy()
        );
        return;
    };
    let start = Instant::now();
    std::thread::spawn(move || {
        loop {
            let line = format!(
                "{} {} {}\n",
                start.elapsed().as_millis(),
                ALLOCATOR.allocated(),
                ALLOCATOR.max_allocated()
            );
            if out.write_all(line.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident() -> u64 {
        fleetcare_agent::resident::resident().expect("/proc/self/statm")
    }

    /// What another thread freed stays resident until the thread that allocated it collects;
    /// once it does, the pages go back to the kernel.
    #[test]
    fn collecting_returns_what_another_thread_freed() {
        const BLOCKS: usize = 64 * 1024;
        no_huge_pages();
        let blocks: Vec<Box<[u8; 1000]>> = (0..BLOCKS).map(|i| Box::new([i as u8; 1000])).collect();
        let full = resident();
        std::thread::spawn(move || drop(blocks))
            .join()
            .expect("freeing thread");
        // mimalloc purges freed memory after its purge delay (1 s): collect until it has, or
        // give up after 10 s.
        let start = Instant::now();
        let mut now = full;
        while start.elapsed() < Duration::from_secs(10) {
            collect();
            now = resident();
            if full.saturating_sub(now) >= 32 << 20 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "resident {} MB with 64 MB allocated, {} MB after another thread freed it and this \
             one collected for 10 s",
            full >> 20,
            now >> 20
        );
    }
}
