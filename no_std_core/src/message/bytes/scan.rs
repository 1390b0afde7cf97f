//! The checking walk behind [`MsgBytes`](super::MsgBytes): `decode.rs`'s `Reader` call for
//! call, building nothing, noting whether every byte is what the encoder would write.

use alloc::vec::Vec;

use minicbor::data::Type;
use minicbor::Decoder;

use super::super::{MessageError, Uuid, NIL_UUID};
use crate::limits::{MAX_DATA_DEPTH, MAX_HOPS, MAX_PAYLOAD_BYTES};

/// The top-level keys in the order fluxrig writes them.
const KEYS: [&str; 10] = ["id", "ref_id", "trace", "src_id", "meta", "data", "flags", "raw", "path", "ts"];

/// What the walk learns about a message.
#[derive(Default)]
pub(super) struct Layout {
    pub(super) id: Uuid,
    pub(super) flags: u32,
    pub(super) hops: usize,
    pub(super) path_at: usize,
    pub(super) path_end: usize,
}

/// Walks one message; returns its layout, its end offset and whether it is canonical.
pub(super) fn scan(window: &[u8]) -> Result<(Layout, usize, bool), MessageError> {
    let mut s = Scan { d: Decoder::new(window), payload: 0, canonical: true };
    let layout = s.message()?;
    Ok((layout, s.d.position(), s.canonical))
}

