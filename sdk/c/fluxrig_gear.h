/* fluxrig_gear.h: write fluxrig Wasm gears in C. One header, no libc, no WASI.
 *
 * Contract (spec/fluxrig-compat.md sections 1 and 2): a gear exports alloc(len) -> ptr,
 * free(ptr, len) and process(ptr, len) -> i64 (pointer in the high 32 bits, length in the
 * low 32, length 0 = drop) and may import only env.log(level, ptr, len). The host hands
 * process one fluxMsg (a CBOR map) and reads one back.
 *
 * Use: write `uint64_t my_gear(fr_msg *m)` returning fr_pass(m), fr_drop() or
 * fr_replace_meta(m, key, value), then `FLUXRIG_GEAR(my_gear)` in exactly one .c file: it
 * defines the alloc, free and process exports. Build with
 *
 *   zig cc -target wasm32-freestanding -Os -nostdlib -Wl,--no-entry \
 *          -Wl,-z,stack-size=65536 -Wl,--strip-all gear.c -o gear.wasm
 *
 * Reading: fr_raw(), fr_meta_get(), fr_data_get() and fr_val_number() look at the input in
 * place (no copies). The host always hands a gear the canonical encoding (keys in fluxrig's
 * order, shortest heads, floats as 8 bytes), so splicing the input, as fr_replace_meta
 * does, writes exactly what fluxrig's encoder (and the Rust kit) would.
 *
 * Guarantees: every read is bounds-checked (a message that does not parse is dropped with
 * an error log line, never read past); nesting deeper than FR_MAX_DEPTH is refused. Memory:
 * a bump arena after __heap_base that starts over whenever every allocation has been freed,
 * which the host does after each message; keep state across messages in plain globals.
 *
 * Out of scope: building messages from scratch, writing data values, WASI.
 */
#ifndef FLUXRIG_GEAR_H
#define FLUXRIG_GEAR_H

#include <stdint.h>
#include <stddef.h>

#define FR_MAX_DEPTH 32

/* Log levels of env.log. */
enum { FR_DEBUG = 1, FR_INFO = 2, FR_WARN = 3, FR_ERROR = 4 };

__attribute__((import_module("env"), import_name("log")))
void fr__host_log(int32_t level, const char *ptr, int32_t len);

/* A span of the input: the bytes of one CBOR item, head included. */
typedef struct { uint32_t start, end; } fr_span;

/* The input message: where each top-level value is (end == 0: key absent). */
typedef struct {
    const uint8_t *bytes;
    uint32_t len;
    fr_span meta, data, raw;
} fr_msg;

/* One CBOR value inside the input. */
typedef struct {
    const uint8_t *bytes;
    fr_span span;
} fr_val;

/* ---- small helpers ---- */

static inline uint32_t fr_strlen(const char *s) { uint32_t n = 0; while (s[n]) n++; return n; }

static inline void fr__copy(uint8_t *d, const uint8_t *s, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) d[i] = s[i];
}

static inline int fr__eq(const uint8_t *a, uint32_t an, const char *b, uint32_t bn) {
    if (an != bn) return 0;
    for (uint32_t i = 0; i < an; i++) if (a[i] != (uint8_t)b[i]) return 0;
    return 1;
}

/* Writes one log line of `len` bytes. */
static inline void fr_log(int level, const char *text, uint32_t len) { fr__host_log(level, text, (int32_t)len); }

/* A log line built without printf: text and decimal numbers; what does not fit is cut. */
typedef struct { char buf[200]; uint32_t len; } fr_line;

static inline fr_line *fr_line_text(fr_line *l, const char *s) {
    while (*s && l->len < sizeof l->buf) l->buf[l->len++] = *s++;
    return l;
}

static inline fr_line *fr_line_num(fr_line *l, uint64_t n) {
    char d[20]; int i = 20;
    do { d[--i] = (char)('0' + n % 10); n /= 10; } while (n);
    while (i < 20 && l->len < sizeof l->buf) l->buf[l->len++] = d[i++];
    return l;
}

static inline void fr_line_log(fr_line *l, int level) { fr_log(level, l->buf, l->len); }

