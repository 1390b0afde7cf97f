//! Vendor signatures, cluster countersignatures and catalog hashes of gear modules.
//!
//! Contract (`spec/fluxrig-compat.md` section 3): a signature is a custom section appended
//! at the end of the module whose payload is a raw 64-byte pure Ed25519 (RFC 8032)
//! signature over the SHA-256 digest of the module without that section.
//! - vendor section `fluxrig.signature`: over the module with no signature section;
//! - cluster section `fluxrig.cluster.signature`: over the exact vendor-signed bytes P;
//!   the catalog hash is lowercase hex SHA-256(P).
//!
//! Entry points: [`SigningKey`] and [`PublicKey`]; [`vendor_sign`], [`verify_vendor`],
//! [`countersign`] and [`verify_cluster`]. [`verify_cluster`] is the only safe way to get a
//! [`VerifiedModule`], the one input [`crate::gear::Compiled::new`] accepts; [`dangerous`]
//! holds the explicit, greppable way around it for an operator's insecure mode and for an
//! author running their own unsigned file. A [`VerifiedModule`] owns or borrows its bytes
//! (`Vec<u8>` in the binary, `&'static [u8]` in firmware), so the verified value itself
//! flows into compilation.
//!
//! Guarantees: no panics on any input; a module with two sections of the same signature
//! name is refused (BETTER: fluxrig would silently use the first). Keys are never printed.

use alloc::vec::Vec;
use core::fmt;

use ed25519_compact::{KeyPair, Seed, Signature};
use sha2::{Digest as _, Sha256};

use crate::blame::Blame;
use crate::section::{self, SectionError};

/// Name of the vendor signature section.
pub const VENDOR_SECTION: &str = "fluxrig.signature";
/// Name of the cluster countersignature section.
pub const CLUSTER_SECTION: &str = "fluxrig.cluster.signature";
/// Length of an Ed25519 signature (the whole payload of a signature section).
pub const SIGNATURE_BYTES: usize = 64;

/// Returns the SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// A private key file is not 32 bytes (seed), 64 bytes (seed + public key) or 128 hex
    /// digits.
    BadLength {
        /// The length found, in bytes.
        got: usize,
    },
    /// A public key that is not 32 bytes.
    BadPublicKeyLength {
        /// The length found, in bytes.
        got: usize,
    },
    /// The seed is all zeros, which no key generator produces.
    ZeroSeed,
    /// A 64-byte key file whose second half is not the public key of its first half.
    PublicHalfMismatch,
}

impl KeyError {
    /// Returns whose fault the error is: always [`Blame::Config`] (a key file the operator
    /// points at).
    pub fn blame(&self) -> Blame {
        Blame::Config
    }
}

impl core::error::Error for KeyError {}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength { got } => write!(
                f,
                "key file is {got} bytes: expected 32 raw bytes (seed), 64 raw bytes (seed and \
                 public key) or 128 hex digits"
            ),
            Self::BadPublicKeyLength { got } => {
                write!(f, "public key is {got} bytes; expected 32")
            }
            Self::ZeroSeed => f.write_str("key seed is all zeros"),
            Self::PublicHalfMismatch => f.write_str("key file's public half does not match its seed"),
        }
    }
}

/// An Ed25519 public key (a trusted vendor key or a cluster key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Reads a public key from exactly 32 raw bytes (the format of a `.pub` file).
    ///
    /// # Errors
    /// [`KeyError::BadPublicKeyLength`] for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; 32] =
            bytes.try_into().map_err(|_| KeyError::BadPublicKeyLength { got: bytes.len() })?;
        Ok(Self(raw))
    }

    fn verify(&self, digest: &[u8; 32], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        ed25519_compact::PublicKey::new(self.0).verify(digest, &signature).is_ok()
    }
}

/// An Ed25519 signing key (a vendor key or a node's cluster key).
#[derive(Clone)]
pub struct SigningKey(KeyPair);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {:?})", self.public_key())
    }
}

impl SigningKey {
    /// Builds the key from its 32-byte seed (fresh randomness when generating a key).
    ///
    /// # Errors
    /// [`KeyError::ZeroSeed`] for an all-zero seed.
    pub fn from_seed(seed: [u8; 32]) -> Result<Self, KeyError> {
        KeyPair::try_from_seed(Seed::new(seed)).map(Self).map_err(|_| KeyError::ZeroSeed)
    }

