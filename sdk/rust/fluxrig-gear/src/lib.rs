//! Write fluxrig Wasm gears in Rust: the ABI exports, fluxMsg CBOR and `env.log`.
//!
//! Contract (`spec/fluxrig-compat.md` sections 1 and 2): a gear exports `alloc(len) -> ptr`,
//! `free(ptr, len)` and `process(ptr, len) -> i64` (pointer in the high 32 bits, length in
//! the low 32, length 0 = drop), and may import only `env.log(level, ptr, len)`. The host
//! hands `process` one fluxMsg as CBOR and reads one back.
//!
//! Entry points: write `fn process(msg: Msg) -> Outcome` and name it in [`gear!`], which
//! exports `alloc`, `free` and `process`. [`Msg`] is the decoded message (every field, keys
//! in any order, unknown keys ignored); [`Outcome`] passes the input on unchanged (no copy),
//! drops it, or replaces it with a message [`Msg::encode`] writes exactly as fluxrig does
//! (shortest heads, definite lengths, `null` for absent maps, floats as 8 bytes, no tags).
//! [`log`] and [`Level`] wrap `env.log`; [`Line`] builds a log line without `core::fmt`.
//!
//! Guarantees: no std, no WASI import, no panic on any input (a message that does not
//! decode is logged at error level and dropped). Memory: a bump arena over the module's
//! memory that starts over whenever every allocation has been freed, which the host does
//! after each message; state kept across messages belongs in plain `static`s (atomics),
//! not on the heap, or the arena never starts over.
//!
//! Out of scope: WASI, threads, host functions other than `env.log`.
#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

extern crate alloc as alloc_crate;

use alloc_crate::string::String;
use alloc_crate::vec::Vec;
use minicbor::data::{Int, Type};
use minicbor::{Decoder, Encoder};

/// A 16-byte UUID, as fluxMsg carries ids (a CBOR byte string of length 16).
pub type Uuid = [u8; 16];

/// One step of a message's path: gear id `g`, port id `p`, Unix nanoseconds `t`.
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
    /// `null` (or `undefined`).
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer, -2^64 ..= 2^64 - 1.
    Int(i128),
    /// A float of any width, written back as 8 bytes.
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

impl Value {
    /// Returns the number an `Int` or `Float` holds, as f64; `None` for anything else.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// Returns the text a `Text` holds.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// A fluxMsg, every field decoded. Absent maps, `raw` and `path` are `None` (`null`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Msg {
    /// Message id.
    pub id: Uuid,
    /// Id of the message this one answers (nil = zeros).
    pub ref_id: Uuid,
    /// Trace text.
    pub trace: String,
    /// Source id.
    pub src_id: Uuid,
    /// Text metadata, entries in order.
    pub meta: Option<Vec<(String, String)>>,
    /// Structured payload, entries in order.
    pub data: Option<Vec<(String, Value)>>,
    /// Flags (bit 0: bus sync probe, never delivered to gears).
    pub flags: u32,
    /// Opaque payload.
    pub raw: Option<Vec<u8>>,
    /// The gears the message went through; the host added the last hop.
    pub path: Option<Vec<Hop>>,
    /// Unix nanoseconds at creation.
    pub ts: i64,
}

/// What a gear does with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Sends the input on, byte for byte (no copy, no re-encoding).
    Pass,
    /// Drops the message.
    Drop,
    /// Sends this message on instead.
    Replace(Msg),
}

/// Why a message did not decode: the byte offset and what was expected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset in the input.
    pub at: usize,
    /// What was expected.
    pub what: &'static str,
}

type R<T> = Result<T, DecodeError>;

fn err<T>(d: &Decoder, what: &'static str) -> R<T> {
    Err(DecodeError { at: d.position(), what })
}

/// Maximum nesting of `data` values: deeper input is refused, not recursed into.
pub const MAX_DEPTH: usize = 32;

fn uuid(d: &mut Decoder) -> R<Uuid> {
    match d.bytes() {
        Ok(b) if b.len() == 16 => {
            let mut u = [0; 16];
            u.copy_from_slice(b);
            Ok(u)
        }
        _ => err(d, "a 16-byte id"),
    }
}

fn text(d: &mut Decoder) -> R<String> {
    match d.str() {
        Ok(s) => Ok(String::from(s)),
        Err(_) => err(d, "text"),
    }
}

