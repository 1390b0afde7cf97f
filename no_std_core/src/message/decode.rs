//! The fluxMsg decoder: a [`Reader`] over minicbor that applies every limit (module doc).

use alloc::string::String;
use alloc::vec::Vec;

use minicbor::data::Type;
use minicbor::Decoder;

use super::charge::{self, Account};
use super::{FluxMsg, Hop, MessageError, Uuid, Value, NIL_UUID};
use crate::limits::{MAX_DATA_DEPTH, MAX_ENCODED_MESSAGE_BYTES, MAX_HOPS, MAX_PAYLOAD_BYTES};

impl FluxMsg {
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
        super::counter::note_decode();
        let window = bytes.split_at_checked(MAX_ENCODED_MESSAGE_BYTES).map_or(bytes, |(w, _)| w);
        let mut r = Reader { d: Decoder::new(window), payload: 0, account: Account::default() };
        let msg = r.message()?;
        Ok((msg, r.d.position()))
    }
}

/// A vector being decoded, with the capacity its account was charged for.
struct Items<T> {
    items: Vec<T>,
    capacity: usize,
    size: usize,
}

struct Reader<'b> {
    d: Decoder<'b>,
    payload: usize,
    /// Bytes the decoded message holds so far, charged before they are allocated.
    account: Account,
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

    fn charge(&mut self, n: usize) -> Result<(), MessageError> {
        self.account.charge(n)
    }

    /// Returns a vector for a claimed `count` of `T` (`size` bytes each, as counted by
    /// [`charge`]), at the capacity the account charged: a truncated claim is found where
    /// the input ends, as [`MsgBytes::check`](super::MsgBytes::check) finds it.
    fn reserve<T>(&mut self, count: u64, size: usize) -> Items<T> {
        let input_left = self.d.input().len().saturating_sub(self.d.position());
        let capacity = self.account.reserve(count, size, input_left);
        Items { items: Vec::with_capacity(capacity), capacity, size }
    }

    /// Pushes `item`, charging a slot past the reserved capacity (and growing by one
    /// rather than doubling).
    fn push<T>(&mut self, items: &mut Items<T>, item: T) -> Result<(), MessageError> {
        self.account.push(items.items.len(), items.capacity, items.size)?;
        if items.items.len() == items.items.capacity() {
            items.items.reserve_exact(1);
        }
        items.items.push(item);
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

    /// Reads a text string, charging its bytes (a borrowed key is charged too: it is
    /// copied, or compared and dropped, and the charge keeps the count simple and high).
    fn text(&mut self, field: &'static str) -> Result<&'b str, MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        let text = self.d.str().map_err(|_| MessageError::Malformed { field, offset })?;
        self.charge(text.len())?;
        Ok(text)
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'b [u8], MessageError> {
        let offset = self.d.position();
        self.peek(field)?;
        let bytes = self.d.bytes().map_err(|_| MessageError::Malformed { field, offset })?;
        self.charge(bytes.len())?;
        Ok(bytes)
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
        self.charge(charge::MESSAGE)?;
        let mut msg = FluxMsg::default();
        let mut seen = [false; KEYS.len()];
        let n = self.map_len("message")?;
        for _ in 0..n {
            let key = self.text("message key")?;
            let Some(index) = KEYS.iter().position(|k| *k == key) else {
                self.value("unknown key", 0)?;
                continue;
            };
            if seen.get_mut(index).is_some_and(|s| core::mem::replace(s, true)) {
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
        let mut meta: Items<(String, String)> = self.reserve(n, charge::META_ENTRY);
        for _ in 0..n {
            let k = self.text("meta")?;
            let v = self.text("meta")?;
            self.add_payload(k.len() + v.len())?;
            self.push(&mut meta, (k.into(), v.into()))?;
        }
        let meta = meta.items;
        self.charge(meta.len().saturating_mul(charge::KEY_REF))?;
        check_unique(meta.iter().map(|(k, _)| k.as_str()), "meta")?;
        Ok(Some(meta))
    }

    fn data(&mut self) -> Result<Option<Vec<(String, Value)>>, MessageError> {
        if self.null("data")? {
            return Ok(None);
        }
        let n = self.map_len("data")?;
        let mut data: Items<(String, Value)> = self.reserve(n, charge::DATA_ENTRY);
        for _ in 0..n {
            let k = self.text("data")?;
            self.add_payload(k.len())?;
            let v = self.value("data", 1)?;
            self.push(&mut data, (k.into(), v))?;
        }
        let data = data.items;
        self.charge(data.len().saturating_mul(charge::KEY_REF))?;
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
                let bits: [u8; 2] =
                    input.get(offset + 1..offset + 3).and_then(|b| b.try_into().ok()).ok_or(malformed)?;
                self.d.set_position(offset + 3);
                Value::Float(f64::from(f16_to_f32(u16::from_be_bytes(bits))))
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
                let mut items = self.reserve(n, charge::VALUE);
                for _ in 0..n {
                    let item = self.value(field, depth + 1)?;
                    self.push(&mut items, item)?;
                }
                Value::Array(items.items)
            }
            Type::Map => {
                let n = self.map_len(field)?;
                let mut entries = self.reserve(n, charge::MAP_ENTRY);
                for _ in 0..n {
                    let k = self.value(field, depth + 1)?;
                    let v = self.value(field, depth + 1)?;
                    self.push(&mut entries, (k, v))?;
                }
                Value::Map(entries.items)
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
        let mut path = self.reserve(n, charge::HOP);
        for _ in 0..n {
            let hop = self.hop()?;
            self.push(&mut path, hop)?;
        }
        Ok(Some(path.items))
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
            if seen.get_mut(index).is_some_and(|s| core::mem::replace(s, true)) {
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
    if sorted.iter().zip(sorted.iter().skip(1)).any(|(a, b)| a == b) {
        return Err(MessageError::DuplicateKey { field });
    }
    Ok(())
}

/// Converts IEEE 754 half-precision bits to f32 (minicbor needs its `half` feature for this).
pub(super) fn f16_to_f32(bits: u16) -> f32 {
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