    /// Reads a private key file as fluxrig does: 32 raw bytes (seed), 64 raw bytes (seed
    /// then public key) or the hex text of 64 bytes (surrounding white space allowed).
    ///
    /// BETTER: the public half of a 64-byte key is checked against the seed.
    ///
    /// # Errors
    /// [`KeyError`] naming what is wrong.
    pub fn from_key_file(bytes: &[u8]) -> Result<Self, KeyError> {
        let mut decoded = [0u8; 64];
        let raw: &[u8] = match bytes.len() {
            32 | 64 => bytes,
            _ => {
                let text = bytes.trim_ascii();
                if text.len() != 128 || !decode_hex(text, &mut decoded) {
                    return Err(KeyError::BadLength { got: bytes.len() });
                }
                &decoded
            }
        };
        let (seed, public) = raw.split_at_checked(32).ok_or(KeyError::BadLength { got: bytes.len() })?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| KeyError::BadLength { got: bytes.len() })?;
        let key = Self::from_seed(seed)?;
        if !public.is_empty() && public != key.public_key().0 {
            return Err(KeyError::PublicHalfMismatch);
        }
        Ok(key)
    }

    /// Returns the 64-byte key file content: seed then public key.
    pub fn to_key_file(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        let (seed, public) = out.split_at_mut(32);
        seed.copy_from_slice(&self.0.sk.seed()[..]);
        public.copy_from_slice(&self.0.pk[..]);
        out
    }

    /// Returns the public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.pk)
    }

    fn sign(&self, digest: &[u8; 32]) -> [u8; 64] {
        *self.0.sk.sign(digest, None)
    }
}

fn decode_hex(text: &[u8], out: &mut [u8]) -> bool {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if text.len() != out.len() * 2 {
        return false;
    }
    for (pair, slot) in text.chunks_exact(2).zip(out.iter_mut()) {
        match pair {
            [hi, lo] => match (nibble(*hi), nibble(*lo)) {
                (Some(hi), Some(lo)) => *slot = hi << 4 | lo,
                _ => return false,
            },
            _ => return false,
        }
    }
    true
}

/// The catalog name of a module: SHA-256 of its vendor-signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CatalogHash(pub [u8; 32]);

impl CatalogHash {
    /// Parses 64 lowercase hex digits (the form used in catalog file names).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        let lowercase = text.bytes().all(|b| !b.is_ascii_uppercase());
        (lowercase && decode_hex(text.as_bytes(), &mut out)).then_some(Self(out))
    }
}

impl fmt::Display for CatalogHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why a signature could not be made or verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The module's section framing is broken.
    Section(SectionError),
    /// No `fluxrig.signature` section.
    MissingVendorSignature,
    /// A vendor signature that no trusted key verifies.
    UntrustedVendor,
    /// Two or more signature sections of the same name.
    DuplicateSignature {
        /// The section name.
        section: &'static str,
    },
    /// A signature section whose payload is not 64 bytes.
    BadSignatureLength {
        /// The section name.
        section: &'static str,
        /// The payload length found.
        got: usize,
    },
    /// The module already carries a cluster signature, so it cannot be (re)signed or
    /// countersigned again.
    AlreadyCountersigned,
    /// No `fluxrig.cluster.signature` section.
    MissingClusterSignature,
    /// The cluster signature does not verify with the cluster key.
    BadClusterSignature,
    /// The module's content hash differs from the name it was loaded under.
    HashMismatch {
        /// The hash in the name.
        expected: CatalogHash,
        /// The hash of the content.
        got: CatalogHash,
    },
}

impl From<SectionError> for VerifyError {
    fn from(e: SectionError) -> Self {
        Self::Section(e)
    }
}

impl VerifyError {
    /// Returns whose fault the error is: [`Blame::Module`] (a module that is malformed,
    /// unsigned, untrusted, tampered with or misnamed).
    pub fn blame(&self) -> Blame {
        Blame::Module
    }

