#!/usr/bin/env bash
# sdk/check.sh: proves the kits. For each language, builds the temp-check example gear with
# its real toolchain, then with the `fluxrig` binary: generates a vendor key, trusts it,
# signs, imports, writes a scenario (the gear is named `temp-check` in every one, so the
# hop ids match), and runs the same input through `fluxrig run --output-format cbor`. The
# outputs must be byte-identical across languages (except each output's last hop `t`, the
# rack's wall clock: see tools/outputs.py), and so must the gears' log lines and the run
# statistics. Also writes each language's project with `fluxrig gear new` and builds it. Prints
# a table of module size and per-message cost (`fluxrig wasm call --loop 1000`).
#
#   sdk/check.sh                    every language
#   SDK_LANGS="rust c" sdk/check.sh some of them
#
# Environment: FLUXRIG (a fluxrig binary; default: `cargo build --release` of this checkout,
# in $CARGO_TARGET_DIR or target/), SDK_RUST_TARGET_DIR (the Rust kit's build folder;
# default sdk/rust/target), SDK_WORK (a folder to keep the run's files in; default a
# temporary one, removed at the end), SDK_NO_INSTALL=1 (install nothing; fail instead).
# Installs what is missing: the wasm32-unknown-unknown Rust target (rustup), Zig 0.14.1
# (pip, ziglang==0.14.1), AssemblyScript (npm ci in sdk/assemblyscript).
# Exit status: 0 if everything matched, 1 on any build failure or mismatch.
set -euo pipefail
sdk=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$sdk")
langs=${SDK_LANGS:-rust c zig as}
say() { printf '\n== %s\n' "$*"; }
die() { echo "check.sh: $*" >&2; exit 1; }
install_ok() { [ "${SDK_NO_INSTALL:-0}" != 1 ] || die "$1 is missing (SDK_NO_INSTALL=1)"; }

if [ -n "${SDK_WORK:-}" ]; then
    work=$SDK_WORK
    rm -rf "$work"
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi

# ---- toolchains ----
want_zig=0.14.1
zig=()
has() { case " $langs " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if has rust; then
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        install_ok "the Rust target wasm32-unknown-unknown"
        rustup target add wasm32-unknown-unknown
    fi
fi
if has c || has zig; then
    if command -v zig >/dev/null 2>&1 && [ "$(zig version)" = $want_zig ]; then
        zig=(zig)
    else
        if ! python3 -c "import ziglang" 2>/dev/null || [ "$(python3 -m ziglang version)" != $want_zig ]; then
            install_ok "Zig $want_zig"
            python3 -m pip install --quiet "ziglang==$want_zig" || python3 -m pip install --quiet --break-system-packages "ziglang==$want_zig"
        fi
        zig=(python3 -m ziglang)
    fi
    [ "$("${zig[@]}" version)" = $want_zig ] || die "Zig $want_zig needed, found $("${zig[@]}" version)"
fi
if has as; then
    command -v npm >/dev/null 2>&1 || die "npm is needed for the AssemblyScript kit"
    if [ ! -x "$sdk/assemblyscript/node_modules/.bin/asc" ]; then
        install_ok "AssemblyScript (npm ci)"
        (cd "$sdk/assemblyscript" && npm ci --no-audit --no-fund --silent)
    fi
fi

# ---- fluxrig ----
if [ -z "${FLUXRIG:-}" ]; then
    say "building fluxrig (cargo build --release)"
    (cd "$root" && cargo build --release --quiet)
    FLUXRIG=${CARGO_TARGET_DIR:-$root/target}/release/fluxrig
fi
[ -x "$FLUXRIG" ] || die "no fluxrig binary at $FLUXRIG"
fr() { "$FLUXRIG" --data-dir "$work/data" "$@"; }

# ---- build the examples ----
rust_target=${SDK_RUST_TARGET_DIR:-$sdk/rust/target}
build() { # LANG -> prints the path of the built module
    case $1 in
    rust)
        # The crate's unit tests (on the host) first: fluxrig's vector, set_meta, bad input.
        (cd "$sdk/rust" && CARGO_TARGET_DIR=$rust_target cargo test --quiet -p fluxrig-gear \
            --target "$(rustc -vV | sed -n 's/^host: //p')") >&2
        (cd "$sdk/rust" && CARGO_TARGET_DIR=$rust_target cargo build --release --quiet -p temp-check) >&2
        echo "$rust_target/wasm32-unknown-unknown/release/temp_check.wasm" ;;
    c)
        make --no-print-directory -s -C "$sdk/c" ZIG="${zig[*]}" >&2
        echo "$sdk/c/examples/temp_check.wasm" ;;
    zig)
        (cd "$sdk/zig" && "${zig[@]}" build) >&2
        echo "$sdk/zig/zig-out/bin/temp_check.wasm" ;;
    as)
        (cd "$sdk/assemblyscript" && npm run --silent build) >&2
        echo "$sdk/assemblyscript/build/temp_check.wasm" ;;
    *) die "unknown language $1 (rust, c, zig, as)" ;;
    esac
}

