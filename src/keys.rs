//! Key files and the trust store (`spec/fluxrig-compat.md` section 4).
//!
//! - a private key file is 64 raw bytes (seed, public key); `.pub` beside it is the 32-byte
//!   public key; both mode 0600. Loading also accepts a 32-byte seed or 128 hex digits.
//! - the trust store `DATA/wasm/keys` holds vendor public keys, one `NAME.pub` per vendor.
//! - the node's cluster key `DATA/cluster.key` countersigns imports; created on first use.
//!   Checking a module needs only its public half, `DATA/cluster.key.pub`: `run`,
//!   `wasm list` and `wasm call` never open the private key (least privilege; an
//!   operator may keep `cluster.key` on the machine that imports only).
//!
//! Every key file is read with a bound ([`MAX_KEY_FILE_BYTES`]), so a wrong or hostile
//! file in the trust store costs at most that.
//!
//! A pair is two files and no kill can replace two files at once: [`generate`] writes the
//! private key, then the `.pub`, and loading a private key checks the `.pub` beside it, so
//! a pair left mismatched by a kill is refused with the fix named. The first cluster key is
//! created exclusively, under the data directory's lock: two imports never make two keys.

use std::fs;
use std::path::{Path, PathBuf};

use fluxrig_core::verify::{PublicKey, SigningKey};

use crate::error::{Error, Result};
use crate::files::{create_exclusive, read_limited, write_atomic};
use crate::logger;

/// Largest key file read, private or public: hex text with some white space.
pub const MAX_KEY_FILE_BYTES: usize = 4096;

/// Most keys in the trust store (a guard against a wrong folder, not a real limit).
const MAX_TRUSTED_KEYS: usize = 1024;

/// Returns `path` with `.pub` appended (`my_vendor.key` -> `my_vendor.key.pub`).
pub fn pub_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Makes a fresh random seed.
fn fresh_key() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| Error::invalid(format!("cannot get randomness for a key: {e}")))?;
    SigningKey::from_seed(seed).map_err(|source| Error::Key { path: "(fresh key)".into(), source })
}

/// Generates a key pair at `path` and `path.pub`; refuses to overwrite either unless
/// `force`.
pub fn generate(path: &Path, force: bool) -> Result<SigningKey> {
    let public = pub_path(path);
    for p in [path, public.as_path()] {
        if !force && p.exists() {
            return Err(Error::invalid(format!(
                "{} already exists; keeping it (pass --force to replace it)",
                p.display()
            )));
        }
    }
    let key = fresh_key()?;
    // The private key first: a kill before the `.pub` is written leaves a pair that
    // `load_signing_key` refuses, naming the fix. Without --force, created exclusively.
    if force {
        write_atomic(path, &key.to_key_file(), 0o600)?;
    } else {
        create_exclusive(path, &key.to_key_file(), 0o600)?;
    }
    write_atomic(&public, &key.public_key().0, 0o600)?;
    Ok(key)
}

/// Loads a private key file and, if a `.pub` is beside it, checks that it is its public
/// half.
///
/// # Errors
/// A path that is not a private key, a file that is not a key, or a `.pub` that does not
/// match (a write of the pair was interrupted), naming the fix.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let key = load_private_key(path)?;
    let public = pub_path(path);
    if public.exists() && load_public_key(&public)? != key.public_key() {
        return Err(Error::invalid(format!(
            "{} does not hold the public half of {} (a write of the pair was interrupted?): \
             remove it (the node's cluster key gets it rewritten by the next 'wasm import'), \
             or write a new pair with 'fluxrig keys gen-cluster --force'",
            public.display(),
            path.display()
        )));
    }
    Ok(key)
}

/// Loads a private key file alone.
fn load_private_key(path: &Path) -> Result<SigningKey> {
    if path.extension().is_some_and(|e| e == "pub") {
        return Err(Error::invalid(format!(
            "{} is a public key; sign with the private key file beside it (without .pub)",
            path.display()
        )));
    }
    let bytes = read_limited(path, MAX_KEY_FILE_BYTES, "key file")?;
    SigningKey::from_key_file(&bytes).map_err(|source| Error::Key { path: path.to_path_buf(), source })
}

/// Loads a 32-byte public key file.
fn load_public_key(path: &Path) -> Result<PublicKey> {
    let bytes = read_limited(path, MAX_KEY_FILE_BYTES, "public key file")?;
    PublicKey::from_bytes(&bytes).map_err(|source| Error::Key { path: path.to_path_buf(), source })
}

