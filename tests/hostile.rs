//! Hostile input, one test per finding of issue 10: alias bombs and typos in scenarios,
//! files that are not files, races and kills on the data directory, modules that cannot
//! start or cost more than their admission says. Each is refused or bounded, with one line
//! naming what was wrong, and leaves nothing half-done.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

/// Makes a FIFO at `rel` in `d`.
fn mkfifo(d: &Dir, rel: &str) {
    let status = spawn(Command::new("mkfifo").arg(d.path(rel))).wait().unwrap();
    assert!(status.success());
}

#[test]
fn an_alias_bomb_scenario_is_refused_quickly_and_nothing_is_written() {
    let d = Dir::new("alias-bomb");
    let mut bomb =
        String::from("name: bomb\nversion: '1'\ngears: [{name: g, type: generate}]\na0: &a0 [\"lol\"]\n");
    for i in 1..9 {
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(",")));
    }
    assert!(bomb.len() < 600);
    d.write("bomb.yaml", &bomb);
    let started = Instant::now();
    d.run(&["scenario", "import", "bomb.yaml", "--activate"], b"")
        .fails(1, "bomb.yaml: scenario refused: more than 65536 YAML nodes once aliases are expanded");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(d.files("data"), Vec::<String>::new());
    // A typo in a config key is refused with the key it was meant to be.
    d.write(
        "typo.yaml",
        "name: t\nversion: '1'\ngears:\n  - {name: g, type: generate, config: {cuont: 3}}\n",
    );
    d.run(&["scenario", "import", "typo.yaml"], b"")
        .fails(1, "gear 'g': config: unknown key \"cuont\" (did you mean \"count\"?");
    // A byte order mark is accepted.
    d.write(
        "bom.yaml",
        "\u{feff}name: t\nversion: '1'\ngears:\n  - {name: g, type: generate, config: {count: 1}}\n",
    );
    d.run(&["scenario", "import", "bom.yaml"], b"").ok();
}

#[test]
fn files_that_are_not_files_are_refused_without_hanging() {
    let d = Dir::new("fifo");
    let hash = tutorial_up_to_import(&d);
    d.write("scenario.yaml", tutorial_scenario(&hash, 16));
    d.run(&["scenario", "import", "scenario.yaml", "--activate"], b"").ok();
    // The catalog module replaced by a FIFO: list, call and run refuse it at once.
    let module = format!("data/wasm/{hash}.wasm");
    fs::remove_file(d.path(&module)).unwrap();
    mkfifo(&d, &module);
    let list = d.run(&["wasm", "list"], b"");
    list.fails(1, "1 of 1 catalog modules would be refused");
    assert!(
        list.stdout().contains("is a FIFO, not a module: only regular files are read"),
        "{}",
        list.stdout()
    );
    d.run(&["wasm", "call", &hash], b"").fails(1, "is a FIFO, not a module");
    d.run(&["run"], b"hello\n").fails(1, "is a FIFO, not a module");
    // A FIFO behind a symbolic link, as a scenario and as a key.
    mkfifo(&d, "pipe");
    std::os::unix::fs::symlink(d.path("pipe"), d.path("link.yaml")).unwrap();
    d.run(&["scenario", "import", "link.yaml"], b"").fails(1, "link.yaml is a FIFO, not a scenario");
    d.run(&["wasm", "sign", "polyglot.wasm", "link.yaml"], b"")
        .fails(1, "link.yaml is a FIFO, not a key file");
    d.run(&["wasm", "sign", "/dev/zero", "my_vendor.key"], b"")
        .fails(1, "/dev/zero is a device, not a module");
}

