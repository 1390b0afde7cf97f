#!/usr/bin/env bash
# Runs the fluxrig Wasm gear tutorial end to end, exactly as a user types it, with the
# bundled Zig gear (examples/polyglot/polyglot.wasm), in a fresh folder target/tutorial.
# Builds fluxrig (release) first.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
export PATH="$repo/target/release:$PATH"
work="$repo/target/tutorial"
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
