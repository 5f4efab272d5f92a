//! Keeping the agent's resident memory to what it uses: once started, the agent hands the
//! pages of its own binary that only start-up needed back to the kernel.
//!
//! Why: an idle agent runs about 250 KB of its 4.7 MB of code. The kernel keeps every page
//! start-up touched, and maps every cached page within 64 KiB of a fault (fault-around), so
//! the idle agent kept 5.3 MB of its binary resident. [`release_startup_pages`] gives back
//! what start-up left; what the agent runs later is mapped again as it runs. That alone is not
//! enough where the code it runs is spread over the text: the linker packs it (`build.rs`,
//! `idle.ld`; BENCHMARKS.md, B10).
//!
//! All three requests are advice: they change no byte of memory, and a kernel that does not
//! know them (before Linux 5.4) or will not page out a file the process may not write just
//! keeps the pages.

use std::io;
use std::path::Path;

/// How long after it starts the agent releases its start-up pages: enrollment, the first
/// report and the push channel are done well within it when the center is reachable, and
/// what they ran again later comes back as it runs.
pub const STARTUP: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`release_startup_pages`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Bytes of the binary's read-only mappings advised.
    pub advised: usize,
    /// Resident bytes before and after.
    pub resident_before: u64,
    pub resident_after: u64,
}

/// Advises the kernel to read the binary's code and read-only data without read-around from
/// now on (`MADV_RANDOM`), to reclaim the pages it holds now (`MADV_PAGEOUT`), and to drop
/// them from the page cache (`POSIX_FADV_DONTNEED`). Call once start-up is over; the pages
/// the agent runs again come back as it runs them.
pub fn release_startup_pages() -> io::Result<Released> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let resident_before = resident()?;
    let mut advised = 0;
    for (start, end) in read_only_mappings_of(&maps, &exe) {
        advise(start, end - start)?;
        advised += end - start;
    }
    // A page reclaimed from this process can stay in the page cache, and fault-around maps
    // every cached page near a fault: drop the ones no process maps. (On the 6.18 kernel
    // measured, the next fault in the text read the whole mapping back anyway: BENCHMARKS.md.)
    let file = std::fs::File::open("/proc/self/exe")?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(Released {
        advised,
        resident_before,
        resident_after: resident()?,
    })
}

/// The address ranges of `path`'s private mappings that are not writable, from the text of
/// `/proc/self/maps`.
fn read_only_mappings_of(maps: &str, path: &Path) -> Vec<(usize, usize)> {
    let path = path.as_os_str().to_string_lossy();
    maps.lines()
        .filter_map(|line| {
            // address perms offset dev inode pathname (which may hold spaces)
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let name = fields.nth(3)?.trim_start();
            if name != path || perms.as_bytes().get(1) != Some(&b'-') || !perms.ends_with('p') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start < end).then_some((start, end))
        })
        .collect()
}

#[allow(unsafe_code)]
fn advise(start: usize, len: usize) -> io::Result<()> {
    use rustix::mm::{Advice, madvise};
    let addr = start as *mut std::ffi::c_void;
    // SAFETY: `start..start + len` is one whole mapping of this process, read from
    // /proc/self/maps. Neither advice changes what the memory holds: MADV_RANDOM only turns
    // off read-ahead for later faults, and MADV_PAGEOUT reclaims pages the kernel can read
    // back from the file (or, for a page written after mapping, from swap, or not at all).
    // Unlike MADV_DONTNEED or MADV_FREE, neither can make a later read see different bytes.
    unsafe {
        madvise(addr, len, Advice::Random)?;
        match madvise(addr, len, Advice::LinuxPageOut) {
            Ok(()) => Ok(()),
            // A kernel older than 5.4 does not know MADV_PAGEOUT: keep the pages.
            Err(rustix::io::Errno::INVAL) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// This process's resident bytes (`/proc/self/statm`).
pub fn resident() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| io::Error::other(format!("/proc/self/statm: unexpected {statm:?}")))?;
    Ok(pages * rustix::param::page_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_binarys_private_read_only_mappings() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 00:2a 123 /opt/fleetcare agent/bin/agent
55d0c0100000-55d0c0500000 r-xp 00100000 00:2a 123 /opt/fleetcare agent/bin/agent
55d0c0500000-55d0c0510000 rw-p 00500000 00:2a 123 /opt/fleetcare agent/bin/agent
55d0c0510000-55d0c0520000 r--s 00510000 00:2a 123 /opt/fleetcare agent/bin/agent
7f0000000000-7f0000100000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 00:00 0 
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        let got = read_only_mappings_of(maps, Path::new("/opt/fleetcare agent/bin/agent"));
        assert_eq!(
            got,
            vec![
                (0x55d0c0000000, 0x55d0c0100000),
                (0x55d0c0100000, 0x55d0c0500000)
            ]
        );
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let before = resident().expect("statm");
        assert!(before > 0);
        let r = release_startup_pages().expect("advice is accepted");
        assert!(r.advised > 0, "the test binary's own mappings were found");
        // The test binary's several megabytes of code were resident; most went back to the
        // file (the process owns it, so the kernel pages it out).
        assert!(
            r.resident_after + (1 << 20) < r.resident_before,
            "{r:?}: at least 1 MiB released"
        );
        // The code that runs next is read back from the file, and still runs.
        let names: Vec<String> = (0..100).map(|i| format!("unit-{i}")).collect();
        assert_eq!(names.concat().len(), 10 * 6 + 90 * 7);
    }
}
