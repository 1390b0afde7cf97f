//! fluxrig.zig: write fluxrig Wasm gears in Zig (0.14.1). One file, no std needed.
//!
//! Contract (spec/fluxrig-compat.md sections 1 and 2): a gear exports `alloc(len) -> ptr`,
//! `free(ptr, len)` and `process(ptr, len) -> i64` (pointer in the high 32 bits, length in
//! the low 32, length 0 = drop) and may import only `env.log(level, ptr, len)`. The host
//! hands `process` one fluxMsg (a CBOR map) and reads one back.
//!
//! Use: write `fn check(m: *const fluxrig.Msg) fluxrig.Outcome` and
//! `comptime { fluxrig.exportGear(check); }`, which exports `alloc`, `free` and `process`.
//! Outcomes: `.pass` (the input, no copy), `.drop`, or `m.replaceMeta(key, value)`.
//! Reading looks at the input in place: `m.raw()`, `m.metaGet(key)`, `m.dataGet(key)` and
//! `Value.number()`. The host always hands a gear the canonical encoding (keys in
//! fluxrig's order, shortest heads, floats as 8 bytes), so splicing the input, as
//! `replaceMeta` does, writes exactly what fluxrig's encoder (and the Rust kit) would.
//!
//! Guarantees: every read is bounds-checked (a message that does not parse is dropped with
//! an error log line); nesting deeper than `max_depth` is refused. Memory: a bump arena
//! after `__heap_base` that starts over whenever every allocation has been freed, which
//! the host does after each message; keep state across messages in plain globals.
//!
//! Out of scope: building messages from scratch, writing data values, WASI.

/// Log levels of `env.log`.
pub const Level = enum(i32) { debug = 1, info = 2, warn = 3, err = 4 };

extern "env" fn log(level: i32, ptr: [*]const u8, len: usize) void;

/// Writes one line to the host's log, under the gear's name.
pub fn logLine(level: Level, text: []const u8) void {
    log(@intFromEnum(level), text.ptr, text.len);
}

/// A log line built without std.fmt: text and decimal numbers; what does not fit is cut.
pub const Line = struct {
    buf: [200]u8 = undefined,
    len: usize = 0,

    /// Appends text.
    pub fn text(self: *Line, s: []const u8) *Line {
        for (s) |b| {
            if (self.len == self.buf.len) break;
            self.buf[self.len] = b;
            self.len += 1;
        }
        return self;
    }

    /// Appends `n` in decimal.
    pub fn num(self: *Line, n: u64) *Line {
        var d: [20]u8 = undefined;
        var i: usize = d.len;
        var v = n;
        while (true) {
            i -= 1;
            d[i] = '0' + @as(u8, @intCast(v % 10));
            v /= 10;
            if (v == 0) break;
        }
        return self.text(d[i..]);
    }

    /// Sends the line to the host's log.
    pub fn send(self: *Line, level: Level) void {
        logLine(level, self.buf[0..self.len]);
    }
};

// ---- the arena ----

extern var __heap_base: u8;
var next: usize = 0;
var live: usize = 0;

/// Returns `len` bytes (at least 1), 8-aligned, or null when memory cannot grow.
pub fn alloc(len: usize) ?[*]u8 {
    if (next == 0 or live == 0) next = @intFromPtr(&__heap_base);
    const start = (next + 7) & ~@as(usize, 7);
    const end = @addWithOverflow(start, @max(len, 1));
    if (end[1] != 0) return null;
    const have = @wasmMemorySize(0) * 65536;
    if (end[0] > have and @wasmMemoryGrow(0, (end[0] - have + 65535) / 65536) == -1) return null;
    next = end[0];
    live += 1;
    return @ptrFromInt(start);
}

/// Releases a buffer. The host may free an output that is its input twice (fluxrig does,
/// fluxrig-edge does not): the count saturates at 0.
pub fn free(ptr: [*]u8, len: usize) void {
    _ = ptr;
    _ = len;
    if (live > 0) live -= 1;
}

// ---- CBOR reading ----

/// Maximum nesting of values; deeper input is refused.
pub const max_depth = 32;

const Head = struct { major: u3, arg: u64 };

fn head(p: []const u8, i: *usize) ?Head {
    if (i.* >= p.len) return null;
    const b = p[i.*];
    i.* += 1;
    const ai = b & 31;
    if (ai < 24) return .{ .major = @intCast(b >> 5), .arg = ai };
    if (ai > 27) return null;
    const k = @as(usize, 1) << @intCast(ai - 24);
    if (p.len - i.* < k) return null;
    var v: u64 = 0;
    for (p[i.* .. i.* + k]) |x| v = (v << 8) | x;
    i.* += k;
    return .{ .major = @intCast(b >> 5), .arg = v };
}

