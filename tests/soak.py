#!/usr/bin/env python3
"""Soak and service measurements of `fluxrig run` (release build), with the tutorial's Zig
gear: what the service issue asks to show, as figures.

  python3 tests/soak.py            # full: 10 M messages, 200 MB waiting, 1 M lines, 10 s idle
  python3 tests/soak.py --quick    # CI: 200 k messages, 20 MB waiting, 100 k lines, 3 s idle

Prints one section per measurement and exits non-zero if a bound does not hold:
  1. peak RSS of 100 messages against N messages through two gears (flat: within 4 MiB);
  2. peak RSS with a large input waiting on standard input, the rack held back by a slow
     consumer of its output (under the floor + queue bytes + one largest message + 4 MiB);
  3. throughput of the same scenario fed by standard input, by one UNIX socket client
     and by four at once (a measurement, no bound);
  4. CPU used by an idle rack serving a socket, with its metrics file written every second
     (at most 1 % of one core).
Builds with `cargo build --release`; works in a fresh temporary folder.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
QUEUE_BYTES = 8 * MIB  # the default --queue-bytes
MAX_MESSAGE = 4 * MIB  # MAX_ENCODED_MESSAGE_BYTES
failures = []


def check(ok, text):
    print(("  ok    " if ok else "  FAIL  ") + text, flush=True)
    if not ok:
        failures.append(text)


def build():
    out = subprocess.run(
        ["cargo", "build", "--release", "--bin", "fluxrig", "--message-format=json-render-diagnostics"],
        cwd=REPO, check=True, stdout=subprocess.PIPE, text=True).stdout
    exe = [json.loads(l)["executable"] for l in out.splitlines()
           if '"executable":"' in l and json.loads(l).get("executable")]
    return exe[-1]


def setup(work, fluxrig):
    """The tutorial's steps up to an imported gear; returns its catalog hash."""
    run = lambda *a: subprocess.run([fluxrig, *a], cwd=work, check=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True).stdout
    shutil.copy(os.path.join(REPO, "examples/polyglot/polyglot.wasm"), work)
    run("keys", "gen-cluster", "-o", "./vendor.key")
    os.makedirs(os.path.join(work, "data/wasm/keys"))
    shutil.copy(os.path.join(work, "vendor.key.pub"), os.path.join(work, "data/wasm/keys/"))
    run("wasm", "sign", "./polyglot.wasm", "./vendor.key")
    return run("wasm", "import", "./polyglot.wasm").strip()


