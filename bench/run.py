#!/usr/bin/env python3
"""The rack benchmark: every figure of issue 11's list for this machine, in one table.

  bench/run.py            # full run; rewrites bench/RESULTS.md (machine, date, commit)
  bench/run.py --quick    # CI: shorter runs, prints the table, writes nothing
  bench/run.py --quick --write   # a quick run that rewrites bench/RESULTS.md anyway

Two parts, each against floors measured in the same run:
  1. the core (`cargo bench -p fluxrig-core --bench per_message`): the bare wasmi call
     floor, without and with fuel metering, `Gear::process_bytes` for pass-through
     64 B / 1 KiB / 16 KiB, the rack of three gears, the tutorial Zig gear, the compute
     gear against native Rust, cold start (verify + compile + instantiate + first
     message) next to one Ed25519 verify;
  2. the real binary end to end (`cargo build --release`): standard input (a file of
     fluxMsgs) or a `generate` gear -> 0, 1 or 3 cluster-signed pass-through gears ->
     standard output (a pipe drained by `wc -c`), JSON lines and CBOR, with fuel, limits
     and verification on as always. Each case runs several times, alternating cases, and
     reports the median of the process's CPU time (user + system, from wait4's rusage)
     per message and the messages per second of CPU that gives, with the wall-clock rate
     beside it. `cat` copying the same input file to the same pipe is the I/O floor.

The goals of issue 11 (point 3) are printed as ratios, each marked met or not. The machine
may be shared: CPU time, not wall time, is what the goals count.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "RESULTS.md")
# The generated payload: 64 bytes for every n below 10^6 (the "64 B" message).
PAYLOAD = "reading {n} of the rack benchmark, padded to sixty-four bytes.."


def cargo(*args, quiet=False):
    return subprocess.run(["cargo", *args], cwd=REPO, check=True, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None).stdout


def build():
    out = cargo("build", "--release", "--bin", "fluxrig", "--message-format=json-render-diagnostics")
    exe = [json.loads(l).get("executable") for l in out.splitlines() if '"executable":"' in l]
    return [e for e in exe if e][-1]


def core(quick, pass_through):
    """Runs the core benchmark, echoing its tables; returns its figures by name."""
    args = ["bench", "-p", "fluxrig-core", "--bench", "per_message", "--", "--results-line",
            "--write-pass-through", pass_through] + (["--quick"] if quick else [])
    out = cargo(*args)
    figures = None
    for line in out.splitlines():
        if line.startswith("results: "):
            figures = json.loads(line[len("results: "):])
        else:
            print("  " + line, flush=True)
    if figures is None:
        sys.exit("the core benchmark printed no results line")
    return figures


def setup(work, fluxrig, pass_through):
    """A data folder with a cluster key, a trusted vendor key and the signed, imported
    pass-through gear; returns its catalog hash."""
    run = lambda *a: subprocess.run([fluxrig, *a], cwd=work, check=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True).stdout
    shutil.copy(pass_through, os.path.join(work, "pass.wasm"))
    run("keys", "gen-cluster", "-o", "./vendor.key")
    os.makedirs(os.path.join(work, "data/wasm/keys"))
    shutil.copy(os.path.join(work, "vendor.key.pub"), os.path.join(work, "data/wasm/keys/"))
    run("wasm", "sign", "./pass.wasm", "./vendor.key")
    return run("wasm", "import", "./pass.wasm").strip()


def scenario(work, name, hash, gears, generate):
    """A chain of `gears` pass-through gears, fed by a generator of `generate` messages
    or (None) by the rack's inputs."""
    text = f"name: {name}\nversion: '1'\ngears:\n"
    names = []
    if generate is not None:
        text += (f"  - {{name: gen, type: generate, config: {{count: {generate}, "
                 f"payload: '{PAYLOAD}'}}}}\n")
        names.append("gen")
    for i in range(gears):
        text += f"  - {{name: g{i}, type: wasm, config: {{source: 'snake://wasm_catalog/{hash}.wasm'}}}}\n"
        names.append(f"g{i}")
    if len(names) > 1:
        text += "wires:\n" + "".join(f"  - {{from: {a}.out, to: {b}.in}}\n" for a, b in zip(names, names[1:]))
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def measure(command, work, stdin_path):
    """Runs `command` with stdin from `stdin_path` (or nothing) and stdout into a pipe that
    `cat` drains; returns (CPU seconds of the process, wall seconds, bytes written)."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    start = datetime.datetime.now()
    proc = subprocess.Popen(command, cwd=work, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    drain = subprocess.Popen(["wc", "-c"], stdin=proc.stdout, stdout=subprocess.PIPE)
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (datetime.datetime.now() - start).total_seconds()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    written = int(drain.communicate()[0])
    if stdin_path:
        stdin.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {proc.returncode}: {err.strip()[-500:]}")
    return usage.ru_utime + usage.ru_stime, wall, written


def end_to_end(work, fluxrig, hash, count, runs):
    """Every case, `runs` times alternating; returns rows of (case, median CPU s, least CPU
    s, median wall s, bytes out)."""
    inputs = {}
    for fmt in ("json", "cbor"):
        # The input file: `count` generated messages, as the binary writes them.
        gen = scenario(work, "make-input", hash, 0, count)
        path = os.path.join(work, f"input.{fmt}")
        with open(path, "wb") as f:
            subprocess.run([fluxrig, "run", "-q", "--scenario", gen, "--output-format", fmt],
                           cwd=work, check=True, stdout=f, stdin=subprocess.DEVNULL)
        inputs[fmt] = path
    cases = []
    for fmt in ("cbor", "json"):
        for source in ("generate", "stdin"):
            for gears in (0, 1, 3):
                if source == "stdin" and gears == 0:
                    continue  # a rack without wasm gears has no inputs: nothing reads stdin
                name = f"{source}-{gears}-{fmt}"
                path = scenario(work, name, hash, gears, count if source == "generate" else None)
                command = [fluxrig, "run", "-q", "--scenario", path, "--input-format", fmt,
                           "--output-format", fmt]
                label = f"{'stdin' if source == 'stdin' else '`generate`'} → {gears} gear{'s' if gears != 1 else ''} → stdout, {fmt.upper()}"
                cases.append((label, command, inputs[fmt] if source == "stdin" else None))
        cases.append((f"I/O floor: `cat` of the {fmt.upper()} input file to the pipe", ["cat"], inputs[fmt]))
    samples = {label: [] for label, _, _ in cases}
    for _ in range(runs):
        for label, command, stdin in cases:
            samples[label].append(measure(command, work, stdin))
    rows = []
    for label, _, _ in cases:
        cpu = statistics.median(s[0] for s in samples[label])
        best = min(s[0] for s in samples[label])
        wall = statistics.median(s[1] for s in samples[label])
        rows.append((label, cpu, best, wall, samples[label][0][2]))
    return rows


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip() or "unknown"
    rustc = subprocess.run(["rustc", "-V"], text=True, stdout=subprocess.PIPE).stdout.strip()
    return (f"{platform.machine()}, {model}, {os.cpu_count()} CPUs, Linux {platform.release()}; "
            f"{rustc}; commit {commit}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")


def table(core_figures, rows, count, runs, quick, about):
    c = core_figures
    lines = [f"Measured on {about}.", "",
             f"{'Quick run (`--quick`)' if quick else 'Full run'}: the core's figures are medians of timed rounds, "
             f"best of three interleaved; each end-to-end case ran {runs} times with {count:,} messages, "
             "alternating cases, and shows the median. The machine may have been shared with other work: "
             "CPU time is what counts, wall time is for reference.", "",
             "### The core (`cargo bench -p fluxrig-core --bench per_message`)", "",
             "Two floors of the same wasmi build run the same calls with no checks: the bare floor "
             "without fuel metering, and the metered floor, whose engine meters the guest's code as the "
             "gear's does but whose store is filled with fuel once instead of per call. \"ratio\" is "
             "fluxrig-core over the bare floor (the goal's measure); \"host\" is fluxrig-core over the "
             "metered floor: what the host adds around the calls, without what metering costs inside "
             "the guest.", "",
             "| work | floor: bare wasmi, same build | metered floor | fluxrig-core | ratio | host |",
             "|---|---:|---:|---:|---:|---:|"]

    def row(label, floor, metered, ours, unit=""):
        lines.append(f"| {label} | {c[floor]:.0f} ns{unit} | {c[metered]:.0f} ns{unit} | {c[ours]:.0f} ns "
                     f"| {c[ours] / c[floor]:.2f} | {c[ours] / c[metered]:.2f} |")

    for size, label in ((64, "64 B"), (1024, "1 KiB"), (16384, "16 KiB")):
        row(f"pass-through, one gear, {label}", f"floor_{size}", f"floor_metered_{size}", f"gear_{size}")
    for size, label in ((64, "64 B"), (1024, "1 KiB"), (16384, "16 KiB")):
        row(f"rack of 3 pass-through gears, CBOR in and out, {label} raw", f"rack_floor_{size}",
            f"rack_floor_metered_{size}", f"rack_{size}", " (3 calls)")
    row("tutorial Zig gear, one message", "tutorial_floor", "tutorial_floor_metered", "tutorial_gear")
    row("compute 1 KiB (FNV-1a + CRC-32 + uppercase)", "compute_floor", "compute_floor_metered", "compute_gear")
    lines.append(f"| compute 1 KiB in native Rust | | | {c['compute_native']:.0f} ns "
                 f"| gear: {c['compute_gear'] / c['compute_native']:.1f}x native | |")
    lines += ["", "| cold start: verify + compile + instantiate + first message | bytes | eager | lazy (used) |",
              "|---|---:|---:|---:|"]
    for key, label in (("tutorial", "tutorial Zig gear"), ("16k", "16 KiB gear")):
        lines.append(f"| {label} | {c[f'cold_{key}_bytes']:.0f} | {c[f'cold_{key}_eager_us']:.1f} µs "
                     f"| {c[f'cold_{key}_lazy_us']:.1f} µs |")
    lines.append(f"| Ed25519 verify alone | 32 | {c['ed25519_verify_us']:.1f} µs | |")
    lines += ["", "Where the tutorial gear's lazy cold start goes (medians of each stage): "
              + ", ".join(f"{label} {c[f'cold_tutorial_lazy_{key}_us']:.1f} µs" for key, label in
                          (("engine", "a new engine"), ("verify", "verify (SHA-256 + Ed25519)"),
                           ("compile", "compile (validate, lazy translation)"),
                           ("instantiate", "instantiate + first message"))) + "."]
    lines += ["", "### The real binary end to end (`fluxrig run`, release build)", "",
              "64-byte payloads; stdin is a file of the same messages as `generate` makes; stdout is a pipe.",
              "The best run is beside the median: on a shared machine other work only adds CPU time "
              "(cache and core contention), so the spread shows how much the run was disturbed.",
              "", "| case | CPU per message (best run) | messages per second of CPU | messages per second, wall "
              "| bytes out per message |",
              "|---|---:|---:|---:|---:|"]
    for label, cpu, best, wall, written in rows:
        lines.append(f"| {label} | {cpu / count * 1e6:.2f} µs ({best / count * 1e6:.2f}) | {count / cpu:,.0f} "
                     f"| {count / wall:,.0f} | {written / count:.0f} |")
    three_cbor = count / next(r[1] for r in rows if r[0].startswith("stdin → 3") and "CBOR" in r[0])
    three_json = count / next(r[1] for r in rows if r[0].startswith("stdin → 3") and "JSON" in r[0])
    overhead = max(c[f"gear_{s}"] / c[f"floor_{s}"] for s in (64, 1024, 16384))
    goals = [
        ("compute work ≤ 8x native Rust", c["compute_gear"] / c["compute_native"], 8, "x", False),
        ("per-message host overhead ≤ 1.1x the bare wasmi floor (worst of 64 B, 1 KiB, 16 KiB)", overhead, 1.1, "x", False),
        ("cold start of the tutorial gear (lazy) ≤ 2x one Ed25519 verify",
         c["cold_tutorial_lazy_us"] / c["ed25519_verify_us"], 2, "x", False),
        ("stdin → 3 gears → stdout, CBOR: ≥ 500,000 messages per second of CPU", three_cbor, 500_000, "/s", True),
        ("stdin → 3 gears → stdout, JSON: ≥ 250,000 messages per second of CPU", three_json, 250_000, "/s", True),
    ]
    host_only = max(c[f"gear_{s}"] / c[f"floor_metered_{s}"] for s in (64, 1024, 16384))
    lines += ["", "### Goals (issue 11, point 3)", "", "Each on this run's medians.", "",
              "| goal | this run | met |", "|---|---:|---|"]
    for text, value, bound, unit, at_least in goals:
        met = value >= bound if at_least else value <= bound
        shown = f"{value:,.0f}{unit}" if unit == "/s" else f"{value:.2f}{unit}"
        lines.append(f"| {text} | {shown} | {'yes' if met else 'no'} |")
    lines += ["", f"For reference, not a goal: the host's own work against the metered floor, worst of the "
              f"three sizes, {host_only:.2f}x; fuel metering inside the compute gear, metered floor over "
              f"bare floor, {c['compute_floor_metered'] / c['compute_floor']:.2f}x."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (CI); writes nothing unless --write")
    parser.add_argument("--write", action="store_true", help="rewrite bench/RESULTS.md (the default without --quick)")
    parser.add_argument("--binary", help="measure this fluxrig build instead of building one (writes nothing "
                        "unless --write)")
    args = parser.parse_args()
    count, runs = (50_000, 3) if args.quick else (300_000, 5)
    about = machine()
    if args.binary:
        fluxrig = os.path.abspath(args.binary)
    else:
        print("building the release binary", flush=True)
        fluxrig = build()
    with tempfile.TemporaryDirectory(prefix="fluxrig-bench-") as work:
        pass_through = os.path.join(work, "pass-through.wasm")
        print("1. the core (cargo bench -p fluxrig-core --bench per_message)", flush=True)
        figures = core(args.quick, pass_through)
        print(f"2. the real binary end to end: {count:,} messages per case, {runs} runs each", flush=True)
        hash = setup(work, fluxrig, pass_through)
        rows = end_to_end(work, fluxrig, hash, count, runs)
    text = table(figures, rows, count, runs, args.quick, about)
    print()
    print(text)
    if args.write or not (args.quick or args.binary):
        header = ("# Rack benchmark results\n\nWritten by `bench/run.py` (see its doc for what each figure is); "
                  "run it again to refresh.\n\n")
        tmp = RESULTS + ".tmp"
        with open(tmp, "w") as f:
            f.write(header + text)
        os.replace(tmp, RESULTS)
        print(f"wrote {os.path.relpath(RESULTS, REPO)}")


if __name__ == "__main__":
    main()