#[test]
fn a_huge_pub_in_the_trust_store_is_not_read() {
    let d = Dir::new("huge-pub");
    d.write("u.wasm", picky_gear());
    // A sparse 1 GiB file: reading it whole would cost 1 GiB.
    let huge = d.path("data/wasm/keys/huge.pub");
    fs::create_dir_all(huge.parent().unwrap()).unwrap();
    fs::File::create(&huge).unwrap().set_len(1 << 30).unwrap();
    mkfifo(&d, "data/wasm/keys/fifo.pub");
    let import = d.run(&["wasm", "import", "u.wasm", "--allow-unsigned"], b"");
    import.ok();
    let err = import.stderr();
    assert!(
        err.contains("huge.pub is 1073741824 bytes, a public key file may be at most 4096 bytes"),
        "{err}"
    );
    assert!(err.contains("fifo.pub: not a regular file"), "{err}");
}

#[test]
fn concurrent_imports_on_a_fresh_node_make_one_cluster_key() {
    for round in 0..3 {
        let d = Dir::new("race");
        let names: Vec<String> = (0..4).map(|i| format!("g{i}.wasm")).collect();
        for (i, name) in names.iter().enumerate() {
            // Four different modules: the picky gear with a different custom section each.
            let mut module = picky_gear();
            module.extend_from_slice(&[0, 3, 2, b'n', b'0' + i as u8]);
            d.write(name, module);
        }
        let runs: Vec<Run> = std::thread::scope(|s| {
            let d = &d;
            let handles: Vec<_> = names
                .iter()
                .map(|name| s.spawn(move || d.run(&["wasm", "import", name, "--allow-unsigned"], b"")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for run in &runs {
            run.ok();
        }
        let created = runs.iter().filter(|r| r.stderr().contains("created the node's cluster key")).count();
        assert_eq!(created, 1, "round {round}");
        let list = d.run(&["wasm", "list"], b"");
        list.ok();
        assert_eq!(list.stdout().matches(" ok").count(), 4, "round {round}: {}", list.stdout());
        let left: Vec<String> = d.files("data").into_iter().filter(|f| f.contains(".tmp-")).collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn a_mismatched_key_pair_is_refused_with_the_fix_named() {
    let d = Dir::new("pair");
    d.run(&["keys", "gen-cluster", "-o", "a.key"], b"").ok();
    d.run(&["keys", "gen-cluster", "-o", "b.key"], b"").ok();
    d.write("gear.wasm", picky_gear());
    // What a kill between the two writes of `gen-cluster --force` leaves: a new private
    // key beside the old `.pub`.
    d.write("a.key.pub", d.read("b.key.pub"));
    d.run(&["wasm", "sign", "gear.wasm", "a.key"], b"").fails(
        1,
        "a.key.pub does not hold the public half of a.key (a write of the pair was interrupted?): remove it",
    );
    // The same for the node's cluster key, at import.
    d.write("data/cluster.key", d.read("b.key"));
    d.write("data/cluster.key.pub", d.read("a.key.pub").iter().map(|b| b ^ 1).collect::<Vec<_>>());
    d.run(&["wasm", "import", "gear.wasm", "--allow-unsigned"], b"")
        .fails(1, "cluster.key.pub does not hold the public half of");
    assert_eq!(d.files("data"), ["data/.lock", "data/cluster.key", "data/cluster.key.pub"]);
    // The fix the message names: without the `.pub`, the next import rewrites it from the
    // private key, and `run` trusts what it imported.
    fs::remove_file(d.path("data/cluster.key.pub")).unwrap();
    let import = d.run(&["wasm", "import", "gear.wasm", "--allow-unsigned"], b"");
    import.ok();
    assert!(import.stderr().contains("wrote the missing ./data/cluster.key.pub"), "{}", import.stderr());
    assert_eq!(d.read("data/cluster.key.pub"), d.read("b.key.pub"));
    d.run(&["wasm", "list"], b"").ok();
}

/// The test kit's pass-through gear with `extra` fields added to its module.
fn pass_through_with(extra: &str) -> Vec<u8> {
    let text = fluxrig_testkit::PASS_THROUGH_WAT.trim_end();
    let text = text.strip_suffix(')').unwrap();
    wat::parse_str(format!("{text}\n{extra})")).unwrap()
}

#[test]
fn a_module_that_cannot_start_is_refused_at_import() {
    let d = Dir::new("no-start");
    let cases = [
        (
            "(func $start unreachable) (start $start)",
            "start function trapped: unreachable executed (guest panic)",
        ),
        ("(func $start (loop br 0)) (start $start)", "start function ran out of fuel"),
        ("(data (i32.const 65530) \"0123456789\")", "out of bounds"),
    ];
    for (i, (extra, want)) in cases.iter().enumerate() {
        let name = format!("m{i}.wasm");
        d.write(&name, pass_through_with(extra));
        let run = d.run(&["wasm", "import", &name, "--allow-unsigned"], b"");
        run.fails(1, want);
        assert!(run.stderr().contains(&format!("gear '{name}'")), "{}", run.stderr());
    }
    // Nothing was stored; a module that starts is imported.
    assert!(d.files("data/wasm").is_empty(), "{:?}", d.files("data/wasm"));
    d.write("ok.wasm", pass_through_with("(func $start) (start $start)"));
    d.run(&["wasm", "import", "ok.wasm", "--allow-unsigned"], b"").ok();
}

#[test]
fn a_module_with_an_invalid_body_nothing_calls_is_refused_at_import_and_by_wasm_call() {
    // Every body is validated when a module is compiled, called or not (translation waits
    // for the first call): at import, before the module is countersigned, and for an
    // unverified run.
    let d = Dir::new("invalid-body");
    d.write("bad.wasm", pass_through_with("(func $never (result i32) (i64.const 0))"));
    d.run(&["wasm", "import", "bad.wasm", "--allow-unsigned"], b"").fails(1, "type mismatch");
    assert!(d.files("data/wasm").is_empty(), "{:?}", d.files("data/wasm"));
    d.run(&["wasm", "call", "bad.wasm"], b"hello").fails(1, "type mismatch");
}

#[test]
fn modules_over_the_content_limits_are_refused_at_import_naming_the_limit() {
    let d = Dir::new("contents");
    let repeat = |n: usize, item: &str| item.repeat(n);
    let cases = [
        (repeat(1001, "(global i32 (i32.const 0))"), "exceeds the limit of 1000 global variables"),
        (
            format!("(table 1 funcref) {}", repeat(1001, "(elem (i32.const 0) 0)")),
            "exceeds the limit of 1000 active element segments",
        ),
        (repeat(1001, "(data \"x\")"), "exceeds the limit of 1000 active data segments"),
        ("(table 10001 funcref)".to_string(), "failed to instantiate table"),
    ];
    for (i, (extra, want)) in cases.iter().enumerate() {
        let name = format!("m{i}.wasm");
        d.write(&name, pass_through_with(extra));
        d.run(&["wasm", "import", &name, "--allow-unsigned"], b"").fails(1, want);
    }
    assert!(d.files("data/wasm").is_empty(), "{:?}", d.files("data/wasm"));
}

/// A one-gear scenario for a module given as WAT, imported unsigned.
fn rack_of(d: &Dir, wat_text: &str, extra: &str) {
    let hash = import_unsigned(d, "g.wasm", &wat::parse_str(wat_text).unwrap());
    d.write("s.yaml", scenario_with(&format!("snake://wasm_catalog/{hash}.wasm"), extra));
}

#[test]
fn a_log_flood_is_rate_limited_per_gear_and_counted() {
    let d = Dir::new("log-flood");
    // 32 lines (the per-call cap) of "flood" on every message, then pass it through.
    rack_of(
        &d,
        r#"(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1 16)
  (data (i32.const 16) "flood")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32)
    (loop $again
      (call $log (i32.const 2) (i32.const 16) (i32.const 5))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 32))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))))"#,
        "",
    );
    let input: String = (0..50).map(|n| format!("m{n}\n")).collect();
    let run = d.run(&["run", "--scenario", "s.yaml"], input.as_bytes());
    run.ok();
    assert_eq!(run.stdout().lines().count(), 50, "every message still passes");
    let err = run.stderr();
    let shown = err.lines().filter(|l| l.ends_with("INFO  f: flood")).count();
    let suppressed: usize = err
        .lines()
        .filter_map(|l| {
            l.split("WARN  f: ").nth(1)?.strip_suffix(" log line(s) suppressed: more than 100 a second")
        })
        .map(|n| n.parse::<usize>().unwrap())
        .sum();
    // 1600 lines asked for: at most 100 a second shown, every other one counted.
    assert!((100..1600).contains(&shown), "{shown} shown: the limit held and let 100 a second through");
    assert_eq!(shown + suppressed, 50 * 32, "{err}");
}