    /// Returns `true` for a failed trust check (a missing, untrusted or wrong signature, a
    /// hash mismatch), `false` for a module whose sections cannot be read at all.
    pub fn is_trust_failure(&self) -> bool {
        !matches!(self, Self::Section(_))
    }
}

impl core::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Section(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Section(e) => write!(f, "malformed module: {e}"),
            // The next two strings are fluxrig's own, kept verbatim (spec section 5).
            Self::MissingVendorSignature => {
                f.write_str("missing vendor signature (use allow_unsigned to bypass)")
            }
            Self::UntrustedVendor => {
                f.write_str("vendor signature found but does not match any trusted keys")
            }
            Self::DuplicateSignature { section } => {
                write!(f, "module has more than one '{section}' section")
            }
            Self::BadSignatureLength { section, got } => {
                write!(f, "'{section}' section holds {got} bytes, a signature is 64")
            }
            Self::AlreadyCountersigned => {
                f.write_str("module already carries a cluster signature (use the vendor-signed file)")
            }
            Self::MissingClusterSignature => f.write_str("missing cluster signature"),
            Self::BadClusterSignature => f.write_str("cluster signature does not match the cluster key"),
            Self::HashMismatch { expected, got } => {
                write!(
                    f,
                    "module content hashes to {got}, but it is named {expected}: it was changed or \
                     renamed after it was countersigned"
                )
            }
        }
    }
}

/// Returns the payload of the only section named `name`, or `None`.
fn only_signature<'a>(module: &'a [u8], name: &'static str) -> Result<Option<&'a [u8]>, VerifyError> {
    if section::count_custom(module, name)? > 1 {
        return Err(VerifyError::DuplicateSignature { section: name });
    }
    let Some(found) = section::find_custom(module, name)? else {
        return Ok(None);
    };
    if found.payload.len() != SIGNATURE_BYTES {
        return Err(VerifyError::BadSignatureLength { section: name, got: found.payload.len() });
    }
    Ok(Some(found.payload))
}

/// Vendor-signs `module`: removes any vendor signature, signs the SHA-256 of the rest,
/// appends the new `fluxrig.signature` section (what `fluxrig wasm sign` writes).
///
/// # Errors
/// [`VerifyError::Section`] for a malformed module, [`VerifyError::AlreadyCountersigned`]
/// for a module that was already imported into a catalog.
pub fn vendor_sign(module: &[u8], key: &SigningKey) -> Result<Vec<u8>, VerifyError> {
    if section::find_custom(module, CLUSTER_SECTION)?.is_some() {
        return Err(VerifyError::AlreadyCountersigned);
    }
    let mut unsigned = section::strip_custom(module, VENDOR_SECTION)?;
    while section::find_custom(&unsigned, VENDOR_SECTION)?.is_some() {
        unsigned = section::strip_custom(&unsigned, VENDOR_SECTION)?;
    }
    let signature = key.sign(&sha256(&unsigned));
    Ok(section::append_custom(&unsigned, VENDOR_SECTION, &signature)?)
}

/// Checks the vendor signature of `module` against `trusted` keys and returns the index of
/// the key that verified it. A cluster section, if present, is left out first.
///
/// # Errors
/// [`VerifyError::MissingVendorSignature`], [`VerifyError::UntrustedVendor`], or a
/// malformed or duplicated section.
pub fn verify_vendor(module: &[u8], trusted: &[PublicKey]) -> Result<usize, VerifyError> {
    let without_cluster = section::strip_custom(module, CLUSTER_SECTION)?;
    let signature =
        only_signature(&without_cluster, VENDOR_SECTION)?.ok_or(VerifyError::MissingVendorSignature)?;
    let digest = sha256(&section::strip_custom(&without_cluster, VENDOR_SECTION)?);
    trusted.iter().position(|k| k.verify(&digest, signature)).ok_or(VerifyError::UntrustedVendor)
}

