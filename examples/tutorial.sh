#!/usr/bin/env bash
# Runs the fluxrig Wasm gear tutorial end to end, exactly as a user types it, with the
# bundled Zig gear (examples/polyglot/polyglot.wasm), in a fresh folder `tutorial` in
# cargo's target directory (target/tutorial, or $CARGO_TARGET_DIR/tutorial). Builds
# fluxrig (release) first. Writes nothing else: the checkout stays as it was.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

echo "building fluxrig (release)... (the first build takes a few minutes)"
# The JSON messages name the binary wherever it lands (any CARGO_TARGET_DIR, any --target
# in a cargo config); cargo's progress and diagnostics still go to standard error.
bin=$(cargo build --release --manifest-path "$repo/Cargo.toml" --bin fluxrig \
    --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/fluxrig\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "tutorial.sh: cargo did not report the fluxrig binary" >&2; exit 1; }
echo "built $bin"
export PATH="$(dirname "$bin"):$PATH"
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target" ] || { echo "tutorial.sh: cargo metadata did not name the target directory" >&2; exit 1; }
work="$target/tutorial"
echo "working in $work (a fresh folder)"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
cp "$repo/examples/polyglot/polyglot.wasm" .

step() {
    printf '\n\033[1m$ %s\033[0m\n' "$*"
    "$@"
}

step fluxrig keys gen-cluster -o ./my_vendor.key
step mkdir -p ./data/wasm/keys
step cp ./my_vendor.key.pub ./data/wasm/keys/
step fluxrig wasm sign ./polyglot.wasm ./my_vendor.key
printf '\n\033[1m$ fluxrig wasm import ./polyglot.wasm\033[0m\n'
hash=$(fluxrig wasm import ./polyglot.wasm)
echo "$hash"

cat > scenario.yaml <<YAML
name: "Wasm Zig Demo"
version: "v1.0.0"
gears:
  - name: my-zig-filter
    type: wasm
    config:
      source: "snake://wasm_catalog/$hash.wasm"
      entrypoint: "process"
      memory_limit_pages: 16
YAML
printf '\n\033[1m$ cat scenario.yaml\033[0m\n'
cat scenario.yaml
step fluxrig scenario import ./scenario.yaml --activate

printf '\n\033[1m$ printf ... | fluxrig run\033[0m\n'
printf '%s\n' 'hello from the edge' '{"meta":{"site":"gw-7"},"data":{"temp_c":21.5}}' | fluxrig run
echo
echo "tutorial done: the gear's log lines are above, its output messages are the JSON lines; files are in $work"
