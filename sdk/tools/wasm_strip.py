#!/usr/bin/env python3
"""Strips every custom section (names, producers, target features) from a Wasm module.

    wasm_strip.py IN [OUT]      write the stripped module to OUT (default: IN, in place)
    wasm_strip.py --info FILE   print size, sections and initial/maximum memory pages

Signing appends its own custom sections afterwards (`fluxrig wasm sign`, `wasm import`),
so a module is stripped before it is signed. No dependencies: Python 3 only."""
import sys


def uleb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def sections(b):
    if b[:4] != b"\0asm":
        sys.exit("not a Wasm module")
    i = 8
    while i < len(b):
        sid = b[i]
        size, j = uleb(b, i + 1)
        yield sid, i, j, j + size
        i = j + size


def memory(b):
    for sid, _, j, end in sections(b):
        if sid == 5:
            n, k = uleb(b, j)
            flags, k = uleb(b, k)
            lo, k = uleb(b, k)
            hi = uleb(b, k)[0] if flags & 1 else None
            return lo, hi
    for sid, _, j, end in sections(b):
        if sid == 2:
            return "imported", None
    return None, None


def main():
    if sys.argv[1] == "--info":
        b = open(sys.argv[2], "rb").read()
        names = []
        for sid, _, j, end in sections(b):
            if sid == 0:
                n, k = uleb(b, j)
                names.append("custom:" + b[k:k + n].decode(errors="replace"))
            else:
                names.append(str(sid))
        lo, hi = memory(b)
        print(f"{len(b)} bytes, memory {lo}..{hi} pages, sections {' '.join(names)}")
        return
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else src
    b = open(src, "rb").read()
    out = bytearray(b[:8])
    for sid, start, _, end in sections(b):
        if sid != 0:
            out += b[start:end]
    open(dst, "wb").write(out)


main()
