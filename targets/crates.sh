#!/usr/bin/env bash
# Prints where the bytes of an unstripped ELF go, by crate: the sizes of its function and
# data symbols (llvm-nm, demangled), summed per crate, as one Markdown line:
#
#   targets/crates.sh ELF [N]     # the N largest crates (default 8), e.g.
#   wasmi 310 KiB, wasmparser 120 KiB, core 60 KiB, ... (symbols 720 KiB of 890 KiB loaded)
#
# targets/build.sh keeps the unstripped copy this reads (fluxrig.unstripped beside the
# shipped binary); targets/run.sh puts the line into targets/README.md for each target.
# A symbol belongs to the first crate its demangled path names (`<wasmi::X as core::Y>::z`
# is wasmi's: the type's crate, as cargo-bloat counts); symbols without a Rust path (the C
# library: the musl Zig links in; compiler-rt; the firmware's runtime; rustc's
# unnamed constants `.Lanon.*`) are "C, runtime, unnamed". Sections without symbols (string
# tables of panics and formats merged by the linker, .eh_frame, relocations) are the gap
# between the symbol total and the loaded size, which the line states.
set -euo pipefail
elf=$1
top=${2:-8}
nm=${LLVM_NM:-llvm-nm}
size=${LLVM_SIZE:-llvm-size}
# Loaded bytes: allocated sections, without the zero-filled ones (.bss, the firmware's
# .heap and .stack regions) and without those at address 0 (not loaded: .comment, ...).
loaded=$("$size" -A "$elf" | awk '$1 ~ /^\./ && $1 !~ /^\.(t?bss|heap|stack|uninit)/ && $3 != 0 { s += $2 } END { print s }')
"$nm" --print-size --size-sort --demangle --defined-only "$elf" | python3 -c '
import re, sys
top, loaded = int(sys.argv[1]), int(sys.argv[2])
sizes = {}
for line in sys.stdin:
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 4 or parts[2].lower() not in ("t", "d", "r", "v", "w"):
        continue
    size, name = int(parts[1], 16), parts[3]
    # "<wasmi::a::B as core::fmt::Debug>::fmt", "<&mut T as X>::y": the first path in it.
    m = re.match(r"(?:<|&|\*const |\*mut |mut |dyn |\[)*([A-Za-z_][A-Za-z0-9_]*)::", name)
    crate = m.group(1) if m else "C, runtime, unnamed"
    sizes[crate] = sizes.get(crate, 0) + size
total = sum(sizes.values())
kib = lambda b: f"{b / 1024:.0f} KiB"
ranked = sorted(sizes.items(), key=lambda kv: -kv[1])
parts = [f"{c} {kib(s)}" for c, s in ranked[:top]]
rest = sum(s for _, s in ranked[top:])
if rest:
    parts.append(f"others {kib(rest)}")
print(", ".join(parts) + f" (symbols {kib(total)} of {kib(loaded)} loaded)")
' "$top" "$loaded"
