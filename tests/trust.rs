//! Trust and fault: the public cluster key is all a rack needs, only a trust failure exits
//! 3, a module's untrusted names never crash or forge output, flags from outside cannot
//! skip a gear, and each gear is compiled once and its trust logged once.

use crate::util::*;

/// A module importing `env."a" + "é"×30`: valid UTF-8, a valid module, a forbidden import.
fn multi_byte_import() -> Vec<u8> {
    let name: String = std::iter::once('a').chain(std::iter::repeat_n('é', 30)).collect();
    wat::parse_str(format!(r#"(module (import "env" "{name}" (func)) (memory (export "memory") 1))"#))
        .unwrap()
}

#[test]
fn run_list_and_call_need_only_the_public_cluster_key() {
    let d = Dir::new("least-privilege");
    let hash = tutorial_up_to_import(&d);
    d.write("s.yaml", tutorial_scenario(&hash, 16));
    std::fs::remove_file(d.path("data/cluster.key")).unwrap();
    let run = d.run(&["run", "--scenario", "s.yaml"], b"hello\n");
    run.ok();
    assert_eq!(run.stdout().lines().count(), 1);
    assert!(!run.stderr().contains("private key"), "{}", run.stderr());
    assert!(run.stdout().contains("hello"));
    d.run(&["wasm", "list"], b"").ok();
    d.run(&["wasm", "call", &hash, "-m", "x"], b"").ok();
    // Without the .pub, a node set up by hand still works from the private file, with a warning.
    let d = Dir::new("private-only");
    let hash = tutorial_up_to_import(&d);
    std::fs::remove_file(d.path("data/cluster.key.pub")).unwrap();
    let list = d.run(&["wasm", "list"], b"");
    list.ok();
    assert!(list.stderr().contains("reading the public key from the private key file"));
    d.run(&["wasm", "call", &hash, "-m", "x"], b"").ok();
}

#[test]
fn only_a_trust_failure_exits_3() {
    let d = Dir::new("exit-codes");
    // A vendor-signed module whose only fault is its shape: exit 1, not 3.
    d.write("bare.wasm", vector("module"));
    d.write("vendor.key", vector("vendor_key_file"));
    d.write("data/wasm/keys/vendor.pub", vector("vendor_pub"));
    d.run(&["wasm", "sign", "bare.wasm", "vendor.key"], b"").ok();
    let verify = d.run(&["wasm", "verify", "bare.wasm"], b"");
    verify.fails(1, "bare.wasm: shape failed");
    assert!(verify.stdout().contains("vendor signature: ok"), "{}", verify.stdout());
    // A missing cluster key is a setup problem (exit 1) that names the file to look for.
    let hash = "0".repeat(64);
    d.run(&["wasm", "call", &hash], b"").fails(1, "no cluster key at ./data/cluster.key.pub");
    // An untrusted vendor is a trust failure: exit 3.
    d.write("data/wasm/keys/vendor.pub", vector("cluster_pub"));
    d.run(&["wasm", "import", "bare.wasm"], b"")
        .fails(3, "vendor signature found but does not match any trusted keys");
    // Signing with a public key file is refused, not taken as a seed.
    d.run(&["wasm", "sign", "bare.wasm", "data/wasm/keys/vendor.pub"], b"")
        .fails(1, "is a public key; sign with the private key file beside it");
}

#[test]
fn a_multi_byte_import_name_is_refused_not_a_crash() {
    let d = Dir::new("multi-byte");
    d.write("evil.wasm", multi_byte_import());
    // The name is cut to 48 bytes on a character boundary: "env.a" and 21 of the 30 "é".
    let cut: String = std::iter::once("env.a").chain(std::iter::repeat_n("é", 21)).collect();
    let want = format!("module imports {cut:?}; a gear may import only env.log");
    let want = want.as_str();
    d.run(&["wasm", "import", "evil.wasm", "--allow-unsigned"], b"").fails(1, want);
    let verify = d.run(&["wasm", "verify", "evil.wasm"], b"");
    assert_eq!(verify.code(), 3, "{}", verify.stderr()); // unsigned, and the shape is wrong too
    assert!(verify.stdout().contains(want), "{}", verify.stdout());
    d.run(&["wasm", "call", "evil.wasm"], b"").fails(1, want);
    assert!(d.files("data/wasm").is_empty());
}

#[test]
fn flags_from_stdin_skip_no_gear() {
    let d = Dir::new("flags");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    d.write("s.yaml", scenario_with(&format!("snake://wasm_catalog/{hash}.wasm"), ""));
    // Flag bit 0 (a sync probe on the bus) set on input: the picky gear still sees and drops it.
    let run = d.run(
        &["run", "--scenario", "s.yaml"],
        b"{\"flags\":1,\"raw_text\":\"drop this\"}\n{\"flags\":1,\"raw_text\":\"keep\"}\n",
    );
    run.ok();
    let stdout = run.stdout();
    let out: Vec<&str> = stdout.lines().collect();
    assert_eq!(out.len(), 1, "{stdout}");
    assert!(out[0].contains("\"raw_text\":\"keep\"") && out[0].contains("\"flags\":1"), "{}", out[0]);
    assert!(run.stderr().contains("1 dropped by gears"), "{}", run.stderr());
}

#[test]
fn each_gear_is_compiled_once_and_its_trust_logged_once() {
    let d = Dir::new("compile-once");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    let source = format!("snake://wasm_catalog/{hash}.wasm");
    d.write(
        "s.yaml",
        format!(
            "name: three\nversion: '1'\ngears:\n  - {{name: a, type: wasm, config: {{source: '{source}'}}}}\n  - {{name: b, type: wasm, config: {{source: '{source}'}}}}\n  - {{name: c, type: wasm, config: {{source: '{source}'}}}}\nwires:\n  - {{from: a.out, to: b.in}}\n  - {{from: b.out, to: c.in}}\n"
        ),
    );
    let run = d.run(&["run", "--scenario", "s.yaml", "--input-format", "json"], b"one\ntrap\ntwo\n");
    run.fails(4, "1 message(s) failed");
    let err = run.stderr();
    assert!(err.contains("3 wasm gear(s) ready: 3 module compile(s) on one engine"), "{err}");
    assert_eq!(err.matches("cluster signature and hash verified").count(), 3, "{err}");
    // A trap rebuilds the instance from the same compile: still 2 messages through 3 gears.
    assert_eq!(run.stdout().lines().count(), 2);
    let insecure = d.run(&["run", "--scenario", "s.yaml", "--insecure"], b"x\n");
    insecure.ok();
    assert_eq!(insecure.stderr().matches("UNVERIFIED, running anyway").count(), 3, "{}", insecure.stderr());
}

#[test]
fn a_guests_log_lines_cannot_forge_a_rack_line() {
    let d = Dir::new("log-escape");
    let text = "ok\\n2026-01-01T00:00:00.000Z ERROR rack: stopped\\1b[31m";
    let len = "ok\n2026-01-01T00:00:00.000Z ERROR rack: stopped\x1b[31m".len();
    let wasm = wat::parse_str(format!(
        r#"(module (import "env" "log" (func $log (param i32 i32 i32))) (memory (export "memory") 1)
  (data (i32.const 16) "{text}")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param i32 i32) (result i64) (call $log (i32.const 2) (i32.const 16) (i32.const {len})) (i64.const 0)))"#
    ))
    .unwrap();
    d.write("log.wasm", wasm);
    let call = d.run(&["wasm", "call", "log.wasm"], b"");
    call.ok();
    let err = call.stderr();
    assert!(err.contains(r"gear: ok\n2026-01-01T00:00:00.000Z ERROR rack: stopped\u{1b}[31m"), "{err}");
    assert!(!err.contains('\x1b') && !err.lines().any(|l| l.starts_with("2026-01-01")), "{err}");
}
