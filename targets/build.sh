#!/usr/bin/env bash
# Builds the shipped static `fluxrig` for one gateway and prints its path:
#
#   targets/build.sh aarch64       # -> .../aarch64-unknown-linux-musl/release/fluxrig
#
# The one place that says how a gateway binary is built; targets/run.sh and
# packaging/build.sh both call it. Every gateway is built by the pinned nightly
# (targets/toolchain.env) with std rebuilt for size (see the target's config.toml and
# targets/README.md, "Size levers"). The musl targets (aarch64, mips, mipsel) link with Zig
# through cargo-zigbuild, which brings musl (the nightly has no prebuilt musl CRT objects
# for aarch64); armv7 and riscv64 link static glibc with Debian's cross gcc.
#
# Linked unstripped, then stripped here: the shipped file is `fluxrig` (`strip
# --strip-all`), and `fluxrig.unstripped` beside it keeps the symbols targets/crates.sh
# reads, without a second build.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=toolchain.env
source targets/toolchain.env
name=${1:?usage: targets/build.sh GATEWAY (aarch64 armv7 riscv64 mips mipsel)}
config="targets/$name/config.toml"
[ -f "$config" ] || { echo "targets/build.sh: no $config" >&2; exit 2; }
triple=$(sed -n 's/^target = "\(.*\)"$/\1/p' "$config")
dir=${CARGO_TARGET_DIR:-target}/$triple/release
export RUSTUP_TOOLCHAIN=$FLUXRIG_NIGHTLY CARGO_PROFILE_RELEASE_STRIP=false
# llvm-strip refuses GNU ld's static glibc binaries (.rel.dyn linked to .symtab), so
# those are stripped by the cross binutils that came with their gcc.
case $name in
    aarch64|mips|mipsel) cargo-zigbuild zigbuild --release --target "$triple" --config "$config" >&2; strip=llvm-strip ;;
    armv7) cargo build --release --config "$config" >&2; strip=arm-linux-gnueabihf-strip ;;
    riscv64) cargo build --release --config "$config" >&2; strip=riscv64-linux-gnu-strip ;;
    *) echo "targets/build.sh: $name is not a gateway" >&2; exit 2 ;;
esac
# Copies, not in place: cargo hard-links `fluxrig` to its own output in deps/.
cp -f "$dir/fluxrig" "$dir/fluxrig.unstripped"
"$strip" --strip-all -o "$dir/fluxrig.stripped" "$dir/fluxrig.unstripped"
mv -f "$dir/fluxrig.stripped" "$dir/fluxrig"
echo "$dir/fluxrig"