/// Returns true and consumes a `null` (or `undefined`) if one is next.
fn null(d: &mut Decoder) -> bool {
    match d.datatype() {
        Ok(Type::Null) => d.null().is_ok(),
        Ok(Type::Undefined) => d.undefined().is_ok(),
        _ => false,
    }
}

fn len(d: &mut Decoder, got: Result<Option<u64>, minicbor::decode::Error>) -> R<usize> {
    match got {
        // Each entry takes at least one byte: a claimed length is never trusted for capacity.
        Ok(Some(n)) if n as usize <= d.input().len() => Ok(n as usize),
        _ => err(d, "a definite length within the input"),
    }
}

fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    let mag = match exp {
        0 => frac * (1.0 / (1u64 << 24) as f64),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * pow2(exp - 15),
    };
    sign * mag
}

fn pow2(e: i32) -> f64 {
    f64::from_bits(((1023 + e) as u64) << 52)
}

fn value(d: &mut Decoder, depth: usize) -> R<Value> {
    if depth > MAX_DEPTH {
        return err(d, "data nested at most 32 deep");
    }
    let t = match d.datatype() {
        Ok(t) => t,
        Err(_) => return err(d, "a value"),
    };
    let v = match t {
        Type::Null | Type::Undefined => {
            null(d);
            Value::Null
        }
        Type::Bool => Value::Bool(d.bool().or_else(|_| err(d, "bool"))?),
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Value::Int(i128::from(d.int().or_else(|_| err(d, "int"))?)),
        Type::F16 => {
            let p = d.position();
            let b = d.input();
            if b.len() < p + 3 {
                return err(d, "f16");
            }
            d.set_position(p + 3);
            Value::Float(f16_to_f64(u16::from_be_bytes([b[p + 1], b[p + 2]])))
        }
        Type::F32 => Value::Float(f64::from(d.f32().or_else(|_| err(d, "f32"))?)),
        Type::F64 => Value::Float(d.f64().or_else(|_| err(d, "f64"))?),
        Type::String => Value::Text(text(d)?),
        Type::Bytes => Value::Bytes(Vec::from(d.bytes().or_else(|_| err(d, "bytes"))?)),
        Type::Array => {
            let got = d.array();
            let n = len(d, got)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(value(d, depth + 1)?);
            }
            Value::Array(items)
        }
        Type::Map => {
            let got = d.map();
            let n = len(d, got)?;
            let mut entries = Vec::new();
            for _ in 0..n {
                let k = value(d, depth + 1)?;
                entries.push((k, value(d, depth + 1)?));
            }
            Value::Map(entries)
        }
        _ => return err(d, "a value without tags or indefinite lengths"),
    };
    Ok(v)
}

