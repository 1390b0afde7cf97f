//! fluxMsg as a JSON line, for people and scripts at the rack's edges.
//!
//! Shape: `{"id": UUID, "ref_id": UUID, "trace": str, "src_id": UUID, "meta": {str: str} |
//! null, "data": {...} | null, "flags": n, "raw": base64 | null, "raw_text": str, "path":
//! [{"g": UUID, "p": UUID, "t": n}] | null, "ts": n}`. `raw` is base64 as Go's
//! encoding/json writes byte slices; `raw_text` is written as well when `raw` is UTF-8,
//! and may be given instead of `raw` on input (given both, they must agree). Byte strings inside `data` become base64
//! strings (lossy: they come back as text).
//!
//! A line that is not a JSON object with at least one fluxMsg key is taken whole as the
//! `raw` payload of a new message (fresh UUID v7 id, `ts` now).
//!
//! Neither direction builds a tree: [`from_line`] fills the message from serde_json's
//! deserializer through a visitor, [`push_json`] writes from the message's canonical CBOR
//! with minicbor. The tests keep the earlier tree-based reader and writer and compare both
//! on generated and edge inputs, so the JSON read and written stays what it was.

use std::borrow::Cow;
use std::fmt;

use fluxrig_core::message::{FluxMsg, Hop, Uuid, Value};
use minicbor::data::Type;
use minicbor::Decoder;
use serde::de;
use serde_json::Number;

use crate::clock::{new_raw_message, new_uuid_v7, unix_nanos};
use crate::error::{Error, Result};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends bytes as lowercase hex.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    for (pair, b) in out[start..].chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0x0f)];
    }
}

/// Text this module built from ASCII and from `&str`s, which is always UTF-8.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Formats bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    text(out)
}

/// Appends a UUID as 8-4-4-4-12 lowercase hex.
fn push_uuid(out: &mut Vec<u8>, u: &Uuid) {
    let mut hex = [b'-'; 36];
    let mut at = 0;
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1; // a dash
        }
        // Two stores, not `copy_from_slice`: at opt-level "z" that is a call to memcpy.
        let [hi, lo] = HEX_PAIRS[usize::from(*b)];
        hex[at] = hi;
        hex[at + 1] = lo;
        at += 2;
    }
    out.extend_from_slice(&hex);
}

/// Each byte as two lowercase hex digits (a table: a UUID has 16 bytes, a message up to
/// nine UUIDs in the benchmark's case).
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut table = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX_DIGITS[i >> 4], HEX_DIGITS[i & 0x0f]];
        i += 1;
    }
    table
};

/// Formats a UUID as 8-4-4-4-12 lowercase hex.
pub fn uuid_string(u: &Uuid) -> String {
    let mut out = Vec::with_capacity(36);
    push_uuid(&mut out, u);
    text(out)
}

/// Marks a byte that is not a hex digit in [`HEX_VALUES`].
const NOT_HEX: u8 = 0xff;

/// Each byte's value as a hex digit (either case), or [`NOT_HEX`].
const HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Where the dashes of an 8-4-4-4-12 UUID are.
const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];

/// Reads a UUID written 8-4-4-4-12, as this module writes them; `None` for any other text.
fn dashed_uuid(s: &[u8]) -> Option<Uuid> {
    let s: &[u8; 36] = s.try_into().ok()?;
    if UUID_DASHES.iter().any(|&i| s[i] != b'-') {
        return None;
    }
    let (mut out, mut at, mut bad) = ([0u8; 16], 0, 0);
    for (i, b) in out.iter_mut().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1; // a dash
        }
        let (hi, lo) = (HEX_VALUES[usize::from(s[at])], HEX_VALUES[usize::from(s[at + 1])]);
        bad |= hi | lo; // NOT_HEX has the high bits set
        *b = hi << 4 | lo & 0x0f;
        at += 2;
    }
    (bad < 16).then_some(out)
}

/// Reads a UUID: 32 hex digits, dashes anywhere (the usual 8-4-4-4-12 form read first, in
/// a straight line: the general loop was 3 % of the CPU of a JSON rack).
fn parse_uuid(s: &str, field: &str) -> Result<Uuid> {
    if let Some(u) = dashed_uuid(s.as_bytes()) {
        return Ok(u);
    }
    let mut nibbles = s.bytes().filter(|c| *c != b'-').map(|c| HEX_VALUES[usize::from(c)]);
    let mut out = [0u8; 16];
    let mut ok = true;
    for b in &mut out {
        let (hi, lo) = (nibbles.next().unwrap_or(NOT_HEX), nibbles.next().unwrap_or(NOT_HEX));
        ok &= hi | lo < 16; // NOT_HEX has the high bits set
        *b = hi << 4 | lo & 0x0f;
    }
    (ok && nibbles.next().is_none())
        .then_some(out)
        .ok_or_else(|| Error::invalid(format!("'{field}' is not a UUID: {s:?}")))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    push_base64(&mut out, bytes);
    text(out)
}

/// Appends standard base64 with padding.
fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, b'=');
    let mut quads = out[start..].chunks_exact_mut(4);
    let mut triples = bytes.chunks_exact(3);
    // Whole triples by four stores each (not `extend_from_slice`, a memcpy call at "z");
    // `triples` first, so that the quad of the last bytes is not taken when it runs out.
    for (t, q) in (&mut triples).zip(&mut quads) {
        let n = u32::from(t[0]) << 16 | u32::from(t[1]) << 8 | u32::from(t[2]);
        for (i, c) in q.iter_mut().enumerate() {
            *c = B64[(n >> (18 - 6 * i) & 63) as usize];
        }
    }
    for (quad, chunk) in quads.zip(triples.remainder().chunks(3)) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        // One more character than bytes; the rest stay '='.
        for (i, c) in quad.iter_mut().take(chunk.len() + 1).enumerate() {
            *c = B64[(n >> (18 - 6 * i) & 63) as usize];
        }
    }
}

/// Marks a byte that is not a base64 character in [`B64_VALUES`].
const NOT_BASE64: u8 = 0xff;