/* ---- the arena ---- */

extern unsigned char __heap_base;
static uint32_t fr__next, fr__live;

/* Returns `len` bytes (at least 1), 8-aligned, or 0 when memory cannot grow. */
static inline void *fr_alloc(uint32_t len) {
    if (fr__next == 0 || fr__live == 0) fr__next = (uint32_t)(uintptr_t)&__heap_base;
    uint32_t start = (fr__next + 7) & ~7u;
    uint64_t end = (uint64_t)start + (len ? len : 1);
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * 65536;
    if (end > 0xffffffffu) return 0;
    if (end > have && __builtin_wasm_memory_grow(0, (size_t)((end - have + 65535) / 65536)) == (size_t)-1)
        return 0;
    fr__next = (uint32_t)end;
    fr__live++;
    return (void *)(uintptr_t)start;
}

/* Releases a buffer. The host may free an output that is its input twice (fluxrig does,
 * fluxrig-edge does not): the count saturates at 0. */
static inline void fr_free(void *ptr, uint32_t len) {
    (void)ptr; (void)len;
    if (fr__live) fr__live--;
}

/* ---- CBOR reading ---- */

/* Reads a head at *i: major type, argument. Returns 0 on a bad or truncated head, or an
 * indefinite length (never in a fluxMsg). */
static inline int fr__head(const uint8_t *p, uint32_t n, uint32_t *i, int *major, uint64_t *arg) {
    if (*i >= n) return 0;
    uint8_t b = p[(*i)++];
    *major = b >> 5;
    uint32_t ai = b & 31, k;
    if (ai < 24) { *arg = ai; return 1; }
    if (ai > 27) return 0;
    k = 1u << (ai - 24);
    if (n - *i < k) return 0;
    uint64_t v = 0;
    for (uint32_t j = 0; j < k; j++) v = (v << 8) | p[(*i)++];
    *arg = v;
    return 1;
}

/* Moves *i past one item; 0 if it is malformed, truncated, tagged or too deep. */
static inline int fr__skip(const uint8_t *p, uint32_t n, uint32_t *i, int depth) {
    int major; uint64_t arg;
    if (depth > FR_MAX_DEPTH || !fr__head(p, n, i, &major, &arg)) return 0;
    switch (major) {
    case 0: case 1: case 7: return 1;
    case 2: case 3:
        if (arg > n - *i) return 0;
        *i += (uint32_t)arg; return 1;
    case 4: case 5:
        if (arg > n - *i) return 0; /* each item is at least one byte */
        for (uint64_t k = 0; k < (major == 5 ? 2 * arg : arg); k++)
            if (!fr__skip(p, n, i, depth + 1)) return 0;
        return 1;
    default: return 0; /* tags */
    }
}

/* Reads a text or byte string of major type `major` at *i into (ptr, len). */
static inline int fr__str(const uint8_t *p, uint32_t n, uint32_t *i, int want, const uint8_t **s, uint32_t *len) {
    int major; uint64_t arg;
    if (!fr__head(p, n, i, &major, &arg) || major != want || arg > n - *i) return 0;
    *s = p + *i; *len = (uint32_t)arg; *i += (uint32_t)arg;
    return 1;
}

/* Parses the input: finds meta, data and raw. Returns 0 if it is not one CBOR map with
 * text keys and nothing after it. */
static inline int fr_msg_parse(fr_msg *m, const uint8_t *p, uint32_t n) {
    uint32_t i = 0; int major; uint64_t count;
    m->bytes = p; m->len = n;
    m->meta.end = m->data.end = m->raw.end = 0;
    if (!fr__head(p, n, &i, &major, &count) || major != 5 || count > n) return 0;
    for (uint64_t k = 0; k < count; k++) {
        const uint8_t *key; uint32_t klen;
        if (!fr__str(p, n, &i, 3, &key, &klen)) return 0;
        fr_span s = { i, 0 };
        if (!fr__skip(p, n, &i, 1)) return 0;
        s.end = i;
        if (p[s.start] == 0xf6) continue; /* null: absent */
        if (fr__eq(key, klen, "meta", 4)) m->meta = s;
        else if (fr__eq(key, klen, "data", 4)) m->data = s;
        else if (fr__eq(key, klen, "raw", 3)) m->raw = s;
    }
    return i == n;
}