impl Msg {
    /// Decodes a fluxMsg: keys in any order, unknown keys skipped, missing keys empty.
    ///
    /// # Errors
    /// A [`DecodeError`] for anything that is not a fluxMsg, or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Msg, DecodeError> {
        let mut d = Decoder::new(bytes);
        let got = d.map();
        let n = len(&mut d, got)?;
        let mut m = Msg::default();
        for _ in 0..n {
            let key = match d.str() {
                Ok(k) => k,
                Err(_) => return err(&d, "a text key"),
            };
            match key {
                "id" => m.id = uuid(&mut d)?,
                "ref_id" => m.ref_id = uuid(&mut d)?,
                "src_id" => m.src_id = uuid(&mut d)?,
                "trace" => m.trace = text(&mut d)?,
                "meta" if !null(&mut d) => {
                    let got = d.map();
                    let n = len(&mut d, got)?;
                    let mut meta = Vec::new();
                    for _ in 0..n {
                        let k = text(&mut d)?;
                        meta.push((k, text(&mut d)?));
                    }
                    m.meta = Some(meta);
                }
                "data" if !null(&mut d) => {
                    let got = d.map();
                    let n = len(&mut d, got)?;
                    let mut data = Vec::new();
                    for _ in 0..n {
                        let k = text(&mut d)?;
                        data.push((k, value(&mut d, 1)?));
                    }
                    m.data = Some(data);
                }
                "flags" => m.flags = d.u32().or_else(|_| err(&d, "flags as u32"))?,
                "raw" if !null(&mut d) => {
                    m.raw = Some(Vec::from(d.bytes().or_else(|_| err(&d, "raw bytes"))?))
                }
                "path" if !null(&mut d) => {
                    let got = d.array();
                    let n = len(&mut d, got)?;
                    let mut path = Vec::new();
                    for _ in 0..n {
                        let got = d.map();
                        let k = len(&mut d, got)?;
                        let mut hop = Hop::default();
                        for _ in 0..k {
                            match d.str() {
                                Ok("g") => hop.gear = uuid(&mut d)?,
                                Ok("p") => hop.port = uuid(&mut d)?,
                                Ok("t") => hop.ts = d.i64().or_else(|_| err(&d, "hop t"))?,
                                Ok(_) => drop(value(&mut d, 2)?),
                                Err(_) => return err(&d, "a hop key"),
                            }
                        }
                        path.push(hop);
                    }
                    m.path = Some(path);
                }
                "ts" => m.ts = d.i64().or_else(|_| err(&d, "ts"))?,
                "meta" | "data" | "raw" | "path" => {}
                // minicbor's own `skip` would add 4 KB to every module.
                _ => drop(value(&mut d, 1)?),
            }
        }
        if d.position() != bytes.len() {
            return err(&d, "the end of the message");
        }
        Ok(m)
    }

    /// Encodes the message as fluxrig does, byte for byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::with_capacity(192 + self.raw.as_ref().map_or(0, Vec::len)));
        // Writing to a Vec cannot fail.
        let _ = self.encode_into(&mut e);
        e.into_writer()
    }

    fn encode_into(
        &self,
        e: &mut Encoder<Vec<u8>>,
    ) -> Result<(), minicbor::encode::Error<core::convert::Infallible>> {
        e.map(10)?.str("id")?.bytes(&self.id)?.str("ref_id")?.bytes(&self.ref_id)?;
        e.str("trace")?.str(&self.trace)?.str("src_id")?.bytes(&self.src_id)?;
        e.str("meta")?;
        match &self.meta {
            None => {
                e.null()?;
            }
            Some(meta) => {
                e.map(meta.len() as u64)?;
                for (k, v) in meta {
                    e.str(k)?.str(v)?;
                }
            }
        }
        e.str("data")?;
        match &self.data {
            None => {
                e.null()?;
            }
            Some(data) => {
                e.map(data.len() as u64)?;
                for (k, v) in data {
                    e.str(k)?;
                    put(e, v)?;
                }
            }
        }
        e.str("flags")?.u32(self.flags)?.str("raw")?;
        match &self.raw {
            None => e.null()?,
            Some(raw) => e.bytes(raw)?,
        };
        e.str("path")?;
        match &self.path {
            None => {
                e.null()?;
            }
            Some(path) => {
                e.array(path.len() as u64)?;
                for h in path {
                    e.map(3)?.str("g")?.bytes(&h.gear)?.str("p")?.bytes(&h.port)?.str("t")?.i64(h.ts)?;
                }
            }
        }
        e.str("ts")?.i64(self.ts)?;
        Ok(())
    }

    /// Returns the `data` value under `key`, if any.
    pub fn data_get(&self, key: &str) -> Option<&Value> {
        self.data.as_ref()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Returns the `meta` value under `key`, if any.
    pub fn meta_get(&self, key: &str) -> Option<&str> {
        self.meta.as_ref()?.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Sets `meta[key] = value`: in place if the key is there, else appended (making the
    /// map if `meta` is `null`). Every kit does the same, so outputs match across languages.
    pub fn set_meta(&mut self, key: &str, value: &str) {
        let meta = self.meta.get_or_insert_with(Vec::new);
        match meta.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = String::from(value),
            None => meta.push((String::from(key), String::from(value))),
        }
    }
}

fn put(
    e: &mut Encoder<Vec<u8>>,
    v: &Value,
) -> Result<(), minicbor::encode::Error<core::convert::Infallible>> {
    match v {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Int(i) => {
            // Out of CBOR's range only if built by hand; clamp as fluxrig-edge's core does.
            let i = (*i).clamp(-(1i128 << 64), (1i128 << 64) - 1);
            e.int(Int::try_from(i).unwrap_or(Int::from(0u8)))?;
        }
        Value::Float(x) => {
            e.f64(*x)?;
        }
        Value::Text(s) => {
            e.str(s)?;
        }
        Value::Bytes(b) => {
            e.bytes(b)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            for i in items {
                put(e, i)?;
            }
        }
        Value::Map(entries) => {
            e.map(entries.len() as u64)?;
            for (k, v) in entries {
                put(e, k)?;
                put(e, v)?;
            }
        }
    }
    Ok(())
}

/// Severity of a log line, as `env.log` numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    /// 1.
    Debug = 1,
    /// 2.
    Info = 2,
    /// 3.
    Warn = 3,
    /// 4.
    Error = 4,
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "log"]
    fn host_log(level: i32, ptr: *const u8, len: usize);
}