/// Each byte's value as a base64 character, or [`NOT_BASE64`] (a table: a search of
/// [`B64`] per character was 13 % of the CPU of a JSON rack).
const B64_VALUES: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < 64 {
        table[B64[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes standard base64 (padding optional).
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=').as_bytes();
    // Four characters at a time into three bytes, stored one by one (a push per byte was
    // 2 % of a JSON rack's CPU; `extend_from_slice` of three bytes is a memcpy call at "z").
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2); // + what the rest adds
    out.resize(text.len() / 4 * 3, 0);
    let mut quads = text.chunks_exact(4);
    for (q, o) in (&mut quads).zip(out.chunks_exact_mut(3)) {
        // Four lookups written out: a closure for them stays a call at opt-level "z".
        let a = u32::from(B64_VALUES[usize::from(q[0])]);
        let b = u32::from(B64_VALUES[usize::from(q[1])]);
        let c = u32::from(B64_VALUES[usize::from(q[2])]);
        let d = u32::from(B64_VALUES[usize::from(q[3])]);
        if (a | b | c | d) > 63 {
            return None; // NOT_BASE64 is above every value
        }
        let n = a << 18 | b << 12 | c << 6 | d;
        o[0] = (n >> 16) as u8;
        o[1] = (n >> 8) as u8;
        o[2] = n as u8;
    }
    // The last one to three characters: what is left of their bits must be zero.
    let (mut acc, mut bits) = (0u32, 0);
    for &c in quads.remainder() {
        let v = B64_VALUES[usize::from(c)];
        if v == NOT_BASE64 {
            return None;
        }
        let v = u32::from(v);
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (bits < 6 && acc & ((1 << bits) - 1) == 0).then_some(out)
}

/// Smallest integer a CBOR integer can hold: -2^64.
const CBOR_INT_MIN: i128 = -(1 << 64);
/// Largest integer a CBOR integer can hold: 2^64 - 1.
const CBOR_INT_MAX: i128 = (1 << 64) - 1;

/// Converts a JSON number exactly: an integer to a CBOR integer, anything else to the
/// nearest f64 (correctly rounded, so that its shortest text reads back to the same f64).
///
/// # Errors
/// A number no CBOR value holds exactly: an integer outside -2^64..=2^64-1, or a number
/// too large for an f64.
fn number(n: &Number) -> Result<Value> {
    let text = n.to_string();
    let integer = !text.contains(['.', 'e', 'E']);
    if integer {
        return match text.parse::<i128>() {
            Ok(i) if (CBOR_INT_MIN..=CBOR_INT_MAX).contains(&i) => Ok(Value::Int(i)),
            _ => Err(Error::invalid(format!(
                "number {:?} is outside the integers CBOR can carry (-2^64 to 2^64-1)",
                cut_text(&text)
            ))),
        };
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Value::Float(f)),
        _ => Err(Error::invalid(format!("number {:?} is too large for a 64-bit float", cut_text(&text)))),
    }
}

/// The first 40 characters of a number's text, for an error message.
fn cut_text(text: &str) -> &str {
    text.char_indices().nth(40).map_or(text, |(end, _)| text.get(..end).unwrap_or(text))
}

/// Appends `text` as a JSON string, quoted and escaped exactly as serde_json does: `"`
/// and `\\` escaped, control characters as `\b \t \n \f \r` or `\u00xx`, everything
/// else (DEL, non-ASCII) as it is. (Written here: serde_json's writer needs a buffer of
/// its own per string, an allocation per field.)
fn push_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain = 0; // start of the run of bytes that need no escape
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_DIGITS[usize::from(b >> 4)]);
            out.push(HEX_DIGITS[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(escape);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// The numbers 0 to 99 as two decimal digits.
const DECIMAL_PAIRS: [[u8; 2]; 100] = {
    let mut table = [[0; 2]; 100];
    let mut i = 0;
    while i < 100 {
        table[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    table
};

/// Appends an integer in decimal, without an allocation or the formatting machinery.
fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    // Two digits a step. `rest / 100` as a multiply by 2^70 / 100 rounded up (that is
    // 2^70 / 100 + 76 / 100), exact while rest * 76 < 2^70, so for every magnitude of an
    // i64 (at most 2^63): at opt-level "z" LLVM emits a `div` for a division by a constant
    // (smaller code), one per digit of a time in nanoseconds; this function was 5 % of the
    // CPU of a JSON rack then.
    while rest >= 100 {
        let hundredth = ((u128::from(rest) * 11_805_916_207_174_113_035) >> 70) as u64;
        let [tens, ones] = DECIMAL_PAIRS[(rest - hundredth * 100) as usize];
        at -= 2;
        digits[at] = tens;
        digits[at + 1] = ones;
        rest = hundredth;
    }
    let [tens, ones] = DECIMAL_PAIRS[rest as usize];
    at -= 1;
    digits[at] = ones;
    if rest >= 10 {
        at -= 1;
        digits[at] = tens;
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// Renders a message as one JSON line (no trailing newline), as [`push_json`] writes it.
pub fn to_json(msg: &FluxMsg) -> String {
    let mut out = Vec::new();
    push_json(&mut out, &msg.encode());
    text(out)
}

/// Appends a fluxMsg given as CBOR (a [`MsgBytes`](fluxrig_core::MsgBytes)'s bytes) as one
/// JSON line, without a trailing newline: the keys in sorted order, `meta` and `data`
/// entries (and maps inside `data`) by key, as a `serde_json::Map` orders them.
///
/// Written field by field from the CBOR, without decoding a [`FluxMsg`] (that decode was
/// 16 % of the CPU of a JSON rack): only a map inside `meta` or `data` allocates, a list of
/// its keys to sort. Bytes that are not a message (never the bytes of a checked
/// `MsgBytes`) are written as the empty message, as `MsgBytes::to_msg` gives it.
pub fn push_json(out: &mut Vec<u8>, cbor: &[u8]) {
    let start = out.len();
    if write_message(out, cbor).is_err() {
        out.truncate(start);
        // The empty message's encoding is a message: this cannot fail again.
        let _ = write_message(out, &FluxMsg::default().encode());
    }
}

/// CBOR that is not a fluxMsg as the encoder writes it.
struct NotAMessage;

impl From<minicbor::decode::Error> for NotAMessage {
    fn from(_: minicbor::decode::Error) -> Self {
        NotAMessage
    }
}

type Cbor<T> = std::result::Result<T, NotAMessage>;

/// Where each field of a message is: the small ones read, the others' offsets.
#[derive(Default)]
struct Located<'b> {
    id: Uuid,
    ref_id: Uuid,
    trace: &'b str,
    src_id: Uuid,
    meta: Option<usize>,
    data: Option<usize>,
    flags: u32,
    raw: Option<&'b [u8]>,
    path: Option<usize>,
    ts: i64,
}

fn read_uuid(d: &mut Decoder) -> Cbor<Uuid> {
    d.bytes()?.try_into().map_err(|_| NotAMessage)
}

/// A map key of up to 7 bytes as one number (its bytes and its length), so that the
/// writer matches keys by comparing numbers: matching `str`s calls memcmp per arm at
/// opt-level "z", and minicbor's `str` checks UTF-8 first (together 5 % of a JSON rack's
/// CPU). Longer keys are all `u64::MAX`, which no key below is.
const fn key_tag(key: &[u8]) -> u64 {
    if key.len() > 7 {
        return u64::MAX;
    }
    let mut tag = (key.len() as u64) << 56;
    let mut i = 0;
    while i < key.len() {
        tag |= (key[i] as u64) << (8 * i);
        i += 1;
    }
    tag
}

const ID: u64 = key_tag(b"id");
const REF_ID: u64 = key_tag(b"ref_id");
const TRACE: u64 = key_tag(b"trace");
const SRC_ID: u64 = key_tag(b"src_id");
const META: u64 = key_tag(b"meta");
const DATA: u64 = key_tag(b"data");
const FLAGS: u64 = key_tag(b"flags");
const RAW: u64 = key_tag(b"raw");
const PATH: u64 = key_tag(b"path");
const TS: u64 = key_tag(b"ts");
const G: u64 = key_tag(b"g");
const P: u64 = key_tag(b"p");
const T: u64 = key_tag(b"t");

/// Reads a map key, a text string, as its [`key_tag`]. A message's keys are short text
/// strings (head 0x60 to 0x77), read here from the input without minicbor.
fn key(d: &mut Decoder) -> Cbor<u64> {
    let at = d.position();
    let input = d.input();
    match input.get(at) {
        Some(&head @ 0x60..=0x77) => {
            let end = at + 1 + usize::from(head - 0x60);
            let key = input.get(at + 1..end).ok_or(NotAMessage)?;
            d.set_position(end);
            Ok(key_tag(key))
        }
        _ => Ok(key_tag(d.str()?.as_bytes())),
    }
}

fn read_hop(d: &mut Decoder) -> Cbor<Hop> {
    let mut hop = Hop::default();
    for _ in 0..d.map()?.ok_or(NotAMessage)? {
        match key(d)? {
            G => hop.gear = read_uuid(d)?,
            P => hop.port = read_uuid(d)?,
            T => hop.ts = d.i64()?,
            _ => d.skip()?,
        }
    }
    Ok(hop)
}

/// The offset of a map or array, or `None` for `null`; skips it.
fn locate(d: &mut Decoder) -> Cbor<Option<usize>> {
    if d.datatype()? == Type::Null {
        d.null()?;
        return Ok(None);
    }
    let at = d.position();
    d.skip()?;
    Ok(Some(at))
}

fn write_message(out: &mut Vec<u8>, cbor: &[u8]) -> Cbor<()> {
    let mut d = Decoder::new(cbor);
    let mut m = Located::default();
    for _ in 0..d.map()?.ok_or(NotAMessage)? {
        match key(&mut d)? {
            ID => m.id = read_uuid(&mut d)?,
            REF_ID => m.ref_id = read_uuid(&mut d)?,
            TRACE => m.trace = d.str()?,
            SRC_ID => m.src_id = read_uuid(&mut d)?,
            META => m.meta = locate(&mut d)?,
            DATA => m.data = locate(&mut d)?,
            FLAGS => m.flags = d.u32()?,
            RAW if d.datatype()? == Type::Null => d.null()?,
            RAW => m.raw = Some(d.bytes()?),
            PATH if d.datatype()? == Type::Null => d.null()?,
            PATH => {
                // Read, not skipped: minicbor's generic `skip` was 2 % of the CPU.
                m.path = Some(d.position());
                for _ in 0..d.array()?.ok_or(NotAMessage)? {
                    read_hop(&mut d)?;
                }
            }
            TS => m.ts = d.i64()?,
            _ => d.skip()?,
        }
    }
    out.reserve(320 + m.raw.map_or(0, <[u8]>::len) * 3);
    out.extend_from_slice(b"{\"data\":");
    match m.data {
        None => out.extend_from_slice(b"null"),
        Some(at) => {
            d.set_position(at);
            write_value(out, &mut d)?;
        }
    }
    out.extend_from_slice(b",\"flags\":");
    push_int(out, i64::from(m.flags));
    out.extend_from_slice(b",\"id\":\"");
    push_uuid(out, &m.id);
    out.extend_from_slice(b"\",\"meta\":");
    match m.meta {
        None => out.extend_from_slice(b"null"),
        Some(at) => {
            d.set_position(at);
            let n = d.map()?.ok_or(NotAMessage)?;
            let mut entries =
                Vec::with_capacity(usize::try_from(n).map_err(|_| NotAMessage)?.min(cbor.len()));
            for _ in 0..n {
                entries.push((d.str()?, d.str()?));
            }
            // A checked message has no duplicate meta keys; keep the output well-formed
            // anyway (with the first, as this writer always did).
            out.push(b'{');
            for (n, i) in map_order(entries.iter().map(|(k, _)| *k), false).into_iter().enumerate() {
                let (key, value) = entries.get(i).ok_or(NotAMessage)?;
                if n > 0 {
                    out.push(b',');
                }
                push_str(out, key);
                out.push(b':');
                push_str(out, value);
            }
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"path\":");
    match m.path {
        None => out.extend_from_slice(b"null"),
        Some(at) => {
            d.set_position(at);
            out.push(b'[');
            for i in 0..d.array()?.ok_or(NotAMessage)? {
                if i > 0 {
                    out.push(b',');
                }
                let hop = read_hop(&mut d)?;
                out.extend_from_slice(b"{\"g\":\"");
                push_uuid(out, &hop.gear);
                out.extend_from_slice(b"\",\"p\":\"");
                push_uuid(out, &hop.port);
                out.extend_from_slice(b"\",\"t\":");
                push_int(out, hop.ts);
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"raw\":");
    match m.raw {
        None => out.extend_from_slice(b"null"),
        Some(raw) => {
            out.push(b'"');
            push_base64(out, raw);
            out.push(b'"');
            if let Ok(text) = std::str::from_utf8(raw) {
                out.extend_from_slice(b",\"raw_text\":");
                push_str(out, text);
            }
        }
    }
    out.extend_from_slice(b",\"ref_id\":\"");
    push_uuid(out, &m.ref_id);
    out.extend_from_slice(b"\",\"src_id\":\"");
    push_uuid(out, &m.src_id);
    out.extend_from_slice(b"\",\"trace\":");
    push_str(out, m.trace);
    out.extend_from_slice(b",\"ts\":");
    push_int(out, m.ts);
    out.push(b'}');
    Ok(())
}

/// Appends one value of `data` as JSON, as `serde_json::Value` wrote the value this module
/// made of it: an integer in decimal, a float as serde_json writes an `f64` (`null` if not
/// finite), bytes as a base64 string, a map's keys sorted with the last of equal keys kept
/// and a key that is not text written as its JSON text.
fn write_value(out: &mut Vec<u8>, d: &mut Decoder) -> Cbor<()> {
    match d.datatype()? {
        Type::Null | Type::Undefined => {
            d.skip()?;
            out.extend_from_slice(b"null");
        }
        Type::Bool => out.extend_from_slice(if d.bool()? { b"true" } else { b"false" }),
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => {
            push_i128(out, i128::from(d.int()?));
        }
        Type::F32 => push_f64(out, f64::from(d.f32()?)),
        Type::F64 => push_f64(out, d.f64()?),
        Type::String => push_str(out, d.str()?),
        Type::Bytes => {
            out.push(b'"');
            push_base64(out, d.bytes()?);
            out.push(b'"');
        }
        Type::Array => {
            out.push(b'[');
            for i in 0..d.array()?.ok_or(NotAMessage)? {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, d)?;
            }
            out.push(b']');
        }
        Type::Map => {
            let n = d.map()?.ok_or(NotAMessage)?;
            // Each key (borrowed if text) and its value's offset.
            let mut entries: Vec<(Cow<str>, usize)> =
                Vec::with_capacity(usize::try_from(n).map_err(|_| NotAMessage)?.min(d.input().len()));
            for _ in 0..n {
                let key = if d.datatype()? == Type::String {
                    Cow::Borrowed(d.str()?)
                } else {
                    let mut key = Vec::new();
                    write_value(&mut key, d)?;
                    Cow::Owned(text(key))
                };
                entries.push((key, d.position()));
                d.skip()?;
            }
            let end = d.position();
            out.push(b'{');
            for (n, i) in map_order(entries.iter().map(|(k, _)| k.as_ref()), true).into_iter().enumerate() {
                let (key, at) = entries.get(i).ok_or(NotAMessage)?;
                if n > 0 {
                    out.push(b',');
                }
                push_str(out, key);
                out.push(b':');
                d.set_position(*at);
                write_value(out, d)?;
            }
            out.push(b'}');
            d.set_position(end);
        }
        // Half floats, tags, indefinite lengths: never in a message's canonical bytes.
        _ => return Err(NotAMessage),
    }
    Ok(())
}

/// Appends a float as serde_json writes an `f64`: its shortest text, `null` if not finite.
fn push_f64(out: &mut Vec<u8>, f: f64) {
    if serde_json::to_writer(&mut *out, &f).is_err() {
        out.extend_from_slice(b"null"); // not reached: writing to a Vec cannot fail
    }
}

/// Appends an integer in decimal: by [`push_int`] when it fits an i64, through the
/// formatting machinery only beyond that (CBOR integers reach -2^64 and 2^64 - 1).
fn push_i128(out: &mut Vec<u8>, n: i128) {
    match i64::try_from(n) {
        Ok(n) => push_int(out, n),
        Err(_) => out.extend_from_slice(n.to_string().as_bytes()),
    }
}

/// Reads one input line: a fluxMsg as JSON, or any other line as its `raw` payload.
///
/// Parsed in one pass by serde_json's deserializer into the message's fields, without a
/// `serde_json::Value` tree (the tree was 20 % of the CPU of a JSON rack). It reads what the
/// tree read, with the same results: the same syntax and nesting limit (serde_json's 128
/// levels), the last of duplicate keys, `meta` and `data` entries in key order, and, of
/// several bad fields, the one the field order below finds first. A field's error is kept
/// while the rest of the line is read, since a line that is not JSON is raw text whatever
/// it holds.
pub fn from_line(line: &str) -> Result<FluxMsg> {
    let mut de = serde_json::Deserializer::from_str(line);
    let parsed = de::DeserializeSeed::deserialize(Seed(Kind::Message), &mut de);
    match (parsed, de.end()) {
        (Ok(Parsed::Message(mut fields)), Ok(())) if fields.known => fields.take_message(),
        _ => Ok(new_raw_message(line.as_bytes().to_vec())),
    }
}

/// What a JSON value is read as, by where it is in the message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The top-level object.
    Message,
    /// A string field (`id`, `trace`, `raw`, a `meta` value, a hop's `g`...).
    Text,
    /// An integer field (`ts`, `flags`, a hop's `t`).
    Int,
    /// The `meta` object.
    Meta,
    /// The `data` object.
    Data,
    /// A value inside `data`, or one that is only checked as JSON and dropped.
    Value,
    /// The `path` array.
    Path,
    /// One element of `path`.
    Hop,
}

/// A JSON value as read for its [`Kind`]; a value of another shape than the kind wants is
/// [`Parsed::Other`] (still read whole, so that the line is checked as JSON).
enum Parsed<'de> {
    Null,
    Text(Cow<'de, str>),
    /// A number, as `i64` if it is one (`serde_json::Number::as_i64`).
    Int(Option<i64>),
    Value(Checked<Value>),
    /// `meta` entries as given; a value that is not a string is `None`.
    Meta(Vec<(String, Option<String>)>),
    /// `data` entries as given.
    Data(Vec<(String, Checked<Value>)>),
    Path(Vec<Checked<Hop>>),
    Hop(Checked<Hop>),
    Message(Box<Fields<'de>>),
    Other,
}

/// A value read, or why it is not one; the error boxed to keep [`Parsed`] small (112 bytes
/// with it inline, moved for every field read).
type Checked<T> = std::result::Result<T, Box<Error>>;

/// The top-level fields as read (the last of duplicate keys), checked in
/// [`Fields::take_message`].
#[derive(Default)]
struct Fields<'de> {
    /// At least one fluxMsg key was given.
    known: bool,
    id: Option<Parsed<'de>>,
    ref_id: Option<Parsed<'de>>,
    trace: Option<Parsed<'de>>,
    src_id: Option<Parsed<'de>>,
    meta: Option<Parsed<'de>>,
    data: Option<Parsed<'de>>,
    flags: Option<Parsed<'de>>,
    raw: Option<Parsed<'de>>,
    raw_text: Option<Parsed<'de>>,
    path: Option<Parsed<'de>>,
    ts: Option<Parsed<'de>>,
}

/// serde_json's private key for a number it hands over as text (`arbitrary_precision`: a
/// float, an integer outside i64 and u64, `-0`): such a number arrives as a one-entry map
/// with this key. `serde_json::Value` reads any object whose first key is this one as a
/// number, and so does this reader; the tests compare the two readers on such objects.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Orders entries by key and keeps the last of each key, as a `serde_json::Map` does.
fn last_of_each_key<T>(entries: Vec<(String, T)>) -> Vec<(String, T)> {
    let keep = map_order(entries.iter().map(|(k, _)| k.as_str()), true);
    let mut slots: Vec<Option<(String, T)>> = entries.into_iter().map(Some).collect();
    keep.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect()
}

/// The entries of a map that a `serde_json::Map` holds, in its order, as positions in
/// `keys`: by key (bytewise), one per key, the last of equal keys (as a map keeps them when
/// it reads them) or the first.
///
/// One `sort_unstable` of `(key, position)` pairs, so that equal keys stay in the order
/// given, for every map this module reads or writes: four stable sorts, one per element
/// type, made the release binary 13.4 KB larger than this one sort.
fn map_order<'a>(keys: impl Iterator<Item = &'a str>, last: bool) -> Vec<usize> {
    let mut order: Vec<(&str, usize)> = keys.zip(0..).collect();
    order.sort_unstable();
    let mut keep = Vec::with_capacity(order.len());
    for (j, (key, i)) in order.iter().enumerate() {
        let same = |other: Option<&(&str, usize)>| other.is_some_and(|(k, _)| k == key);
        let repeated =
            if last { same(order.get(j + 1)) } else { j.checked_sub(1).is_some_and(|p| same(order.get(p))) };
        if !repeated {
            keep.push(*i);
        }
    }
    keep
}

impl<'de> Fields<'de> {
    /// Where a top-level key's value goes and what it is read as; `None` for other keys.
    fn slot(&mut self, key: &str) -> Option<(&mut Option<Parsed<'de>>, Kind)> {
        Some(match key {
            "id" => (&mut self.id, Kind::Text),
            "ref_id" => (&mut self.ref_id, Kind::Text),
            "trace" => (&mut self.trace, Kind::Text),
            "src_id" => (&mut self.src_id, Kind::Text),
            "meta" => (&mut self.meta, Kind::Meta),
            "data" => (&mut self.data, Kind::Data),
            "flags" => (&mut self.flags, Kind::Int),
            "raw" => (&mut self.raw, Kind::Text),
            "raw_text" => (&mut self.raw_text, Kind::Text),
            "path" => (&mut self.path, Kind::Path),
            "ts" => (&mut self.ts, Kind::Int),
            _ => return None,
        })
    }

    /// Checks the fields in a fixed order and builds the message. Takes what it keeps
    /// (by `&mut`: moving the boxed fields out first copied 600 bytes per line).
    fn take_message(&mut self) -> Result<FluxMsg> {
        fn text<'a>(p: &'a Option<Parsed>, field: &str) -> Result<Option<&'a str>> {
            match p {
                None | Some(Parsed::Null) => Ok(None),
                Some(Parsed::Text(s)) => Ok(Some(s)),
                Some(_) => Err(Error::invalid(format!("'{field}' must be a string"))),
            }
        }
        fn uuid(p: &Option<Parsed>, field: &str) -> Result<Option<Uuid>> {
            text(p, field)?.map(|s| parse_uuid(s, field)).transpose()
        }
        fn int(p: &Option<Parsed>, field: &str) -> Result<Option<i64>> {
            match p {
                None => Ok(None),
                Some(Parsed::Int(Some(i))) => Ok(Some(*i)),
                Some(_) => Err(Error::invalid(format!("'{field}' must be an integer"))),
            }
        }
        let mut msg = FluxMsg {
            id: uuid(&self.id, "id")?.unwrap_or_else(new_uuid_v7),
            ref_id: uuid(&self.ref_id, "ref_id")?.unwrap_or_default(),
            trace: text(&self.trace, "trace")?.unwrap_or_default().to_string(),
            src_id: uuid(&self.src_id, "src_id")?.unwrap_or_default(),
            ts: int(&self.ts, "ts")?.unwrap_or_else(unix_nanos),
            path: Some(Vec::new()),
            ..FluxMsg::default()
        };
        if let Some(flags) = int(&self.flags, "flags")? {
            msg.flags = u32::try_from(flags).map_err(|_| Error::invalid("'flags' must fit in 32 bits"))?;
        }
        match self.meta.take() {
            None | Some(Parsed::Null) => {}
            Some(Parsed::Meta(entries)) => {
                let mut meta = Vec::with_capacity(entries.len());
                for (k, v) in last_of_each_key(entries) {
                    let v = v.ok_or_else(|| Error::invalid(format!("meta '{k}' must be a string")))?;
                    meta.push((k, v));
                }
                msg.meta = Some(meta);
            }
            Some(_) => return Err(Error::invalid("'meta' must be an object of strings")),
        }
        match self.data.take() {
            None | Some(Parsed::Null) => {}
            Some(Parsed::Data(entries)) => {
                let data = last_of_each_key(entries)
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.map_err(|e| *e)?)))
                    .collect::<Result<_>>();
                msg.data = Some(data.map_err(|e| e.context("'data'"))?)
            }
            Some(_) => return Err(Error::invalid("'data' must be an object")),
        }
        let raw = text(&self.raw, "raw")?
            .map(|b64| {
                unbase64(b64).ok_or_else(|| Error::invalid("'raw' is not base64 (use 'raw_text' for text)"))
            })
            .transpose()?;
        msg.raw = match (raw, text(&self.raw_text, "raw_text")?) {
            // Both, as this module writes them: they must say the same.
            (Some(raw), Some(t)) if raw != t.as_bytes() => {
                return Err(Error::invalid("'raw' and 'raw_text' disagree; give one of them"))
            }
            (Some(raw), _) => Some(raw),
            (None, Some(t)) => Some(t.as_bytes().to_vec()),
            (None, None) => None,
        };
        match self.path.take() {
            None => {}
            Some(Parsed::Null) => msg.path = None,
            Some(Parsed::Path(hops)) => {
                msg.path = Some(hops.into_iter().collect::<Checked<_>>().map_err(|e| *e)?)
            }
            Some(_) => return Err(Error::invalid("'path' must be an array of hops")),
        }
        Ok(msg)
    }
}

