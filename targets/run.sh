#!/usr/bin/env bash
# Builds and checks every edge target, and writes targets/README.md from what it measured.
#
#   targets/run.sh                 all targets
#   targets/run.sh aarch64 mips    some of them (the README keeps the others' last rows)
#   targets/run.sh --readme        only rewrite targets/README.md from the last rows
#
# Gateways (aarch64 armv7 riscv64 mips mipsel): builds the static release `fluxrig`
# (targets/build.sh), records its stripped size and where the bytes go (targets/crates.sh),
# runs the tutorial's steps with it, then the whole test suite (core, vectors, CLI end to
# end with the tutorial) in the release profile under qemu-user.
# Microcontrollers (thumbv7em riscv32imac): builds targets/firmware, runs it under
# qemu-system, checks every line it must print, records flash and RAM.
# Every size is checked against targets/budgets. Needs what .ci/run installs (qemu, cross
# gcc, llvm, the pinned nightly with rust-src, cargo-zigbuild and ziglang from PyPI).
# Exits non-zero at the first failure or budget overrun.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=toolchain.env
source targets/toolchain.env
all=(aarch64 armv7 riscv64 mips mipsel thumbv7em riscv32imac)
chosen=("$@")
[ ${#chosen[@]} -gt 0 ] || chosen=("${all[@]}")
[ "${chosen[*]}" != --readme ] || chosen=()
# What each target measured, kept across runs in cargo's target directory, so that
# `targets/run.sh aarch64` rewrites aarch64's rows of the README and keeps the others.
results=${CARGO_TARGET_DIR:-target}/edge-targets.txt
mkdir -p "$(dirname "$results")"
touch "$results"
for name in ${chosen[@]+"${chosen[@]}"}; do
    sed -i "/^[a-z]*|$name|/d" "$results"
done

rust_target() {
    case $1 in
        aarch64) echo aarch64-unknown-linux-musl ;;
        armv7) echo armv7-unknown-linux-musleabihf ;;
        riscv64) echo riscv64gc-unknown-linux-musl ;;
        mips) echo mips-unknown-linux-musl ;;
        mipsel) echo mipsel-unknown-linux-musl ;;
        thumbv7em) echo thumbv7em-none-eabihf ;;
        riscv32imac) echo riscv32imac-unknown-none-elf ;;
        *) echo "unknown target $1 (known: ${all[*]})" >&2; exit 2 ;;
    esac
}

# Fails the run when a target's size passes its budget in targets/budgets (one line per
# target: name, bytes; gateways: the stripped `fluxrig`, firmware: flash).
check_budget() {
    local name=$1 size=$2 budget
    budget=$(awk -v n="$name" '$1 == n { print $2 }' targets/budgets)
    [ -n "$budget" ] || { echo "targets/budgets has no line for $name" >&2; exit 1; }
    if [ "$size" -gt "$budget" ]; then
        echo "$name: $size bytes, over its budget of $budget bytes (targets/budgets)" >&2
        exit 1
    fi
    echo "$name: $size bytes, budget $budget bytes"
}

# The tutorial's steps with the shipped binary under qemu-user: the tests run a binary built
# with unwinding (see gateway), so this checks the one that ships (immediate abort) too.
smoke() {
    local runner=$1 bin=$2 work
    work=$(mktemp -d)
    (
        cd "$work"
        cp "$OLDPWD/examples/polyglot/polyglot.wasm" .
        f() { "$runner" "$bin" "$@"; }
        f keys gen-cluster -o ./vendor.key >/dev/null
        mkdir -p ./data/wasm/keys && cp ./vendor.key.pub ./data/wasm/keys/
        f wasm sign ./polyglot.wasm ./vendor.key >/dev/null
        hash=$(f wasm import ./polyglot.wasm)
        printf 'name: "smoke"\nversion: "v1"\ngears:\n  - name: g\n    type: wasm\n    config:\n      source: "snake://wasm_catalog/%s.wasm"\n      entrypoint: "process"\n      memory_limit_pages: 16\n' "$hash" >scenario.yaml
        f scenario import ./scenario.yaml --activate >/dev/null
        out=$(printf '%s\n' '{"meta":{"site":"gw-7"},"data":{"temp_c":21.5}}' | f run 2>/dev/null)
        grep -q '"temp_c"' <<<"$out" || { echo "shipped binary: no message out of the tutorial gear (got: $out)" >&2; exit 1; }
    )
    rm -rf "$work"
}

