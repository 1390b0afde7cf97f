// fluxrig.ts: write fluxrig Wasm gears in AssemblyScript (0.28.20, --runtime stub).
//
// Contract (spec/fluxrig-compat.md sections 1 and 2): a gear exports alloc(len) -> ptr,
// free(ptr, len) and process(ptr, len) -> i64 (pointer in the high 32 bits, length in the
// low 32, length 0 = drop) and may import only env.log(level, ptr, len). The host hands
// process one fluxMsg (a CBOR map) and reads one back.
//
// Use, in your entry file:
//
//   import { Msg, pass, drop, run } from "./fluxrig";
//   export { alloc, free } from "./fluxrig";
//   function check(m: Msg): u64 { return m.replaceMeta("checked", "yes"); }
//   export function process(ptr: usize, len: u32): u64 { return run(ptr, len, check); }
//
// Outcomes are u64s, as the ABI returns them: pass(m) (the input, no copy), drop(), or
// m.replaceMeta(key, value). Reading looks at the input in place: m.raw(), m.metaGet(key),
// m.dataGet(key) and Value.number(). The host always hands a gear the canonical encoding
// (keys in fluxrig's order, shortest heads, floats as 8 bytes), so splicing the input, as
// replaceMeta does, writes exactly what fluxrig's encoder (and the Rust kit) would.
//
// Memory in the ABI's shape: alloc and free sit on the stub runtime's heap (heap.alloc),
// counting live buffers; when the host has freed every one (after each message), the heap
// starts over (__reset). So nothing on the heap may outlive a message: keep state across
// messages in globals of primitive types (the kit's own objects are static, in
// memory.data). Build with `--runtime stub --use abort=` (no env.abort import); see
// asconfig.json.
//
// Guarantees: every read is bounds-checked (a message that does not parse is dropped with
// an error log line); nesting deeper than MAX_DEPTH is refused. Out of scope: building
// messages from scratch, writing data values, WASI.

export const MAX_DEPTH: i32 = 32;

/** Log levels of env.log. */
export enum Level { Debug = 1, Info = 2, Warn = 3, Error = 4 }

// @ts-ignore: decorator
@external("env", "log")
declare function hostLog(level: i32, ptr: usize, len: u32): void;

// ---- UTF-8 of AssemblyScript strings, without allocating ----

