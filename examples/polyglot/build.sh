#!/usr/bin/env bash
# Builds polyglot.wasm, the tutorial's Zig gear, with real Zig 0.14.1 (the last release
# with std.heap.GeneralPurposeAllocator): `pip install ziglang==0.14.1`.
#
#   ./build.sh          rebuild polyglot.wasm in place
#   ./build.sh --check  build to a temporary folder and fail if it differs from the
#                       committed polyglot.wasm (what CI runs)
#
# Flags, where the tutorial's `zig build-lib ... -dynamic` no longer works (Zig 0.12 and
# later refuse dynamic linking for wasm32-freestanding):
#   build-exe -fno-entry -rdynamic   a module with no _start that exports every `export fn`
#   --stack 65536                    64 KiB of stack, so memory starts at 2 pages, not 17
#                                    (the scenario's memory_limit_pages is 16)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
want=0.14.1
if command -v zig >/dev/null 2>&1 && [ "$(zig version)" = "$want" ]; then
    zig=(zig)
elif python3 -c "import ziglang" 2>/dev/null; then
    zig=(python3 -m ziglang)
else
    echo "build.sh: Zig $want not found; install it with: pip install ziglang==$want" >&2
    exit 1
fi
got=$("${zig[@]}" version)
[ "$got" = "$want" ] || { echo "build.sh: Zig $got found, $want needed" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$out" && "${zig[@]}" build-exe "$here/polyglot.zig" -target wasm32-freestanding -fno-entry -rdynamic \
    -O ReleaseSmall --stack 65536 -femit-bin="$out/polyglot.wasm")
if [ "${1:-}" = "--check" ]; then
    if cmp -s "$out/polyglot.wasm" "$here/polyglot.wasm"; then
        echo "polyglot.wasm: rebuilt with Zig $want, identical to the committed file ($(wc -c <"$here/polyglot.wasm") bytes)"
    else
        echo "polyglot.wasm: rebuilt with Zig $want, DIFFERS from the committed file; run examples/polyglot/build.sh" >&2
        exit 1
    fi
else
    cp "$out/polyglot.wasm" "$here/polyglot.wasm"
    echo "wrote $here/polyglot.wasm ($(wc -c <"$here/polyglot.wasm") bytes)"
fi
