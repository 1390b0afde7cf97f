#!/usr/bin/env python3
"""Compares the CBOR outputs of `fluxrig run --output-format cbor` across languages.

    outputs.py LANG=FILE...     exit 0 if every FILE holds the same messages, byte for byte,
                                except the `t` of the hop `fluxrig run` stamped (see below)

Why `t` is masked: every gear a message enters adds a hop `{g, p, t}` to its path, where
`g` and `p` derive from the gear's name (the same in every scenario here) and `t` is the
wall clock when the rack delivered the message. `t` is the one byte range two runs of the
same module on the same input cannot share; this script overwrites the 8 bytes of `t` in
the LAST hop of each output (the one `fluxrig run` stamped) with zeros, after checking that
it is there and a 64-bit integer, and compares everything else exactly. Hops that came
with the input (their `t` is in the input) are compared as they are.

Python 3 only; a CBOR walker of its own for the little fluxMsg uses."""
import sys


def head(b, i):
    x = b[i]
    major, ai = x >> 5, x & 31
    i += 1
    if ai < 24:
        return major, ai, i
    n = {24: 1, 25: 2, 26: 4, 27: 8}[ai]
    return major, int.from_bytes(b[i:i + n], "big"), i + n


def skip(b, i):
    major, arg, i = head(b, i)
    if major in (2, 3):
        return i + arg
    if major == 4:
        for _ in range(arg):
            i = skip(b, i)
    elif major == 5:
        for _ in range(2 * arg):
            i = skip(b, i)
    elif major == 6:
        raise ValueError("tag in output")
    return i


def items(b):
    """Yields (start, end, offset of the last hop's t bytes or None) for each item."""
    i = 0
    while i < len(b):
        start = i
        major, n, i = head(b, i)
        assert major == 5, f"item at {start} is not a map"
        t_at = None
        for _ in range(n):
            key_start = i
            i = skip(b, i)
            key = b[key_start:i]
            if key == b"\x64path" and b[i] != 0xF6:
                _, hops, j = head(b, i)
                for _ in range(hops):
                    _, k, j = head(b, j)
                    for _ in range(k):
                        kstart = j
                        j = skip(b, j)
                        if b[kstart:j] == b"\x61t":
                            assert b[j] == 0x1B, "hop t is not a 64-bit integer"
                            t_at = j + 1
                        j = skip(b, j)
            i = skip(b, i)
        assert t_at is not None, f"item at {start} has no hop stamped by the rack"
        yield start, i, t_at


def masked(path):
    b = bytearray(open(path, "rb").read())
    count = 0
    for _, _, t_at in items(bytes(b)):
        b[t_at:t_at + 8] = bytes(8)
        count += 1
    return bytes(b), count


def main():
    runs = [a.split("=", 1) for a in sys.argv[1:]]
    base_lang, base_path = runs[0]
    base, n = masked(base_path)
    ok = True
    for lang, path in runs[1:]:
        other, m = masked(path)
        if open(path, "rb").read() == open(base_path, "rb").read():
            print(f"  {lang}: {m} messages, {len(other)} bytes, identical to {base_lang} with nothing masked")
            continue
        if other == base:
            print(f"  {lang}: {m} messages, {len(other)} bytes, identical to {base_lang} (the rack's hop t masked)")
            continue
        ok = False
        at = next((k for k in range(min(len(base), len(other))) if base[k] != other[k]), min(len(base), len(other)))
        print(f"  {lang}: DIFFERS from {base_lang} at byte {at} ({m} vs {n} messages, {len(other)} vs {len(base)} bytes)")
        print(f"    {base_lang}: {base[max(0, at - 16):at + 16].hex()}")
        print(f"    {lang}: {other[max(0, at - 16):at + 16].hex()}")
    sys.exit(0 if ok else 1)


main()