#[test]
fn cbor_input_skips_an_invalid_item_and_stops_at_a_malformed_one() {
    let d = Dir::new("cbor-stdin");
    rack_of(&d, fluxrig_testkit::PASS_THROUGH_WAT, "");
    let example = fluxrig_testkit::vectors::get("fluxmsg.txt", "example");
    let mut input = example.clone();
    input.extend_from_slice(&[0xa1, 0x01, 0x02]); // well-formed CBOR, not a fluxMsg
    input.extend_from_slice(&example);
    input.push(0xff); // not well-formed: the sequence cannot go on
    input.extend_from_slice(&example);
    let run = d.run(&["run", "--scenario", "s.yaml", "--input-format", "cbor"], &input);
    run.fails(4, "2 message(s) failed");
    assert_eq!(run.stdout().lines().count(), 2);
    let err = run.stderr();
    assert!(err.contains("standard input: CBOR item 2: ") && err.contains("; skipped"), "{err}");
    assert!(
        err.contains("standard input: CBOR item 4 is not well-formed (byte 0 of the item); stopping this input after 3 item(s)"),
        "{err}"
    );
}

#[test]
fn a_line_that_is_not_utf8_is_carried_as_its_bytes() {
    let d = Dir::new("raw-bytes");
    rack_of(&d, fluxrig_testkit::PASS_THROUGH_WAT, "");
    let run = d.run(&["run", "--scenario", "s.yaml"], b"ab\xff\xfecd\n");
    run.ok();
    let out: serde_json::Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(out["raw"], "YWL//mNk", "the bytes, base64, unchanged (no U+FFFD)");
    assert!(out.get("raw_text").is_none(), "not UTF-8: no raw_text");
}