gateway() {
    local name=$1 triple config="targets/$1/config.toml" start=$SECONDS bin size
    triple=$(rust_target "$name")
    echo "=== $name ($triple)"
    bin=$(targets/build.sh "$name")
    size=$(stat -c %s "$bin")
    check_budget "$name" "$size"
    crates=$(targets/crates.sh "$bin.unstripped")
    runner=$(sed -n 's/^runner = "\(.*\)"$/\1/p' "$config")
    smoke "$runner" "$bin"
    # The tests need unwinding (libtest reports a failing test by catching its panic, and
    # #[should_panic] tests expect one): the same flags, but panic=unwind with unwind tables.
    # Built first, then run under a time limit that counts the tests only.
    local test=(cargo-zigbuild test --release --workspace --target "$triple" --config "$config"
        --config "target.$triple.rustflags=[\"-Cpanic=unwind\", \"-Cforce-unwind-tables=yes\"]")
    CARGO_PROFILE_RELEASE_PANIC=unwind RUSTUP_TOOLCHAIN=$FLUXRIG_NIGHTLY "${test[@]}" --no-run
    CARGO_PROFILE_RELEASE_PANIC=unwind RUSTUP_TOOLCHAIN=$FLUXRIG_NIGHTLY timeout 1800 "${test[@]}"
    echo "gateway|$name|$triple|$size|$((SECONDS - start))|$crates" >>"$results"
}

# Sums the allocated sections of an ELF: flash = loadable read-only sections plus the
# initial values of .data; RAM = writable sections (.data, .bss, which holds the arena),
# leaving out the runtime's .stack and .heap regions, which span whatever RAM is left.
elf_sizes() {
    readelf -S -W "$1" | python3 -c '
import sys, re
flash = ram = 0
for line in sys.stdin:
    m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+\S+\s+\S+\s+([0-9a-f]+)\s+\S+\s+(\S*)", line)
    if not m or "A" not in m.group(4) or m.group(1) in (".stack", ".heap"):
        continue
    name, kind, size, flags = m.group(1), m.group(2), int(m.group(3), 16), m.group(4)
    if "W" in flags:
        ram += size
        if kind != "NOBITS":
            flash += size
    else:
        flash += size
print(flash, ram)'
}

firmware() {
    local name=$1 triple start=$SECONDS
    triple=$(rust_target "$name")
    echo "=== $name ($triple, firmware under qemu-system)"
    local log
    log=$(mktemp)
    export RUSTUP_TOOLCHAIN=$FLUXRIG_NIGHTLY
    (cd targets/firmware && cargo build --release --config "../$name/config.toml")
    (cd targets/firmware && timeout 300 cargo run --release --config "../$name/config.toml") | tee "$log"
    unset RUSTUP_TOOLCHAIN
    local want=(
        "verified: cluster signature ok, catalog hash "
        "tampered copy refused: module content hashes to "
        "default 16-page configuration refused: gear may need "
        "admitted: two 1-page gears need at most "
        "loaded: 2 gears, 2 compiles on one engine"
        "message 1: passed through 2 gears"
        "message 4: gear 0: guest \"process\" ran out of fuel"
        "message 5: passed through 2 gears"
        "done: 4 passed through 2 gears, 1 ran out of fuel"
    )
    for line in "${want[@]}"; do
        grep -qF -- "$line" "$log" || { echo "$name firmware did not print: $line" >&2; exit 1; }
    done
    rm -f "$log"
    local sizes elf="${CARGO_TARGET_DIR:-targets/firmware/target}/$triple/release/fluxrig-firmware"
    sizes=$(elf_sizes "$elf")
    check_budget "$name" "${sizes% *}"
    echo "firmware|$name|$triple|${sizes% *}|${sizes#* }|$((SECONDS - start))|$(targets/crates.sh "$elf")" >>"$results"
}

for name in ${chosen[@]+"${chosen[@]}"}; do
    case $name in
        thumbv7em|riscv32imac) firmware "$name" ;;
        *) gateway "$name" ;;
    esac
