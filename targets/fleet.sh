#!/usr/bin/env bash
# Fleet mode on a gateway, end to end under qemu-user against a real NATS server:
#
#   targets/fleet.sh aarch64 [MESSAGES]     # default 2000 messages
#
# Builds the gateway's `fluxrig` with `--features nats` (targets/build.sh NAME nats), starts
# nats-server with JetStream on a free port, then, all with that binary under qemu:
#   1. imports the tutorial gear, vendor-signed, into the bus catalog (`wasm import
#      --nats`) from one data folder;
#   2. starts rack `b`, whose data folder holds only the pinned cluster public key, running
#      that gear behind a wire from `a.gen.out`: it must fetch the module from the bus,
#      verify it and cache it;
#   3. runs rack `a`, a generator of MESSAGES messages wired to `b.g.in` across the bus;
#   4. stops `b` with SIGTERM once MESSAGES lines are out (at most 120 s), and checks that
#      both racks exited 0 and that every message came out of `b` exactly once.
# Prints the stripped binary's size. The server and rack b are stopped on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: targets/fleet.sh GATEWAY [MESSAGES]}
count=${2:-2000}
config="targets/$name/config.toml"
bin=$(targets/build.sh "$name" nats)
runner=$(sed -n 's/^runner = "\(.*\)"$/\1/p' "$config")
echo "fleet build of $name: $(stat -c %s "$bin") B ($bin)"
gear=$(realpath examples/polyglot/polyglot.wasm)
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
f() { "$runner" "$bin" "$@"; }
fail() { echo "targets/fleet.sh $name: $*" >&2; for log in nats.log sign.err b.err a.err; do [ ! -s "$log" ] || { echo "--- $log" >&2; tail -20 "$log" >&2; }; done; exit 1; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=nats://127.0.0.1:$port
nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/js" >nats.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "Server is ready" nats.log && break; sleep 0.1; done
grep -q "Server is ready" nats.log || fail "nats-server did not start"

# 1. The importing node: a cluster key, a trusted vendor key, the signed gear into the bus.
mkdir -p a/data/wasm/keys b/data
cp "$gear" a/polyglot.wasm
(cd a && f keys gen-cluster -o ./vendor.key >/dev/null && cp vendor.key.pub data/wasm/keys/ \
    && f wasm sign ./polyglot.wasm ./vendor.key >/dev/null) 2>sign.err || fail "signing the gear failed"
hash=$(cd a && f wasm import ./polyglot.wasm --nats "$url" 2>../import.err) || fail "wasm import --nats failed: $(cat import.err)"
[ -f "a/data/cluster.key.pub" ] || fail "the import made no cluster key"
cp a/data/cluster.key.pub b/data/

# 2. Rack b: only the pinned cluster key; its gear comes from the bus catalog.
printf 'name: b\nversion: "1"\ngears:\n  - {name: g, type: wasm, config: {source: "snake://wasm_catalog/%s.wasm"}}\nwires:\n  - {from: a.gen.out, to: g.in}\n' "$hash" >b.yaml
printf 'name: a\nversion: "1"\ngears:\n  - {name: gen, type: generate, config: {count: %s, payload: "{\\"temp_c\\": 21.5, \\"n\\": {n}}"}}\nwires:\n  - {from: gen.out, to: b.g.in}\n' "$count" >a.yaml
# Not through `f`: a function in the background is a subshell, and SIGTERM must reach qemu.
"$runner" "$bin" run --scenario b.yaml --rack b --nats "$url" --data-dir b/data >b.out 2>b.err &
b=$!
pids+=("$b")
for _ in $(seq 600); do grep -q "running scenario" b.err && break; kill -0 "$b" 2>/dev/null || break; sleep 0.1; done
grep -q "running scenario" b.err || fail "rack b did not start"
[ -f "b/data/wasm/$hash.wasm" ] || fail "rack b did not cache the module it fetched"

# 3. Rack a: the generator, across the bus to b.
f run --scenario a.yaml --rack a --nats "$url" --data-dir a/data >a.out 2>a.err || fail "rack a exited $?"

# 4. Every message out of b once, then a clean stop.
for _ in $(seq 1200); do [ "$(wc -l <b.out)" -ge "$count" ] && break; sleep 0.1; done
kill -TERM "$b"
status=0
wait "$b" || status=$?
[ "$status" -eq 0 ] || fail "rack b exited $status after SIGTERM"
lines=$(wc -l <b.out)
ids=$(python3 -c 'import json, sys; print(len({json.loads(l)["id"] for l in open(sys.argv[1])}))' b.out)
[ "$lines" -eq "$count" ] && [ "$ids" -eq "$count" ] || fail "rack b wrote $lines lines with $ids ids, want $count"
echo "fleet mode on $name under qemu: module imported into the bus catalog, fetched and cached by rack b; $count messages from rack a through b's gear, each once"