# ---- the input: the cases, repeated to 2,000 messages with fresh ids ----
python3 - "$sdk/testdata/cases.jsonl" "$work/input.jsonl" <<'EOF'
import json, sys
cases = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as out:
    for n in range(2000):
        m = dict(cases[n % len(cases)])
        m["id"] = f"01900000-0000-7000-8000-{n + 1:012x}"
        m["ts"] = 1700000000000000000 + n + 1
        out.write(json.dumps(m, separators=(",", ":")) + "\n")
EOF
probe=$(head -n 1 "$sdk/testdata/cases.jsonl")  # in range: the replace path, the most work

say "vendor key"
mkdir -p "$work/data/wasm/keys"
fr keys gen-cluster -o "$work/vendor.key" >/dev/null
cp "$work/vendor.key.pub" "$work/data/wasm/keys/sdk-check.pub"

status=0
declare -A size fuel time
outputs=()
for lang in $langs; do
    say "$lang: build, sign, import, run"
    module=$(build "$lang") || { echo "  $lang: BUILD FAILED"; status=1; continue; }
    size[$lang]=$(wc -c <"$module")
    # No custom sections (names, producers): signing appends the only ones a module needs.
    info=$(python3 "$sdk/tools/wasm_strip.py" --info "$module")
    case $info in *custom:*) echo "  $lang: custom sections left in the module: $info"; status=1 ;; esac
    { fr wasm verify "$module" 2>&1 || true; } | sed -n "s/^shape: /  shape: /p"
    cp "$module" "$work/$lang.wasm"
    fr wasm sign "$work/$lang.wasm" "$work/vendor.key" >/dev/null
    hash=$(fr wasm import "$work/$lang.wasm" 2>/dev/null | grep -oE '[0-9a-f]{64}' | head -n 1)
    cat >"$work/$lang.yaml" <<EOF
name: "sdk-check-$lang"
version: "v1.0.0"
gears:
  - name: temp-check
    type: wasm
    config:
      source: "snake://wasm_catalog/$hash.wasm"
      entrypoint: "process"
      memory_limit_pages: 16
EOF
    fr scenario validate "$work/$lang.yaml" >/dev/null
    if ! fr run --scenario "$work/$lang.yaml" --output-format cbor <"$work/input.jsonl" \
        >"$work/$lang.cbor" 2>"$work/$lang.log"; then
        echo "  $lang: fluxrig run failed:"; sed 's/^/    /' "$work/$lang.log"; status=1; continue
    fi
    # The gear's log lines and the final count, without the time stamps.
    grep -E ' temp-check: temp-check: | rack: stopped: ' "$work/$lang.log" | sed -E 's/^[^ ]+ //' >"$work/$lang.events" || true
    sed 's/^/  /' "$work/$lang.events"
    line=$(fr wasm call "$hash" --loop 1000 -m "$probe" 2>&1 >/dev/null | grep -E 'calls: fuel' | tail -n 1)
    fuel[$lang]=$(sed -E 's/.*fuel min [0-9]+, median ([0-9]+).*/\1/' <<<"$line")
    time[$lang]=$(sed -E 's/.*time min [^,]+, median ([0-9.]+ .s).*/\1/' <<<"$line")
    outputs+=("$lang=$work/$lang.cbor")
done

