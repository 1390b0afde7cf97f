//! `run` as a long-running service: bounded memory with backpressure, nothing lost on a
//! stop, a reload while messages flow, an exit status scripts can trust.

use std::io::Write;
use std::thread;

use crate::util::*;

/// A scenario of one gear, named `gear`, running catalog module `hash`.
fn one_gear(name: &str, gear: &str, hash: &str) -> String {
    format!(
        "name: {name}\nversion: '1'\ngears:\n  - {{name: {gear}, type: wasm, config: {{source: 'snake://wasm_catalog/{hash}.wasm'}}}}\n"
    )
}

fn stats_file(d: &Dir) -> serde_json::Value {
    serde_json::from_slice(&d.read("stats.json")).unwrap()
}

/// `in` = `out` + `dropped` + every failure: each item read has exactly one fate.
#[track_caller]
fn assert_accounted(stats: &serde_json::Value) {
    let n = |k: &str| stats[k].as_u64().unwrap();
    assert_eq!(
        n("in"),
        n("out") + n("dropped") + n("failed_total") + n("hop_limit") + n("queue_full"),
        "{stats}"
    );
}

/// Writes `count` lines `m1`, `m2`, ... to the rack's standard input on a thread, until the
/// rack stops reading; returns how many were written.
fn feed(rack: &mut Service, count: usize) -> thread::JoinHandle<usize> {
    let mut stdin = rack.take_stdin();
    thread::spawn(move || {
        for n in 1..=count {
            if writeln!(stdin, "m{n}").is_err() {
                return n - 1;
            }
        }
        count
    })
}

#[test]
fn sigterm_finishes_every_message_already_read_and_exits_0() {
    let d = Dir::new("stop");
    let hash = import_unsigned(&d, "slow.wasm", &slow_gear(2_000));
    d.write("s.yaml", one_gear("stop", "slow", &hash));
    let mut rack =
        d.spawn(&["run", "--scenario", "s.yaml", "--queue-messages", "64", "--stats-json", "stats.json"]);
    let writer = feed(&mut rack, 200_000);
    rack.wait_for_lines(20);
    rack.signal("TERM");
    let (code, out, err) = rack.wait();
    let written = writer.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("SIGTERM: stopping; no more input is read"), "{err}");
    let stats = stats_file(&d);
    assert_eq!(stats["stopped_by"], "SIGTERM");
    assert_accounted(&stats);
    let read = stats["in"].as_u64().unwrap();
    // Stopped midway: fewer read than written, and every one read came out, in order.
    assert!(read >= 20 && (read as usize) < written, "read {read} of {written}");
    assert_eq!(stats["out"], read, "{stats}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, read);
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line["raw_text"], format!("m{}", n + 1));
    }
    assert!(err.contains(&format!("stopped: {read} in, {read} out, 0 dropped by gears, 0 failed")), "{err}");
}