function utf8Len(s: string): u32 {
  let n: u32 = 0;
  for (let i = 0; i < s.length; i++) {
    const c = <u32>s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

function writeUtf8(s: string, at: usize): usize {
  for (let i = 0; i < s.length; i++) {
    let c = <u32>s.charCodeAt(i);
    if (c < 0x80) { store<u8>(at++, c); continue; }
    if (c < 0x800) { store<u8>(at++, 0xc0 | (c >> 6)); store<u8>(at++, 0x80 | (c & 63)); continue; }
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      c = 0x10000 + ((c - 0xd800) << 10) + (<u32>s.charCodeAt(++i) - 0xdc00);
      store<u8>(at++, 0xf0 | (c >> 18)); store<u8>(at++, 0x80 | ((c >> 12) & 63));
    } else {
      store<u8>(at++, 0xe0 | (c >> 12));
    }
    store<u8>(at++, 0x80 | ((c >> 6) & 63)); store<u8>(at++, 0x80 | (c & 63));
  }
  return at;
}

/** Compares `n` bytes at `p` with the UTF-8 of `s`. */
function eqUtf8(p: usize, n: u32, s: string): bool {
  if (utf8Len(s) != n) return false;
  const tmp = heap.alloc(n + 1);
  writeUtf8(s, tmp);
  const same = memory.compare(p, tmp, n) == 0;
  heap.free(tmp);
  return same;
}

/** Writes one line to the host's log, under the gear's name. */
export function log(level: Level, text: string): void {
  const n = utf8Len(text);
  const p = heap.alloc(n + 1);
  writeUtf8(text, p);
  hostLog(level, p, n);
  heap.free(p);
}

/** A log line built without string concatenation: text and decimal numbers, one static
 *  200-byte buffer; what does not fit is cut. Get it with `Line.start()`. */
@unmanaged export class Line {
  len: u32;

  static start(): Line {
    const l = changetype<Line>(LINE);
    l.len = 0;
    return l;
  }

  text(s: string): Line {
    for (let i = 0; i < s.length && this.len < 200; i++) {
      const c = <u32>s.charCodeAt(i);
      store<u8>(LINE_BUF + this.len++, c < 0x80 ? c : 0x3f);
    }
    return this;
  }

  num(n: u64): Line {
    const d = memory.data(20);
    let i = 20;
    do { store<u8>(d + --i, <u32>(n % 10) + 0x30); n /= 10; } while (n != 0);
    while (i < 20 && this.len < 200) store<u8>(LINE_BUF + this.len++, load<u8>(d + i++));
    return this;
  }

  send(level: Level): void { hostLog(level, LINE_BUF, this.len); }
}
const LINE = memory.data(offsetof<Line>());
const LINE_BUF = memory.data(200);

// ---- the ABI's memory ----

let live: u32 = 0;

/** alloc(len) -> ptr: a buffer of `len` bytes (at least 1) on the runtime's heap. */
export function alloc(len: u32): usize {
  // @ts-ignore: the stub runtime's global
  if (live == 0) __reset();
  live++;
  return heap.alloc(len ? <usize>len : 1);
}

/** free(ptr, len): one live buffer fewer. The host may free an output that is its input
 *  twice (fluxrig does, fluxrig-edge does not): the count saturates at 0. */
export function free(ptr: usize, len: u32): void {
  if (live > 0) live--;
}

// ---- CBOR reading ----

// The last head read: major type, argument, and the offset after it.
let hMajor: i32 = 0;
let hArg: u64 = 0;
let hEnd: u32 = 0;

/** Reads a head at p[i] (p[0..n]); false on a bad or truncated head or an indefinite length. */
function head(p: usize, n: u32, i: u32): bool {
  if (i >= n) return false;
  const b = <u32>load<u8>(p + i++);
  hMajor = b >> 5;
  const ai = b & 31;
  if (ai < 24) { hArg = ai; hEnd = i; return true; }
  if (ai > 27) return false;
  const k = <u32>1 << (ai - 24);
  if (n - i < k) return false;
  let v: u64 = 0;
  for (let j: u32 = 0; j < k; j++) v = (v << 8) | <u64>load<u8>(p + i++);
  hArg = v; hEnd = i;
  return true;
}

/** Returns the offset after the item at p[i], or -1 if it is malformed, tagged or too deep. */
function skip(p: usize, n: u32, i: u32, depth: i32): i64 {
  if (depth > MAX_DEPTH || !head(p, n, i)) return -1;
  const major = hMajor, arg = hArg;
  i = hEnd;
  if (major == 0 || major == 1 || major == 7) return i;
  if (major == 2 || major == 3) return arg > <u64>(n - i) ? -1 : <i64>i + <i64>arg;
  if (major == 4 || major == 5) {
    if (arg > <u64>(n - i)) return -1; // each item is at least one byte
    const count = major == 5 ? 2 * arg : arg;
    for (let k: u64 = 0; k < count; k++) {
      const next = skip(p, n, i, depth + 1);
      if (next < 0) return -1;
      i = <u32>next;
    }
    return i;
  }
  return -1; // tags
}

// The last string read: where its bytes are.
let sPtr: usize = 0;
let sLen: u32 = 0;

function str(p: usize, n: u32, i: u32, major: i32): bool {
  if (!head(p, n, i) || hMajor != major || hArg > <u64>(n - hEnd)) return false;
  sPtr = p + hEnd; sLen = <u32>hArg; hEnd += sLen;
  return true;
}

/** One CBOR value of the input (static: valid until the next dataGet). */
@unmanaged export class Value {
  ptr: usize;
  len: u32;

  /** Returns the number an integer or float holds, or NaN for anything else (NaN is
   *  outside every range, so `v.number() >= lo && v.number() <= hi` is false). */
  number(): f64 {
    if (!head(this.ptr, this.len, 0)) return NaN;
    if (hMajor == 0) return <f64>hArg;
    if (hMajor == 1) return -1.0 - <f64>hArg;
    if (hMajor != 7) return NaN;
    const ai = load<u8>(this.ptr) & 31;
    if (ai == 25) return half(<u32>hArg);
    if (ai == 26) return <f64>reinterpret<f32>(<u32>hArg);
    if (ai == 27) return reinterpret<f64>(hArg);
    return NaN;
  }

  /** Whether the value is an integer or a float. */
  isNumber(): bool {
    if (!head(this.ptr, this.len, 0)) return false;
    if (hMajor == 0 || hMajor == 1) return true;
    const ai = load<u8>(this.ptr) & 31;
    return hMajor == 7 && ai >= 25 && ai <= 27;
  }
}
const VALUE = changetype<Value>(memory.data(offsetof<Value>()));

function half(h: u32): f64 {
  const e = <i32>((h >> 10) & 31);
  const f = <f64>(h & 1023);
  let v: f64;
  if (e == 0) v = f / 16777216.0;
  else if (e == 31) v = f == 0 ? Infinity : NaN;
  else v = (1.0 + f / 1024.0) * Math.pow(2, <f64>(e - 15));
  return (h & 0x8000) ? -v : v;
}

/** The input message: where meta, data and raw are (end 0: absent or null). Static: one
 *  per message, made by run(). */
@unmanaged export class Msg {
  ptr: usize;
  len: u32;
  metaStart: u32; metaEnd: u32; // meta's value, even when it is null
  metaNull: bool;
  dataStart: u32; dataEnd: u32;
  rawStart: u32; rawEnd: u32;

  parse(p: usize, n: u32): bool {
    this.ptr = p; this.len = n;
    this.metaStart = this.metaEnd = this.dataEnd = this.rawEnd = 0;
    this.metaNull = true;
    if (!head(p, n, 0) || hMajor != 5 || hArg > <u64>n) return false;
    const count = hArg;
    let i = hEnd;
    for (let k: u64 = 0; k < count; k++) {
      if (!str(p, n, i, 3)) return false;
      const kp = sPtr, kl = sLen, start = hEnd;
      const end = skip(p, n, start, 1);
      if (end < 0) return false;
      i = <u32>end;
      const isNull = load<u8>(p + start) == 0xf6;
      if (eqUtf8(kp, kl, "meta")) { this.metaStart = start; this.metaEnd = i; this.metaNull = isNull; }
      else if (isNull) continue;
      else if (eqUtf8(kp, kl, "data")) { this.dataStart = start; this.dataEnd = i; }
      else if (eqUtf8(kp, kl, "raw")) { this.rawStart = start; this.rawEnd = i; }
    }
    return i == n;
  }

  /** Whether raw is there; then rawPtr()/rawLen() are its bytes. */
  hasRaw(): bool { return this.rawEnd != 0 && str(this.ptr, this.rawEnd, this.rawStart, 2); }
  /** The raw payload's bytes (after hasRaw()). */
  rawPtr(): usize { str(this.ptr, this.rawEnd, this.rawStart, 2); return sPtr; }
  rawLen(): u32 { return this.rawEnd != 0 && str(this.ptr, this.rawEnd, this.rawStart, 2) ? sLen : 0; }

  /** Finds `key` in the map at [start, end); sets fStart/fEnd to its value. */
  private find(start: u32, end: u32, key: string): bool {
    if (end == 0 || !head(this.ptr, end, start) || hMajor != 5) return false;
    const count = hArg;
    let i = hEnd;
    for (let k: u64 = 0; k < count; k++) {
      const isText = str(this.ptr, end, i, 3);
      let at: i64;
      if (isText) at = hEnd; else { at = skip(this.ptr, end, i, 1); if (at < 0) return false; }
      const kp = sPtr, kl = sLen;
      const next = skip(this.ptr, end, <u32>at, 1);
      if (next < 0) return false;
      i = <u32>next;
      if (isText && eqUtf8(kp, kl, key)) { fStart = <u32>at; fEnd = i; return true; }
    }
    return false;
  }

  /** Whether meta[key] is there (a text value). */
  hasMeta(key: string): bool {
    return !this.metaNull && this.find(this.metaStart, this.metaEnd, key) && str(this.ptr, fEnd, fStart, 3);
  }

  /** Returns data[key], or null. */
  dataGet(key: string): Value | null {
    if (this.dataEnd == 0 || !this.find(this.dataStart, this.dataEnd, key)) return null;
    VALUE.ptr = this.ptr + fStart;
    VALUE.len = fEnd - fStart;
    return VALUE;
  }

  /** Sends on the input with meta[key] = value: in place if the key is there, else appended
   *  (meta made if it is null). Drops (with an error log line) if out of memory. */
  replaceMeta(key: string, value: string): u64 {
    const p = this.ptr, kn = utf8Len(key), vn = utf8Len(value);
    const start = this.metaStart, end = this.metaEnd;
    // The host's canonical input always has the key; anything else is not spliced.
    if (end == 0) {
      log(Level.Error, "fluxrig-gear: no meta key in the input, dropped");
      return 0;
    }
    const o = heap.alloc(this.len + kn + vn + 32);
    let w = o;
    memory.copy(w, p, start); w += start;
    let count: u64 = 0, i = start;
    if (!this.metaNull) { head(p, end, start); count = hArg; i = hEnd; }
    if (!this.metaNull && this.find(start, end, key)) {
      w = putHead(w, 5, count);
      memory.copy(w, p + i, fStart - i); w += fStart - i;
      w = putHead(w, 3, vn); w = writeUtf8(value, w);
      memory.copy(w, p + fEnd, end - fEnd); w += end - fEnd;
    } else {
      w = putHead(w, 5, count + 1);
      if (!this.metaNull) { memory.copy(w, p + i, end - i); w += end - i; }
      w = putHead(w, 3, kn); w = writeUtf8(key, w);
      w = putHead(w, 3, vn); w = writeUtf8(value, w);
    }
    memory.copy(w, p + end, this.len - end); w += this.len - end;
    return (<u64>o << 32) | <u64>(w - o);
  }
}
let fStart: u32 = 0;
let fEnd: u32 = 0;
const MSG = changetype<Msg>(memory.data(offsetof<Msg>()));

function putHead(w: usize, major: u32, v: u64): usize {
  const m = major << 5;
  if (v < 24) { store<u8>(w, m | <u32>v); return w + 1; }
  const k: u32 = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffff ? 4 : 8;
  store<u8>(w, m | (k == 1 ? 24 : k == 2 ? 25 : k == 4 ? 26 : 27));
  for (let j: u32 = 0; j < k; j++) store<u8>(w + 1 + j, <u32>(v >> (8 * (k - 1 - j))));
  return w + 1 + k;
}

// ---- outcomes ----

/** Sends the input on unchanged (no copy). */
export function pass(m: Msg): u64 { return (<u64>m.ptr << 32) | <u64>m.len; }

/** Drops the message. */
export function drop(): u64 { return 0; }

/** process(ptr, len): parses the input and calls `gear`; a message that does not parse is
 *  dropped with an error log line. */
export function run(ptr: usize, len: u32, gear: (m: Msg) => u64): u64 {
  if (!MSG.parse(ptr, len)) {
    log(Level.Error, "fluxrig-gear: input is not a fluxMsg, dropped");
    return 0;
  }
  return gear(MSG);
}
