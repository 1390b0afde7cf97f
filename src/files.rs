//! Files that matter (keys, catalog modules, scenarios) written atomically, reads bounded
//! by size and refused unless the path is a regular file, and the data directory's lock.
//!
//! [`write_atomic`] writes to a fresh temporary file in the same directory (a unique name,
//! created exclusively), syncs it, renames it over the target and syncs the directory: a
//! reader sees the old file or the new one, never a half-written one. A writer killed
//! mid-write leaves a `.NAME.tmp-*` file that no reader looks at; the next write of the
//! same target removes such files once they are [`STALE_TEMP_SECS`] old.
//! [`create_exclusive`] is the same, but fails if the target exists (first writer wins).
//!
//! [`read_limited`] refuses anything that is not a regular file (a FIFO would block the
//! reader forever, a device would never end), also behind a symbolic link: the path is
//! checked, then opened without blocking, and the opened file is checked again.
//!
//! [`DataLock`] serialises the writers of one data directory (`DATA/.lock`, an advisory
//! `flock`, released by the kernel when its holder dies, so it never goes stale).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};

/// Age, in seconds, past which a writer's temporary file is taken as left by a killed
/// writer and removed. Reason: writing the largest file (an 8 MiB module) takes well
/// under a second; ten minutes leaves room for a very slow disk.
pub const STALE_TEMP_SECS: u64 = 600;

/// Longest a writer waits for the data directory's lock, in seconds, before giving up
/// with an error. Reason: the longest writer (an import of an 8 MiB module) holds it for
/// a few seconds; a holder stuck longer is a problem to report, not to wait out.
pub const MAX_LOCK_WAIT_SECS: u64 = 60;

/// Returns the folder `path` lives in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Returns a temporary name beside `path` that no other writer, earlier or concurrent,
/// uses: the process id, a per-process counter and 64 random bits.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut random = [0u8; 8];
    // Uniqueness rests on pid + counter; the random bits only guard against a reused pid
    // (a failure of getrandom leaves zeros, and create_new still refuses a clash).
    let _ = getrandom::fill(&mut random);
    let tmp = format!(
        ".{name}.tmp-{}-{}-{:016x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u64::from_le_bytes(random)
    );
    parent_of(path).join(tmp)
}

/// Removes temporary files of `path` older than [`STALE_TEMP_SECS`] (best effort).
fn remove_stale_temps(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(parent_of(path)) else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= Duration::from_secs(STALE_TEMP_SECS));
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to a fresh temporary file beside `path`, synced, and returns its path.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf> {
    let dir = parent_of(path);
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create folder", e))?;
    remove_stale_temps(path);
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "create", e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, "write", e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, "sync", e))
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn sync_dir(path: &Path) {
    if let Ok(d) = File::open(parent_of(path)) {
        let _ = d.sync_all(); // directory sync is best effort (not all filesystems allow it)
    }
}

/// Writes `bytes` to `path` atomically with permission `mode`, creating parent folders.
///
/// # Errors
/// An I/O error naming the file and the step.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, "replace", e));
    }
    sync_dir(path);
    Ok(())
}

/// Writes `bytes` to `path` atomically, only if `path` does not exist: of two writers,
/// exactly one succeeds and the other gets an error of kind `AlreadyExists` (a hard link
/// never replaces its target).
///
/// # Errors
/// An I/O error naming the file; [`std::io::ErrorKind::AlreadyExists`] if it exists.
pub fn create_exclusive(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(|e| Error::io(path, "create", e))?;
    sync_dir(path);
    Ok(())
}

