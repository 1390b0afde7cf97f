//! The checking walk behind [`MsgBytes`](super::MsgBytes): a hand-written CBOR scanner over
//! `&[u8]` that follows `decode.rs`'s `Reader` call for call, building nothing, and notes
//! whether every byte is what the encoder would write.
//!
//! Contract: on every input, [`scan`] fails with exactly the [`MessageError`] (variant,
//! field, offset) that `FluxMsg::decode_prefix` gives on the same window, or succeeds where
//! it succeeds and ends at the same offset. To keep that, it reproduces the parts of
//! minicbor 2.3's `Decoder` the reader relies on:
//! - `datatype` (the reader's `peek`): no byte, or 0x38..=0x3b without a next byte, is
//!   `Malformed`; 0xc0..=0xdb is `Tagged`; 0x5f, 0x7f, 0x9f, 0xbf are `IndefiniteLength`;
//!   every other byte (0xdc..=0xdf and reserved infos included) passes to the read.
//! - `int`, `bytes`, `str`, `map`, `array`: the major type must match, the head may have any
//!   width (infos 28..=31 are refused), a length must fit in the input, text must be UTF-8
//!   (`core::str::from_utf8`); any failure is `Malformed` at the item's first byte.
//! - floats: 0xf9, 0xfa, 0xfb need 2, 4, 8 more bytes; `null` and `undefined` are one byte.
//! - the decoded-size account (`charge.rs`): charged at the points where the reader charges
//!   it (every string read, every vector's capacity, every item past it), so
//!   `DecodedTooLarge` comes at the same item.
//!
//! Canonical means what `bytes.rs`'s module doc lists; the verdict is exact for valid input
//! and irrelevant for invalid input. Tested against the decoder by `bytes/tests.rs` and
//! `tests/msgbytes.rs` (seeded mutations: check and decode agree, errors included).

use super::super::charge::{self, Account};
use super::super::{MessageError, Uuid, NIL_UUID};
use crate::limits::{MAX_DATA_DEPTH, MAX_HOPS, MAX_PAYLOAD_BYTES};
#[cfg(test)]
pub(super) use keys::FEW_KEYS;
use keys::{Key, Keys, HOP_KEYS, KEYS};

mod keys;

const NULL: u8 = 0xf6;
const UNDEFINED: u8 = 0xf7;

/// Major types, as `initial byte >> 5`.
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;

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
    let mut s = Scan { input: window, pos: 0, payload: 0, canonical: true, account: Account::default() };
    let layout = s.message()?;
    Ok((layout, s.pos, s.canonical))
}

/// The first `N` bytes of `rest`, if there are that many.
fn be<const N: usize>(rest: &[u8]) -> Option<[u8; N]> {
    rest.get(..N)?.try_into().ok()
}

/// The checking walk: a cursor over the window, the payload so far, and the verdict.
struct Scan<'b> {
    input: &'b [u8],
    pos: usize,
    payload: usize,
    canonical: bool,
    /// What the decoder would hold so far, charged at the same points as it charges.
    account: Account,
}

impl<'b> Scan<'b> {
    fn malformed(&self, field: &'static str) -> MessageError {
        MessageError::Malformed { field, offset: self.pos }
    }

    /// Returns the initial byte of the next item, refusing what minicbor's `datatype` does
    /// (see the module doc) without moving.
    fn peek(&self, field: &'static str) -> Result<u8, MessageError> {
        let offset = self.pos;
        let Some(&b) = self.input.get(offset) else {
            return Err(MessageError::Malformed { field, offset });
        };
        match b {
            0xc0..=0xdb => Err(MessageError::Tagged { offset }),
            0x5f | 0x7f | 0x9f | 0xbf => Err(MessageError::IndefiniteLength { offset }),
            0x38..=0x3b if self.input.get(offset + 1).is_none() => {
                Err(MessageError::Malformed { field, offset })
            }
            _ => Ok(b),
        }
    }

