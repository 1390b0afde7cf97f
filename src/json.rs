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

use fluxrig_core::message::{FluxMsg, Hop, Uuid, Value};
use serde_json::{Map, Number, Value as Json};

use crate::clock::{new_uuid_v7, unix_nanos};
use crate::error::{Error, Result};

const KEYS: [&str; 11] =
    ["id", "ref_id", "trace", "src_id", "meta", "data", "flags", "raw", "raw_text", "path", "ts"];

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
        hex[at] = HEX_DIGITS[usize::from(b >> 4)];
        hex[at + 1] = HEX_DIGITS[usize::from(b & 0x0f)];
        at += 2;
    }
    out.extend_from_slice(&hex);
}

/// Formats a UUID as 8-4-4-4-12 lowercase hex.
pub fn uuid_string(u: &Uuid) -> String {
    let mut out = Vec::with_capacity(36);
    push_uuid(&mut out, u);
    text(out)
}

fn parse_uuid(s: &str, field: &str) -> Result<Uuid> {
    let mut out = [0u8; 16];
    let mut digits = 0usize;
    let mut ok = true;
    for c in s.bytes().filter(|c| *c != b'-') {
        match (char::from(c).to_digit(16), out.get_mut(digits / 2)) {
            (Some(v), Some(b)) => *b = *b << 4 | v as u8,
            _ => {
                ok = false;
                break;
            }
        }
        digits += 1;
    }
    (ok && digits == 32)
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
    for (quad, chunk) in out[start..].chunks_exact_mut(4).zip(bytes.chunks(3)) {
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
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
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

/// Appends an integer in decimal, without an allocation or the formatting machinery.
fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// Renders a message as one JSON line (no trailing newline): the keys in sorted order,
/// as a `serde_json::Map` writes them, built in one string without a `Value` tree (only
/// `data`, when present, goes through one).
pub fn to_json(msg: &FluxMsg) -> String {
    let mut out = Vec::new();
    push_json(&mut out, msg);
    text(out)
}

/// Appends a message as one JSON line (no trailing newline), as [`to_json`] renders it;
/// the run loop reuses one buffer for every output line.
pub fn push_json(out: &mut Vec<u8>, msg: &FluxMsg) {
    let raw_len = msg.raw.as_ref().map_or(0, Vec::len);
    out.reserve(320 + raw_len * 3 + msg.path.as_ref().map_or(0, |p| p.len() * 100));
    out.extend_from_slice(b"{\"data\":");
    match &msg.data {
        None => out.extend_from_slice(b"null"),
        Some(data) => {
            let object: Map<String, Json> = data.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect();
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

/// Reads one input line: a fluxMsg as JSON, or any other line as its `raw` payload.
pub fn from_line(line: &str) -> Result<FluxMsg> {
    let object = match serde_json::from_str::<Json>(line) {
        Ok(Json::Object(o)) if o.keys().any(|k| KEYS.contains(&k.as_str())) => o,
        _ => return Ok(FluxMsg::with_raw(new_uuid_v7(), unix_nanos(), line.as_bytes().to_vec())),
    };
    from_object(&object)
}

fn from_object(o: &Map<String, Json>) -> Result<FluxMsg> {
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
        msg.flags =
            u32::try_from(int("flags", flags)?).map_err(|_| Error::invalid("'flags' must fit in 32 bits"))?;
    }
    match o.get("meta") {
        None | Some(Json::Null) => {}
        Some(Json::Object(m)) => {
            let mut meta = Vec::new();
            for (k, v) in m {
                let v = v.as_str().ok_or_else(|| Error::invalid(format!("meta '{k}' must be a string")))?;
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
                let field = |k: &str| h.get(k).and_then(Json::as_str).map(|s| parse_uuid(s, k)).transpose();
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

#[cfg(test)]
mod tests {
    use super::*;

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
        for n in [0, 1, -1, 9, 10, -10, 1_796_204_853_372_878_442, i64::MAX, i64::MIN] {
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
}
