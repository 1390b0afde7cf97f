//! fluxMsg and Hop: the CBOR messages a rack routes through gears.
//!
//! Format (`spec/fluxrig-compat.md` section 2): a map with text keys `id`, `ref_id`,
//! `trace`, `src_id`, `meta`, `data`, `flags`, `raw`, `path`, `ts`. [`FluxMsg::encode`]
//! writes them in that order with shortest heads, definite lengths, `null` for absent
//! `meta`/`data`/`raw`/`path`, float64 as 8 bytes and no tags, exactly as fluxrig does, and
//! keeps the entry order of `meta` and `data` as given (fluxrig does not sort).
//! [`FluxMsg::decode`] accepts keys in any order, ignores unknown keys, treats missing keys
//! as empty, and refuses trailing bytes.
//!
//! Entry points: [`FluxMsg::decode`] / [`FluxMsg::encode`] at the edges (JSON, people,
//! tests); [`MsgBytes`] between gears: a checked message kept as its canonical bytes, whose
//! id and flags are read and whose path is stamped without decoding (see `bytes.rs`).
//!
//! Guarantees: decoding and checking never panic and refuse, with a [`MessageError`]
//! naming the field: more than [`MAX_HOPS`](crate::limits::MAX_HOPS) hops, a payload over
//! [`MAX_PAYLOAD_BYTES`](crate::limits::MAX_PAYLOAD_BYTES), an input over
//! [`MAX_ENCODED_MESSAGE_BYTES`](crate::limits::MAX_ENCODED_MESSAGE_BYTES), nesting deeper
//! than [`MAX_DATA_DEPTH`](crate::limits::MAX_DATA_DEPTH), ids that are not 16 bytes,
//! duplicate keys, tags and indefinite lengths (BETTER: fluxrig's encoder never writes the
//! last two and its decoder silently takes the last of duplicate keys), and a message
//! whose decoded form would take more than
//! [`MAX_DECODED_MESSAGE_BYTES`](crate::limits::MAX_DECODED_MESSAGE_BYTES). Allocation is
//! bounded by that limit: every string, value, entry and hop is charged (its text and
//! `size_of` its slot) before it is allocated, and a vector is reserved at its claimed
//! length only once that length has been charged, so no claimed length is trusted and no
//! vector grows by doubling.
//!
//! Out of scope: CBOR in general (only what fluxMsg uses), sorting map entries, and I/O.
//!
//! Files: `encode.rs` (the encoder), `decode.rs` (the decoder), `bytes.rs` ([`MsgBytes`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

mod bytes;
mod charge;
mod decode;
mod encode;

pub use bytes::MsgBytes;

#[cfg(test)]
use crate::limits::{MAX_DATA_DEPTH, MAX_ENCODED_MESSAGE_BYTES, MAX_HOPS, MAX_PAYLOAD_BYTES};
#[cfg(test)]
use {
    decode::f16_to_f32,
    encode::{head, put_text},
};

/// A 16-byte UUID as fluxrig sends it (a CBOR byte string of length 16).
pub type Uuid = [u8; 16];

/// The nil UUID (16 zero bytes), the value of an absent id.
pub const NIL_UUID: Uuid = [0; 16];

/// One step of a message's path: the gear and port it passed and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hop {
    /// Gear id (`g`).
    pub gear: Uuid,
    /// Port id (`p`).
    pub port: Uuid,
    /// Unix nanoseconds (`t`).
    pub ts: i64,
}

/// A value inside `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// CBOR null (or undefined, which decodes as null).
    Null,
    /// CBOR true or false.
    Bool(bool),
    /// A CBOR integer, -2^64 ..= 2^64 - 1.
    Int(i128),
    /// A float of any width, kept as f64 and written back as 8 bytes.
    Float(f64),
    /// A text string.
    Text(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// An array.
    Array(Vec<Value>),
    /// A map, entries in the order received.
    Map(Vec<(Value, Value)>),
}

/// A fluxMsg. Absent nullable fields are `None` and encode as CBOR `null`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FluxMsg {
    /// Message id (UUID v7).
    pub id: Uuid,
    /// Id of the message this one answers; nil if none.
    pub ref_id: Uuid,
    /// Trace id, free text.
    pub trace: String,
    /// Id of the gear that created the message.
    pub src_id: Uuid,
    /// Text metadata, entries in the order received.
    pub meta: Option<Vec<(String, String)>>,
    /// Structured data, entries in the order received.
    pub data: Option<Vec<(String, Value)>>,
    /// Flags; see [`FLAG_SYNC_PROBE`].
    pub flags: u32,
    /// Opaque payload.
    pub raw: Option<Vec<u8>>,
    /// Gears and ports the message has passed.
    pub path: Option<Vec<Hop>>,
    /// Unix nanoseconds at creation.
    pub ts: i64,
}

/// Flag bit 0: an internal sync probe, never delivered to gears.
pub const FLAG_SYNC_PROBE: u32 = 1;

/// Most bytes stamping one hop adds to an encoded message: the hop's map `{g, p, t}` (50
/// bytes with the widest time) and one more byte of the path's array head. A buffer that
/// will get a hop reserves this much, so that stamping it does not reallocate.
pub const MAX_HOP_BYTES: usize = 51;