/// A key's short name for people: its first 8 bytes as hex.
pub fn fingerprint(key: &PublicKey) -> String {
    crate::json::hex(&key.0[..8])
}

/// Mode of the node's `cluster.key.pub` when an import creates it: 0644. It is public, and
/// a rack running as a service user other than the importer's must read it (the private
/// `cluster.key` stays 0600). `keys gen-cluster` writes both files 0600, as fluxrig does.
pub const CLUSTER_PUB_MODE: u32 = 0o644;

/// Refuses a data folder that does not exist: a mistyped `--data-dir` must be named as
/// such, not reported as an empty trust store.
pub fn require_data_dir(data_dir: &Path) -> Result<()> {
    if data_dir.is_dir() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the data folder {} does not exist (check --data-dir or {}; a new node starts with \
         'mkdir -p {}' and the vendors' .pub files in it)",
        data_dir.display(),
        crate::cli::DATA_DIR_ENV,
        trust_store_path(data_dir).display()
    )))
}

/// Path of the node's cluster key.
pub fn cluster_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.key")
}

/// Loads the node's cluster key, creating it (and its `.pub`) on first use. The caller
/// holds the data directory's lock ([`crate::files::DataLock`]); the private key is also
/// created exclusively, so that even without the lock two writers never make two keys.
pub fn load_or_create_cluster_key(data_dir: &Path) -> Result<SigningKey> {
    let path = cluster_key_path(data_dir);
    let public = pub_path(&path);
    if path.exists() {
        let key = load_signing_key(&path)?;
        // A writer killed between the two files, or an operator who removed a `.pub` that
        // did not match: the private key is the truth, and `run` needs its public half.
        if !public.exists() {
            write_atomic(&public, &key.public_key().0, CLUSTER_PUB_MODE)?;
            logger::info("keys", &format!("wrote the missing {}", public.display()));
        }
        return Ok(key);
    }
    let key = fresh_key()?;
    match create_exclusive(&path, &key.to_key_file(), 0o600) {
        Ok(()) => {}
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            return load_signing_key(&path);
        }
        Err(e) => return Err(e),
    }
    write_atomic(&public, &key.public_key().0, CLUSTER_PUB_MODE)?;
    logger::info("keys", &format!("created the node's cluster key {}", path.display()));
    Ok(key)
}

/// Loads the public half of the node's cluster key from `cluster.key.pub`; where only the
/// private file exists (a node set up by hand), takes it from there with a warning.
pub fn cluster_public_key(data_dir: &Path) -> Result<PublicKey> {
    let path = cluster_key_path(data_dir);
    let public = pub_path(&path);
    if public.exists() {
        return load_public_key(&public);
    }
    if path.exists() {
        logger::warn(
            "keys",
            &format!("{} is missing; reading the public key from the private key file", public.display()),
        );
        return Ok(load_private_key(&path)?.public_key());
    }
    Err(Error::invalid(format!(
        "no cluster key at {}: import a module with 'fluxrig wasm import' first (or check --data-dir)",
        public.display()
    )))
}

/// One vendor key of the trust store.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// File name without `.pub`.
    pub vendor: String,
    /// The key.
    pub key: PublicKey,
}

/// Path of the trust store.
pub fn trust_store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("wasm").join("keys")
}

/// Loads every `*.pub` file of exactly 32 bytes from the trust store, sorted by vendor
/// name; other files are skipped with a warning. A missing folder is an empty store.
pub fn load_trust_store(data_dir: &Path) -> Result<Vec<TrustedKey>> {
    let dir = trust_store_path(data_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, "read trust store", e)),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, "read trust store", e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(vendor) = name.strip_suffix(".pub") else {
            logger::warn("keys", &format!("skipping {}: trusted keys end in .pub", path.display()));
            continue;
        };
        let is_file = fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false);
        if !is_file {
            logger::warn("keys", &format!("skipping {}: not a regular file", path.display()));
            continue;
        }
        match load_public_key(&path) {
            Ok(key) => keys.push(TrustedKey { vendor: vendor.to_string(), key }),
            Err(e) => logger::warn("keys", &format!("skipping {e}")),
        }
        if keys.len() > MAX_TRUSTED_KEYS {
            return Err(Error::invalid(format!("{} holds more than {MAX_TRUSTED_KEYS} keys", dir.display())));
        }
    }
    keys.sort_by(|a, b| a.vendor.cmp(&b.vendor));
    Ok(keys)
}
