//! Command-line habits: help and version everywhere, `--opt=value`, a global `--data-dir`,
//! suggestions, the scenario commands, `wasm list --json`, and `wasm call` as a bench.

use std::io::Write;

use crate::util::*;

#[test]
fn help_version_equals_values_global_data_dir_and_suggestions() {
    let d = Dir::new("habits");
    for args in
        [&["-h"][..], &["help"], &["wasm", "call", "-h"], &["help", "scenario", "import"], &["run", "help"]]
    {
        let run = d.run(args, b"");
        run.ok();
        assert!(run.stdout().starts_with("Usage: fluxrig"), "{args:?}: {}", run.stdout());
    }
    for args in [&["--version"][..], &["-V"], &["version"]] {
        let run = d.run(args, b"");
        run.ok();
        let line = run.stdout();
        assert!(line.starts_with(concat!("fluxrig ", env!("CARGO_PKG_VERSION"), " (commit ")), "{line}");
        assert!(line.contains(", target ") && line.contains(", features: "), "{line}");
    }
    // A global --data-dir, before the command and as --opt=value: the import lands there.
    d.write("picky.wasm", picky_gear());
    let import = d.run(&["--data-dir=elsewhere", "wasm", "import", "picky.wasm", "--allow-unsigned"], b"");
    import.ok();
    let hash = import.stdout().trim().to_string();
    assert!(d.path(&format!("elsewhere/wasm/{hash}.wasm")).exists());
    d.run(&["wasm", "--data-dir", "elsewhere", "list"], b"").ok();
    let list = d.run(&["wasm", "list", "--json", "--data-dir", "elsewhere"], b"");
    list.ok();
    let row: serde_json::Value = serde_json::from_str(list.stdout().trim()).unwrap();
    assert_eq!(
        (row["hash"].as_str(), row["ok"].as_bool(), row["error"].is_null()),
        (Some(&hash[..]), Some(true), true)
    );
    let typo = d.run(&["wasm", "lst"], b"");
    assert_eq!(typo.code(), 2);
    assert_eq!(
        typo.stderr().trim(),
        "fluxrig: unknown command or argument \"lst\" for 'fluxrig wasm' (did you mean \"list\"?); see 'fluxrig wasm --help'"
    );
    let typo = d.run(&["scenario", "import", "s.yaml", "--activte"], b"");
    assert!(typo
        .stderr()
        .contains("unknown flag \"--activte\" for 'fluxrig scenario import' (did you mean \"--activate\"?)"));
}

fn named(name: &str, version: &str, hash: &str) -> String {
    format!(
        "name: {name}\nversion: '{version}'\ngears:\n  - {{name: p, type: wasm, config: {{source: 'snake://wasm_catalog/{hash}.wasm'}}}}\n"
    )
}

#[test]
fn scenario_validate_import_spellings_list_show_and_activate() {
    let d = Dir::new("scenarios");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    d.write("a.yaml", named("alpha", "1", &hash));
    d.write("b.yaml", named("beta", "1", &hash));
    let valid = d.run(&["scenario", "validate", "a.yaml"], b"");
    valid.ok();
    assert!(
        valid.stdout().contains("scenario 'alpha' 1 (1 gear(s), 0 wire(s), worst-case memory"),
        "{}",
        valid.stdout()
    );
    d.run(&["scenario", "import", "-f", "a.yaml", "--dry-run"], b"").ok();
    d.run(&["scenario", "import", "a.yaml", "-d", "--activate"], b"").ok();
    assert!(d.files("data/scenarios").is_empty(), "validate and dry runs write nothing");
    d.run(&["scenario", "import", "a.yaml", "-f", "b.yaml"], b"").fails(2, "give the scenario file once");
    d.run(&["scenario", "import", "-f", "a.yaml", "--activate"], b"").ok();
    let beta = d.run(&["scenario", "import", "b.yaml"], b"");
    beta.ok();
    assert!(!beta.stdout().contains("active"), "{}", beta.stdout());
    let list = d.run(&["scenario", "list"], b"");
    list.ok();
    let out = list.stdout();
    let lines: Vec<&str> = out.lines().map(|l| l.split("  (").next().unwrap()).collect();
    assert_eq!(lines, ["* alpha 1", "  beta 1"]);
    let json = d.run(&["scenario", "list", "--json"], b"");
    let rows: Vec<serde_json::Value> =
        json.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((rows[0]["name"].as_str(), rows[0]["active"].as_bool()), (Some("alpha"), Some(true)));
    assert_eq!((rows[1]["name"].as_str(), rows[1]["active"].as_bool()), (Some("beta"), Some(false)));
    assert_eq!(d.run(&["scenario", "show", "beta"], b"").stdout().as_bytes(), d.read("b.yaml"));
    let activate = d.run(&["scenario", "activate", "beta"], b"");
    activate.ok();
    assert!(
        activate.stdout().ends_with("is now active (a running rack switches on SIGHUP)\n"),
        "{}",
        activate.stdout()
    );
    assert_eq!(d.read("data/scenarios/active.yaml"), d.read("b.yaml"));
    assert!(d.run(&["scenario", "activate", "beta"], b"").stdout().ends_with("is active (unchanged)\n"));
    // Re-importing the active scenario, changed, without --activate: say the active copy is the old one.
    d.write("b.yaml", named("beta", "2", &hash));
    let again = d.run(&["scenario", "import", "b.yaml"], b"");
    again.ok();
    assert!(again.stderr().contains("note: 'beta' is the active scenario, and the active copy is still the one imported before; 'fluxrig scenario activate beta' switches to this one"), "{}", again.stderr());
    d.run(&["scenario", "activate", "gamma"], b"")
        .fails(1, "no stored scenario \"gamma\" in ./data (stored: \"alpha\", \"beta\")");
}