/// Reads one JSON value as its [`Kind`] says.
#[derive(Clone, Copy)]
struct Seed(Kind);

impl<'de> de::DeserializeSeed<'de> for Seed {
    type Value = Parsed<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Parsed<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

/// Reads a map key or a number's text, borrowed from the line when it has no escapes.
struct Key;

impl<'de> de::DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> de::Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> std::result::Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_string()))
    }
}

impl Seed {
    /// A number: an `i64` for [`Kind::Int`], a CBOR value for [`Kind::Value`].
    fn number(self, n: &Number) -> Parsed<'static> {
        match self.0 {
            Kind::Int => Parsed::Int(n.as_i64()),
            Kind::Value => Parsed::Value(number(n).map_err(Box::new)),
            Kind::Hop => Parsed::Hop(Ok(Hop::default())),
            _ => Parsed::Other,
        }
    }

    fn integer<T: Into<i128> + TryInto<i64> + Copy>(self, n: T) -> Parsed<'static> {
        match self.0 {
            Kind::Int => Parsed::Int(n.try_into().ok()),
            Kind::Value => Parsed::Value(Ok(Value::Int(n.into()))),
            Kind::Hop => Parsed::Hop(Ok(Hop::default())),
            _ => Parsed::Other,
        }
    }

    /// Any value that is not of this kind's shape.
    fn other(self) -> Parsed<'static> {
        match self.0 {
            Kind::Hop => Parsed::Hop(Ok(Hop::default())),
            _ => Parsed::Other,
        }
    }
}