#[test]
fn a_large_cbor_item_is_read_in_linear_time_and_bounded_memory() {
    let d = Dir::new("big-item");
    // A pass-through whose alloc grows its memory to fit the message.
    let growing = r#"(module
  (memory (export "memory") 1 64)
  (func (export "alloc") (param $n i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.shr_u (i32.add (local.get $n) (i32.const 66559)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
    (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))))"#;
    rack_of(&d, growing, "      memory_limit_pages: 64\n");
    let small = fluxrig_core::MsgBytes::from_msg(&fluxrig_core::FluxMsg::with_raw([1; 16], 1, b"x".to_vec()));
    let big =
        fluxrig_core::MsgBytes::from_msg(&fluxrig_core::FluxMsg::with_raw([2; 16], 1, vec![b'y'; 2 << 20]));
    let args = [
        "run",
        "--scenario",
        "s.yaml",
        "--input-format",
        "cbor",
        "--output-format",
        "cbor",
        "--stats-json",
        "stats.json",
    ];
    let peak = |input: &[u8]| {
        d.run(&args, input).ok();
        let stats: serde_json::Value = serde_json::from_slice(&d.read("stats.json")).unwrap();
        assert_eq!(stats["out"], 1);
        stats["peak_rss_bytes"].as_u64().unwrap()
    };
    let floor = peak(small.as_bytes());
    let with_big = peak(big.as_bytes());
    // The item (2 MiB), its copy into the queue, the gear's copy and the output: a few
    // times its size, never the O(n^2) re-reading that cost 159 MiB for 4 MiB.
    assert!(with_big < floor + (24 << 20), "peak {} KiB, floor {} KiB", with_big >> 10, floor >> 10);
}
