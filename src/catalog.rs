//! The file-based catalog `DATA/wasm/<hash>.wasm` and the `wasm` commands' work:
//! sign, import, list, and reading a gear's source as a [`VerifiedModule`].
//!
//! Import (`spec/fluxrig-compat.md` sections 3 and 5): vendor signature checked against
//! the trust store, module shape checked, countersigned with the node's cluster key, and
//! stored atomically under the SHA-256 of the vendor-signed bytes, but only once the
//! countersigned module has been instantiated under the most generous limits, start
//! function included (BETTER than fluxrig: a module that can never start, such as one
//! whose start function traps or whose segments do not fit, is refused at import, not at
//! the first `run`). Writers hold the data directory's lock. Loading checks the
//! cluster signature with the public cluster key and that the content hashes to the name
//! (BETTER than fluxrig), and hands on the verified value itself, never bare bytes.

use std::fs;
use std::path::{Path, PathBuf};

use fluxrig_core::gear::{inspect, Compiled, Gear, GearConfig, GearEngine, ModuleShape};
use fluxrig_core::limits::{MAX_MEMORY_LIMIT_PAGES, MAX_MODULE_BYTES};
use fluxrig_core::verify::{self, CatalogHash, PublicKey, VerifiedModule, VerifyError};

use crate::error::{Error, Result};
use crate::files::{read_limited, write_atomic, DataLock};
use crate::keys::{self, TrustedKey};
use crate::scenario::Source;

/// Path of a module in the catalog.
pub fn module_path(data_dir: &Path, hash: &CatalogHash) -> PathBuf {
    data_dir.join("wasm").join(format!("{hash}.wasm"))
}

/// Reads a module file (at most [`MAX_MODULE_BYTES`]).
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    read_limited(path, MAX_MODULE_BYTES, "module")
}

/// Vendor-signs `file` in place with the key file `key`; returns the vendor public key.
pub fn sign(file: &Path, key: &Path) -> Result<PublicKey> {
    let key = keys::load_signing_key(key)?;
    let module = read_module(file)?;
    let signed = verify::vendor_sign(&module, &key).map_err(|e| Error::verify(file, e))?;
    write_atomic(file, &signed, 0o644)?;
    Ok(key.public_key())
}

/// How an imported module's vendor signature stood.
#[derive(Debug)]
pub enum VendorStatus {
    /// Verified by this trusted vendor key.
    Trusted(String),
    /// Unsigned, and the operator allowed it.
    UnsignedAllowed,
}

/// What `wasm import` did.
#[derive(Debug)]
pub struct Imported {
    /// Catalog hash.
    pub hash: CatalogHash,
    /// Where it is stored.
    pub path: PathBuf,
    /// Vendor signature status.
    pub vendor: VendorStatus,
    /// What the shape check found.
    pub shape: ModuleShape,
    /// Whether the same module was already in the catalog.
    pub already_present: bool,
}

/// Checks the vendor signature of `module` against the trust store.
pub fn check_vendor(
    module: &[u8],
    trusted: &[TrustedKey],
    allow_unsigned: bool,
) -> std::result::Result<VendorStatus, VerifyError> {
    let keys: Vec<PublicKey> = trusted.iter().map(|t| t.key).collect();
    match verify::verify_vendor(module, &keys) {
        Ok(i) => Ok(VendorStatus::Trusted(trusted.get(i).map(|t| t.vendor.clone()).unwrap_or_default())),
        Err(VerifyError::MissingVendorSignature) if allow_unsigned => Ok(VendorStatus::UnsignedAllowed),
        Err(e) => Err(e),
    }
}

/// Checks the gear shape of raw module bytes with the most generous limits (the scenario
/// sets the real ones), before the module is signed into the catalog.
pub fn check_shape(path: &Path, module: &[u8], entrypoint: &str) -> Result<ModuleShape> {
    let config = GearConfig {
        entrypoint: entrypoint.to_string(),
        memory_limit_pages: MAX_MEMORY_LIMIT_PAGES,
        ..GearConfig::default()
    };
    inspect(module, &config).map_err(|source| Error::gear(path.display().to_string(), source))
}

