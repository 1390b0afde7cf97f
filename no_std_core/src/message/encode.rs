//! The fluxMsg encoder: shortest heads, definite lengths, fixed key order (module doc).

use alloc::vec::Vec;

use super::{FluxMsg, Hop, Value};

pub(super) fn head(out: &mut Vec<u8>, major: u8, value: u64) {
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

pub(super) fn put_text(out: &mut Vec<u8>, s: &str) {
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
}
