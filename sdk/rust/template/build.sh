#!/usr/bin/env sh
# Builds {{name}}.wasm: cargo build --release (wasm32-unknown-unknown, see .cargo/config.toml).
# Needs the target once: rustup target add wasm32-unknown-unknown
set -eu
cd "$(dirname "$0")"
cargo build --release
cp "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/gear.wasm" {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm) bytes)"