impl<'de> de::Visitor<'de> for Seed {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Parsed<'de>, E> {
        Ok(match self.0 {
            Kind::Value => Parsed::Value(Ok(Value::Null)),
            Kind::Hop => Parsed::Hop(Ok(Hop::default())),
            _ => Parsed::Null,
        })
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Parsed<'de>, E> {
        Ok(match self.0 {
            Kind::Value => Parsed::Value(Ok(Value::Bool(b))),
            _ => self.other(),
        })
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Parsed<'de>, E> {
        Ok(self.integer(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Parsed<'de>, E> {
        Ok(self.integer(n))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> std::result::Result<Parsed<'de>, E> {
        Ok(match self.0 {
            Kind::Text => Parsed::Text(Cow::Borrowed(s)),
            Kind::Value => Parsed::Value(Ok(Value::Text(s.to_string()))),
            _ => self.other(),
        })
    }

    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Parsed<'de>, E> {
        Ok(match self.0 {
            Kind::Text => Parsed::Text(Cow::Owned(s.to_string())),
            Kind::Value => Parsed::Value(Ok(Value::Text(s.to_string()))),
            _ => self.other(),
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Parsed<'de>, A::Error> {
        match self.0 {
            Kind::Value => {
                let mut items = Vec::new();
                let mut error = None;
                while let Some(item) = seq.next_element_seed(self)? {
                    match (item, &error) {
                        (Parsed::Value(Ok(v)), None) => items.push(v),
                        (Parsed::Value(Err(e)), None) => error = Some(e),
                        _ => {}
                    }
                }
                Ok(Parsed::Value(error.map_or(Ok(Value::Array(items)), Err)))
            }
            Kind::Path => {
                let mut hops = Vec::new();
                while let Some(hop) = seq.next_element_seed(Seed(Kind::Hop))? {
                    if let Parsed::Hop(hop) = hop {
                        hops.push(hop);
                    }
                }
                Ok(Parsed::Path(hops))
            }
            _ => {
                while seq.next_element_seed(Seed(Kind::Value))?.is_some() {}
                Ok(self.other())
            }
        }
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Parsed<'de>, A::Error> {
        let mut key = map.next_key_seed(Key)?;
        if key.as_deref() == Some(NUMBER_TOKEN) {
            // As `serde_json::Value` reads it: the value is a number's text.
            let text = map.next_value_seed(Key)?;
            let n = text.parse::<Number>().map_err(de::Error::custom)?;
            return Ok(self.number(&n));
        }
        match self.0 {
            Kind::Message => {
                let mut fields = Box::<Fields>::default();
                while let Some(k) = key {
                    match fields.slot(&k) {
                        Some((slot, kind)) => {
                            *slot = Some(map.next_value_seed(Seed(kind))?);
                            fields.known = true; // `slot` knows exactly the fluxMsg keys
                        }
                        None => drop(map.next_value_seed(Seed(Kind::Value))?),
                    }
                    key = map.next_key_seed(Key)?;
                }
                Ok(Parsed::Message(fields))
            }
            Kind::Meta => {
                let mut entries = Vec::new();
                while let Some(k) = key {
                    let v = match map.next_value_seed(Seed(Kind::Text))? {
                        Parsed::Text(s) => Some(s.into_owned()),
                        _ => None,
                    };
                    entries.push((k.into_owned(), v));
                    key = map.next_key_seed(Key)?;
                }
                Ok(Parsed::Meta(entries))
            }
            Kind::Data | Kind::Value => {
                let mut entries = Vec::new();
                while let Some(k) = key {
                    let v = match map.next_value_seed(Seed(Kind::Value))? {
                        Parsed::Value(v) => v,
                        _ => Ok(Value::Null), // not reached: a `Value` seed gives values
                    };
                    entries.push((k.into_owned(), v));
                    key = map.next_key_seed(Key)?;
                }
                if self.0 == Kind::Data {
                    return Ok(Parsed::Data(entries));
                }
                let entries = last_of_each_key(entries)
                    .into_iter()
                    .map(|(k, v)| Ok((Value::Text(k), v?)))
                    .collect::<Checked<_>>();
                Ok(Parsed::Value(entries.map(Value::Map)))
            }
            Kind::Hop => {
                let (mut g, mut p, mut t) = (None, None, None);
                while let Some(k) = key {
                    let (slot, kind) = match k.as_ref() {
                        "g" => (&mut g, Kind::Text),
                        "p" => (&mut p, Kind::Text),
                        "t" => (&mut t, Kind::Int),
                        _ => {
                            drop(map.next_value_seed(Seed(Kind::Value))?);
                            key = map.next_key_seed(Key)?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value_seed(Seed(kind))?);
                    key = map.next_key_seed(Key)?;
                }
                Ok(Parsed::Hop(hop(g, p, t).map_err(Box::new)))
            }
            Kind::Text | Kind::Int | Kind::Path => {
                while let Some(_k) = key {
                    drop(map.next_value_seed(Seed(Kind::Value))?);
                    key = map.next_key_seed(Key)?;
                }
                Ok(Parsed::Other)
            }
        }
    }
}

/// A hop from its fields as read: an id that is not a string is left nil, as before.
fn hop(g: Option<Parsed>, p: Option<Parsed>, t: Option<Parsed>) -> Result<Hop> {
    let id = |v: Option<Parsed>, field: &str| match v {
        Some(Parsed::Text(s)) => parse_uuid(&s, field),
        _ => Ok(Uuid::default()),
    };
    Ok(Hop {
        gear: id(g, "g")?,
        port: id(p, "p")?,
        ts: match t {
            None => 0,
            Some(Parsed::Int(Some(t))) => t,
            Some(_) => return Err(Error::invalid("'path.t' must be an integer")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxrig_core::MsgBytes;
    use serde_json::{Map, Value as Json};

    fn json_to_value(j: &Json) -> Result<Value> {
        Ok(match j {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => number(n)?,
            Json::String(s) => Value::Text(s.clone()),
            Json::Array(items) => Value::Array(items.iter().map(json_to_value).collect::<Result<_>>()?),
            Json::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| Ok((Value::Text(k.clone()), json_to_value(v)?)))
                    .collect::<Result<_>>()?,
            ),
        })
    }

    fn value_to_json(v: &Value) -> Json {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            // Exact, whatever the range: `arbitrary_precision` keeps a number as its text.
            Value::Int(i) => i.to_string().parse::<Number>().map_or(Json::Null, Json::Number),
            Value::Float(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Text(s) => Json::String(s.clone()),
            Value::Bytes(b) => Json::String(base64(b)),
            Value::Array(items) => Json::Array(items.iter().map(value_to_json).collect()),
            Value::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Value::Text(s) => s.clone(),
                            other => value_to_json(other).to_string(),
                        };
                        (key, value_to_json(v))
                    })
                    .collect(),
            ),
        }
    }

    /// The writer before it wrote from the CBOR bytes: from a decoded `FluxMsg`.
    /// Renders a message as one JSON line (no trailing newline): the keys in sorted order,
    /// as a `serde_json::Map` writes them, built in one string without a `Value` tree (only
    /// `data`, when present, goes through one).
    fn reference_to_json(msg: &FluxMsg) -> String {
        let mut out = Vec::new();
        reference_push_json(&mut out, msg);
        text(out)
    }

    /// Appends a message as one JSON line (no trailing newline), as [`to_json`] renders it;
    /// the run loop reuses one buffer for every output line.
    fn reference_push_json(out: &mut Vec<u8>, msg: &FluxMsg) {
        let raw_len = msg.raw.as_ref().map_or(0, Vec::len);
        out.reserve(320 + raw_len * 3 + msg.path.as_ref().map_or(0, |p| p.len() * 100));
        out.extend_from_slice(b"{\"data\":");
        match &msg.data {
            None => out.extend_from_slice(b"null"),
            Some(data) => {
                let object: Map<String, Json> =
                    data.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect();
                out.extend_from_slice(Json::Object(object).to_string().as_bytes());
            }
        }
        out.extend_from_slice(b",\"flags\":");
        push_int(out, i64::from(msg.flags));
        out.extend_from_slice(b",\"id\":\"");
        push_uuid(out, &msg.id);
        out.extend_from_slice(b"\",\"meta\":");
        match &msg.meta {
            None => out.extend_from_slice(b"null"),
            Some(meta) => {
                let mut sorted: Vec<&(String, String)> = meta.iter().collect();
                // A checked message has no duplicate meta keys; keep the output well-formed anyway.
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                sorted.dedup_by(|a, b| a.0 == b.0);
                out.push(b'{');
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_str(out, key);
                    out.push(b':');
                    push_str(out, value);
                }
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"path\":");
        match &msg.path {
            None => out.extend_from_slice(b"null"),
            Some(path) => {
                out.push(b'[');
                for (i, hop) in path.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"g\":\"");
                    push_uuid(out, &hop.gear);
                    out.extend_from_slice(b"\",\"p\":\"");
                    push_uuid(out, &hop.port);
                    out.extend_from_slice(b"\",\"t\":");
                    push_int(out, hop.ts);
                    out.push(b'}');
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(b",\"raw\":");
        match &msg.raw {
            None => out.extend_from_slice(b"null"),
            Some(raw) => {
                out.push(b'"');
                push_base64(out, raw);
                out.push(b'"');
                if let Ok(text) = std::str::from_utf8(raw) {
                    out.extend_from_slice(b",\"raw_text\":");
                    push_str(out, text);
                }
            }
        }
        out.extend_from_slice(b",\"ref_id\":\"");
        push_uuid(out, &msg.ref_id);
        out.extend_from_slice(b"\",\"src_id\":\"");
        push_uuid(out, &msg.src_id);
        out.extend_from_slice(b"\",\"trace\":");
        push_str(out, &msg.trace);
        out.extend_from_slice(b",\"ts\":");
        push_int(out, msg.ts);
        out.push(b'}');
    }

    /// The reader of `from_line` before it read without a `Value` tree.
    fn reference_from_line(line: &str) -> Result<FluxMsg> {
        let object = match serde_json::from_str::<Json>(line) {
            Ok(Json::Object(o)) if o.keys().any(|k| KEYS.contains(&k.as_str())) => o,
            _ => return Ok(FluxMsg::with_raw(new_uuid_v7(), unix_nanos(), line.as_bytes().to_vec())),
        };
        reference_from_object(&object)
    }

    fn reference_from_object(o: &Map<String, Json>) -> Result<FluxMsg> {
        let text = |field: &str| -> Result<Option<&str>> {
            match o.get(field) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s)),
                Some(_) => Err(Error::invalid(format!("'{field}' must be a string"))),
            }
        };
        let uuid =
            |field: &str| -> Result<Option<Uuid>> { text(field)?.map(|s| parse_uuid(s, field)).transpose() };
        let int = |field: &str, j: &Json| -> Result<i64> {
            j.as_i64().ok_or_else(|| Error::invalid(format!("'{field}' must be an integer")))
        };
        let mut msg = FluxMsg {
            id: uuid("id")?.unwrap_or_else(new_uuid_v7),
            ref_id: uuid("ref_id")?.unwrap_or_default(),
            trace: text("trace")?.unwrap_or_default().to_string(),
            src_id: uuid("src_id")?.unwrap_or_default(),
            ts: o.get("ts").map(|t| int("ts", t)).transpose()?.unwrap_or_else(unix_nanos),
            path: Some(Vec::new()),
            ..FluxMsg::default()
        };
        if let Some(flags) = o.get("flags") {
            msg.flags = u32::try_from(int("flags", flags)?)
                .map_err(|_| Error::invalid("'flags' must fit in 32 bits"))?;
        }
        match o.get("meta") {
            None | Some(Json::Null) => {}
            Some(Json::Object(m)) => {
                let mut meta = Vec::new();
                for (k, v) in m {
                    let v =
                        v.as_str().ok_or_else(|| Error::invalid(format!("meta '{k}' must be a string")))?;
                    meta.push((k.clone(), v.to_string()));
                }
                msg.meta = Some(meta);
            }
            Some(_) => return Err(Error::invalid("'meta' must be an object of strings")),
        }
        match o.get("data") {
            None | Some(Json::Null) => {}
            Some(Json::Object(d)) => {
                let data = d.iter().map(|(k, v)| Ok((k.clone(), json_to_value(v)?))).collect::<Result<_>>();
                msg.data = Some(data.map_err(|e| e.context("'data'"))?)
            }
            Some(_) => return Err(Error::invalid("'data' must be an object")),
        }
        let raw = text("raw")?
            .map(|b64| {
                unbase64(b64).ok_or_else(|| Error::invalid("'raw' is not base64 (use 'raw_text' for text)"))
            })
            .transpose()?;
        msg.raw = match (raw, text("raw_text")?) {
            // Both, as this module writes them: they must say the same.
            (Some(raw), Some(t)) if raw != t.as_bytes() => {
                return Err(Error::invalid("'raw' and 'raw_text' disagree; give one of them"))
            }
            (Some(raw), _) => Some(raw),
            (None, Some(t)) => Some(t.as_bytes().to_vec()),
            (None, None) => None,
        };
        match o.get("path") {
            None => {}
            Some(Json::Null) => msg.path = None,
            Some(Json::Array(hops)) => {
                let mut path = Vec::new();
                for h in hops {
                    let field =
                        |k: &str| h.get(k).and_then(Json::as_str).map(|s| parse_uuid(s, k)).transpose();
                    path.push(Hop {
                        gear: field("g")?.unwrap_or_default(),
                        port: field("p")?.unwrap_or_default(),
                        ts: h.get("t").map(|t| int("path.t", t)).transpose()?.unwrap_or_default(),
                    });
                }
                msg.path = Some(path);
            }
            Some(_) => return Err(Error::invalid("'path' must be an array of hops")),
        }
        Ok(msg)
    }

    /// The writer of `to_json` before it was written by hand: a `serde_json::Map`.
    fn reference(msg: &FluxMsg) -> String {
        let mut o = Map::new();
        o.insert("id".into(), uuid_string(&msg.id).into());
        o.insert("ref_id".into(), uuid_string(&msg.ref_id).into());
        o.insert("trace".into(), msg.trace.clone().into());
        o.insert("src_id".into(), uuid_string(&msg.src_id).into());
        let meta = msg.meta.as_ref().map_or(Json::Null, |m| {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect())
        });
        o.insert("meta".into(), meta);
        let data = msg.data.as_ref().map_or(Json::Null, |d| {
            Json::Object(d.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
        });
        o.insert("data".into(), data);
        o.insert("flags".into(), msg.flags.into());
        o.insert("raw".into(), msg.raw.as_ref().map_or(Json::Null, |r| base64(r).into()));
        if let Some(text) = msg.raw.as_ref().and_then(|r| std::str::from_utf8(r).ok()) {
            o.insert("raw_text".into(), text.into());
        }
        let path = msg.path.as_ref().map_or(Json::Null, |p| {
            Json::Array(
                p.iter()
                    .map(|h| serde_json::json!({"g": uuid_string(&h.gear), "p": uuid_string(&h.port), "t": h.ts}))
                    .collect(),
            )
        });
        o.insert("path".into(), path);
        o.insert("ts".into(), msg.ts.into());
        Json::Object(o).to_string()
    }

    #[test]
    fn the_hand_written_writer_matches_serde_json_byte_for_byte() {
        let mut full =
            FluxMsg::with_raw([0xab; 16], -5, b"tab\there \"quoted\" \\ \x01 \x7f caf\xc3\xa9 </>".to_vec());
        full.ref_id = [1; 16];
        full.src_id = [0xfe; 16];
        full.trace = "00-\u{2028}-\n".into();
        full.flags = 7;
        full.meta =
            Some(vec![("z".into(), "last".into()), ("a\"b".into(), "\u{0}".into()), ("m".into(), "".into())]);
        full.data = Some(vec![
            ("temp".into(), Value::Float(21.5)),
            ("n".into(), Value::Int(-3)),
            ("list".into(), Value::Array(vec![Value::Null, Value::Bool(true), Value::Text("x".into())])),
        ]);
        full.path = Some(vec![
            Hop { gear: [3; 16], port: [4; 16], ts: 1_700_000_000_000_000_000 },
            Hop { gear: [5; 16], port: [6; 16], ts: 0 },
        ]);
        let mut binary = FluxMsg::with_raw([0; 16], 0, vec![0xff, 0xfe, 0]);
        binary.path = Some(Vec::new());
        let empty = FluxMsg { raw: None, ..FluxMsg::with_raw([9; 16], i64::MAX, Vec::new()) };
        for msg in [full, binary, empty, FluxMsg::with_raw([2; 16], 1, Vec::new())] {
            assert_eq!(to_json(&msg), reference(&msg));
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every: String = (0..=0x7fu8).map(char::from).collect();
        every.push_str("é \u{2028} \u{10ffff} 😀 \u{7f}\u{80}");
        for text in [every.as_str(), "", "plain", "\"", "\\", "end\n", "\u{1}x"] {
            let mut out = Vec::new();
            push_str(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap().as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn integers_are_written_as_display_writes_them() {
        let mut numbers = vec![0, 1, -1, 9, 10, -10, 1_796_204_853_372_878_442, i64::MAX, i64::MIN];
        for p in 0..19 {
            let ten = 10i64.pow(p);
            numbers.extend([ten - 1, ten, ten + 1, -ten + 1, -ten, -ten - 1]);
        }
        let mut rng = Rng(0x1234_5678);
        numbers.extend((0..10_000).map(|_| (rng.below(usize::MAX) as i64) >> rng.below(64)));
        numbers.extend((0..1_000).flat_map(|k| [i64::MAX - k, i64::MIN + k, 99 + 100 * k]));
        for n in numbers {
            let mut out = Vec::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..10u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(unbase64(&base64(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(unbase64("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(unbase64("a!"), None);
    }

    /// Base64 and UUIDs as they were read and written a character at a time.
    fn reference_unbase64(text: &str) -> Option<Vec<u8>> {
        let text = text.trim_end_matches('=');
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in text.bytes() {
            let v = u32::from(B64.iter().position(|b| *b == c)? as u8);
            acc = acc << 6 | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        (bits < 6 && acc & ((1 << bits) - 1) == 0).then_some(out)
    }

    fn reference_base64(bytes: &[u8]) -> String {
        let mut out = vec![b'='; bytes.len().div_ceil(3) * 4];
        for (quad, chunk) in out.chunks_exact_mut(4).zip(bytes.chunks(3)) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for (i, c) in quad.iter_mut().take(chunk.len() + 1).enumerate() {
                *c = B64[(n >> (18 - 6 * i) & 63) as usize];
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn reference_uuid(s: &str) -> Option<Uuid> {
        let mut out = [0u8; 16];
        let mut digits = 0usize;
        for c in s.bytes().filter(|c| *c != b'-') {
            let v = char::from(c).to_digit(16)? as u8;
            let b = out.get_mut(digits / 2)?;
            *b = *b << 4 | v;
            digits += 1;
        }
        (digits == 32).then_some(out)
    }

    #[test]
    fn base64_and_uuids_read_and_write_as_a_character_at_a_time() {
        let mut rng = Rng(0xb64);
        let alphabet = "AZaz09+/=-!é \u{0}";
        for _ in 0..20_000 {
            let bytes: Vec<u8> = (0..rng.below(70)).map(|_| rng.below(256) as u8).collect();
            assert_eq!(base64(&bytes), reference_base64(&bytes));
            let mut text = base64(&bytes);
            if rng.below(2) == 0 && !text.is_empty() {
                // A slip: a character replaced, dropped or added.
                let chars: Vec<char> = alphabet.chars().collect();
                let at = rng.below(text.len());
                match rng.below(3) {
                    0 => text.replace_range(at..at + 1, &chars[rng.below(chars.len())].to_string()),
                    1 => drop(text.remove(at)),
                    _ => text.insert(at, chars[rng.below(chars.len())]),
                }
            }
            assert_eq!(unbase64(&text), reference_unbase64(&text), "{text:?}");
            let u: Uuid = std::array::from_fn(|_| rng.below(256) as u8);
            let mut text = uuid_string(&u);
            match rng.below(6) {
                0 => text = text.to_uppercase(),
                1 => text = text.replace('-', ""),
                2 => text.insert(rng.below(text.len()), ['-', 'g', 'A', 'é'][rng.below(4)]),
                3 => drop(text.remove(rng.below(text.len()))),
                _ => {}
            }
            let read = parse_uuid(&text, "id");
            assert_eq!(read.as_ref().ok(), reference_uuid(&text).as_ref(), "{text:?}");
            if let Err(e) = read {
                assert_eq!(e.to_string(), format!("'id' is not a UUID: {text:?}"));
            }
        }
    }

    #[test]
    fn plain_lines_become_raw_and_json_round_trips() {
        let m = from_line("hello world").unwrap();
        assert_eq!(m.raw.as_deref(), Some(&b"hello world"[..]));
        assert_eq!(m.id[6] >> 4, 7);
        let j = to_json(&m);
        let back = from_line(&j).unwrap();
        assert_eq!(back, m);
        // JSON that is not a fluxMsg is a raw payload too.
        assert_eq!(from_line("[1,2]").unwrap().raw.as_deref(), Some(&b"[1,2]"[..]));
        assert_eq!(from_line(r#"{"temp": 1}"#).unwrap().raw.as_deref(), Some(&br#"{"temp": 1}"#[..]));
    }

    #[test]
    fn bad_fields_are_named() {
        let e = from_line(r#"{"id": "nope"}"#).unwrap_err().to_string();
        assert!(e.contains("'id' is not a UUID"), "{e}");
        let e = from_line(r#"{"raw": "hello!"}"#).unwrap_err().to_string();
        assert!(e.contains("'raw' is not base64"), "{e}");
        let e = from_line(r#"{"raw": "aGk=", "raw_text": "ho"}"#).unwrap_err().to_string();
        assert!(e.contains("disagree"), "{e}");
        let e = from_line(r#"{"meta": {"a": 1}}"#).unwrap_err().to_string();
        assert!(e.contains("meta 'a'"), "{e}");
    }

    #[test]
    fn numbers_round_trip_exactly() {
        let numbers = [
            "0.1",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "5e-324",
            "2.2250738585072014e-308",
            "123456.789012345",
            "-0.0",
            "9007199254740993",
            "18446744073709551615",
            "-9223372036854775809",
            "-18446744073709551616",
        ];
        for n in numbers {
            let line = format!(r#"{{"raw_text": "x", "data": {{"n": {n}, "list": [{n}]}}}}"#);
            let msg = from_line(&line).unwrap();
            let back = from_line(&to_json(&msg)).unwrap();
            assert_eq!(back, msg, "{n}");
            let out: Json = serde_json::from_str(&to_json(&msg)).unwrap();
            let text = out["data"]["n"].to_string();
            // Same number: integers print as they came, floats parse to the same bits.
            match (text.parse::<i128>(), n.parse::<i128>()) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{n}"),
                _ => assert_eq!(
                    text.parse::<f64>().unwrap().to_bits(),
                    n.parse::<f64>().unwrap().to_bits(),
                    "{n} -> {text}"
                ),
            }
        }
        // 17 significant digits near the bottom of the range: parsed to the nearest f64.
        let m = from_line(r#"{"data": {"f": 2.2250738585072011e-308}}"#).unwrap();
        assert_eq!(m.data.unwrap()[0].1, Value::Float("2.2250738585072011e-308".parse().unwrap()));
    }

    #[test]
    fn numbers_no_cbor_value_holds_are_refused_by_name() {
        let e = from_line(r#"{"data": {"n": 18446744073709551616}}"#).unwrap_err().to_string();
        assert!(
            e.contains("'data': number \"18446744073709551616\" is outside the integers CBOR can carry"),
            "{e}"
        );
        let e = from_line(r#"{"data": {"n": [-18446744073709551617]}}"#).unwrap_err().to_string();
        assert!(e.contains("outside the integers CBOR can carry"), "{e}");
        let e = from_line(r#"{"data": {"n": 1e400}}"#).unwrap_err().to_string();
        assert!(e.contains("number \"1e+400\" is too large for a 64-bit float"), "{e}");
        assert!(!e.contains('\n'));
    }

    const KEYS: [&str; 11] =
        ["id", "ref_id", "trace", "src_id", "meta", "data", "flags", "raw", "raw_text", "path", "ts"];

    #[test]
    fn key_tags_tell_keys_apart() {
        let keys: [&[u8]; 17] = [
            b"id",
            b"ref_id",
            b"trace",
            b"src_id",
            b"meta",
            b"data",
            b"flags",
            b"raw",
            b"path",
            b"ts",
            b"g",
            b"p",
            b"t",
            b"",
            b"id\0",
            b"\0id",
            b"raw_text",
        ];
        let tags: Vec<u64> = keys.iter().map(|k| key_tag(k)).collect();
        for (i, a) in tags.iter().enumerate() {
            assert!(tags.iter().skip(i + 1).all(|b| a != b), "{:?}", keys[i]);
        }
        assert_eq!(key_tag(b"raw_text"), u64::MAX);
    }

    #[test]
    fn the_reader_knows_exactly_the_fluxmsg_keys() {
        let mut fields = Fields::default();
        for key in KEYS {
            assert!(fields.slot(key).is_some(), "{key}");
        }
        for key in ["", "x", "Id", "id ", "g", NUMBER_TOKEN] {
            assert!(fields.slot(key).is_none(), "{key}");
        }
    }

    /// A small deterministic generator for the comparisons below (xorshift64).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// Keys of every level of a message, serde_json's number key and others.
    const GEN_KEYS: [&str; 20] = [
        "id",
        "ref_id",
        "trace",
        "src_id",
        "meta",
        "data",
        "flags",
        "raw",
        "raw_text",
        "path",
        "ts",
        "g",
        "p",
        "t",
        "x",
        "a",
        "b",
        "\\u0061",
        NUMBER_TOKEN,
        "",
    ];

    /// Scalars at the edges: numbers of every range and form, strings with escapes,
    /// surrogates, UUIDs, base64.
    const GEN_SCALARS: [&str; 40] = [
        "null",
        "true",
        "false",
        "0",
        "-0",
        "-0.0",
        "1",
        "-1",
        "7",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551616",
        "-18446744073709551617",
        "1.5",
        "1e2",
        "1E+2",
        "2.5e-3",
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "\"\"",
        "\"x\"",
        "\"1.5\"",
        "\"abababab-abab-abab-abab-abababababab\"",
        "\"abababababababababababababababab\"",
        "\"not-a-uuid\"",
        "\"aGk=\"",
        "\"aGk\"",
        "\"hi\"",
        "\"caf\\u00e9 \\\"q\\\" \\\\ \\n\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud800\"",
        "\"1\"",
        "\"$serde_json::private::Number\"",
    ];

    /// Appends a random JSON value (and, rarely, a syntax slip) of at most `depth` levels.
    fn gen_value(rng: &mut Rng, out: &mut String, depth: usize) {
        match rng.below(if depth == 0 { 1 } else { 6 }) {
            0..=2 => out.push_str(rng.pick(&GEN_SCALARS)),
            3 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    gen_value(rng, out, depth - 1);
                }
                out.push(']');
            }
            _ => gen_object(rng, out, depth - 1),
        }
    }

    fn gen_object(rng: &mut Rng, out: &mut String, depth: usize) {
        out.push('{');
        for i in 0..rng.below(6) {
            if i > 0 {
                out.push_str(if rng.below(40) == 0 { " , " } else { "," });
            }
            out.push('"');
            out.push_str(rng.pick(&GEN_KEYS));
            out.push_str("\":");
            gen_value(rng, out, depth);
        }
        out.push('}');
    }

    /// Both readers' results, the same when the new one reads as the old one did: the same
    /// error text, or the same message (a fresh id and time, as each reader makes its own,
    /// compared by kind: both UUID v7, both now).
    fn compare_readers(line: &str) {
        match (from_line(line), reference_from_line(line)) {
            (Ok(mut new), Ok(old)) => {
                if new.id != old.id && new.id[6] >> 4 == 7 && old.id[6] >> 4 == 7 {
                    new.id = old.id;
                }
                if new.ts != old.ts && (new.ts - old.ts).abs() < 60_000_000_000 {
                    new.ts = old.ts;
                }
                assert_eq!(new, old, "{line:?}");
                assert_eq!(
                    MsgBytes::try_from_msg(&new).map(MsgBytes::into_bytes),
                    MsgBytes::try_from_msg(&old).map(MsgBytes::into_bytes),
                    "{line:?}"
                );
            }
            (Err(new), Err(old)) => assert_eq!(new.to_string(), old.to_string(), "{line:?}"),
            (new, old) => panic!("{line:?}: now {new:?}, before {old:?}"),
        }
    }

    #[test]
    fn the_reader_reads_generated_lines_as_the_value_tree_reader_did() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut messages = 0;
        for _ in 0..20_000 {
            let mut line = String::new();
            gen_object(&mut rng, &mut line, 4);
            if rng.below(8) == 0 {
                // A cut line: not JSON, so raw text whatever it holds.
                let cut = rng.below(line.len() + 1);
                line.truncate(line.floor_char_boundary(cut));
            }
            compare_readers(&line);
            messages +=
                usize::from(!from_line(&line).is_ok_and(|m| m.raw.as_deref() == Some(line.as_bytes())));
        }
        // The generator reaches messages and errors, not only raw lines.
        assert!(messages > 5_000, "{messages}");
    }

    #[test]
    fn the_reader_reads_edge_lines_as_the_value_tree_reader_did() {
        let deep = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        let mut lines = vec![
            String::new(),
            " ".into(),
            "null".into(),
            "{}".into(),
            "{} ".into(),
            "{}x".into(),
            r#"{"id": null}"#.into(),
            r#"{"id": null} {"#.into(),
            r#"{"x": 1}"#.into(),
            r#"{"id": "abababab-abab-abab-abab-abababababab", "id": "bad"}"#.into(),
            r#"{"id": "bad", "id": "abababab-abab-abab-abab-abababababab"}"#.into(),
            r#"{"\u0069d": "bad"}"#.into(),
            r#"{"ts": null}"#.into(),
            r#"{"id": "ABABABAB-abab-ABAB-0123-456789abcdef", "src_id": "0123456789ABCDEF0123456789abcdef"}"#
                .into(),
            r#"{"id": "abababab-abab-abab-abab-ababababab\u00e9"}"#.into(),
            r#"{"id": "abababab-abab-abab-abab-ababababab"}"#.into(),
            r#"{"id": "abababab-abab-abab-abab-abababababab00"}"#.into(),
            r#"{"id": "g0000000-0000-0000-0000-000000000000"}"#.into(),
            r#"{"ts": -0}"#.into(),
            r#"{"ts": 1.0}"#.into(),
            r#"{"ts": 9223372036854775808}"#.into(),
            r#"{"flags": 4294967296}"#.into(),
            r#"{"flags": -1, "ts": "x", "id": 5}"#.into(),
            r#"{"meta": {"b": "1", "a": "2", "b": 3}}"#.into(),
            r#"{"meta": {"b": 1, "a": 2}}"#.into(),
            r#"{"meta": {"b": "1", "b": 2, "b": "3"}}"#.into(),
            r#"{"data": {"b": 1e400, "a": 18446744073709551616}}"#.into(),
            r#"{"data": {"a": 1e400, "a": 1}}"#.into(),
            r#"{"data": {"n": {"b": [1e400], "a": {"$serde_json::private::Number": "1.5"}}}}"#.into(),
            r#"{"data": {"$serde_json::private::Number": "1"}}"#.into(),
            r#"{"data": {"n": {"$serde_json::private::Number": "x"}}}"#.into(),
            r#"{"data": {"n": {"$serde_json::private::Number": 1}}}"#.into(),
            r#"{"data": {"n": {"$serde_json::private::Number": "1", "b": 2}}}"#.into(),
            r#"{"$serde_json::private::Number": "1"}"#.into(),
            r#"{"id": "abababab-abab-abab-abab-abababababab", "$serde_json::private::Number": "1"}"#.into(),
            r#"{"path": [1, "x", null, [], {"g": 5, "t": 1}, {"$serde_json::private::Number": "2"}]}"#.into(),
            r#"{"path": [{"g": "abababab-abab-abab-abab-abababababab", "g": "bad"}]}"#.into(),
            r#"{"path": [{"t": null}]}"#.into(),
            r#"{"path": {}}"#.into(),
            r#"{"raw": "aGk=", "raw_text": "hi"}"#.into(),
            r#"{"raw": "!!", "raw_text": 5}"#.into(),
            r#"{"raw_text": "\ud800"}"#.into(),
            r#"{"raw_text": "\ud83d\ude00 \u0000 \/"}"#.into(),
            "{\"raw_text\": \"tab\there\"}".into(),
            r#"{"trace": "a", "x": [1, 2,]}"#.into(),
            r#"{"trace": "a", "x": 01}"#.into(),
            r#"{"trace": "a", "x": 1.}"#.into(),
            r#"{"trace": "a", "x": -}"#.into(),
            r#"{"trace": "a", "x": NaN}"#.into(),
        ];
        // serde_json's nesting limit (128 levels, the message's object included), in data
        // and in a key the message does not know.
        for n in [100, 126, 127, 128, 200] {
            lines.push(format!(r#"{{"trace": "a", "data": {{"n": {}}}}}"#, deep(n, "1")));
            lines.push(format!(r#"{{"trace": "a", "x": {}}}"#, deep(n, "")));
            lines.push(format!(r#"{{"trace": "a", "meta": {}}}"#, deep(n, "")));
        }
        for line in &lines {
            compare_readers(line);
        }
    }

    /// Random `data` values, with what serde_json writes in its own way: floats that are
    /// not finite, maps with keys that are not text or given twice, byte strings.
    fn gen_data(rng: &mut Rng, depth: usize) -> Value {
        match rng.below(if depth == 0 { 8 } else { 10 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.below(2) == 0),
            2 => Value::Int(
                [
                    0,
                    -1,
                    23,
                    24,
                    255,
                    256,
                    -25,
                    i128::from(i64::MAX),
                    i128::from(i64::MIN) - 1,
                    (1 << 64) - 1,
                    -(1 << 64),
                ][rng.below(11)],
            ),
            3 => Value::Float(
                [
                    0.0,
                    -0.0,
                    0.1,
                    1e300,
                    5e-324,
                    1.5,
                    f64::NAN,
                    f64::INFINITY,
                    -f64::INFINITY,
                    1e21,
                    123456.789,
                ][rng.below(11)],
            ),
            4 | 5 => Value::Text(rng.pick(&["", "a", "b", "é\u{1}\"\\", "\u{2028}", "1"]).into()),
            6 | 7 => Value::Bytes((0..rng.below(5)).map(|i| (i * 77) as u8).collect()),
            8 => Value::Array((0..rng.below(4)).map(|_| gen_data(rng, depth - 1)).collect()),
            _ => Value::Map(
                (0..rng.below(5))
                    .map(|_| {
                        let key = if rng.below(3) == 0 {
                            gen_data(rng, depth - 1)
                        } else {
                            Value::Text(rng.pick(&["a", "b", "c", "1", "\"a\""]).into())
                        };
                        (key, gen_data(rng, depth - 1))
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn the_writer_writes_from_cbor_what_the_fluxmsg_writer_wrote() {
        let example = fluxrig_testkit::vectors::get("fluxmsg.txt", "example");
        let example = MsgBytes::check(example).unwrap();
        let mut out = Vec::new();
        push_json(&mut out, example.as_bytes());
        assert_eq!(text(out), reference_to_json(&example.to_msg()));
        let mut rng = Rng(0xfeed_f00d);
        for i in 0..5_000 {
            let mut msg = FluxMsg::with_raw([i as u8; 16], i64::from(i) - 2_500, vec![]);
            msg.ref_id = [0xfe; 16];
            msg.trace = ["", "t", "q\"\n"][rng.below(3)].into();
            msg.flags = [0, 1, u32::MAX][rng.below(3)];
            msg.raw = [None, Some(vec![]), Some(b"hi".to_vec()), Some(vec![0xff, 0]), Some(vec![b'a'; 300])]
                [rng.below(5)]
            .clone();
            msg.meta = (rng.below(3) > 0).then(|| {
                (0..rng.below(6)).map(|j| (["b", "a", "c\u{0}"][j % 3].into(), "v\t".repeat(j))).collect()
            });
            msg.data = (rng.below(3) > 0).then(|| {
                (0..rng.below(5))
                    .map(|j| (["k", "j", "é", ""][j % 4].to_string(), gen_data(&mut rng, 3)))
                    .collect()
            });
            msg.path = (rng.below(4) > 0).then(|| {
                (0..rng.below(30))
                    .map(|j| Hop { gear: [j as u8; 16], port: [3; 16], ts: -(j as i64) })
                    .collect()
            });
            // A decoded message, as `MsgBytes` holds them, and any message `to_json` gets.
            let json = to_json(&msg);
            assert_eq!(json, reference_to_json(&msg), "{msg:?}");
            if let Ok(checked) = MsgBytes::try_from_msg(&msg) {
                let mut out = Vec::new();
                push_json(&mut out, checked.as_bytes());
                assert_eq!(text(out), reference_to_json(&checked.to_msg()), "{msg:?}");
            }
        }
    }

    #[test]
    fn bytes_that_are_no_message_are_written_as_the_empty_message() {
        for bytes in [&b""[..], b"\xa0", b"\x80", b"\xa1\x62id\x41\x00", b"\xff"] {
            let mut out = b"kept".to_vec();
            push_json(&mut out, bytes);
            assert_eq!(out, [&b"kept"[..], reference_to_json(&FluxMsg::default()).as_bytes()].concat());
        }
    }
}
