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
//! Guarantees: decoding never panics and refuses, with a [`MessageError`] naming the
//! field: more than [`MAX_HOPS`] hops, a payload over [`MAX_PAYLOAD_BYTES`], an input over
//! [`MAX_ENCODED_MESSAGE_BYTES`], nesting deeper than [`MAX_DATA_DEPTH`], ids that are not
//! 16 bytes, duplicate keys, tags and indefinite lengths (BETTER: fluxrig's encoder never
//! writes the last two and its decoder silently takes the last of duplicate keys).
//! Allocation is bounded by the input size: no claimed length is trusted for capacity.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use minicbor::data::Type;
use minicbor::Decoder;

use crate::limits::{MAX_DATA_DEPTH, MAX_ENCODED_MESSAGE_BYTES, MAX_HOPS, MAX_PAYLOAD_BYTES};

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

/// Why bytes are not a valid fluxMsg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The input is larger than [`MAX_ENCODED_MESSAGE_BYTES`].
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
    /// More hops than [`MAX_HOPS`].
    TooManyHops {
        /// The limit.
        limit: usize,
        /// The number found (counted up to the first one past the limit).
        got: usize,
    },
    /// `raw` + `meta` + text and bytes in `data` exceed [`MAX_PAYLOAD_BYTES`].
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// The size found, in bytes.
        got: usize,
    },
    /// `data` nests deeper than [`MAX_DATA_DEPTH`].
    TooDeep {
        /// The limit, in levels.
        limit: usize,
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
        }
    }
}

// ---------------------------------------------------------------- encoding

fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    if value < 24 {
        out.push(m | value as u8);
    } else if value <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, value as u8]);
    } else if value <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(value as u16).to_be_bytes());
    } else if value <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(value as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_int(out: &mut Vec<u8>, v: i128) {
    if v >= 0 {
        head(out, 0, v.min(i128::from(u64::MAX)) as u64);
    } else {
        // CBOR negative n encodes -1 - n.
        head(out, 1, (-1 - v).min(i128::from(u64::MAX)) as u64);
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Int(i) => put_int(out, *i),
        Value::Float(x) => {
            out.push(0xfb);
            out.extend_from_slice(&x.to_be_bytes());
        }
        Value::Text(s) => put_text(out, s),
        Value::Bytes(b) => put_bytes(out, b),
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            items.iter().for_each(|i| put_value(out, i));
        }
        Value::Map(entries) => {
            head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                put_value(out, k);
                put_value(out, v);
            }
        }
    }
}

impl Hop {
    /// Appends the Hop's CBOR map `{g, p, t}` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        head(out, 5, 3);
        put_text(out, "g");
        put_bytes(out, &self.gear);
        put_text(out, "p");
        put_bytes(out, &self.port);
        put_text(out, "t");
        put_int(out, i128::from(self.ts));
    }
}

impl FluxMsg {
    /// Encodes the message as fluxrig does, byte for byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.raw.as_ref().map_or(0, Vec::len));
        head(&mut out, 5, 10);
        put_text(&mut out, "id");
        put_bytes(&mut out, &self.id);
        put_text(&mut out, "ref_id");
        put_bytes(&mut out, &self.ref_id);
        put_text(&mut out, "trace");
        put_text(&mut out, &self.trace);
        put_text(&mut out, "src_id");
        put_bytes(&mut out, &self.src_id);
        put_text(&mut out, "meta");
        match &self.meta {
            None => out.push(0xf6),
            Some(meta) => {
                head(&mut out, 5, meta.len() as u64);
                for (k, v) in meta {
                    put_text(&mut out, k);
                    put_text(&mut out, v);
                }
            }
        }
        put_text(&mut out, "data");
        match &self.data {
            None => out.push(0xf6),
            Some(data) => {
                head(&mut out, 5, data.len() as u64);
                for (k, v) in data {
                    put_text(&mut out, k);
                    put_value(&mut out, v);
                }
            }
        }
        put_text(&mut out, "flags");
        head(&mut out, 0, u64::from(self.flags));
        put_text(&mut out, "raw");
        match &self.raw {
            None => out.push(0xf6),
            Some(raw) => put_bytes(&mut out, raw),
        }
        put_text(&mut out, "path");
        match &self.path {
            None => out.push(0xf6),
            Some(path) => {
                head(&mut out, 4, path.len() as u64);
                path.iter().for_each(|h| h.encode_into(&mut out));
            }
        }
        put_text(&mut out, "ts");
        put_int(&mut out, i128::from(self.ts));
        out
    }

    /// Decodes a fluxMsg, enforcing every limit of this module.
    ///
    /// # Errors
    /// A [`MessageError`] naming the field and offset that is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_ENCODED_MESSAGE_BYTES {
            return Err(MessageError::MessageTooLarge { limit: MAX_ENCODED_MESSAGE_BYTES, got: bytes.len() });
        }
        let (msg, end) = Self::decode_prefix(bytes)?;
        if end != bytes.len() {
            return Err(MessageError::TrailingBytes { offset: end });
        }
        Ok(msg)
    }

    /// Decodes the first fluxMsg of a CBOR sequence and returns it with its length in
    /// bytes; what follows is left alone. Only the first [`MAX_ENCODED_MESSAGE_BYTES`] are
    /// looked at, so a caller reading a stream can retry with more bytes until then.
    ///
    /// # Errors
    /// As [`FluxMsg::decode`], except that trailing bytes are not an error.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, usize), MessageError> {
        let window = &bytes[..bytes.len().min(MAX_ENCODED_MESSAGE_BYTES)];
        let mut r = Reader { d: Decoder::new(window), payload: 0 };
        let msg = r.message()?;
        Ok((msg, r.d.position()))
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