def scenario(work, name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def gear(name, hash):
    return f"  - {{name: {name}, type: wasm, config: {{source: 'snake://wasm_catalog/{hash}.wasm'}}}}\n"


def stats(work):
    with open(os.path.join(work, "stats.json")) as f:
        return json.load(f)


def flat_memory(work, fluxrig, hash, count):
    print(f"1. peak RSS, generate -> 2 gears -> CBOR on /dev/null: 100 vs {count:,} messages", flush=True)
    peaks = {}
    for n in (100, count):
        s = scenario(work, "flat.yaml",
                     f"name: flat\nversion: '1'\ngears:\n  - {{name: gen, type: generate, config: "
                     f"{{count: {n}, payload: 'reading {{n}} of the soak'}}}}\n"
                     + gear("a", hash) + gear("b", hash)
                     + "wires:\n  - {from: gen.out, to: a.in}\n  - {from: a.out, to: b.in}\n")
        start = time.time()
        subprocess.run([fluxrig, "run", "-q", "--scenario", s, "--output-format", "cbor",
                        "--stats-json", "stats.json"], cwd=work, check=True,
                       stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        took = time.time() - start
        st = stats(work)
        peaks[n] = st["peak_rss_bytes"]
        print(f"  {n:>12,} messages: peak RSS {peaks[n] / MIB:6.2f} MiB, {took:7.2f} s "
              f"({took / n * 1e6:.2f} µs per message, {st['out']:,} out)", flush=True)
        check(st["out"] == n, f"all {n:,} messages came out")
    check(peaks[count] - peaks[100] < 4 * MIB,
          f"flat: +{(peaks[count] - peaks[100]) / MIB:.2f} MiB for {count:,} messages (bound 4 MiB)")


def waiting_input(work, fluxrig, hash, total_bytes):
    print(f"2. peak RSS with {total_bytes / 1e6:.0f} MB of 1 KiB lines waiting on standard input, "
          "behind a consumer slower than the gear", flush=True)
    s = scenario(work, "one.yaml", "name: one\nversion: '1'\ngears:\n" + gear("g", hash))
    line = b"x" * 1023 + b"\n"
    floor_input = line * 100
    subprocess.run([fluxrig, "run", "-q", "--scenario", s, "--output-format", "cbor", "--stats-json",
                    "stats.json"], cwd=work, input=floor_input, check=True, stdout=subprocess.DEVNULL)
    floor = stats(work)["peak_rss_bytes"]
    # A reader slower than the writer: the output is a pipe read 64 KiB every millisecond.
    proc = subprocess.Popen([fluxrig, "run", "-q", "--scenario", s, "--output-format", "cbor",
                             "--stats-json", "stats.json"], cwd=work, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    written = [0]

    def writer():
        chunk = line * 64
        try:
            while written[0] < total_bytes:
                proc.stdin.write(chunk)
                written[0] += len(chunk)
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    def slow_reader():
        while proc.stdout.read(65536):
            time.sleep(0.001)

    threads = [threading.Thread(target=writer), threading.Thread(target=slow_reader)]
    for t in threads:
        t.start()
    start = time.time()
    threads[0].join()
    proc.wait()
    threads[1].join()
    took = time.time() - start
    st = stats(work)
    peak = st["peak_rss_bytes"]
    bound = floor + QUEUE_BYTES + MAX_MESSAGE + 4 * MIB
    print(f"  floor (100 lines) {floor / MIB:.2f} MiB; with {written[0] / 1e6:.0f} MB through a slow "
          f"output: peak {peak / MIB:.2f} MiB, {st['in']:,} in, {st['out']:,} out, {took:.1f} s", flush=True)
    check(st["in"] == st["out"] == written[0] // len(line), f"every line written ({written[0] // len(line):,}) came out")
    check(peak < bound, f"peak {peak / MIB:.2f} MiB < floor + queue + one message + 4 MiB = {bound / MIB:.2f} MiB")


def count_lines(pipe, want, done):
    n = 0
    for _ in pipe:
        n += 1
        if n == want:
            done.set()


def throughput(work, fluxrig, hash, count):
    print(f"3. throughput, one gear, {count:,} JSON lines in, JSON lines out", flush=True)
    s = scenario(work, "one.yaml", "name: one\nversion: '1'\ngears:\n" + gear("g", hash))
    line = lambda n: b'{"raw_text":"reading %d","meta":{"site":"gw-7"}}\n' % n
    lines = b"".join(line(n) for n in range(count))
    results = {}
    # Standard input.
    start = time.time()
    out = subprocess.run([fluxrig, "run", "-q", "--scenario", s], cwd=work, input=lines,
                         stdout=subprocess.PIPE, check=True).stdout
    results["stdin"] = time.time() - start
    check(out.count(b"\n") == count, "stdin: every line came out")
    # Sockets: one client, then four at once.
    for clients in (1, 4):
        sock = os.path.join(work, "in.sock")
        proc = subprocess.Popen([fluxrig, "run", "-q", "--scenario", s, "--listen", f"unix:{sock}"],
                                cwd=work, stdout=subprocess.PIPE)
        while not os.path.exists(sock):
            time.sleep(0.01)
        done = threading.Event()
        counter = threading.Thread(target=count_lines, args=(proc.stdout, count, done))
        counter.start()
        per = count // clients
        chunks = [b"".join(line(n) for n in range(k * per, count if k == clients - 1 else (k + 1) * per))
                  for k in range(clients)]

        def send(chunk):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(sock)
            c.sendall(chunk)
            c.close()

        start = time.time()
        senders = [threading.Thread(target=send, args=(c,)) for c in chunks]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        ok = done.wait(600)
        results[f"socket x{clients}"] = time.time() - start
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        counter.join()
        check(ok and proc.returncode == 0, f"{clients} socket client(s): every line came out, exit 0")
    for name, took in results.items():
        print(f"  {name:>10}: {took:6.2f} s, {count / took / 1000:7.1f} k messages/s "
              f"({took / count * 1e6:.2f} µs per message; {results['stdin'] / took:.2f}x stdin)", flush=True)


def idle_cpu(work, fluxrig, hash, seconds):
    print(f"4. CPU of an idle rack over {seconds} s (a socket, an open silent client, metrics every 1 s)",
          flush=True)
    s = scenario(work, "one.yaml", "name: one\nversion: '1'\ngears:\n" + gear("g", hash))
    sock = os.path.join(work, "idle.sock")
    proc = subprocess.Popen([fluxrig, "run", "-q", "--scenario", s, "--listen", f"unix:{sock}",
                             "--metrics-file", "m.prom", "--metrics-interval-secs", "1"], cwd=work)
    while not os.path.exists(sock):
        time.sleep(0.01)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(sock)
    time.sleep(1)

    def ticks():
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = ticks()
    time.sleep(seconds)
    used = (ticks() - before) / os.sysconf("SC_CLK_TCK")
    client.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    print(f"  {used * 1000:.0f} ms of CPU in {seconds} s ({used / seconds * 100:.3f} % of one core)", flush=True)
    check(used / seconds < 0.01, "idle CPU under 1 % of one core")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the short CI run")
    args = p.parse_args()
    sizes = (200_000, 20_000_000, 100_000, 3) if args.quick else (10_000_000, 200_000_000, 1_000_000, 10)
    fluxrig = build()
    work = tempfile.mkdtemp(prefix="fluxrig-soak-")
    try:
        hash = setup(work, fluxrig)
        flat_memory(work, fluxrig, hash, sizes[0])
        waiting_input(work, fluxrig, hash, sizes[1])
        throughput(work, fluxrig, hash, sizes[2])
        idle_cpu(work, fluxrig, hash, sizes[3])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"soak: {len(failures)} bound(s) failed", file=sys.stderr)
        sys.exit(1)
    print("soak: every bound holds")


if __name__ == "__main__":
    main()