/// Writes one line to the host's log, under the gear's name (`env.log`).
pub fn log(level: Level, text: &str) {
    #[cfg(target_arch = "wasm32")]
    // Safety: the host reads `len` bytes at `ptr`, which `text` owns for the call.
    unsafe {
        host_log(level as i32, text.as_ptr(), text.len())
    };
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, text);
}

/// A log line built without `core::fmt` (which would add kilobytes to a module): text and
/// decimal numbers into a fixed buffer; what does not fit is cut off.
pub struct Line {
    buf: [u8; 200],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// Returns an empty line.
    pub const fn new() -> Self {
        Line { buf: [0; 200], len: 0 }
    }

    /// Appends text.
    pub fn text(mut self, s: &str) -> Self {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    /// Appends `n` in decimal.
    pub fn num(self, n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // Only ASCII digits were written.
        self.text(core::str::from_utf8(&digits[i..]).unwrap_or(""))
    }

    /// Sends the line to the host's log.
    pub fn log(&self, level: Level) {
        log(level, core::str::from_utf8(&self.buf[..self.len]).unwrap_or(""));
    }
}

/// The ABI glue [`gear!`] expands to; not for direct use.
#[doc(hidden)]
pub mod __abi {
    use super::*;

    /// `alloc(len) -> ptr`: a buffer of `len` bytes (at least 1), or 0.
    pub fn alloc(len: usize) -> usize {
        let mut v: Vec<u8> = Vec::new();
        if v.try_reserve_exact(len.max(1)).is_err() {
            return 0;
        }
        let p = v.as_mut_ptr() as usize;
        core::mem::forget(v);
        p
    }

    /// `free(ptr, len)`: releases a buffer from `alloc` or an output.
    pub fn free(ptr: usize, len: usize) {
        #[cfg(target_arch = "wasm32")]
        crate::arena::release(ptr, len);
        let _ = (ptr, len);
    }

    /// `process(ptr, len) -> packed`: decodes, calls the gear, packs the outcome.
    pub fn process(ptr: usize, len: usize, gear: fn(Msg) -> Outcome) -> u64 {
        // Safety: the host wrote `len` bytes at `ptr`, a buffer `alloc` returned.
        let input = unsafe { core::slice::from_raw_parts(ptr as *const u8, len) };
        let msg = match Msg::decode(input) {
            Ok(m) => m,
            Err(e) => {
                Line::new()
                    .text("fluxrig-gear: input is not a fluxMsg, dropped: expected ")
                    .text(e.what)
                    .text(" at byte ")
                    .num(e.at as u64)
                    .log(Level::Error);
                return 0;
            }
        };
        match gear(msg) {
            Outcome::Pass => ((ptr as u64) << 32) | len as u64,
            Outcome::Drop => 0,
            Outcome::Replace(m) => {
                let mut out = m.encode();
                out.shrink_to_fit();
                let (p, n) = (out.as_mut_ptr() as u64, out.len() as u64);
                core::mem::forget(out);
                (p << 32) | n
            }
        }
    }
}

/// Exports `alloc`, `free` and `process` for a gear whose work is `f: fn(Msg) -> Outcome`.
///
/// ```text
/// use fluxrig_gear::{gear, Msg, Outcome};
/// fn check(msg: Msg) -> Outcome { Outcome::Pass }
/// gear!(check);
/// ```
#[macro_export]
macro_rules! gear {
    ($f:path) => {
        #[no_mangle]
        pub extern "C" fn alloc(len: usize) -> usize {
            $crate::__abi::alloc(len)
        }
        #[no_mangle]
        pub extern "C" fn free(ptr: usize, len: usize) {
            $crate::__abi::free(ptr, len)
        }
        #[no_mangle]
        pub extern "C" fn process(ptr: usize, len: usize) -> u64 {
            $crate::__abi::process(ptr, len, $f)
        }
    };
}

/// The module's allocator: a bump arena that starts over when nothing is live.
#[cfg(target_arch = "wasm32")]
mod arena {
    use core::alloc::{GlobalAlloc, Layout};
    use core::arch::wasm32;
    use core::ptr::null_mut;
    use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    extern "C" {
        static __heap_base: u8;
    }

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static LIVE: AtomicUsize = AtomicUsize::new(0);