/* Sets (ptr, len) to the raw payload; 0 if raw is null. */
static inline int fr_raw(const fr_msg *m, const uint8_t **ptr, uint32_t *len) {
    uint32_t i = m->raw.start;
    return m->raw.end && fr__str(m->bytes, m->raw.end, &i, 2, ptr, len);
}

/* Finds `key` in the map at span s; sets *val to its value's span. */
static inline int fr__find(const fr_msg *m, fr_span s, const char *key, fr_span *val) {
    uint32_t i = s.start, kn = fr_strlen(key); int major; uint64_t count;
    if (!s.end || !fr__head(m->bytes, s.end, &i, &major, &count) || major != 5) return 0;
    for (uint64_t k = 0; k < count; k++) {
        const uint8_t *kp; uint32_t klen; uint32_t at = i;
        int is_text = fr__str(m->bytes, s.end, &i, 3, &kp, &klen);
        if (!is_text) { i = at; if (!fr__skip(m->bytes, s.end, &i, 1)) return 0; }
        val->start = i;
        if (!fr__skip(m->bytes, s.end, &i, 1)) return 0;
        val->end = i;
        if (is_text && fr__eq(kp, klen, key, kn)) return 1;
    }
    return 0;
}

/* Sets (ptr, len) to meta[key]; 0 if there is none. */
static inline int fr_meta_get(const fr_msg *m, const char *key, const uint8_t **ptr, uint32_t *len) {
    fr_span v; uint32_t i;
    if (!fr__find(m, m->meta, key, &v)) return 0;
    i = v.start;
    return fr__str(m->bytes, v.end, &i, 3, ptr, len);
}

/* Sets *val to data[key]; 0 if there is none. */
static inline int fr_data_get(const fr_msg *m, const char *key, fr_val *val) {
    val->bytes = m->bytes;
    return fr__find(m, m->data, key, &val->span);
}

static inline double fr__half(uint16_t h) {
    int e = (h >> 10) & 31; double f = h & 1023, v;
    if (e == 0) v = f / 16777216.0;
    else if (e == 31) v = f == 0 ? __builtin_inf() : __builtin_nan("");
    else { v = 1.0 + f / 1024.0; for (; e > 15; e--) v *= 2; for (; e < 15; e++) v /= 2; }
    return (h & 0x8000) ? -v : v;
}

/* Sets *out to the number an integer or float value holds; 0 for anything else. */
static inline int fr_val_number(const fr_val *v, double *out) {
    const uint8_t *p = v->bytes + v->span.start;
    uint32_t i = 0, n = v->span.end - v->span.start; int major; uint64_t arg;
    if (!fr__head(p, n, &i, &major, &arg)) return 0;
    if (major == 0) { *out = (double)arg; return 1; }
    if (major == 1) { *out = -1.0 - (double)arg; return 1; }
    if (major != 7) return 0;
    switch (p[0] & 31) {
    case 25: *out = fr__half((uint16_t)arg); return 1;
    case 26: { uint32_t b = (uint32_t)arg; float f; __builtin_memcpy(&f, &b, 4); *out = f; return 1; }
    case 27: { double d; __builtin_memcpy(&d, &arg, 8); *out = d; return 1; }
    default: return 0;
    }
}

/* ---- outcomes ---- */

/* Sends the input on unchanged (no copy). */
static inline uint64_t fr_pass(const fr_msg *m) {
    return ((uint64_t)(uintptr_t)m->bytes << 32) | m->len;
}

/* Drops the message. */
static inline uint64_t fr_drop(void) { return 0; }

/* Sends on `len` bytes at `ptr` (from fr_alloc) as the output. */
static inline uint64_t fr_replace(const uint8_t *ptr, uint32_t len) {
    return ((uint64_t)(uintptr_t)ptr << 32) | len;
}

