//! `run --listen`: socket inputs from many clients at once, each on its own, with limits.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::Duration;

use crate::util::*;

fn pass_through(d: &Dir) {
    let hash = import_unsigned(d, "pass.wasm", &slow_gear(0));
    d.write(
        "s.yaml",
        format!("name: sockets\nversion: '1'\ngears:\n  - {{name: p, type: wasm, config: {{source: 'snake://wasm_catalog/{hash}.wasm'}}}}\n"),
    );
}

/// The TCP port from the start-up line (`tcp:127.0.0.1:PORT`).
fn tcp_port(log: &str) -> u16 {
    let at = log.find("tcp:127.0.0.1:").unwrap_or_else(|| panic!("no TCP input in {log}")) + 14;
    log[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn unix_and_tcp_clients_at_once_each_carry_on_past_a_bad_line() {
    let d = Dir::new("listen");
    pass_through(&d);
    let rack = d.spawn(&[
        "run",
        "--scenario",
        "s.yaml",
        "--listen",
        "unix:in.sock",
        "--listen",
        "tcp:0",
        "--queue-messages",
        "8",
        "--stats-json",
        "stats.json",
    ]);
    let log = rack.wait_for_log("running scenario 'sockets'");
    assert!(log.contains("inputs: unix:in.sock, tcp:127.0.0.1:"), "{log}");
    let port = tcp_port(&log);
    let mode = std::fs::metadata(d.path("in.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let sock = d.path("in.sock");
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let sock = sock.clone();
            thread::spawn(move || {
                let mut stream: Box<dyn Write> = if k < 2 {
                    Box::new(UnixStream::connect(&sock).unwrap())
                } else {
                    Box::new(TcpStream::connect(("127.0.0.1", port)).unwrap())
                };
                for n in 0..500 {
                    writeln!(stream, "c{k}-{n}").unwrap();
                    if k == 3 && n == 250 {
                        stream.write_all(b"{\"id\": \"not-a-uuid\"}\n").unwrap();
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    rack.wait_for_lines(2000);
    rack.signal("TERM");
    let (code, out, err) = rack.wait();
    assert_eq!(code, 4, "one bad line: {err}");
    let bad = err.lines().find(|l| l.contains("'id' is not a UUID")).unwrap_or_else(|| panic!("{err}"));
    assert!(bad.contains(&format!("tcp:127.0.0.1:{port} client")) && bad.contains("line 252"), "{bad}");
    // Every line once, each client's in its order.
    let texts: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["raw_text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(texts.len(), 2000);
    for k in 0..4 {
        let mine: Vec<&String> = texts.iter().filter(|t| t.starts_with(&format!("c{k}-"))).collect();
        let want: Vec<String> = (0..500).map(|n| format!("c{k}-{n}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>());
    }
    let stats: serde_json::Value = serde_json::from_slice(&d.read("stats.json")).unwrap();
    assert_eq!(stats["in"], 2001);
    assert_eq!(stats["failed"]["input"], 1);
    assert!(!d.path("in.sock").exists(), "the socket file is removed on stop");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_or_a_file_refused() {
    let d = Dir::new("stale");
    pass_through(&d);
    drop(UnixListener::bind(d.path("in.sock")).unwrap()); // a killed run's socket file
    let rack = d.spawn(&["run", "--scenario", "s.yaml", "--listen", "unix:in.sock"]);
    let log = rack.wait_for_log("running scenario");
    assert!(log.contains("unix:in.sock: replacing a stale socket file"), "{log}");
    d.run(&["run", "--scenario", "s.yaml", "--listen", "unix:in.sock"], b"")
        .fails(1, "unix:in.sock: another process is listening there");
    d.write("file", "not a socket");
    d.run(&["run", "--scenario", "s.yaml", "--listen", "unix:file"], b"")
        .fails(1, "unix:file: exists and is not a socket");
    let usage = d.run(&["run", "--scenario", "s.yaml", "--listen", "udp:1"], b"");
    assert_eq!(usage.code(), 2);
    assert!(
        usage.stderr().contains("\"udp:1\" is not unix:PATH, tcp:PORT or tcp:HOST:PORT"),
        "{}",
        usage.stderr()
    );
    // Serving without standard input: it runs until signalled, then exits 0.
    let mut client = UnixStream::connect(d.path("in.sock")).unwrap();
    client.write_all(b"hello\n").unwrap();
    rack.wait_for_lines(1);
    rack.signal("INT");
    let (code, _, err) = rack.wait();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn connection_limit_idle_time_and_line_length_are_enforced_per_client() {
    let d = Dir::new("limits");
    pass_through(&d);
    let rack = d.spawn(&[
        "run",
        "--scenario",
        "s.yaml",
        "--listen",
        "unix:in.sock",
        "--max-connections",
        "1",
        "--idle-timeout-secs",
        "1",
        "--connection-buffer-bytes",
        "100",
    ]);
    rack.wait_for_log("running scenario");
    let sock = d.path("in.sock");
    let mut first = UnixStream::connect(&sock).unwrap();
    first.write_all(b"first\n").unwrap();
    rack.wait_for_lines(1);
    // One over the limit: closed at once, unread.
    let mut second = UnixStream::connect(&sock).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert_eq!(read_one(&mut second).unwrap(), 0, "the second connection is closed");
    rack.wait_for_log("client 2: refused, 1 connections are open (--max-connections 1)");
    // The first, silent for a second, is closed.
    first.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert_eq!(read_one(&mut first).unwrap(), 0, "the silent connection is closed");
    // A line of exactly 100 bytes passes; 101 ends that connection.
    let mut third = UnixStream::connect(&sock).unwrap();
    third.write_all(format!("{}\n", "a".repeat(100)).as_bytes()).unwrap();
    third.write_all(format!("{}\n", "b".repeat(101)).as_bytes()).unwrap();
    rack.wait_for_log("line 2: longer than 100 bytes; stopping this input");
    rack.wait_for_lines(2);
    rack.signal("TERM");
    let (code, out, err) = rack.wait();
    assert_eq!(code, 4, "{err}");
    assert_eq!(out.lines().count(), 2);
    assert!(out.lines().nth(1).unwrap().contains(&"a".repeat(100)));
}

#[test]
fn cbor_clients_skip_invalid_items_and_a_malformed_one_ends_only_its_connection() {
    let d = Dir::new("cbor-listen");
    pass_through(&d);
    let rack =
        d.spawn(&["run", "--scenario", "s.yaml", "--listen", "unix:in.sock", "--input-format", "cbor"]);
    rack.wait_for_log("running scenario");
    let example = fluxrig_testkit::vectors::get("fluxmsg.txt", "example");
    let mut bad = UnixStream::connect(d.path("in.sock")).unwrap();
    bad.write_all(&example).unwrap();
    bad.write_all(&[0xa1, 0x01, 0x02]).unwrap(); // well-formed, not a fluxMsg: skipped
    bad.write_all(&example).unwrap();
    bad.write_all(&[0xff]).unwrap(); // not well-formed: ends this connection
    bad.write_all(&example).unwrap();
    rack.wait_for_log(
        "CBOR item 4 is not well-formed (byte 0 of the item); stopping this input after 3 item(s)",
    );
    let mut good = UnixStream::connect(d.path("in.sock")).unwrap();
    good.write_all(&example).unwrap();
    rack.wait_for_lines(3);
    drop(good);
    rack.signal("TERM");
    let (code, out, err) = rack.wait();
    assert_eq!(code, 4, "{err}");
    assert_eq!(out.lines().count(), 3, "{err}");
    assert!(err.contains("CBOR item 2: "), "{err}");
    assert!(err.contains("; skipped"), "{err}");
}

/// CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_rack_uses_no_cpu() {
    let d = Dir::new("idle");
    pass_through(&d);
    let rack = d.spawn(&[
        "run",
        "--scenario",
        "s.yaml",
        "--listen",
        "unix:in.sock",
        "--metrics-file",
        "m.prom",
        "--metrics-interval-secs",
        "1",
    ]);
    rack.wait_for_log("running scenario");
    let _client = UnixStream::connect(d.path("in.sock")).unwrap(); // an open, silent client
    thread::sleep(Duration::from_secs(1));
    let before = cpu_ticks(rack.pid());
    thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(rack.pid()) - before;
    // Three metrics writes in 3 s and nothing else: at most a tick or two (10 ms each).
    assert!(used <= 2, "an idle rack used {used} ticks of CPU in 3 s");
    rack.signal("TERM");
    assert_eq!(rack.wait().0, 0);
}