fn skip(p: []const u8, i: *usize, depth: u32) bool {
    if (depth > max_depth) return false;
    const h = head(p, i) orelse return false;
    switch (h.major) {
        0, 1, 7 => return true,
        2, 3 => {
            if (h.arg > p.len - i.*) return false;
            i.* += @intCast(h.arg);
            return true;
        },
        4, 5 => {
            if (h.arg > p.len - i.*) return false; // each item is at least one byte
            const n = if (h.major == 5) 2 * h.arg else h.arg;
            var k: u64 = 0;
            while (k < n) : (k += 1) if (!skip(p, i, depth + 1)) return false;
            return true;
        },
        else => return false, // tags
    }
}

fn str(p: []const u8, i: *usize, major: u3) ?[]const u8 {
    const h = head(p, i) orelse return null;
    if (h.major != major or h.arg > p.len - i.*) return null;
    const s = p[i.* .. i.* + @as(usize, @intCast(h.arg))];
    i.* += s.len;
    return s;
}

fn eql(a: []const u8, b: []const u8) bool {
    if (a.len != b.len) return false;
    for (a, b) |x, y| if (x != y) return false;
    return true;
}

/// One CBOR value of the input, head included.
pub const Value = struct {
    bytes: []const u8,

    /// Returns the number an integer or float holds, or null for anything else.
    pub fn number(self: Value) ?f64 {
        var i: usize = 0;
        const h = head(self.bytes, &i) orelse return null;
        return switch (h.major) {
            0 => @floatFromInt(h.arg),
            1 => -1.0 - @as(f64, @floatFromInt(h.arg)),
            7 => switch (self.bytes[0] & 31) {
                25 => @floatCast(@as(f16, @bitCast(@as(u16, @intCast(h.arg))))),
                26 => @floatCast(@as(f32, @bitCast(@as(u32, @intCast(h.arg))))),
                27 => @bitCast(h.arg),
                else => null,
            },
            else => null,
        };
    }

    /// Returns the text of a text value, or null.
    pub fn text(self: Value) ?[]const u8 {
        var i: usize = 0;
        return str(self.bytes, &i, 3);
    }
};

/// Where a span of the input starts and ends (end 0: absent or null).
const Span = struct { start: usize = 0, end: usize = 0 };