/// Instantiates a module once, start function included, under the most generous limits
/// a scenario may set, and drops the instance: a module that cannot start is refused.
fn check_start(path: &Path, module: &VerifiedModule<&Vec<u8>>) -> Result<()> {
    let config = GearConfig { memory_limit_pages: MAX_MEMORY_LIMIT_PAGES, ..GearConfig::default() };
    let name = path.display().to_string();
    let gear_error = |source| Error::gear(name.clone(), source);
    let compiled = Compiled::new(&GearEngine::default(), module, &config).map_err(gear_error)?;
    let mut sink = |level, line: &str| crate::logger::guest(level, &name, line);
    Gear::new(compiled, config, &mut sink).map_err(gear_error)?;
    Ok(())
}

/// Imports `file` into the catalog.
pub fn import(data_dir: &Path, file: &Path, allow_unsigned: bool, new_cluster_key: bool) -> Result<Imported> {
    let module = read_module(file)?;
    let trusted = keys::load_trust_store(data_dir)?;
    let vendor = check_vendor(&module, &trusted, allow_unsigned).map_err(|e| {
        // No data folder at all: a mistyped --data-dir, not a trust failure.
        if let Err(missing) = keys::require_data_dir(data_dir) {
            return missing;
        }
        let error = Error::verify(file, e);
        let store = keys::trust_store_path(data_dir);
        match e {
            VerifyError::UntrustedVendor if trusted.is_empty() => {
                error.hint(format!("the trust store {} has no keys", store.display()))
            }
            VerifyError::UntrustedVendor => {
                let names: Vec<String> = trusted
                    .iter()
                    .map(|t| format!("'{}' ({})", t.vendor, keys::fingerprint(&t.key)))
                    .collect();
                error.hint(format!(
                    "it was signed with a key that is none of the {} in {}: {}; add the signer's .pub there",
                    trusted.len(),
                    store.display(),
                    names.join(", ")
                ))
            }
            VerifyError::MissingVendorSignature => {
                error.hint("sign it with 'fluxrig wasm sign', or pass --allow-unsigned to import it as it is")
            }
            _ => error,
        }
    })?;
    let shape = check_shape(file, &module, fluxrig_core::abi::DEFAULT_ENTRYPOINT)?;
    // Writers of the data directory take turns: the first cluster key is made once, and a
    // module is never countersigned with a key another import is about to replace.
    let _lock = DataLock::take(data_dir)?;
    refuse_orphaning(data_dir, new_cluster_key)?;
    let cluster = keys::load_or_create_cluster_key(data_dir)?;
    let (hash, stored) = verify::countersign(&module, &cluster).map_err(|e| Error::verify(file, e))?;
    let verified = verify::verify_cluster(&stored, &cluster.public_key(), Some(&hash))
        .map_err(|e| Error::verify(file, e))?;
    check_start(file, &verified)?;
    let path = module_path(data_dir, &hash);
    let already_present = read_module(&path).is_ok_and(|old| old == stored);
    if !already_present {
        write_atomic(&path, &stored, 0o644)?;
    }
    Ok(Imported { hash, path, vendor, shape, already_present })
}

/// Refuses to create a cluster key while the catalog holds modules countersigned by a
/// previous one (they would all fail to verify: a new node identity), unless the operator
/// asked for a new key.
fn refuse_orphaning(data_dir: &Path, new_cluster_key: bool) -> Result<()> {
    let key = keys::cluster_key_path(data_dir);
    if key.exists() || new_cluster_key {
        return Ok(());
    }
    let modules = std::fs::read_dir(data_dir.join("wasm"))
        .map(|entries| {
            entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "wasm")).count()
        })
        .unwrap_or(0);
    if modules == 0 {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "no cluster key at {}, but the catalog holds {modules} module(s) countersigned by one: a new key \
         would orphan them all (restore cluster.key, check --data-dir, or pass --new-cluster-key to start \
         a new node identity and import every module again)",
        key.display()
    )))
}

/// Reads the module a gear source names and verifies its cluster signature with the
/// node's public cluster key (and, for the catalog, that its content matches its name).
pub fn load_source(data_dir: &Path, source: &Source, cluster: &PublicKey) -> Result<VerifiedModule<Vec<u8>>> {
    let (path, expected) = source_path(data_dir, source);
    let bytes = read_source(data_dir, source, &path)?;
    verify::verify_cluster(bytes, cluster, expected.as_ref()).map_err(|e| Error::verify(&path, e))
}

/// Reads the module a gear source names without checking it, for `run --insecure` only.
pub fn load_source_unverified(data_dir: &Path, source: &Source) -> Result<VerifiedModule<Vec<u8>>> {
    let (path, _) = source_path(data_dir, source);
    let bytes = read_source(data_dir, source, &path)?;
    Ok(verify::dangerous::trust_unverified(bytes))
}

