//! Durable file operations, shared by the center and the agent.
//!
//! * [`write_atomic`]: replace a file so that after a crash it holds either the old or the new
//!   content, never a mix: write a temporary file beside it, fsync it, rename it over the
//!   target, fsync the directory.
//! * [`DirLock`]: an exclusive lock on a directory, so two processes never share a data dir.
//! * [`read_password`]: a password kept in a file of its own.
//! * [`free_space`]: the bytes an unprivileged process may still write on a file system.
//! * [`raise_descriptor_limit`]: as many open files and sockets as the system allows.
//!
//! Files can be made private (mode 0600): secrets are written that way.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Who may read a file written by [`write_atomic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Owner only (0600): credentials, keys, tokens.
    Private,
    /// Owner writes, everyone reads (0644).
    Shared,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Private => 0o600,
            Mode::Shared => 0o644,
        }
    }
}

/// Let this process hold as many descriptors (sockets, files) as the system allows it: the
/// soft limit (often 1,024) raised to the hard one. A server of many devices needs one per
/// connection and one per download in flight.
pub fn raise_descriptor_limit() -> io::Result<()> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    if let Some(max) = l.maximum
        && l.current.is_none_or(|c| c < max)
    {
        let mut raised = l;
        raised.current = Some(max);
        setrlimit(Resource::Nofile, raised)?;
    }
    Ok(())
}

/// The bytes an unprivileged process may still write on the file system holding `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The password in `path`: the whole file but its trailing line ends (spaces are the
/// password's own).
pub fn read_password(path: &Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// Flush a directory's entries (a rename or a new file in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replace `path` with `contents` atomically and durably (see the crate documentation).
pub fn write_atomic(path: &Path, contents: &[u8], mode: Mode) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a file path has a name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp: PathBuf = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode.bits())
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Remove a file durably; a file that is already gone is not an error.
pub fn remove_durably(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create a directory (and its parents) readable only by its owner, if it does not exist.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// An exclusive lock on a directory, held until dropped (an advisory lock on `dir/.lock`,
/// which holds the holder's process id).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Take the lock, or fail at once with [`io::ErrorKind::WouldBlock`] if another process
    /// holds it (the message names it by its process id).
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(".lock"))?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the next one who tries (and for `status`).
                file.set_len(0)?;
                file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
                Ok(DirLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is in use by another process{} (it holds {}/.lock)",
                    dir.display(),
                    pid_in(&file).map_or(String::new(), |p| format!(" (pid {p})")),
                    dir.display()
                ),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Whether a process holds the lock on `dir` now, and its id: `None` when no one does
    /// (a process that exited holds nothing). Looks without taking the lock from anyone.
    pub fn holder(dir: &Path) -> io::Result<Option<Holder>> {
        let file = match File::open(dir.join(".lock")) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => Ok(Some(Holder { pid: pid_in(&file) })),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The process that holds a [`DirLock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// Its id, as it wrote it (absent if it had not written it yet).
    pub pid: Option<u32>,
}

fn pid_in(mut file: &File) -> Option<u32> {
    use std::io::{Read, Seek};
    let mut s = String::new();
    file.seek(io::SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("secret");
        write_atomic(&p, b"one", Mode::Private).expect("write");
        write_atomic(&p, b"two", Mode::Private).expect("replace");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
        remove_durably(&p).expect("remove");
        remove_durably(&p).expect("removing twice is fine");
        assert!(!p.exists());
    }

    #[test]
    fn a_directory_is_locked_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = DirLock::acquire(dir.path()).expect("first");
        let second = DirLock::acquire(dir.path()).expect_err("second must fail");
        assert_eq!(second.kind(), io::ErrorKind::WouldBlock);
        let me = std::process::id();
        assert!(
            second.to_string().contains(&format!("(pid {me})")),
            "{second}"
        );
        assert_eq!(
            DirLock::holder(dir.path()).expect("look"),
            Some(Holder { pid: Some(me) })
        );
        drop(held);
        assert_eq!(DirLock::holder(dir.path()).expect("look"), None);
        let again = DirLock::acquire(dir.path()).expect("free again");
        assert_eq!(
            DirLock::holder(dir.path()).expect("look"),
            Some(Holder { pid: Some(me) })
        );
        drop(again);
    }
}