/// What `path` is, in words, when it is not a regular file.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Reads `path` whole, refusing anything but a regular file (behind symbolic links too)
/// and a file larger than `limit` bytes, before reading it.
///
/// # Errors
/// [`Error::Invalid`] naming the path and what it is, or its size and the limit; an I/O
/// error naming the path.
pub fn read_limited(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>> {
    let not_regular = |meta: &fs::Metadata| {
        Error::invalid(format!(
            "{} is {}, not a {what}: only regular files are read",
            path.display(),
            kind_of(meta)
        ))
    };
    let meta = fs::metadata(path).map_err(|e| Error::io(path, format!("read {what}"), e))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    // O_NONBLOCK: if the path was swapped for a FIFO since the check, opening it does not
    // wait for a writer (it has no effect on reading a regular file).
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, format!("read {what}"), e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    if meta.len() > limit as u64 {
        return Err(Error::invalid(format!(
            "{} is {} bytes, a {what} may be at most {limit} bytes",
            path.display(),
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` guards against a file that grows while it is read.
    file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, "read", e))?;
    if bytes.len() > limit {
        return Err(Error::invalid(format!("{} grew past {limit} bytes while being read", path.display())));
    }
    Ok(bytes)
}

/// The data directory's writer lock, held until dropped.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// Takes the lock `DATA/.lock`, creating the data directory if needed, waiting at most
    /// [`MAX_LOCK_WAIT_SECS`] for another writer to finish.
    ///
    /// # Errors
    /// An I/O error naming the lock file, or [`Error::Invalid`] if the wait times out.
    pub fn take(data_dir: &Path) -> Result<Self> {
        fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, "create folder", e))?;
        let path = data_dir.join(".lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| Error::io(&path, "open lock", e))?;
        let deadline = Instant::now() + Duration::from_secs(MAX_LOCK_WAIT_SECS);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::invalid(format!(
                        "{} is held by another fluxrig writing {} for more than {MAX_LOCK_WAIT_SECS} s",
                        path.display(),
                        data_dir.display()
                    )))
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(&path, "lock", e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fluxrig-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_fifo_is_refused_without_blocking_also_behind_a_symlink() {
        let d = dir("fifo");
        let fifo = d.join("pipe.wasm");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        std::os::unix::fs::symlink(&fifo, d.join("link.wasm")).unwrap();
        for p in [fifo.clone(), d.join("link.wasm")] {
            let e = read_limited(&p, 100, "module").unwrap_err().to_string();
            assert!(e.contains("is a FIFO, not a module: only regular files are read"), "{e}");
        }
        let e = read_limited(Path::new("/dev/zero"), 100, "key file").unwrap_err().to_string();
        assert!(e.contains("/dev/zero is a device, not a key file"), "{e}");
        let e = read_limited(&d, 100, "key file").unwrap_err().to_string();
        assert!(e.contains("is a folder, not a key file"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn size_cap_holds_at_its_edge() {
        let d = dir("cap");
        fs::write(d.join("f"), [7u8; 100]).unwrap();
        assert_eq!(read_limited(&d.join("f"), 100, "key file").unwrap(), [7u8; 100]);
        let e = read_limited(&d.join("f"), 99, "key file").unwrap_err().to_string();
        assert!(e.contains("is 100 bytes, a key file may be at most 99 bytes"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn temp_names_are_unique_and_stale_temps_are_cleaned() {
        let d = dir("temps");
        let target = d.join("key");
        assert_ne!(temp_path(&target), temp_path(&target));
        // A temp file left by a killed writer with this very pid does not block a write.
        let left = d.join(format!(".key.tmp-{}-0-0000000000000000", std::process::id()));
        fs::write(&left, b"half").unwrap();
        let fresh = d.join(".key.tmp-1-1-1111111111111111");
        fs::write(&fresh, b"in flight").unwrap();
        let old = SystemTime::now() - Duration::from_secs(STALE_TEMP_SECS);
        File::options().write(true).open(&left).unwrap().set_modified(old).unwrap();
        write_atomic(&target, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(!left.exists(), "a temp file {STALE_TEMP_SECS} s old is removed");
        assert!(fresh.exists(), "a younger temp file may be another writer's and stays");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn create_exclusive_lets_exactly_one_writer_win() {
        let d = dir("exclusive");
        let target = d.join("cluster.key");
        let wins: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let target = &target;
                    s.spawn(move || create_exclusive(target, &[i; 64], 0o600).is_ok())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
        let winner = wins.iter().position(|w| *w).unwrap() as u8;
        assert_eq!(fs::read(&target).unwrap(), [winner; 64]);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "no temp file is left");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_data_lock_is_exclusive_and_released_on_drop() {
        let d = dir("lock");
        let first = DataLock::take(&d).unwrap();
        let second = File::options().write(true).open(d.join(".lock")).unwrap();
        assert!(matches!(second.try_lock(), Err(TryLockError::WouldBlock)));
        drop(first);
        second.try_lock().unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