/// The keys of one `meta` or `data` map, for the duplicate check after the map is read
/// (after, as in `decode.rs`, so errors come in the same order).
#[allow(clippy::large_enum_variant)] // 264 bytes on the stack on purpose: no heap for small maps
enum Keys<'b> {
    Few { keys: [&'b str; FEW_KEYS], n: usize, dup: bool },
    Many(Vec<&'b str>),
}

/// Up to this many keys are compared pairwise on the stack.
pub(super) const FEW_KEYS: usize = 16;

impl<'b> Keys<'b> {
    fn new(len: u64) -> Self {
        if len <= FEW_KEYS as u64 {
            Self::Few { keys: [""; FEW_KEYS], n: 0, dup: false }
        } else {
            Self::Many(Vec::new())
        }
    }

    fn push(&mut self, key: &'b str) {
        match self {
            Self::Few { keys, n, dup } => {
                *dup |= keys.get(..*n).is_some_and(|seen| seen.contains(&key));
                if let Some(slot) = keys.get_mut(*n) {
                    *slot = key;
                    *n += 1;
                }
            }
            Self::Many(keys) => keys.push(key),
        }
    }

    fn check(self, field: &'static str) -> Result<(), MessageError> {
        let dup = match self {
            Self::Few { dup, .. } => dup,
            Self::Many(mut keys) => {
                keys.sort_unstable();
                keys.iter().zip(keys.iter().skip(1)).any(|(a, b)| a == b)
            }
        };
        if dup {
            return Err(MessageError::DuplicateKey { field });
        }
        Ok(())
    }
}

/// The checking walk: `decode.rs`'s `Reader` call for call, building nothing, and noting
/// whether every byte is what the encoder would write.
struct Scan<'b> {
    d: Decoder<'b>,
    payload: usize,
    canonical: bool,
}

impl<'b> Scan<'b> {
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

    /// Notes whether the head at the current position is the shortest for its value.
    fn shortest(&mut self) {
        let at = self.d.position();
        let input = self.d.input();
        let ok = match input.get(at).map(|b| b & 0x1f) {
            Some(0..=23) => true,
            Some(24) => input.get(at + 1).is_some_and(|v| *v >= 24),
            Some(25) => input.get(at + 1).is_some_and(|v| *v != 0),
            Some(26) => input.get(at + 1..at + 3).is_some_and(|v| v != [0, 0]),
            Some(27) => input.get(at + 1..at + 5).is_some_and(|v| v != [0, 0, 0, 0]),
            _ => false,
        };
        self.canonical &= ok;
    }

    fn add_payload(&mut self, n: usize) -> Result<(), MessageError> {
        self.payload = self.payload.saturating_add(n);
        if self.payload > MAX_PAYLOAD_BYTES {
            return Err(MessageError::PayloadTooLarge { limit: MAX_PAYLOAD_BYTES, got: self.payload });
        }
        Ok(())
    }

    /// Reads `null` if it is next; `canonical` says whether the encoder writes `null` here.
    fn null(&mut self, field: &'static str, canonical: bool) -> Result<bool, MessageError> {
        let offset = self.d.position();
        match self.peek(field)? {
            t @ (Type::Null | Type::Undefined) => {
                self.canonical &= canonical && t == Type::Null;
                self.d.skip().map_err(|_| MessageError::Malformed { field, offset })?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn map_len(&mut self, field: &'static str) -> Result<u64, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        self.shortest();
        match self.d.map() {
            Ok(Some(n)) => Ok(n),
            _ => Err(MessageError::Malformed { field, offset }),
        }
    }

    fn array_len(&mut self, field: &'static str) -> Result<u64, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        self.shortest();
        match self.d.array() {
            Ok(Some(n)) => Ok(n),
            _ => Err(MessageError::Malformed { field, offset }),
        }
    }

    fn text(&mut self, field: &'static str) -> Result<&'b str, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        self.shortest();
        self.d.str().map_err(|_| MessageError::Malformed { field, offset })
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'b [u8], MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        self.shortest();
        self.d.bytes().map_err(|_| MessageError::Malformed { field, offset })
    }

    fn uuid(&mut self, field: &'static str) -> Result<Uuid, MessageError> {
        if self.null(field, false)? {
            return Ok(NIL_UUID);
        }
        let b = self.bytes(field)?;
        b.try_into().map_err(|_| MessageError::BadUuid { field, got: b.len() })
    }

    fn int(&mut self, field: &'static str) -> Result<i128, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        self.shortest();
        self.d.int().map(i128::from).map_err(|_| MessageError::Malformed { field, offset })
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, MessageError> {
        let offset = self.d.position();
        i64::try_from(self.int(field)?).map_err(|_| MessageError::Malformed { field, offset })
    }

    fn message(&mut self) -> Result<Layout, MessageError> {
        let mut out = Layout::default();
        let mut seen = [false; KEYS.len()];
        let n = self.map_len("message")?;
        self.canonical &= n == KEYS.len() as u64;
        for i in 0..n {
            let key = self.text("message key")?;
            let Some(index) = KEYS.iter().position(|k| *k == key) else {
                self.canonical = false;
                self.value("unknown key", 0)?;
                continue;
            };
            self.canonical &= index as u64 == i;
            if seen.get_mut(index).is_some_and(|s| core::mem::replace(s, true)) {
                return Err(MessageError::DuplicateKey { field: "message" });
            }
            match index {
                0 => out.id = self.uuid("id")?,
                1 => _ = self.uuid("ref_id")?,
                2 => {
                    if !self.null("trace", false)? {
                        self.text("trace")?;
                    }
                }
                3 => _ = self.uuid("src_id")?,
                4 => self.meta()?,
                5 => self.data()?,
                6 => {
                    let offset = self.d.position();
                    out.flags = u32::try_from(self.int("flags")?)
                        .map_err(|_| MessageError::Malformed { field: "flags", offset })?;
                }
                7 => {
                    if !self.null("raw", true)? {
                        let raw = self.bytes("raw")?;
                        self.add_payload(raw.len())?;
                    }
                }
                8 => {
                    out.path_at = self.d.position();
                    out.hops = self.path()?;
                    out.path_end = self.d.position();
                }
                _ => _ = self.i64("ts")?,
            }
        }
        Ok(out)
    }

    fn meta(&mut self) -> Result<(), MessageError> {
        if self.null("meta", true)? {
            return Ok(());
        }
        let n = self.map_len("meta")?;
        let mut keys = Keys::new(n);
        for _ in 0..n {
            let k = self.text("meta")?;
            let v = self.text("meta")?;
            self.add_payload(k.len() + v.len())?;
            keys.push(k);
        }
        keys.check("meta")
    }

    fn data(&mut self) -> Result<(), MessageError> {
        if self.null("data", true)? {
            return Ok(());
        }
        let n = self.map_len("data")?;
        let mut keys = Keys::new(n);
        for _ in 0..n {
            let k = self.text("data")?;
            self.add_payload(k.len())?;
            self.value("data", 1)?;
            keys.push(k);
        }
        keys.check("data")
    }

    fn value(&mut self, field: &'static str, depth: usize) -> Result<(), MessageError> {
        if depth > MAX_DATA_DEPTH {
            return Err(MessageError::TooDeep { limit: MAX_DATA_DEPTH });
        }
        let offset = self.d.position();
        let malformed = MessageError::Malformed { field, offset };
        match self.peek(field)? {
            t @ (Type::Null | Type::Undefined) => {
                self.canonical &= t == Type::Null;
                self.d.skip().map_err(|_| malformed)?;
            }
            Type::Bool => _ = self.d.bool().map_err(|_| malformed)?,
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int => _ = self.int(field)?,
            Type::F16 => {
                // The encoder writes every float as float64.
                self.canonical = false;
                self.d.input().get(offset + 1..offset + 3).ok_or(malformed)?;
                self.d.set_position(offset + 3);
            }
            Type::F32 => {
                self.canonical = false;
                self.d.f32().map_err(|_| malformed)?;
            }
            Type::F64 => _ = self.d.f64().map_err(|_| malformed)?,
            Type::String => {
                let s = self.text(field)?;
                self.add_payload(s.len())?;
            }
            Type::Bytes => {
                let b = self.bytes(field)?;
                self.add_payload(b.len())?;
            }
            Type::Array => {
                let n = self.array_len(field)?;
                for _ in 0..n {
                    self.value(field, depth + 1)?;
                }
            }
            Type::Map => {
                let n = self.map_len(field)?;
                for _ in 0..n {
                    self.value(field, depth + 1)?;
                    self.value(field, depth + 1)?;
                }
            }
            _ => return Err(malformed),
        }
        Ok(())
    }

    /// Walks `path`; returns its hop count.
    fn path(&mut self) -> Result<usize, MessageError> {
        if self.null("path", true)? {
            return Ok(0);
        }
        let n = self.array_len("path")?;
        let hops = usize::try_from(n).unwrap_or(usize::MAX);
        if hops > MAX_HOPS {
            return Err(MessageError::TooManyHops { limit: MAX_HOPS, got: hops });
        }
        for _ in 0..n {
            self.hop()?;
        }
        Ok(hops)
    }

    fn hop(&mut self) -> Result<(), MessageError> {
        let mut seen = [false; 3];
        let n = self.map_len("path")?;
        self.canonical &= n == 3;
        for i in 0..n {
            let index = match self.text("path")? {
                "g" => 0,
                "p" => 1,
                "t" => 2,
                _ => {
                    self.canonical = false;
                    self.value("path", 1)?;
                    continue;
                }
            };
            self.canonical &= index == i;
            if seen.get_mut(index as usize).is_some_and(|s| core::mem::replace(s, true)) {
                return Err(MessageError::DuplicateKey { field: "path" });
            }
            match index {
                0 => _ = self.uuid("path.g")?,
                1 => _ = self.uuid("path.p")?,
                _ => _ = self.i64("path.t")?,
            }
        }
        Ok(())
    }
}
