#!/usr/bin/env bash
# Measures release-profile choices: for each, the stripped size of `fluxrig` for
# aarch64-unknown-linux-musl and the per-message benchmark (host) for a pass-through gear.
# Prints a Markdown table. Slow (two release builds per row); run by hand when the
# dependencies or the profile change, and copy the table into targets/README.md.
# Needs what targets/aarch64/config.toml needs (targets/build.sh builds it the same way).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=toolchain.env
source targets/toolchain.env
out=${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-musl/release
# Each row: name | cargo --config arguments on top of Cargo.toml's release profile.
engine_at() {
    local level=$1 p=profile.release.package
    echo "--config $p.wasmi.opt-level=$level --config $p.wasmi_core.opt-level=$level --config $p.wasmi_ir.opt-level=$level --config $p.fluxrig-core.opt-level=$level"
}
all_at() { echo "--config profile.release.opt-level=$1 $(engine_at "$1")"; }
rows=(
    "opt z, fat LTO, 1 CGU, abort|$(all_at '"z"')"
    "opt s, fat LTO, 1 CGU, abort|$(all_at '"s"')"
    "opt 3, fat LTO, 1 CGU, abort|$(all_at 3)"
    "opt z, thin LTO, 1 CGU, abort|$(all_at '"z"') --config profile.release.lto=\"thin\""
    "opt z, no LTO, 16 CGU, abort|$(all_at '"z"') --config profile.release.lto=false --config profile.release.codegen-units=16"
    "opt z, engine crates at opt 3 (Cargo.toml)|$(engine_at 3)"
)
echo "| profile | fluxrig aarch64 (bytes) | ns/msg 64 B | 1 KiB | 16 KiB | ratio to floor 64 B / 1 KiB / 16 KiB |"
echo "|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
    name=${row%%|*}
    read -r -a args <<<"${row#*|}"
    RUSTUP_TOOLCHAIN=$FLUXRIG_NIGHTLY cargo-zigbuild zigbuild --release --quiet \
        --target aarch64-unknown-linux-musl --config targets/aarch64/config.toml "${args[@]}"
    size=$(stat -c %s "$out/fluxrig")
    bench=$(cargo bench --quiet -p fluxrig-core --bench per_message "${args[@]}" 2>/dev/null | awk 'NR>1 {printf "%s %s ", $3, $4}')
    read -r g64 r64 g1k r1k g16k r16k <<<"$bench"
    echo "| $name | $size | $g64 | $g1k | $g16k | $r64 / $r1k / $r16k |"
done