    /// Reads the head whose initial byte `b` was peeked, which must be of major type
    /// `major`; returns its argument and notes whether the head is the shortest.
    fn head(&mut self, b: u8, major: u8, field: &'static str) -> Result<u64, MessageError> {
        let malformed = self.malformed(field);
        if b >> 5 != major {
            return Err(malformed);
        }
        let rest = self.input.get(self.pos + 1..).ok_or(malformed)?;
        let (arg, len, shortest) = match b & 0x1f {
            n @ 0..=23 => (u64::from(n), 1, true),
            24 => {
                let v = u64::from(*rest.first().ok_or(malformed)?);
                (v, 2, v >= 24)
            }
            25 => {
                let v = u64::from(u16::from_be_bytes(be(rest).ok_or(malformed)?));
                (v, 3, v > 0xff)
            }
            26 => {
                let v = u64::from(u32::from_be_bytes(be(rest).ok_or(malformed)?));
                (v, 5, v > 0xffff)
            }
            27 => {
                let v = u64::from_be_bytes(be(rest).ok_or(malformed)?);
                (v, 9, v > 0xffff_ffff)
            }
            _ => return Err(malformed),
        };
        self.canonical &= shortest;
        self.pos += len;
        Ok(arg)
    }

    /// Reads a byte or text string (major `major`) whose initial byte `b` was peeked, without
    /// checking text as UTF-8.
    fn string(&mut self, b: u8, major: u8, field: &'static str) -> Result<&'b [u8], MessageError> {
        let malformed = self.malformed(field);
        let n = self.head(b, major, field)?;
        let end = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n)).ok_or(malformed)?;
        let s = self.input.get(self.pos..end).ok_or(malformed)?;
        self.pos = end;
        Ok(s)
    }

    /// Reads a text string whose initial byte `b` was peeked.
    fn text_at(&mut self, b: u8, field: &'static str) -> Result<&'b [u8], MessageError> {
        let malformed = self.malformed(field);
        let s = self.string(b, TEXT, field)?;
        if core::str::from_utf8(s).is_err() {
            return Err(malformed);
        }
        self.account.charge(s.len())?;
        Ok(s)
    }

    /// Returns the capacity the decoder reserves for `count` items of `size` bytes.
    fn reserve(&mut self, count: u64, size: usize) -> usize {
        let input_left = self.input.len().saturating_sub(self.pos);
        self.account.reserve(count, size, input_left)
    }

    fn text(&mut self, field: &'static str) -> Result<&'b [u8], MessageError> {
        let b = self.peek(field)?;
        self.text_at(b, field)
    }

    /// Reads a text key and returns its index in `known`, trying `at` (where the encoder
    /// puts it) first, as one 8-byte compare; `None` for a key not in `known`.
    fn key(&mut self, field: &'static str, known: &[Key], at: u64) -> Result<Option<usize>, MessageError> {
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        if let Some(k) = known.get(at) {
            let next = self.input.get(self.pos..).and_then(be::<8>).map(u64::from_le_bytes);
            if next.is_some_and(|w| w & k.mask == k.word) {
                self.pos += k.len;
                self.account.charge(k.text.len())?;
                return Ok(Some(at));
            }
        }
        let malformed = self.malformed(field);
        let b = self.peek(field)?;
        let text = self.string(b, TEXT, field)?;
        if let Some(index) = known.iter().position(|k| k.text == text) {
            self.account.charge(text.len())?;
            return Ok(Some(index));
        }
        // Known keys are ASCII; any other key must still be UTF-8.
        if core::str::from_utf8(text).is_err() {
            return Err(malformed);
        }
        self.account.charge(text.len())?;
        Ok(None)
    }

    fn add_payload(&mut self, n: usize) -> Result<(), MessageError> {
        self.payload = self.payload.saturating_add(n);
        if self.payload > MAX_PAYLOAD_BYTES {
            return Err(MessageError::PayloadTooLarge { limit: MAX_PAYLOAD_BYTES, got: self.payload });
        }
        Ok(())
    }

    /// Reads `null` (or `undefined`) if it is next and returns `None`; otherwise returns the
    /// peeked initial byte. `canonical` says whether the encoder writes `null` here.
    fn null(&mut self, field: &'static str, canonical: bool) -> Result<Option<u8>, MessageError> {
        let b = self.peek(field)?;
        if b == NULL || b == UNDEFINED {
            self.canonical &= canonical && b == NULL;
            self.pos += 1;
            return Ok(None);
        }
        Ok(Some(b))
    }

    fn uuid(&mut self, field: &'static str) -> Result<Uuid, MessageError> {
        // As the encoder writes it: 0x50 and 16 bytes.
        if let Some((&0x50, rest)) = self.input.get(self.pos..).and_then(<[u8]>::split_first) {
            if let Some(id) = be::<16>(rest) {
                self.pos += 17;
                self.account.charge(16)?;
                return Ok(id);
            }
        }
        let Some(b) = self.null(field, false)? else {
            return Ok(NIL_UUID);
        };
        let s = self.string(b, BYTES, field)?;
        self.account.charge(s.len())?;
        s.try_into().map_err(|_| MessageError::BadUuid { field, got: s.len() })
    }

    /// Reads an integer whose initial byte `b` was peeked.
    fn int_at(&mut self, b: u8, field: &'static str) -> Result<i128, MessageError> {
        let major = b >> 5;
        if major > 1 {
            return Err(self.malformed(field));
        }
        let arg = i128::from(self.head(b, major, field)?);
        Ok(if major == 0 { arg } else { -1 - arg })
    }

    fn int(&mut self, field: &'static str) -> Result<i128, MessageError> {
        let b = self.peek(field)?;
        self.int_at(b, field)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, MessageError> {
        let malformed = self.malformed(field);
        i64::try_from(self.int(field)?).map_err(|_| malformed)
    }

    /// Moves past an item of `len` bytes that must all be there.
    fn skip(&mut self, len: usize, field: &'static str) -> Result<(), MessageError> {
        self.input.get(self.pos..self.pos + len).ok_or(self.malformed(field))?;
        self.pos += len;
        Ok(())
    }

    fn message(&mut self) -> Result<Layout, MessageError> {
        self.account.charge(charge::MESSAGE)?;
        let mut out = Layout::default();
        let mut seen = [false; KEYS.len()];
        let b = self.peek("message")?;
        let n = self.head(b, MAP, "message")?;
        self.canonical &= n == KEYS.len() as u64;
        for i in 0..n {
            let Some(index) = self.key("message key", &KEYS, i)? else {
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
                    if let Some(b) = self.null("trace", false)? {
                        self.text_at(b, "trace")?;
                    }
                }
                3 => _ = self.uuid("src_id")?,
                4 => self.meta()?,
                5 => self.data()?,
                6 => {
                    let malformed = self.malformed("flags");
                    out.flags = u32::try_from(self.int("flags")?).map_err(|_| malformed)?;
                }
                7 => {
                    if let Some(b) = self.null("raw", true)? {
                        let raw = self.string(b, BYTES, "raw")?;
                        self.account.charge(raw.len())?;
                        self.add_payload(raw.len())?;
                    }
                }
                8 => {
                    out.path_at = self.pos;
                    out.hops = self.path()?;
                    out.path_end = self.pos;
                }
                _ => _ = self.i64("ts")?,
            }
        }
        Ok(out)
    }

    fn meta(&mut self) -> Result<(), MessageError> {
        let Some(b) = self.null("meta", true)? else {
            return Ok(());
        };
        let n = self.head(b, MAP, "meta")?;
        let capacity = self.reserve(n, charge::META_ENTRY);
        let mut keys = Keys::new(n);
        for i in 0..n {
            let k = self.text("meta")?;
            let v = self.text("meta")?;
            self.add_payload(k.len() + v.len())?;
            self.account.push(i as usize, capacity, charge::META_ENTRY)?;
            keys.push(k);
        }
        self.account.charge((n as usize).saturating_mul(charge::KEY_REF))?;
        keys.check("meta")
    }

    fn data(&mut self) -> Result<(), MessageError> {
        let Some(b) = self.null("data", true)? else {
            return Ok(());
        };
        let n = self.head(b, MAP, "data")?;
        let capacity = self.reserve(n, charge::DATA_ENTRY);
        let mut keys = Keys::new(n);
        for i in 0..n {
            let k = self.text("data")?;
            self.add_payload(k.len())?;
            self.value("data", 1)?;
            self.account.push(i as usize, capacity, charge::DATA_ENTRY)?;
            keys.push(k);
        }
        self.account.charge((n as usize).saturating_mul(charge::KEY_REF))?;
        keys.check("data")
    }

    fn value(&mut self, field: &'static str, depth: usize) -> Result<(), MessageError> {
        if depth > MAX_DATA_DEPTH {
            return Err(MessageError::TooDeep { limit: MAX_DATA_DEPTH });
        }
        let b = self.peek(field)?;
        match b {
            NULL | UNDEFINED => {
                self.canonical &= b == NULL;
                self.pos += 1;
            }
            0xf4 | 0xf5 => self.pos += 1,
            0x00..=0x3f => _ = self.int_at(b, field)?,
            // The encoder writes every float as float64.
            0xf9 => {
                self.canonical = false;
                self.skip(3, field)?;
            }
            0xfa => {
                self.canonical = false;
                self.skip(5, field)?;
            }
            0xfb => self.skip(9, field)?,
            0x40..=0x5f => {
                let s = self.string(b, BYTES, field)?;
                self.account.charge(s.len())?;
                self.add_payload(s.len())?;
            }
            0x60..=0x7f => {
                let s = self.text_at(b, field)?;
                self.add_payload(s.len())?;
            }
            0x80..=0x9f => {
                let n = self.head(b, ARRAY, field)?;
                let capacity = self.reserve(n, charge::VALUE);
                for i in 0..n {
                    self.value(field, depth + 1)?;
                    self.account.push(i as usize, capacity, charge::VALUE)?;
                }
            }
            0xa0..=0xbf => {
                let n = self.head(b, MAP, field)?;
                let capacity = self.reserve(n, charge::MAP_ENTRY);
                for i in 0..n {
                    self.value(field, depth + 1)?;
                    self.value(field, depth + 1)?;
                    self.account.push(i as usize, capacity, charge::MAP_ENTRY)?;
                }
            }
            _ => return Err(self.malformed(field)),
        }
        Ok(())
    }

    /// Walks `path`; returns its hop count.
    fn path(&mut self) -> Result<usize, MessageError> {
        let Some(b) = self.null("path", true)? else {
            return Ok(0);
        };
        let n = self.head(b, ARRAY, "path")?;
        let hops = usize::try_from(n).unwrap_or(usize::MAX);
        if hops > MAX_HOPS {
            return Err(MessageError::TooManyHops { limit: MAX_HOPS, got: hops });
        }
        let capacity = self.reserve(n, charge::HOP);
        for i in 0..n {
            self.hop()?;
            self.account.push(i as usize, capacity, charge::HOP)?;
        }
        Ok(hops)
    }

    fn hop(&mut self) -> Result<(), MessageError> {
        let mut seen = [false; HOP_KEYS.len()];
        let b = self.peek("path")?;
        let n = self.head(b, MAP, "path")?;
        self.canonical &= n == HOP_KEYS.len() as u64;
        for i in 0..n {
            let Some(index) = self.key("path", &HOP_KEYS, i)? else {
                self.canonical = false;
                self.value("path", 1)?;
                continue;
            };
            self.canonical &= index as u64 == i;
            if seen.get_mut(index).is_some_and(|s| core::mem::replace(s, true)) {
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
