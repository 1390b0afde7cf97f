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
    let status = Command::new("mkfifo").arg(d.path(rel)).status().unwrap();
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