#[test]
fn a_second_signal_stops_at_once_and_counts_what_it_abandons() {
    let d = Dir::new("abort");
    let hash = import_unsigned(&d, "slow.wasm", &slow_gear(400_000));
    d.write("s.yaml", one_gear("abort", "slow", &hash));
    let mut rack = d.spawn(&["run", "--scenario", "s.yaml", "--queue-messages", "1000"]);
    let writer = feed(&mut rack, 500);
    rack.wait_for_lines(1);
    rack.signal("INT");
    rack.wait_for_log("SIGINT: stopping");
    rack.signal("INT");
    let (code, out, err) = rack.wait();
    writer.join().unwrap();
    assert_eq!(code, 5, "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("SIGINT again: stopping at once;"))
        .unwrap_or_else(|| panic!("{err}"));
    let abandoned: usize =
        line.split("at once; ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    // 500 lines were read (they fit the queue and the pipe); what came out was flushed.
    assert!(abandoned > 0, "{line}");
    // Every line read came out or is counted (give or take the one being written when
    // the signal came).
    assert!((out.lines().count() + abandoned).abs_diff(500) <= 1, "{} out, {err}", out.lines().count());
}

#[test]
fn a_full_queue_stops_the_reader_and_memory_stays_bounded() {
    let d = Dir::new("backpressure");
    let hash = import_unsigned(&d, "slow.wasm", &slow_gear(50_000));
    d.write("s.yaml", one_gear("bp", "slow", &hash));
    let mut rack = d.spawn(&[
        "run",
        "--scenario",
        "s.yaml",
        "--queue-messages",
        "100000",
        "--queue-bytes",
        "262144",
        "--output-format",
        "cbor",
        "--stats-json",
        "stats.json",
    ]);
    // 64 MiB of 1 KiB lines waiting on standard input.
    let mut stdin = rack.take_stdin();
    let line = line_bytes();
    let writer = thread::spawn(move || {
        let mut written = 0usize;
        while written < 64 << 20 {
            if stdin.write_all(&line).is_err() {
                break;
            }
            written += line.len();
        }
        written
    });
    thread::sleep(std::time::Duration::from_secs(3));
    assert!(!writer.is_finished(), "the writer must be blocked: the rack stopped reading");
    rack.signal("TERM");
    let (code, _, err) = rack.wait();
    let written = writer.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let stats = stats_file(&d);
    assert_accounted(&stats);
    let read = stats["in"].as_u64().unwrap();
    assert!(read < (64 << 20) / 1024, "read {read} of the 65536 lines waiting");
    let peak = stats["peak_rss_bytes"].as_u64().unwrap();
    // The floor: the same rack, 100 lines, nothing waiting.
    let floor = {
        let input: Vec<u8> = (0..100).flat_map(|_| line_bytes()).collect();
        d.run(
            &["run", "--scenario", "s.yaml", "--output-format", "cbor", "--stats-json", "stats.json"],
            &input,
        )
        .ok();
        stats_file(&d)["peak_rss_bytes"].as_u64().unwrap()
    };
    eprintln!(
        "peak RSS {} KiB behind {} KiB of input; {} KiB with nothing waiting",
        peak >> 10,
        written >> 10,
        floor >> 10
    );
    // At most the queue (256 KiB) + one message + the reader's buffers, above the floor.
    assert!(peak < floor + (4 << 20), "peak RSS {} KiB, floor {} KiB", peak >> 10, floor >> 10);
}

fn line_bytes() -> Vec<u8> {
    format!("{}\n", "x".repeat(1023)).into_bytes()
}

#[test]
fn peak_memory_is_flat_in_the_number_of_messages() {
    let d = Dir::new("flat");
    let hash = import_unsigned(&d, "pass.wasm", &slow_gear(0));
    let source = format!("snake://wasm_catalog/{hash}.wasm");
    let scenario = |count: u64| {
        format!(
            "name: flat\nversion: '1'\ngears:\n  - {{name: gen, type: generate, config: {{count: {count}, payload: 'reading {{n}}'}}}}\n  - {{name: a, type: wasm, config: {{source: '{source}'}}}}\n  - {{name: b, type: wasm, config: {{source: '{source}'}}}}\nwires:\n  - {{from: gen.out, to: a.in}}\n  - {{from: a.out, to: b.in}}\n"
        )
    };
    let mut peaks = Vec::new();
    for count in [100u64, 50_000] {
        d.write("s.yaml", scenario(count));
        d.run(&["run", "--scenario", "s.yaml", "--output-format", "cbor", "--stats-json", "stats.json"], b"")
            .ok();
        let stats = stats_file(&d);
        assert_eq!(stats["out"], count);
        peaks.push(stats["peak_rss_bytes"].as_u64().unwrap());
    }
    eprintln!("peak RSS: 100 messages {} KiB, 50 000 messages {} KiB", peaks[0] >> 10, peaks[1] >> 10);
    assert!(
        peaks[1] < peaks[0] + (4 << 20),
        "peak RSS grew from {} to {} KiB",
        peaks[0] >> 10,
        peaks[1] >> 10
    );
}

#[test]
fn sighup_reloads_while_a_stream_flows_losing_and_repeating_nothing() {
    let d = Dir::new("reload");
    let slow = import_unsigned(&d, "slow.wasm", &slow_gear(5_000));
    d.write("s.yaml", one_gear("before", "old", &slow));
    let mut rack =
        d.spawn(&["run", "--scenario", "s.yaml", "--queue-messages", "16", "--stats-json", "stats.json"]);
    let mut stdin = rack.take_stdin();
    let total = 3000;
    let writer = thread::spawn(move || {
        for n in 1..=total {
            writeln!(stdin, "m{n}").unwrap();
            if n % 100 == 0 {
                thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    });
    rack.wait_for_lines(100);
    // An invalid scenario changes nothing.
    d.write("s.yaml", "name: broken\ngears:\n  - {name: x, type: wasm, config: {source: 'snake://wasm_catalog/nope.wasm'}}\n");
    rack.signal("HUP");
    rack.wait_for_log("reload refused, the running scenario is unchanged:");
    // A valid one takes over; messages already read finish on the old plan.
    d.write("s.yaml", one_gear("after", "new", &slow));
    rack.signal("HUP");
    rack.wait_for_log("reloaded: now running scenario 'after'");
    writer.join().unwrap();
    let (code, out, err) = rack.wait();
    assert_eq!(code, 0, "{err}");
    let stats = stats_file(&d);
    assert_eq!(stats["in"], total);
    assert_eq!(stats["out"], total);
    assert_eq!(stats["reloads"], 1);
    assert_eq!(stats["reload_failures"], 1);
    // Every message once, in order; each went through one gear: old ones, then new ones.
    let old = fluxrig_testkit::hex(&fluxrig_core::verify::sha256(b"old")[..4]);
    let new = fluxrig_testkit::hex(&fluxrig_core::verify::sha256(b"new")[..4]);
    let mut switched = false;
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), total);
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line["raw_text"], format!("m{}", n + 1));
        let path = line["path"].as_array().unwrap();
        assert_eq!(path.len(), 1, "{line}");
        let gear = path[0]["g"].as_str().unwrap().replace('-', "");
        if gear.starts_with(&new) {
            switched = true;
        } else {
            assert!(
                gear.starts_with(&old) && !switched,
                "message {} after the switch ran on the old plan",
                n + 1
            );
        }
    }
    assert!(switched && lines[0]["path"][0]["g"].as_str().unwrap().replace('-', "").starts_with(&old));
}

