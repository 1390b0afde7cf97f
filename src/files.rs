//! Files that matter (keys, catalog modules, scenarios) written atomically, and reads
//! bounded by size.
//!
//! [`write_atomic`] writes to a fresh temporary file in the same directory, syncs it,
//! renames it over the target and syncs the directory: a reader sees the old file or the
//! new one, never a half-written one, and a crash leaves at most a `.tmp` file behind.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically with permission `mode`, creating parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create folder", e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "create", e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, "write", e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, "sync", e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, "replace", e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all(); // directory sync is best effort (not all filesystems allow it)
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads `path` whole, refusing a file larger than `limit` bytes before reading it.
pub fn read_limited(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(path, format!("read {what}"), e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if meta.is_dir() {
        return Err(Error::invalid(format!("{} is a folder, not a {what}", path.display())));
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