/// Why bytes are not a valid fluxMsg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The input is larger than [`crate::limits::MAX_ENCODED_MESSAGE_BYTES`].
    MessageTooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// The input size, in bytes.
        got: usize,
    },
    /// The CBOR is cut off or of the wrong type where `field` was expected.
    Malformed {
        /// The field being read.
        field: &'static str,
        /// Byte offset in the input.
        offset: usize,
    },
    /// Bytes follow the top-level map.
    TrailingBytes {
        /// Offset of the first trailing byte.
        offset: usize,
    },
    /// A CBOR tag, which fluxMsg never uses.
    Tagged {
        /// Byte offset in the input.
        offset: usize,
    },
    /// An indefinite-length string, array or map, which fluxrig never writes.
    IndefiniteLength {
        /// Byte offset in the input.
        offset: usize,
    },
    /// A key given twice in one map.
    DuplicateKey {
        /// The map the key is in.
        field: &'static str,
    },
    /// An id that is not a 16-byte string.
    BadUuid {
        /// The field.
        field: &'static str,
        /// Its length.
        got: usize,
    },
    /// More hops than [`crate::limits::MAX_HOPS`].
    TooManyHops {
        /// The limit.
        limit: usize,
        /// The number found (counted up to the first one past the limit).
        got: usize,
    },
    /// `raw` + `meta` + text and bytes in `data` exceed [`crate::limits::MAX_PAYLOAD_BYTES`].
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// The size found, in bytes.
        got: usize,
    },
    /// `data` nests deeper than [`crate::limits::MAX_DATA_DEPTH`].
    TooDeep {
        /// The limit, in levels.
        limit: usize,
    },
    /// The decoded message would take more memory than
    /// [`crate::limits::MAX_DECODED_MESSAGE_BYTES`] (many tiny items: each costs a few
    /// bytes of CBOR and tens of bytes decoded).
    DecodedTooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// The decoded size reached when decoding stopped, in bytes.
        got: usize,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MessageTooLarge { limit, got } => {
                write!(f, "message is {got} bytes, limit is {limit} bytes")
            }
            Self::Malformed { field, offset } => {
                write!(f, "malformed CBOR in '{field}' at byte {offset}")
            }
            Self::TrailingBytes { offset } => {
                write!(f, "trailing bytes after the message, from byte {offset}")
            }
            Self::Tagged { offset } => write!(f, "CBOR tag at byte {offset}; fluxMsg has no tags"),
            Self::IndefiniteLength { offset } => {
                write!(f, "indefinite-length item at byte {offset}; fluxMsg uses definite lengths")
            }
            Self::DuplicateKey { field } => write!(f, "duplicate key in '{field}'"),
            Self::BadUuid { field, got } => {
                write!(f, "'{field}' is {got} bytes, a UUID is 16")
            }
            Self::TooManyHops { limit, got } => {
                write!(f, "path has {got} hops, limit is {limit}")
            }
            Self::PayloadTooLarge { limit, got } => {
                write!(f, "payload is {got} bytes, limit is {limit} bytes")
            }
            Self::TooDeep { limit } => write!(f, "data nests deeper than {limit} levels"),
            Self::DecodedTooLarge { limit, got } => write!(
                f,
                "message would take more than {limit} bytes decoded (at least {got}): too many small items"
            ),
        }
    }
}

impl core::error::Error for MessageError {}

impl FluxMsg {
    /// Creates a new message carrying `raw`, with an empty `path` and every other field
    /// empty; the caller passes the id and the time (the core has no clock).
    pub fn with_raw(id: Uuid, ts: i64, raw: Vec<u8>) -> Self {
        Self { id, ts, raw: Some(raw), path: Some(Vec::new()), ..Self::default() }
    }

    /// Returns the payload size fluxrig limits: `raw` + `meta` keys and values + text and
    /// byte strings (and text keys) inside `data`.
    pub fn payload_bytes(&self) -> usize {
        fn value_bytes(v: &Value) -> usize {
            match v {
                Value::Text(s) => s.len(),
                Value::Bytes(b) => b.len(),
                Value::Array(items) => items.iter().map(value_bytes).sum(),
                Value::Map(entries) => entries.iter().map(|(k, v)| value_bytes(k) + value_bytes(v)).sum(),
                _ => 0,
            }
        }
        let raw = self.raw.as_ref().map_or(0, Vec::len);
        let meta = self.meta.iter().flatten().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let data = self.data.iter().flatten().map(|(k, v)| k.len() + value_bytes(v)).sum::<usize>();
        raw + meta + data
    }
}

/// Decode and re-encode counters for tests (feature `decode-counter`, off by default).
///
/// Process-wide and relaxed: a test that asserts a count must not share its binary with
/// tests that decode in parallel (give it its own file under `tests/`). Needs atomic
/// read-modify-write, so host targets only. Without the feature, both notes compile to nothing.
mod counter {
    #[cfg(feature = "decode-counter")]
    pub(super) static DECODES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    #[cfg(feature = "decode-counter")]
    pub(super) static REENCODES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

    /// Counts one full [`FluxMsg`](super::FluxMsg) decode.
    #[inline(always)]
    pub(super) fn note_decode() {
        #[cfg(feature = "decode-counter")]
        DECODES.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one [`MsgBytes`](super::MsgBytes) re-encode of non-canonical input.
    #[inline(always)]
    pub(super) fn note_reencode() {
        #[cfg(feature = "decode-counter")]
        REENCODES.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Returns how many full [`FluxMsg`] decodes this process has done (feature `decode-counter`).
#[doc(hidden)]
#[cfg(feature = "decode-counter")]
pub fn decode_count() -> usize {
    counter::DECODES.load(core::sync::atomic::Ordering::Relaxed)
}

/// Returns how many times [`MsgBytes`] re-encoded non-canonical input (feature `decode-counter`).
#[doc(hidden)]
#[cfg(feature = "decode-counter")]
pub fn reencode_count() -> usize {
    counter::REENCODES.load(core::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests;
