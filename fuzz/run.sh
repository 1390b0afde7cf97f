#!/usr/bin/env bash
# Runs the fuzz targets under libFuzzer, each for SECONDS, and prints how many inputs each
# ran. Usage: fuzz/run.sh SECONDS [TARGET...]   (default: every target; see fuzz/README.md)
#
# Installs cargo-fuzz if it is missing and uses the nightly that targets/toolchain.env pins.
# Each target starts from the committed seeds, fuzz/corpus/TARGET, which libFuzzer reads
# but never writes: new inputs go to a working corpus, fuzz/target/corpus/TARGET (kept
# between runs, not committed). Builds go to $CARGO_TARGET_DIR/fuzz, or fuzz/target.
# Exits non-zero if any target crashes, leaks, times out or runs out of memory; the input
# that did it is in fuzz/artifacts/TARGET/, and its path is in the output.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2; exit 2; }
[ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]] || usage
seconds=$1
shift
all=(section message module scenario json_line)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

source targets/toolchain.env
rustup toolchain list | grep -q "^$FLUXRIG_NIGHTLY" ||
    rustup toolchain install "$FLUXRIG_NIGHTLY" --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
target_dir=${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}
target_dir=${target_dir:-fuzz/target}

failed=()
summary=()
for t in "${targets[@]}"; do
    [ -d "fuzz/corpus/$t" ] || { echo "no target $t (targets: ${all[*]})" >&2; exit 2; }
    work="fuzz/target/corpus/$t"
    log="fuzz/target/logs/$t.log"
    mkdir -p "$work" "$(dirname "$log")"
    echo "--- $t: ${seconds}s (log: $log)"
    # Output goes to the log: the scenario parser warns on stderr for every unknown key.
    status=0
    cargo +"$FLUXRIG_NIGHTLY" fuzz run --target-dir "$target_dir" "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+DONE)' "$log" | tail -2 || true
    if [ "$status" != 0 ]; then
        # What broke (panic message, sanitizer error), then libFuzzer's report: the input's
        # bytes, its file and how to rerun it.
        grep -E -A2 'panicked at|==ERROR|^SUMMARY' "$log" | head -n 20 || true
        tail -n 25 "$log"
        failed+=("$t")
        summary+=("$t: FAILED (exit $status) after ${runs:-?} runs; see $log and fuzz/artifacts/$t/")
    else
        summary+=("$t: ${runs:-?} runs in ${seconds}s, no crash")
    fi
done

echo
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ] || { echo "crashed: ${failed[*]}" >&2; exit 1; }