fn source_path(data_dir: &Path, source: &Source) -> (PathBuf, Option<CatalogHash>) {
    match source {
        Source::Catalog(hash) => (module_path(data_dir, hash), Some(*hash)),
        Source::File(path) => (path.clone(), None),
    }
}

fn read_source(data_dir: &Path, source: &Source, path: &Path) -> Result<Vec<u8>> {
    read_module(path).map_err(|e| match source {
        Source::Catalog(hash) if !path.exists() => Error::invalid(format!(
            "module {hash} is not in the catalog {} (import it with 'fluxrig wasm import')",
            data_dir.join("wasm").display()
        )),
        _ => e,
    })
}

/// One row of `wasm list`.
pub struct Listed {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// `Ok` or why it would be refused.
    pub status: Result<()>,
}

/// Lists and checks every catalog file with the public cluster key.
pub fn list(data_dir: &Path) -> Result<Vec<Listed>> {
    let dir = data_dir.join("wasm");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, "read catalog", e)),
    };
    let mut cluster = None;
    let mut rows = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".wasm") else { continue };
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let status = match CatalogHash::from_hex(stem) {
            None => Err(Error::invalid("name is not <sha256>.wasm")),
            Some(hash) => {
                // The key is read once, when the first module needs it.
                let key = match &cluster {
                    Some(key) => *key,
                    None => *cluster.insert(keys::cluster_public_key(data_dir)?),
                };
                load_source(data_dir, &Source::Catalog(hash), &key).map(|_| ())
            }
        };
        rows.push(Listed { name, bytes, status });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// Puts an imported module, as stored in the local catalog, into the bus catalog under
/// `<hash>.wasm` (`fluxrig wasm import --nats`).
///
/// # Errors
/// The stored module cannot be read, is larger than [`crate::bus::MAX_KV_VALUE_BYTES`],
/// or the server refuses it.
pub fn publish(bus: &crate::bus::Bus, imported: &Imported) -> Result<()> {
    let module = read_module(&imported.path)?;
    bus.catalog_put(&format!("{}.wasm", imported.hash), &module)
}

/// Fetches every `snake://wasm_catalog/<hash>.wasm` module of `scenario` that is not in
/// the local catalog from the bus catalog (connecting only then: a rack whose modules are
/// all cached starts without the server), checks its cluster signature against the
/// locally pinned cluster key (`DATA/cluster.key.pub`) and that its content hashes to its
/// name, and only then stores it in the local catalog (atomically, under the data
/// directory's lock). Returns how many were fetched. A module that fails a check is never
/// stored. Without a bus, does nothing (the plan then names what is missing).
///
/// # Errors
/// A module is in neither catalog; the bus cannot be reached or read; a fetched module
/// fails its checks (a trust failure); the local catalog cannot be written.
pub fn fetch_missing(
    data_dir: &Path,
    scenario: &crate::scenario::Scenario,
    bus: Option<&crate::bus::LazyBus>,
) -> Result<usize> {
    use crate::bus::CATALOG_BUCKET;
    use crate::scenario::GearKind;
    let Some(bus) = bus else { return Ok(0) };
    let mut fetched = 0;
    for gear in &scenario.gears {
        let GearKind::Wasm { source: Source::Catalog(hash), .. } = &gear.kind else { continue };
        let path = module_path(data_dir, hash);
        if path.exists() {
            continue;
        }
        let at = || format!("gear '{}'", gear.name);
        let key = format!("{hash}.wasm");
        let Some(bytes) = bus.with(|bus| bus.catalog_get(&key)).map_err(|e| e.context(at()))? else {
            return Err(Error::invalid(format!(
                "module {hash} is neither in the catalog {} nor in the bus catalog '{CATALOG_BUCKET}'",
                data_dir.join("wasm").display()
            ))
            .context(at()));
        };
        let cluster = keys::cluster_public_key(data_dir).map_err(|e| e.context(at()))?;
        let origin = PathBuf::from(format!("nats:{CATALOG_BUCKET}/{key}"));
        verify::verify_cluster(&bytes[..], &cluster, Some(hash))
            .map_err(|e| Error::verify(&origin, e).context(at()))?;
        let _lock = DataLock::take(data_dir)?;
        write_atomic(&path, &bytes, 0o644)?;
        crate::logger::info(
            "catalog",
            &format!(
                "{}: module {hash} fetched from the bus catalog, verified, cached at {}",
                gear.name,
                path.display()
            ),
        );
        fetched += 1;
    }
    Ok(fetched)
}
