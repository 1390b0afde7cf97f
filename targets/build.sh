#!/usr/bin/env bash
# Builds the shipped static `fluxrig` for one gateway and prints its absolute path:
#
#   targets/build.sh aarch64       # -> .../aarch64-unknown-linux-musl/release/fluxrig
#   targets/build.sh aarch64 nats  # fleet mode (README "Fleet"): -> .../release/fluxrig-nats
#
# Fleet mode brings rustls with *ring*, whose C and assembly cargo-zigbuild compiles with
# `zig cc` for the target like the link; targets/fleet.sh tests that build under qemu.
#
# The one place that says how a gateway binary is built; targets/run.sh and
# packaging/build.sh both call it. Every gateway is built by the pinned nightly
# (targets/toolchain.env) with std rebuilt for size (see the target's config.toml and
# targets/README.md, "Size levers"). Every gateway is a static musl binary linked by Zig
# through cargo-zigbuild, which brings musl (the nightly has no prebuilt musl CRT objects
# for aarch64); armv7 and riscv64 linked static glibc with Debian's cross gcc until
# 2026-12-02, about 507 KiB and 563 KiB of their binaries.
#
# Linked unstripped, then stripped here: the shipped file is `fluxrig` (`strip
# --strip-all`), and `fluxrig.unstripped` beside it keeps the symbols targets/crates.sh
# reads, without a second build.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=toolchain.env
source targets/toolchain.env
name=${1:?usage: targets/build.sh GATEWAY [nats] (GATEWAY: aarch64 armv7 riscv64 mips mipsel)}
features=${2:-}
case $features in
    '') out=fluxrig ;;
    nats) out=fluxrig-nats ;;
    *) echo "targets/build.sh: unknown build \"$features\" (only nats)" >&2; exit 2 ;;
esac
config="targets/$name/config.toml"
[ -f "$config" ] || { echo "targets/build.sh: no $config" >&2; exit 2; }
triple=$(sed -n 's/^target = "\(.*\)"$/\1/p' "$config")
dir=${CARGO_TARGET_DIR:-target}/$triple/release
export RUSTUP_TOOLCHAIN=$FLUXRIG_NIGHTLY CARGO_PROFILE_RELEASE_STRIP=false
case $name in
    aarch64|armv7|riscv64|mips|mipsel) ;;
    *) echo "targets/build.sh: $name is not a gateway" >&2; exit 2 ;;
esac
cargo-zigbuild zigbuild --release --target "$triple" --config "$config" ${features:+--features "$features"} >&2
# Copies, not in place: cargo hard-links `fluxrig` to its own output in deps/.
cp -f "$dir/fluxrig" "$dir/$out.unstripped"
llvm-strip --strip-all -o "$dir/$out.stripped" "$dir/$out.unstripped"
mv -f "$dir/$out.stripped" "$dir/$out"
# Absolute, so that a caller may use it from any folder (targets/fleet.sh runs its steps
# in a scratch one) whether CARGO_TARGET_DIR is absolute, relative or unset.
realpath "$dir/$out"
