#!/usr/bin/env bash
# Builds and checks every edge target, and writes targets/README.md from what it measured.
#
#   targets/run.sh                 all targets
#   targets/run.sh aarch64 mips    some of them
#
# Gateways (aarch64 armv7 riscv64 mips mipsel): builds the static release `fluxrig`,
# records its stripped size, then runs the whole test suite (core, vectors, CLI end to
# end with the tutorial) in the release profile under qemu-user.
# Microcontrollers (thumbv7em riscv32imac): builds targets/firmware, runs it under
# qemu-system, checks every line it must print, records flash and RAM.
# Needs what .ci/run installs (qemu, cross gcc, rustup targets, the pinned nightly,
# cargo-zigbuild and ziglang from PyPI). Exits non-zero at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=toolchain.env
source targets/toolchain.env
all=(aarch64 armv7 riscv64 mips mipsel thumbv7em riscv32imac)
chosen=("$@")
[ ${#chosen[@]} -gt 0 ] || chosen=("${all[@]}")
results=$(mktemp)
trap 'rm -f "$results"' EXIT

rust_target() {
    case $1 in
        aarch64) echo aarch64-unknown-linux-musl ;;
        armv7) echo armv7-unknown-linux-gnueabihf ;;
        riscv64) echo riscv64gc-unknown-linux-gnu ;;
        mips) echo mips-unknown-linux-musl ;;
        mipsel) echo mipsel-unknown-linux-musl ;;
        thumbv7em) echo thumbv7em-none-eabihf ;;
        riscv32imac) echo riscv32imac-unknown-none-elf ;;
        *) echo "unknown target $1 (known: ${all[*]})" >&2; exit 2 ;;
    esac
}

gateway() {
    local name=$1 triple config="targets/$1/config.toml" start=$SECONDS
    triple=$(rust_target "$name")
    echo "=== $name ($triple)"
    case $name in
        mips|mipsel)
            RUSTUP_TOOLCHAIN=$FLUXRIG_NIGHTLY cargo-zigbuild zigbuild --release --target "$triple" --config "$config"
            local size
            size=$(stat -c %s "target/$triple/release/fluxrig")
            # Tests need unwinding; with -Zbuild-std and panic=abort they hit a duplicate
            # lang item, so the test build alone uses panic=unwind.
            CARGO_PROFILE_RELEASE_PANIC=unwind RUSTUP_TOOLCHAIN=$FLUXRIG_NIGHTLY \
                timeout 1800 cargo-zigbuild test --release --workspace --target "$triple" --config "$config"
            ;;
        *)
            cargo build --release --config "$config"
            local size
            size=$(stat -c %s "target/$triple/release/fluxrig")
            timeout 1800 cargo test --release --workspace --config "$config"
            ;;
    esac
    echo "gateway|$name|$triple|$size|$((SECONDS - start))" >>"$results"
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
    (cd targets/firmware && cargo build --release --config "../$name/config.toml")
    (cd targets/firmware && timeout 300 cargo run --release --config "../$name/config.toml") | tee "$log"
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
    local sizes
    sizes=$(elf_sizes "targets/firmware/target/$triple/release/fluxrig-firmware")
    echo "firmware|$name|$triple|${sizes% *}|${sizes#* }|$((SECONDS - start))" >>"$results"
}

for name in "${chosen[@]}"; do
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

*Written by `targets/run.sh`, which CI runs; do not edit by hand.*

One folder per target, each with a `config.toml` that cargo takes with `--config`: its
Rust target, linker, qemu runner and flags. `targets/run.sh [TARGET ...]` builds and
checks them and rewrites this file from what it measured.

- Gateways: a static `fluxrig` binary, release profile (`opt-level = "z"`, fat LTO, one
  codegen unit, `panic = "abort"`, stripped), and the whole test suite (core unit tests,
  the shared vectors, the CLI end to end with the tutorial flow) in the release profile
  under qemu-user. The tests compare signatures, CBOR and catalog hashes with the shared
  vectors byte for byte, so a passing big-endian MIPS run is byte-identical to x86.
- Microcontrollers: `targets/firmware`, the core in a fixed 512 KiB heap arena with a
  cluster-signed gear and the cluster public key embedded: verification (and a tampered
  copy refused), admission of two gears against the arena (and a 16-page configuration
  refused), one compile per gear on one engine, the core's router wiring the two gears in
  a chain, five messages through both (one runs out of fuel in the first gear, the next
  shows the rebuilt instance), printed over semihosting and checked line by line.

HEAD
    echo "| target | Rust target | toolchain | linker | runner | flags | measured |"
    echo "|---|---|---|---|---|---|---|"
    for name in "${all[@]}"; do
        line=$(row_for "$name")
        case $name in
            aarch64) tc="stable"; ln="gcc-aarch64-linux-gnu"; rn="qemu-aarch64-static"; fl="+crt-static" ;;
            armv7) tc="stable"; ln="gcc-arm-linux-gnueabihf"; rn="qemu-arm-static"; fl="+crt-static (static glibc)" ;;
            riscv64) tc="stable"; ln="gcc-riscv64-linux-gnu"; rn="qemu-riscv64-static"; fl="+crt-static (static glibc)" ;;
            mips|mipsel) tc="$FLUXRIG_NIGHTLY + rust-src"; ln="zig cc (cargo-zigbuild)"; rn="qemu-$name-static"; fl="-Zbuild-std=std,panic_abort with optimize_for_size, +crt-static, link-self-contained=no" ;;
            thumbv7em) tc="stable"; ln="rust-lld"; rn="qemu-system-arm -M mps2-an386 (semihosting)"; fl="-Tlink.x (cortex-m-rt)" ;;
            riscv32imac) tc="stable"; ln="rust-lld"; rn="qemu-system-riscv32 -M virt -bios none (semihosting)"; fl="-Tmemory.x -Tlink.x (riscv-rt)" ;;
        esac
        triple=$(rust_target "$name")
        if [ -z "$line" ]; then
            measured="not run"
        else
            IFS='|' read -r kind _ _ a b c <<<"$line"
            if [ "$kind" = gateway ]; then
                measured="fluxrig $(kib "$a") ($a B); build + tests ${b}s"
            else
                measured="flash $(kib "$a"), RAM $(kib "$b") (512 KiB arena included); ${c}s"
            fi
        fi
        echo "| $name | \`$triple\` | $tc | $ln | $rn | $fl | $measured |"
    done
    echo
    echo "Measured on $(date -u +%Y-%m-%d) with $(rustc --version | cut -d' ' -f1-2) (stable) and ${FLUXRIG_NIGHTLY} (MIPS)."
    echo
    cat targets/PROFILE.md
} >targets/README.md
echo "wrote targets/README.md"