say "outputs (fluxrig run --output-format cbor, $(wc -l <"$work/input.jsonl") messages in)"
if [ ${#outputs[@]} -gt 0 ]; then
    python3 "$sdk/tools/outputs.py" "${outputs[@]}" || status=1
    first=${outputs[0]%%=*}
    for o in "${outputs[@]:1}"; do
        l=${o%%=*}
        if cmp -s "$work/$first.events" "$work/$l.events"; then
            echo "  $l: log lines and counts identical to $first"
        else
            echo "  $l: log lines or counts DIFFER from $first:"; { diff "$work/$first.events" "$work/$l.events" || true; } | sed 's/^/    /'; status=1
        fi
    done
    grep -q 'temp-check: 2000 messages' "$work/$first.events" || { echo "  $first: no log line at 2000 messages"; status=1; }
fi

say "templates, written by \`fluxrig gear new\`"
mkdir -p "$work/bin" && ln -sf "$FLUXRIG" "$work/bin/fluxrig"
for lang in $langs; do
    dir=$work/template-$lang/my-gear
    case $lang in rust) kit=rust ;; c) kit=c ;; zig) kit=zig ;; as) kit=assemblyscript ;; esac
    [ -d "$sdk/$kit/template" ] || { echo "  $lang: no template"; status=1; continue; }
    # The project exactly as `fluxrig gear new` writes it (the binary embeds the template
    # and the kit's files).
    if ! fr gear new my-gear --lang "$lang" --dir "$dir" >/dev/null 2>&1; then
        echo "  $lang: fluxrig gear new FAILED"; status=1; continue
    fi
    [ "$lang" = as ] && ln -s "$sdk/assemblyscript/node_modules" "$dir/node_modules"
    chmod +x "$dir"/*.sh 2>/dev/null || true
    if out=$(cd "$dir" && case $lang in
            rust) CARGO_TARGET_DIR=$rust_target/template ./build.sh ;;
            c) make -s ZIG="${zig[*]}" ;;
            zig) "${zig[@]}" build ;;
            as) npm run --silent build ;;
            esac 2>&1) && m=$(find "$dir" -name my-gear.wasm -newer "$dir/input.jsonl" | head -n 1) && [ -n "$m" ] &&
        fr wasm call "$m" <"$dir/input.jsonl" >/dev/null 2>&1; then
        echo "  $lang: builds $(basename "$m") ($(wc -c <"$m") bytes) and runs its input.jsonl"
        # The README's sign-import-run block, as typed, with `fluxrig` on PATH.
        awk '/^```sh/ { n++; on = 1; next } /^```/ { on = 0; next } on && n == 2' "$dir/README.md" >"$dir/steps.sh"
        if (cd "$dir" && PATH="$work/bin:$PATH" sh -e ./steps.sh >steps.out 2>steps.err) &&
            [ "$(grep -c "^{" "$dir/steps.out")" -eq 2 ] && grep -q '3 in, 2 out, 1 dropped by gears' "$dir/steps.err"; then
            echo "  $lang: README steps sign, import and run it: 3 in, 2 out, 1 dropped"
        else
            echo "  $lang: README steps FAILED"; sed 's/^/    /' "$dir/steps.out" "$dir/steps.err"; status=1
        fi
    else
        echo "  $lang: template FAILED"; echo "$out" | sed 's/^/    /'; status=1
    fi
done

say "table"
printf '| %-14s | %12s | %25s | %24s |\n' language "module bytes" "fuel per message (median)" "time per message (median)"
printf '|%s|%s|%s|%s|\n' ---------------- -------------: ---------------------------: --------------------------:
for lang in $langs; do
    case $lang in rust) name=Rust ;; c) name=C ;; zig) name=Zig ;; as) name=AssemblyScript ;; esac
    printf '| %-14s | %12s | %25s | %24s |\n' "$name" "${size[$lang]:-?}" "${fuel[$lang]:-?}" "${time[$lang]:-?}"
done
echo "(unsigned module as built; cost: fluxrig wasm call --loop 1000 on testdata/cases.jsonl line 1)"

if [ $status -eq 0 ]; then
    echo; echo "sdk/check.sh: OK ($langs)"
else
    echo; echo "sdk/check.sh: FAILED" >&2
fi
exit $status