#[test]
fn wasm_call_reads_standard_input_a_file_and_loops_as_a_bench() {
    let d = Dir::new("call-bench");
    d.write("picky.wasm", picky_gear());
    let call = d.run(&["wasm", "call", "picky.wasm"], b"one\ndrop\n{\"raw_text\":\"two\"}\n");
    call.ok();
    let texts: Vec<String> = call
        .stdout()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["raw_text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(texts, ["one", "two"]);
    let err = call.stderr();
    assert!(err.contains("message 2: fuel used: ") && err.contains("the gear dropped the message"), "{err}");
    d.write("msg.json", "{\"raw_text\":\"from a file\"}\n");
    let file = d.run(&["wasm", "call", "picky.wasm", "-m", "@msg.json"], b"");
    file.ok();
    assert!(file.stdout().contains("\"raw_text\":\"from a file\""), "{}", file.stdout());
    let bench = d.run(&["wasm", "call", "picky.wasm", "-m", "hi", "--loop", "50"], b"");
    bench.ok();
    assert_eq!(bench.stdout().lines().count(), 1, "printed once");
    let line = bench.stderr();
    assert!(
        line.contains("message 1: 50 calls: fuel min ") && line.contains("; 0 instance rebuild(s)"),
        "{line}"
    );
    let traps = d.run(&["wasm", "call", "picky.wasm", "-m", "trap", "--loop", "3"], b"");
    assert_eq!(traps.code(), 1);
    assert!(
        traps.stderr().contains("3 calls: ") && traps.stderr().contains("; 3 instance rebuild(s)"),
        "{}",
        traps.stderr()
    );
}

#[test]
fn wasm_verify_lists_every_problem_with_the_fix_per_language() {
    let d = Dir::new("author-check");
    let wasm = wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 17)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"#,
    )
    .unwrap();
    d.write("bad.wasm", wasm);
    let verify = d.run(&["wasm", "verify", "bad.wasm"], b"");
    verify.fails(3, "bad.wasm: vendor signature, shape failed"); // unsigned: a trust failure too
    let out = verify.stdout();
    assert!(out.contains("shape: 3 problem(s):"), "{out}");
    assert!(out.contains("  - module imports \"wasi_snapshot_preview1.fd_write\""), "{out}");
    assert!(out.contains("    fix: gears get no WASI: build for a freestanding target. Rust: --target wasm32-unknown-unknown"), "{out}");
    assert!(out.contains("export free: Rust #[no_mangle] pub extern \"C\" fn free;"), "{out}");
    assert!(
        out.contains("the module starts with 17 pages, over the limit of 16;")
            && out.contains("Zig: --stack 65536"),
        "{out}"
    );
    // The same module within a larger limit has one problem less.
    let wider = d.run(&["wasm", "verify", "bad.wasm", "--memory-limit-pages", "32"], b"");
    assert!(wider.stdout().contains("shape: 2 problem(s):"), "{}", wider.stdout());
    d.write("good.wasm", picky_gear());
    let good = d.run(&["wasm", "verify", "good.wasm"], b"");
    assert!(
        good.stdout()
            .contains("shape: ok (alloc, free, process; env.log imported; initial memory 1 of 16 pages)"),
        "{}",
        good.stdout()
    );
}