/// The input message: where `meta`, `data` and `raw` are.
pub const Msg = struct {
    bytes: []const u8,
    meta: Span = .{},
    data: Span = .{},
    raw_: Span = .{},
    meta_at: Span = .{}, // the meta value even when it is null

    /// Parses the input; null if it is not one CBOR map with text keys and nothing after.
    pub fn parse(bytes: []const u8) ?Msg {
        var m = Msg{ .bytes = bytes };
        var i: usize = 0;
        const h = head(bytes, &i) orelse return null;
        if (h.major != 5 or h.arg > bytes.len) return null;
        var k: u64 = 0;
        while (k < h.arg) : (k += 1) {
            const key = str(bytes, &i, 3) orelse return null;
            const s = Span{ .start = i, .end = blk: {
                if (!skip(bytes, &i, 1)) return null;
                break :blk i;
            } };
            if (eql(key, "meta")) m.meta_at = s;
            if (bytes[s.start] == 0xf6) continue;
            if (eql(key, "meta")) m.meta = s else if (eql(key, "data")) m.data = s else if (eql(key, "raw")) m.raw_ = s;
        }
        if (i != bytes.len) return null;
        return m;
    }

    /// Returns the raw payload, or null.
    pub fn raw(self: *const Msg) ?[]const u8 {
        if (self.raw_.end == 0) return null;
        var i = self.raw_.start;
        return str(self.bytes[0..self.raw_.end], &i, 2);
    }

    fn find(self: *const Msg, s: Span, key: []const u8) ?Span {
        if (s.end == 0) return null;
        const p = self.bytes[0..s.end];
        var i = s.start;
        const h = head(p, &i) orelse return null;
        if (h.major != 5) return null;
        var k: u64 = 0;
        while (k < h.arg) : (k += 1) {
            const at = i;
            const kt = str(p, &i, 3);
            if (kt == null) {
                i = at;
                if (!skip(p, &i, 1)) return null;
            }
            const v = Span{ .start = i, .end = blk: {
                if (!skip(p, &i, 1)) return null;
                break :blk i;
            } };
            if (kt) |t| if (eql(t, key)) return v;
        }
        return null;
    }

    /// Returns `meta[key]`, or null.
    pub fn metaGet(self: *const Msg, key: []const u8) ?[]const u8 {
        const v = self.find(self.meta, key) orelse return null;
        return (Value{ .bytes = self.bytes[v.start..v.end] }).text();
    }

    /// Returns `data[key]`, or null.
    pub fn dataGet(self: *const Msg, key: []const u8) ?Value {
        const v = self.find(self.data, key) orelse return null;
        return .{ .bytes = self.bytes[v.start..v.end] };
    }

    /// Sends on the input with `meta[key] = value`: in place if the key is there, else
    /// appended (meta made if it is null). Drops (with an error log line) if out of memory.
    pub fn replaceMeta(self: *const Msg, key: []const u8, value: []const u8) Outcome {
        const p = self.bytes;
        // The host's canonical input always has the key; anything else is not spliced.
        if (self.meta_at.end == 0) {
            logLine(.err, "fluxrig-gear: no meta key in the input, dropped");
            return .drop;
        }
        const o = (alloc(p.len + key.len + value.len + 32) orelse {
            logLine(.err, "fluxrig-gear: out of memory");
            return .drop;
        })[0 .. p.len + key.len + value.len + 32];
        const s = self.meta_at;
        var w: usize = 0;
        put(o, &w, p[0..s.start]);
        var i = s.start;
        var count: u64 = 0;
        if (self.meta.end != 0) count = (head(p[0..s.end], &i) orelse unreachable).arg;
        if (self.find(self.meta, key)) |found| {
            putHead(o, &w, 5, count);
            put(o, &w, p[i..found.start]);
            putHead(o, &w, 3, value.len);
            put(o, &w, value);
            put(o, &w, p[found.end..s.end]);
        } else {
            putHead(o, &w, 5, count + 1);
            if (self.meta.end != 0) put(o, &w, p[i..s.end]);
            putHead(o, &w, 3, key.len);
            put(o, &w, key);
            putHead(o, &w, 3, value.len);
            put(o, &w, value);
        }
        put(o, &w, p[s.end..]);
        return .{ .replace = o[0..w] };
    }
};

fn put(o: []u8, w: *usize, s: []const u8) void {
    for (s, 0..) |b, j| o[w.* + j] = b;
    w.* += s.len;
}

fn putHead(o: []u8, w: *usize, major: u8, v: u64) void {
    const m: u8 = major << 5;
    if (v < 24) {
        o[w.*] = m | @as(u8, @intCast(v));
        w.* += 1;
        return;
    }
    const k: u6 = if (v <= 0xff) 1 else if (v <= 0xffff) 2 else if (v <= 0xffffffff) 4 else 8;
    o[w.*] = m | @as(u8, switch (k) {
        1 => 24,
        2 => 25,
        4 => 26,
        else => 27,
    });
    var j: u6 = 0;
    while (j < k) : (j += 1) o[w.* + 1 + j] = @truncate(v >> (8 * (k - 1 - j)));
    w.* += 1 + k;
}

/// What a gear does with one message.
pub const Outcome = union(enum) {
    /// Sends the input on unchanged (no copy).
    pass,
    /// Drops the message.
    drop,
    /// Sends these bytes (from `alloc`, a whole fluxMsg) on instead.
    replace: []const u8,
};

/// Exports `alloc`, `free` and `process` around `f`; call it in a `comptime` block.
pub fn exportGear(comptime f: fn (*const Msg) Outcome) void {
    const Abi = struct {
        fn allocExport(len: usize) callconv(.c) ?[*]u8 {
            return alloc(len);
        }
        fn freeExport(ptr: [*]u8, len: usize) callconv(.c) void {
            free(ptr, len);
        }
        fn processExport(ptr: [*]const u8, len: usize) callconv(.c) u64 {
            const m = Msg.parse(ptr[0..len]) orelse {
                logLine(.err, "fluxrig-gear: input is not a fluxMsg, dropped");
                return 0;
            };
            return switch (f(&m)) {
                .pass => (@as(u64, @intFromPtr(ptr)) << 32) | len,
                .drop => 0,
                .replace => |b| (@as(u64, @intFromPtr(b.ptr)) << 32) | b.len,
            };
        }
    };
    @export(&Abi.allocExport, .{ .name = "alloc" });
    @export(&Abi.freeExport, .{ .name = "free" });
    @export(&Abi.processExport, .{ .name = "process" });
}