done

# ---------------------------------------------------------------- the README
kib() { awk -v b="$1" 'BEGIN { printf "%.0f KiB", b / 1024 }'; }
row_for() { grep "^[a-z]*|$1|" "$results" || true; }
{
    cat <<'HEAD'
# Edge targets

*Written by `targets/run.sh`, which CI runs; do not edit by hand (the text after the
tables is targets/PROFILE.md).*

One folder per target, each with a `config.toml` that cargo takes with `--config`: its
Rust target, linker, qemu runner and flags. `targets/run.sh [TARGET ...]` builds and
checks them and rewrites this file from what it measured; it fails when a target grows
past its budget in `targets/budgets`.

- Gateways: a static `fluxrig` binary built by `targets/build.sh NAME` (release profile:
  `opt-level = "z"` with the interpreter crates at 3 (`wasmi_ir` at "s" on MIPS), fat
  LTO, one codegen unit; std rebuilt for size by the pinned nightly; stripped). The
  tutorial's steps run with that binary under qemu-user, then the whole test suite (core
  unit tests, the shared vectors, the CLI end to end) in the release profile with the
  same flags except the panic strategy (the tests need unwinding). The tests compare signatures, CBOR and catalog
  hashes with the shared vectors byte for byte, so a passing big-endian MIPS run is
  byte-identical to x86.
- Microcontrollers: `targets/firmware`, the core in a fixed 512 KiB heap arena with a
  cluster-signed gear and the cluster public key embedded: verification (and a tampered
  copy refused), admission of two gears against the arena (and a 16-page configuration
  refused), one compile per gear on one engine, the core's router wiring the two gears in
  a chain, five messages through both (one runs out of fuel in the first gear, the next
  shows the rebuilt instance), printed over semihosting and checked line by line.

HEAD
    echo "| target | Rust target | linker | runner | wasmi dispatch | measured | budget |"
    echo "|---|---|---|---|---|---|---|"
    for name in "${all[@]}"; do
        line=$(row_for "$name")
        # The dispatch is chosen in no_std_core/Cargo.toml by target architecture.
        case $name in
            aarch64) ln="zig cc (cargo-zigbuild)"; rn="qemu-aarch64-static"; dp="tail-call" ;;
            armv7) ln="zig cc (cargo-zigbuild)"; rn="qemu-arm-static"; dp="tail-call" ;;
            riscv64) ln="zig cc (cargo-zigbuild)"; rn="qemu-riscv64-static"; dp="tail-call" ;;
            mips|mipsel) ln="zig cc (cargo-zigbuild)"; rn="qemu-$name-static"; dp="portable" ;;
            thumbv7em) ln="rust-lld"; rn="qemu-system-arm -M mps2-an386 (semihosting)"; dp="portable" ;;
            riscv32imac) ln="rust-lld"; rn="qemu-system-riscv32 -M virt -bios none (semihosting)"; dp="portable" ;;
        esac
        triple=$(rust_target "$name")
        budget=$(awk -v n="$name" '$1 == n { print $2 }' targets/budgets)
        if [ -z "$line" ]; then
            measured="not run"
        else
            IFS='|' read -r kind _ _ a b c _ <<<"$line"
            if [ "$kind" = gateway ]; then
                measured="fluxrig $(kib "$a") ($a B); build + tests ${b}s"
            else
                measured="flash $(kib "$a") ($a B), RAM $(kib "$b") (512 KiB arena included); ${c}s"
            fi
        fi
        echo "| $name | \`$triple\` | $ln | $rn | $dp | $measured | $budget B |"
    done
    echo
    echo "Where the bytes go (\`targets/crates.sh\`: symbol sizes per crate in the unstripped ELF):"
    echo
    echo "| target | by crate |"
    echo "|---|---|"
    for name in "${all[@]}"; do
        line=$(row_for "$name")
        [ -n "$line" ] && echo "| $name | ${line##*|} |"
    done
    echo
    echo "Measured on $(date -u +%Y-%m-%d) with ${FLUXRIG_NIGHTLY} ($(rustc "+$FLUXRIG_NIGHTLY" --version | cut -d' ' -f2-))."
    echo
    cat targets/PROFILE.md
} >targets/README.md
echo "wrote targets/README.md"