// ---------------------------------------------------------------- decoding

struct Reader<'b> {
    d: Decoder<'b>,
    payload: usize,
}

impl<'b> Reader<'b> {
    /// Peeks the next item's type, refusing tags and indefinite lengths up front.
    fn peek(&self, field: &'static str) -> Result<Type, MessageError> {
        let offset = self.d.position();
        match self.d.datatype() {
            Ok(Type::Tag) => Err(MessageError::Tagged { offset }),
            Ok(Type::BytesIndef | Type::StringIndef | Type::ArrayIndef | Type::MapIndef) => {
                Err(MessageError::IndefiniteLength { offset })
            }
            Ok(t) => Ok(t),
            Err(_) => Err(MessageError::Malformed { field, offset }),
        }
    }

    fn add_payload(&mut self, n: usize) -> Result<(), MessageError> {
        self.payload = self.payload.saturating_add(n);
        if self.payload > MAX_PAYLOAD_BYTES {
            return Err(MessageError::PayloadTooLarge { limit: MAX_PAYLOAD_BYTES, got: self.payload });
        }
        Ok(())
    }

    /// Reads `null` if it is next; returns whether it was.
    fn null(&mut self, field: &'static str) -> Result<bool, MessageError> {
        let offset = self.d.position();
        match self.peek(field)? {
            Type::Null | Type::Undefined => {
                self.d.skip().map_err(|_| MessageError::Malformed { field, offset })?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn map_len(&mut self, field: &'static str) -> Result<u64, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        match self.d.map() {
            Ok(Some(n)) => Ok(n),
            _ => Err(MessageError::Malformed { field, offset }),
        }
    }

    fn array_len(&mut self, field: &'static str) -> Result<u64, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        match self.d.array() {
            Ok(Some(n)) => Ok(n),
            _ => Err(MessageError::Malformed { field, offset }),
        }
    }

    fn text(&mut self, field: &'static str) -> Result<&'b str, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        self.d.str().map_err(|_| MessageError::Malformed { field, offset })
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'b [u8], MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        self.d.bytes().map_err(|_| MessageError::Malformed { field, offset })
    }

    fn uuid(&mut self, field: &'static str) -> Result<Uuid, MessageError> {
        if self.null(field)? {
            return Ok(NIL_UUID);
        }
        let b = self.bytes(field)?;
        b.try_into().map_err(|_| MessageError::BadUuid { field, got: b.len() })
    }

    fn int(&mut self, field: &'static str) -> Result<i128, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        self.d.int().map(i128::from).map_err(|_| MessageError::Malformed { field, offset })
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, MessageError> {
        let offset = self.d.position();
        i64::try_from(self.int(field)?).map_err(|_| MessageError::Malformed { field, offset })
    }

    fn message(&mut self) -> Result<FluxMsg, MessageError> {
        const KEYS: [&str; 10] =
            ["id", "ref_id", "trace", "src_id", "meta", "data", "flags", "raw", "path", "ts"];
        let mut msg = FluxMsg::default();
        let mut seen = [false; KEYS.len()];
        let n = self.map_len("message")?;
        for _ in 0..n {
            let key = self.text("message key")?;
            let Some(index) = KEYS.iter().position(|k| *k == key) else {
                self.value("unknown key", 0)?;
                continue;
            };
            if core::mem::replace(&mut seen[index], true) {
                return Err(MessageError::DuplicateKey { field: "message" });
            }
            match index {
                0 => msg.id = self.uuid("id")?,
                1 => msg.ref_id = self.uuid("ref_id")?,
                2 => {
                    if !self.null("trace")? {
                        msg.trace = self.text("trace")?.into();
                    }
                }
                3 => msg.src_id = self.uuid("src_id")?,
                4 => msg.meta = self.meta()?,
                5 => msg.data = self.data()?,
                6 => {
                    let offset = self.d.position();
                    msg.flags = u32::try_from(self.int("flags")?)
                        .map_err(|_| MessageError::Malformed { field: "flags", offset })?;
                }
                7 => {
                    if !self.null("raw")? {
                        let raw = self.bytes("raw")?;
                        self.add_payload(raw.len())?;
                        msg.raw = Some(raw.into());
                    }
                }
                8 => msg.path = self.path()?,
                _ => msg.ts = self.i64("ts")?,
            }
        }
        Ok(msg)
    }

    fn meta(&mut self) -> Result<Option<Vec<(String, String)>>, MessageError> {
        if self.null("meta")? {
            return Ok(None);
        }
        let n = self.map_len("meta")?;
        let mut meta: Vec<(String, String)> = Vec::new();
        for _ in 0..n {
            let k = self.text("meta")?;
            let v = self.text("meta")?;
            self.add_payload(k.len() + v.len())?;
            meta.push((k.into(), v.into()));
        }
        check_unique(meta.iter().map(|(k, _)| k.as_str()), "meta")?;
        Ok(Some(meta))
    }

    fn data(&mut self) -> Result<Option<Vec<(String, Value)>>, MessageError> {
        if self.null("data")? {
            return Ok(None);
        }
        let n = self.map_len("data")?;
        let mut data: Vec<(String, Value)> = Vec::new();
        for _ in 0..n {
            let k = self.text("data")?;
            self.add_payload(k.len())?;
            let v = self.value("data", 1)?;
            data.push((k.into(), v));
        }
        check_unique(data.iter().map(|(k, _)| k.as_str()), "data")?;
        Ok(Some(data))
    }

    fn value(&mut self, field: &'static str, depth: usize) -> Result<Value, MessageError> {
        if depth > MAX_DATA_DEPTH {
            return Err(MessageError::TooDeep { limit: MAX_DATA_DEPTH });
        }
        let offset = self.d.position();
        let malformed = MessageError::Malformed { field, offset };
        Ok(match self.peek(field)? {
            Type::Null | Type::Undefined => {
                self.d.skip().map_err(|_| malformed)?;
                Value::Null
            }
            Type::Bool => Value::Bool(self.d.bool().map_err(|_| malformed)?),
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int => Value::Int(self.int(field)?),
            Type::F16 => {
                let input = self.d.input();
                let bits = input.get(offset + 1..offset + 3).ok_or(malformed)?;
                self.d.set_position(offset + 3);
                Value::Float(f64::from(f16_to_f32(u16::from_be_bytes([bits[0], bits[1]]))))
            }
            Type::F32 => Value::Float(f64::from(self.d.f32().map_err(|_| malformed)?)),
            Type::F64 => Value::Float(self.d.f64().map_err(|_| malformed)?),
            Type::String => {
                let s = self.text(field)?;
                self.add_payload(s.len())?;
                Value::Text(s.into())
            }
            Type::Bytes => {
                let b = self.bytes(field)?;
                self.add_payload(b.len())?;
                Value::Bytes(b.into())
            }
            Type::Array => {
                let n = self.array_len(field)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(field, depth + 1)?);
                }
                Value::Array(items)
            }
            Type::Map => {
                let n = self.map_len(field)?;
                let mut entries = Vec::new();
                for _ in 0..n {
                    let k = self.value(field, depth + 1)?;
                    let v = self.value(field, depth + 1)?;
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
            _ => return Err(malformed),
        })
    }

    fn path(&mut self) -> Result<Option<Vec<Hop>>, MessageError> {
        if self.null("path")? {
            return Ok(None);
        }
        let n = self.array_len("path")?;
        if n > MAX_HOPS as u64 {
            return Err(MessageError::TooManyHops {
                limit: MAX_HOPS,
                got: usize::try_from(n).unwrap_or(usize::MAX),
            });
        }
        let mut path = Vec::new();
        for _ in 0..n {
            path.push(self.hop()?);
        }
        Ok(Some(path))
    }

    fn hop(&mut self) -> Result<Hop, MessageError> {
        let mut hop = Hop::default();
        let mut seen = [false; 3];
        let n = self.map_len("path")?;
        for _ in 0..n {
            let index = match self.text("path")? {
                "g" => 0,
                "p" => 1,
                "t" => 2,
                _ => {
                    self.value("path", 1)?;
                    continue;
                }
            };
            if core::mem::replace(&mut seen[index], true) {
                return Err(MessageError::DuplicateKey { field: "path" });
            }
            match index {
                0 => hop.gear = self.uuid("path.g")?,
                1 => hop.port = self.uuid("path.p")?,
                _ => hop.ts = self.i64("path.t")?,
            }
        }
        Ok(hop)
    }
}

/// Refuses a repeated key; sorts references, so it costs O(n log n) and no copies.
fn check_unique<'a>(keys: impl Iterator<Item = &'a str>, field: &'static str) -> Result<(), MessageError> {
    let mut sorted: Vec<&str> = keys.collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(MessageError::DuplicateKey { field });
    }
    Ok(())
}

/// Converts IEEE 754 half-precision bits to f32 (minicbor needs its `half` feature for this).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let frac = u32::from(bits & 0x3ff);
    let magnitude = match (exp, frac) {
        (0, 0) => 0,
        (0, _) => {
            // Subnormal: frac * 2^-24, exact in f32.
            let v = frac as f32 * (1.0 / 16_777_216.0);
            return if sign == 0 { v } else { -v };
        }
        (0x1f, 0) => 0x7f80_0000,
        (0x1f, _) => 0x7fc0_0000,
        _ => ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests;