#[test]
fn failed_messages_exit_4_and_metrics_and_json_logs_are_written() {
    let d = Dir::new("exit4");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    d.write("s.yaml", one_gear("picky", "p", &hash));
    let run = d.run(
        &[
            "run",
            "--scenario",
            "s.yaml",
            "--log-format",
            "json",
            "--metrics-file",
            "metrics.prom",
            "--output",
            "out.jsonl",
            "--stats-json",
            "stats.json",
        ],
        b"one\ndrop\ntrap\ntwo\n",
    );
    run.fails(4, "1 message(s) failed");
    for line in run.stderr().lines().filter(|l| !l.starts_with("fluxrig: ")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            v["ts"].is_string() && v["level"].is_string() && v["source"].is_string() && v["msg"].is_string()
        );
    }
    assert!(run.stderr().contains(r#""level":"error","source":"p","msg":"message "#), "{}", run.stderr());
    assert_eq!(run.stdout(), "", "--output takes the messages");
    let out = String::from_utf8(d.read("out.jsonl")).unwrap();
    assert_eq!(out.lines().count(), 2);
    // Appends, and a line cut off by a killed run is ended first.
    let mut file = std::fs::OpenOptions::new().append(true).open(d.path("out.jsonl")).unwrap();
    file.write_all(b"{\"cut").unwrap();
    d.run(&["run", "--scenario", "s.yaml", "--output", "out.jsonl", "-q"], b"three\n").ok();
    let out = String::from_utf8(d.read("out.jsonl")).unwrap();
    assert_eq!(out.lines().count(), 4);
    assert_eq!(out.lines().nth(2), Some("{\"cut"));
    assert!(out.lines().nth(3).unwrap().contains("\"raw_text\":\"three\""));
    let metrics = String::from_utf8(d.read("metrics.prom")).unwrap();
    for line in [
        "fluxrig_messages_in_total 4",
        "fluxrig_messages_out_total 2",
        "fluxrig_messages_dropped_total 1",
        "fluxrig_messages_failed_total{blame=\"guest\"} 1",
        "fluxrig_gear_messages_in_total{gear=\"p\"} 4",
        "fluxrig_gear_messages_failed_total{gear=\"p\",blame=\"guest\"} 1",
        "fluxrig_gear_instance_rebuilds_total{gear=\"p\"} 1",
        "fluxrig_gear_call_seconds_count{gear=\"p\"} 4",
        "fluxrig_scenario_info{name=\"picky\",version=\"1\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }
    let stats = stats_file(&d);
    assert_accounted(&stats);
    assert_eq!(stats["gears"][0]["in"], 4);
}