#[test]
fn a_reader_that_closes_the_pipe_early_ends_the_command_quietly() {
    let d = Dir::new("closed-pipe");
    d.write("picky.wasm", picky_gear());
    let mut child = d.start(&runner(), &["wasm", "call", "picky.wasm"]);
    // The reader goes away first (`| head -c 0`); only then does the command have a result.
    drop(child.stdout.take());
    child.stdin.take().unwrap().write_all(b"one\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);
}

#[test]
fn gear_new_writes_a_project_per_language_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new("gear-new");
    for (lang, files) in [
        (
            "rust",
            &["Cargo.toml", "src/lib.rs", "build.sh", "fluxrig-gear/src/lib.rs", "input.jsonl", "README.md"]
                [..],
        ),
        ("c", &["gear.c", "Makefile", "fluxrig_gear.h", "input.jsonl", "README.md"]),
        ("zig", &["gear.zig", "build.zig", "fluxrig.zig", "input.jsonl", "README.md"]),
        (
            "as",
            &[
                "package.json",
                "asconfig.json",
                "assembly/index.ts",
                "assembly/fluxrig.ts",
                "input.jsonl",
                "README.md",
            ],
        ),
    ] {
        let dir = format!("{lang}-project");
        let new = d.run(&["gear", "new", "temp-gate", "--lang", lang, "--dir", &dir], b"");
        new.ok();
        assert!(new.stdout().contains(&format!("in {dir}; next:")), "{}", new.stdout());
        for file in files {
            let text = String::from_utf8(d.read(&format!("{dir}/{file}"))).unwrap();
            assert!(!text.contains("{{name}}"), "{lang}: {file} still has the placeholder");
        }
        let readme = String::from_utf8(d.read(&format!("{dir}/README.md"))).unwrap();
        assert!(readme.contains("temp-gate") && readme.contains("fluxrig wasm sign"), "{lang}: {readme}");
    }
    let mode = std::fs::metadata(d.path("rust-project/build.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
    d.run(&["gear", "new", "temp-gate", "--lang", "c", "--dir", "c-project"], b"")
        .fails(1, "c-project exists and is not empty; choose another --dir");
    d.run(&["gear", "new", "Temp", "--lang", "c"], b"").fails(2, "gear name \"Temp\": use lowercase letters");
    let lang = d.run(&["gear", "new", "x", "--lang", "go"], b"");
    assert_eq!(lang.code(), 2);
    assert!(lang.stderr().contains("unknown language \"go\" (rust, c, zig or as)"), "{}", lang.stderr());
}

#[test]
fn errors_point_at_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new("fix-errors");
    let hash = tutorial_up_to_import(&d);
    // The node's public cluster key is readable by a service user; the private one is not.
    let mode = |p: &str| std::fs::metadata(d.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode("data/cluster.key"), mode("data/cluster.key.pub")), (0o600, 0o644));
    // A mistyped --data-dir is named, not reported as a trust failure.
    d.run(&["wasm", "import", "polyglot.wasm", "--data-dir", "dta"], b"")
        .fails(1, "the data folder dta does not exist (check --data-dir or FLUXRIG_DATA_DIR;");
    assert!(!d.path("dta").exists(), "nothing created");
    // Signed with a key the store does not hold: the trusted keys are named.
    d.run(&["keys", "gen-cluster", "-o", "other.key"], b"").ok();
    d.write("other.wasm", POLYGLOT);
    d.run(&["wasm", "sign", "other.wasm", "other.key"], b"").ok();
    let untrusted = d.run(&["wasm", "import", "other.wasm"], b"");
    untrusted
        .fails(3, "it was signed with a key that is none of the 1 in ./data/wasm/keys: 'my_vendor.key' (");
    d.write("bare.wasm", POLYGLOT);
    d.run(&["wasm", "import", "bare.wasm"], b"").fails(3, "or pass --allow-unsigned to import it as it is");
    // A lost cluster key with modules in the catalog: refused, the fix named.
    std::fs::remove_file(d.path("data/cluster.key")).unwrap();
    std::fs::remove_file(d.path("data/cluster.key.pub")).unwrap();
    d.run(&["wasm", "import", "polyglot.wasm"], b"")
        .fails(1, "but the catalog holds 1 module(s) countersigned by one: a new key would orphan them all");
    assert!(!d.path("data/cluster.key").exists());
    d.run(&["wasm", "import", "polyglot.wasm", "--new-cluster-key"], b"").ok();
    // Importing it again countersigned it with the new key: the catalog verifies.
    let list = d.run(&["wasm", "list"], b"");
    list.ok();
    assert!(list.stdout().contains(&format!("{hash}.wasm")), "{}", list.stdout());
}

#[test]
fn a_relative_file_source_is_relative_to_the_scenarios_folder() {
    let d = Dir::new("file-source");
    let hash = tutorial_up_to_import(&d);
    // A cluster-signed module file beside a scenario in another folder.
    d.write("proj/gear.wasm", d.read(&format!("data/wasm/{hash}.wasm")));
    d.write("proj/s.yaml", scenario_with("file://gear.wasm", ""));
    let run = d.run(&["run", "--scenario", "proj/s.yaml"], b"hello\n");
    run.ok();
    assert!(run.stdout().contains("\"raw_text\":\"hello\""), "{}", run.stdout());
    // Stored in DATA/scenarios, the same relative path would name another file: refused,
    // by validate too, with what to do instead.
    for args in [&["scenario", "import", "proj/s.yaml"][..], &["scenario", "validate", "proj/s.yaml"]] {
        d.run(args, b"").fails(1, "gear 'f': a relative file:// source names a file beside the scenario");
    }
    let absolute = format!("file://{}", d.path("proj/gear.wasm").display());
    d.write("proj/abs.yaml", scenario_with(&absolute, ""));
    d.run(&["scenario", "import", "proj/abs.yaml", "--activate"], b"").ok();
    d.run(&["run"], b"hello\n").ok();
}