static inline uint32_t fr__put_head(uint8_t *o, int major, uint64_t v) {
    uint8_t m = (uint8_t)(major << 5);
    if (v < 24) { o[0] = m | (uint8_t)v; return 1; }
    uint32_t k = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
    o[0] = m | (uint8_t)(k == 1 ? 24 : k == 2 ? 25 : k == 4 ? 26 : 27);
    for (uint32_t j = 0; j < k; j++) o[1 + j] = (uint8_t)(v >> (8 * (k - 1 - j)));
    return 1 + k;
}

/* Sends on the input with meta[key] = value: in place if the key is there, else appended
 * (meta made if it is null). Drops the message (with an error log line) if out of memory. */
static inline uint64_t fr_replace_meta(const fr_msg *m, const char *key, const char *value) {
    uint32_t kn = fr_strlen(key), vn = fr_strlen(value);
    const uint8_t *p = m->bytes;
    uint8_t *o = fr_alloc(m->len + kn + vn + 32);
    if (!o) { fr_log(FR_ERROR, "fluxrig-gear: out of memory", fr_strlen("fluxrig-gear: out of memory")); return 0; }
    /* meta's value is where the key "meta" ends; with meta null, m->meta is empty and the
     * null is found again here. */
    uint32_t start, end, i = 0, w = 0; int major; uint64_t count = 0;
    if (m->meta.end) { start = m->meta.start; end = m->meta.end; }
    else {
        fr__head(p, m->len, &i, &major, &count);
        for (start = end = 0; !end;) {
            const uint8_t *kp; uint32_t klen;
            if (!fr__str(p, m->len, &i, 3, &kp, &klen)) { /* no meta key: never from the host */
                const char *t = "fluxrig-gear: no meta key in the input, dropped";
                fr_log(FR_ERROR, t, fr_strlen(t));
                return 0;
            }
            uint32_t s = i;
            if (!fr__skip(p, m->len, &i, 1)) return 0;
            if (fr__eq(kp, klen, "meta", 4)) { start = s; end = i; }
        }
        count = 0;
    }
    fr__copy(o, p, start); w = start;
    fr_span found = { 0, 0 };
    int has = m->meta.end && fr__find(m, m->meta, key, &found);
    if (m->meta.end) { i = start; fr__head(p, end, &i, &major, &count); }
    w += fr__put_head(o + w, 5, has ? count : count + 1);
    if (has) {
        /* entries before the value, the new value, entries after it */
        fr__copy(o + w, p + i, found.start - i); w += found.start - i;
        w += fr__put_head(o + w, 3, vn); fr__copy(o + w, (const uint8_t *)value, vn); w += vn;
        fr__copy(o + w, p + found.end, end - found.end); w += end - found.end;
    } else {
        fr__copy(o + w, p + i, end - i); w += end - i;
        w += fr__put_head(o + w, 3, kn); fr__copy(o + w, (const uint8_t *)key, kn); w += kn;
        w += fr__put_head(o + w, 3, vn); fr__copy(o + w, (const uint8_t *)value, vn); w += vn;
    }
    fr__copy(o + w, p + end, m->len - end); w += m->len - end;
    return fr_replace(o, w);
}

static inline void fr__not_a_msg(void) {
    const char *t = "fluxrig-gear: input is not a fluxMsg, dropped";
    fr_log(FR_ERROR, t, fr_strlen(t));
}

/* Defines the exports alloc, free and process around `uint64_t fn(fr_msg *)`. A message
 * that does not parse is dropped with an error log line. The C names are fr__export_*, so
 * they clash with no libc `free` or `malloc`. */
#define FLUXRIG_GEAR(fn)                                                              \
    __attribute__((export_name("alloc"))) void *fr__export_alloc(uint32_t len) { return fr_alloc(len); } \
    __attribute__((export_name("free"))) void fr__export_free(void *ptr, uint32_t len) { fr_free(ptr, len); } \
    __attribute__((export_name("process"))) uint64_t fr__export_process(uint8_t *ptr, uint32_t len) { \
        fr_msg m;                                                                       \
        if (!fr_msg_parse(&m, ptr, len)) {                                              \
            fr__not_a_msg();                                                   \
            return 0;                                                                   \
        }                                                                               \
        return fn(&m);                                                                  \
    }

#endif