/// Countersigns `vendor_signed` module bytes with the node's cluster key: returns the
/// catalog hash (SHA-256 of `vendor_signed`) and the bytes to store, `vendor_signed` +
/// `fluxrig.cluster.signature`.
///
/// The vendor signature must have been checked by the caller (or waived by the operator):
/// this function signs whatever it is given.
///
/// # Errors
/// [`VerifyError::AlreadyCountersigned`] or a malformed module.
pub fn countersign(
    vendor_signed: &[u8],
    cluster_key: &SigningKey,
) -> Result<(CatalogHash, Vec<u8>), VerifyError> {
    if has_cluster_signature(vendor_signed)? {
        return Err(VerifyError::AlreadyCountersigned);
    }
    let digest = sha256(vendor_signed);
    let signature = cluster_key.sign(&digest);
    Ok((CatalogHash(digest), section::append_custom(vendor_signed, CLUSTER_SECTION, &signature)?))
}

/// Returns whether `module` carries a `fluxrig.cluster.signature` section (checked or not).
///
/// # Errors
/// [`VerifyError::Section`] for a module whose sections cannot be read.
pub fn has_cluster_signature(module: &[u8]) -> Result<bool, VerifyError> {
    Ok(section::find_custom(module, CLUSTER_SECTION)?.is_some())
}

/// How a [`VerifiedModule`] came to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Its cluster signature verified with the node's cluster key.
    ClusterSigned,
    /// The operator asked for it to run unverified ([`dangerous::trust_unverified`]).
    Unverified,
}

/// Module bytes whose cluster signature and catalog hash have been checked: the only
/// input from which a [`crate::gear::Compiled`] gear can be built. `B` is the storage:
/// `Vec<u8>` when read from a file, `&'static [u8]` when embedded in firmware.
#[derive(Debug, Clone)]
pub struct VerifiedModule<B> {
    bytes: B,
    hash: CatalogHash,
    trust: Trust,
}

impl<B: AsRef<[u8]>> VerifiedModule<B> {
    /// Returns the module bytes as stored (with their signature sections).
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Returns the catalog hash: SHA-256 of the module without its cluster section.
    pub fn hash(&self) -> CatalogHash {
        self.hash
    }

    /// Returns how the module came to be trusted.
    pub fn trust(&self) -> Trust {
        self.trust
    }
}

/// Verifies, if `expected` is given, that the content hash of `stored` module bytes equals
/// that catalog name, then the cluster countersignature with `cluster_key`; the verified
/// value keeps the bytes. The name is checked first so that a file changed on disk is
/// reported as changed, not as signed by another key.
///
/// # Errors
/// [`VerifyError::MissingClusterSignature`], [`VerifyError::BadClusterSignature`],
/// [`VerifyError::HashMismatch`], or a malformed or duplicated section.
pub fn verify_cluster<B: AsRef<[u8]>>(
    stored: B,
    cluster_key: &PublicKey,
    expected: Option<&CatalogHash>,
) -> Result<VerifiedModule<B>, VerifyError> {
    let bytes = stored.as_ref();
    let signature = only_signature(bytes, CLUSTER_SECTION)?.ok_or(VerifyError::MissingClusterSignature)?;
    let hash = CatalogHash(sha256(&section::strip_custom(bytes, CLUSTER_SECTION)?));
    // The name first: a catalog file changed on disk is a changed file, not a wrong key.
    if let Some(expected) = expected {
        if *expected != hash {
            return Err(VerifyError::HashMismatch { expected: *expected, got: hash });
        }
    }
    if !cluster_key.verify(&hash.0, signature) {
        return Err(VerifyError::BadClusterSignature);
    }
    Ok(VerifiedModule { bytes: stored, hash, trust: Trust::ClusterSigned })
}

/// The way around verification: for an operator's explicitly insecure mode
/// (`run --insecure`) and for an author running their own local file (`wasm call FILE`)
/// only. Every use is a line `grep trust_unverified` finds.
pub mod dangerous {
    use super::{section, sha256, CatalogHash, Trust, VerifiedModule, CLUSTER_SECTION};

    /// Treats `module` as verified without checking any signature. The hash is computed
    /// as for a cluster-signed module so that logs name it the same way.
    pub fn trust_unverified<B: AsRef<[u8]>>(module: B) -> VerifiedModule<B> {
        let bytes = module.as_ref();
        let hash = match section::strip_custom(bytes, CLUSTER_SECTION) {
            Ok(stripped) => sha256(&stripped),
            Err(_) => sha256(bytes),
        };
        VerifiedModule { bytes: module, hash: CatalogHash(hash), trust: Trust::Unverified }
    }
}

#[cfg(test)]
mod tests;
