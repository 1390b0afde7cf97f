//! The tutorial as a user types it, and the help every command prints.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn tutorial_flow_end_to_end() {
    let d = Dir::new("tutorial");
    d.write("polyglot.wasm", POLYGLOT);
    let gen = d.run(&["keys", "gen-cluster", "-o", "./my_vendor.key"], b"");
    gen.ok();
    assert!(gen.stdout().contains("wrote ./my_vendor.key and ./my_vendor.key.pub"));
    let key = d.read("my_vendor.key");
    let public = d.read("my_vendor.key.pub");
    assert_eq!((key.len(), public.len()), (64, 32));
    assert_eq!(&key[32..], &public[..]);
    for f in ["my_vendor.key", "my_vendor.key.pub"] {
        assert_eq!(fs::metadata(d.path(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }

    fs::create_dir_all(d.path("data/wasm/keys")).unwrap();
    fs::copy(d.path("my_vendor.key.pub"), d.path("data/wasm/keys/my_vendor.key.pub")).unwrap();
    d.run(&["wasm", "sign", "./polyglot.wasm", "./my_vendor.key"], b"").ok();
    let signed = d.read("polyglot.wasm");
    assert_eq!(&signed[..POLYGLOT.len()], POLYGLOT, "signing appends a section");
    assert_eq!(signed.len(), POLYGLOT.len() + 2 + 1 + 17 + 64);

    let import = d.run(&["wasm", "import", "./polyglot.wasm"], b"");
    import.ok();
    let hash = import.stdout().trim().to_string();
    assert_eq!(hash, sha256_hex(&signed), "the printed hash is the SHA-256 of the signed module");
    assert!(import.stderr().contains("vendor signature verified with trusted key 'my_vendor.key'"));
    assert_eq!(d.read("data/cluster.key").len(), 64, "cluster key created on first use");
    let stored = d.read(&format!("data/wasm/{hash}.wasm"));
    assert_eq!(&stored[..signed.len()], &signed[..]);
    assert_eq!(stored.len(), signed.len() + 2 + 1 + 25 + 64);

    d.write("scenario.yaml", tutorial_scenario(&hash, 16));
    let imported = d.run(&["scenario", "import", "./scenario.yaml", "--activate"], b"");
    imported.ok();
    assert!(imported.stdout().contains("imported scenario 'Wasm Zig Demo' v1.0.0"));
    assert!(imported.stdout().ends_with("; now active (a running rack switches on SIGHUP)\n"));
    assert_eq!(d.read("data/scenarios/active.yaml"), d.read("scenario.yaml"));

    let run = d.run(&["run"], b"hello\n{\"data\":{\"temp\":21.5},\"meta\":{\"site\":\"a\"}}\n");
    run.ok();
    let lines: Vec<serde_json::Value> =
        run.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["raw_text"], "hello");
    assert_eq!(lines[0]["raw"], "aGVsbG8=");
    assert_eq!(lines[1]["data"]["temp"], 21.5);
    assert_eq!(lines[1]["meta"]["site"], "a");
    assert_eq!(lines[1]["path"].as_array().unwrap().len(), 1, "one hop: the Zig gear");
    let err = run.stderr();
    assert_eq!(err.matches(ZIG_LOG_LINE).count(), 2, "{err}");
    assert!(err.contains("INFO  my-zig-filter: Zig Wasm Gear: Processing message!"));
    assert!(
        err.contains("stopped: 2 in, 2 out, 0 dropped by gears, 0 failed, 0 past the hop limit"),
        "{err}"
    );
    assert!(d.files("data").iter().all(|f| !f.contains(".tmp")));
}

#[test]
fn help_on_every_command_and_usage_errors() {
    let d = Dir::new("help");
    let commands: [&[&str]; 10] = [
        &[],
        &["keys"],
        &["keys", "gen-cluster"],
        &["wasm"],
        &["wasm", "sign"],
        &["wasm", "import"],
        &["wasm", "list"],
        &["wasm", "verify"],
        &["wasm", "call"],
        &["run"],
    ];
    for c in commands.iter().chain([&["scenario", "import"][..]].iter()) {
        let mut args = c.to_vec();
        args.push("--help");
        let help = d.run(&args, b"");
        help.ok();
        assert!(help.stdout().contains("Usage: fluxrig"), "{args:?}: {}", help.stdout());
    }
    let top = d.run(&["--help"], b"");
    assert!(top.stdout().contains("3 trust failure (signature or hash)"));
    assert!(d.run(&["wasm", "import", "--help"], b"").stdout().contains("--allow-unsigned"));
    assert!(d.run(&["run", "--help"], b"").stdout().contains("--data-dir"));
    let bad = d.run(&["wasm", "frobnicate"], b"");
    assert_eq!(bad.code(), 2);
    let bad = d.run(&["run", "--input-format", "xml"], b"");
    assert_eq!(bad.code(), 2);
    assert!(bad.stderr().contains("unknown format \"xml\""));
}