    fn base() -> usize {
        // Only the symbol's address is taken (no unsafe needed); the linker defines it.
        core::ptr::addr_of!(__heap_base) as usize
    }

    /// Makes memory reach `end`; false if it cannot grow.
    fn reach(end: usize) -> bool {
        let have = wasm32::memory_size(0) * 65536;
        end <= have || wasm32::memory_grow(0, (end - have).div_ceil(65536)) != usize::MAX
    }

    /// One allocation fewer; the host frees an output returned as the input at most twice
    /// (fluxrig frees it twice, fluxrig-edge once), so the count saturates at 0.
    pub fn release(_ptr: usize, _len: usize) {
        let live = LIVE.load(Relaxed);
        LIVE.store(live.saturating_sub(1), Relaxed);
    }

    pub struct Arena;

    // Safety: single-threaded (wasm32 without threads); every block is fresh memory
    // between the heap base and the memory's end.
    unsafe impl GlobalAlloc for Arena {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let mut next = NEXT.load(Relaxed);
            if next == 0 || LIVE.load(Relaxed) == 0 {
                next = base();
            }
            let start = (next + l.align() - 1) & !(l.align() - 1);
            let Some(end) = start.checked_add(l.size()) else { return null_mut() };
            if !reach(end) {
                return null_mut();
            }
            NEXT.store(end, Relaxed);
            LIVE.store(LIVE.load(Relaxed) + 1, Relaxed);
            start as *mut u8
        }

        unsafe fn dealloc(&self, ptr: *mut u8, l: Layout) {
            release(ptr as usize, l.size())
        }

        unsafe fn realloc(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
            // The last block grows in place; others move.
            if ptr as usize + l.size() == NEXT.load(Relaxed) {
                let end = ptr as usize + new_size;
                if !reach(end) {
                    return null_mut();
                }
                NEXT.store(end, Relaxed);
                return ptr;
            }
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, l.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, l.size().min(new_size));
                self.dealloc(ptr, l);
            }
            new
        }
    }

    #[global_allocator]
    static ARENA: Arena = Arena;

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        core::arch::wasm32::unreachable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn unhex(t: &str) -> Vec<u8> {
        (0..t.len()).step_by(2).map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap()).collect()
    }

    /// fluxrig's worked example (spec section 2; `example` in tests/data/vectors/fluxmsg.txt).
    const EXAMPLE: &str = concat!(
        "aa6269645001900000000070008000000000000001667265665f6964500000000000000000000000",
        "000000000065747261636560667372635f69645000000000000000000000000000000000646d6574",
        "61a167706565722e69706831302e302e302e356464617461a16568656c6c6f647761736d65666c61",
        "67730063726177f66470617468806274731b17979cfe362a0000",
    );

    fn vector(_name: &str) -> Vec<u8> {
        unhex(EXAMPLE)
    }

    #[test]
    fn example_round_trips_byte_for_byte() {
        let bytes = vector("example");
        let m = Msg::decode(&bytes).unwrap();
        assert_eq!(m.meta_get("peer.ip"), Some("10.0.0.5"));
        assert_eq!(m.data_get("hello").and_then(Value::as_str), Some("wasm"));
        assert_eq!(m.ts, 1_700_000_000_000_000_000);
        assert_eq!(m.encode(), bytes);
    }

    #[test]
    fn set_meta_replaces_in_place_or_appends() {
        let mut m = Msg::decode(&vector("example")).unwrap();
        m.set_meta("checked", "yes");
        m.set_meta("peer.ip", "10.0.0.6");
        assert_eq!(
            m.meta,
            Some(vec![("peer.ip".into(), "10.0.0.6".into()), ("checked".into(), "yes".into())])
        );
        let again = Msg::decode(&m.encode()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let bytes = vector("example");
        for cut in 0..bytes.len() {
            assert!(Msg::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Msg::decode(&long).is_err());
        // Nesting past MAX_DEPTH is refused, not recursed into.
        let mut deep = unhex("a16464617461a1617a");
        deep.extend(core::iter::repeat_n(0x81, 100));
        deep.push(0);
        assert!(Msg::decode(&deep).is_err());
    }

    #[test]
    fn half_floats_widen() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc500), -5.0);
        assert_eq!(f16_to_f64(0x0001), 5.960464477539063e-8);
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
    }
}
