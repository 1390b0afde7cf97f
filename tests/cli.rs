//! End-to-end tests of the `fluxrig` binary: the tutorial flow as a user types it, the
//! shared vectors through the CLI, and every bad input the CLI must refuse cleanly.
//!
//! Each test works in its own fresh folder. Set `FLUXRIG_TEST_RUNNER` (for example
//! `qemu-aarch64-static`) to run the binary under an emulator.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest a single `fluxrig` command may take in a test (under qemu included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

const POLYGLOT: &[u8] = include_bytes!("../examples/polyglot/polyglot.wasm");
const ZIG_LOG_LINE: &str = "Zig Wasm Gear: Processing message!";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn vector(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/signatures.txt");
    let text = fs::read_to_string(path).expect("../shared/vectors/signatures.txt beside the repo");
    let line = text.lines().find(|l| l.starts_with(&format!("{name} = "))).unwrap();
    unhex(line.split(" = ").nth(1).unwrap().trim())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 as lowercase hex, via the core crate (the same code the binary uses).
fn sha256_hex(bytes: &[u8]) -> String {
    hex(&fluxrig_core::verify::sha256(bytes))
}

/// A fresh working folder; removed when the test passes.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fluxrig-cli-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Runs `fluxrig ARGS` in this folder with `stdin`, failing the test if it takes more
    /// than [`COMMAND_TIMEOUT`].
    fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        let runner = std::env::var("FLUXRIG_TEST_RUNNER").unwrap_or_default();
        match self.run_once(&runner, args, stdin) {
            Some(output) => Run(output, args.join(" ")),
            // qemu-user can deadlock a freshly forked child before it execs (seen once in
            // four full runs on riscv64); under an emulator only, try once more.
            None if !runner.is_empty() => {
                let output = self.run_once(&runner, args, stdin);
                Run(
                    output.unwrap_or_else(|| panic!("`fluxrig {}` timed out twice", args.join(" "))),
                    args.join(" "),
                )
            }
            None => panic!("`fluxrig {}` timed out after {COMMAND_TIMEOUT:?}", args.join(" ")),
        }
    }

    fn run_once(&self, runner: &str, args: &[&str], stdin: &[u8]) -> Option<Output> {
        let mut words: Vec<String> = runner.split_whitespace().map(String::from).collect();
        words.push(env!("CARGO_BIN_EXE_fluxrig").to_string());
        let mut child = Command::new(&words[0])
            .args(&words[1..])
            .args(args)
            .current_dir(&self.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&stdin); // a command that ignores stdin closes it early
        });
        let reader = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let out = reader(Box::new(child.stdout.take().unwrap()));
        let err = reader(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        writer.join().unwrap();
        Some(Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() })
    }

    /// Files anywhere below `rel`, sorted (to show nothing half-written is left).
    fn files(&self, rel: &str) -> Vec<String> {
        fn walk(p: &Path, base: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(p).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), base, out);
                } else {
                    out.push(e.path().strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path(rel), &self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

struct Run(Output, String);

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(self.code(), 0, "`fluxrig {}` failed:\n{}{}", self.1, self.stdout(), self.stderr());
        self
    }
    /// Asserts exit `code` and that standard error names the problem in one line.
    #[track_caller]
    fn fails(&self, code: i32, needle: &str) -> &Self {
        let err = self.stderr();
        assert_eq!(self.code(), code, "`fluxrig {}`: wrong exit code:\n{}{err}", self.1, self.stdout());
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("fluxrig: ") && last.contains(needle),
            "`fluxrig {}`: {err:?} lacks {needle:?}",
            self.1
        );
        self
    }
}

fn tutorial_scenario(hash: &str, pages: u32) -> String {
    format!(
        r#"name: "Wasm Zig Demo"
version: "v1.0.0"
gears:
  - name: my-zig-filter
    type: wasm
    config:
      # Use the hash returned by the import command
      source: "snake://wasm_catalog/{hash}.wasm"
      entrypoint: "process"
      memory_limit_pages: {pages} # Sandbox limited to 1MB
"#
    )
}

/// Runs the tutorial's commands up to the import; returns the catalog hash.
fn tutorial_up_to_import(d: &Dir) -> String {
    d.write("polyglot.wasm", POLYGLOT);
    d.run(&["keys", "gen-cluster", "-o", "./my_vendor.key"], b"").ok();
    d.write("data/wasm/keys/my_vendor.key.pub", d.read("my_vendor.key.pub"));
    d.run(&["wasm", "sign", "./polyglot.wasm", "./my_vendor.key"], b"").ok();
    let import = d.run(&["wasm", "import", "./polyglot.wasm"], b"");
    import.ok();
    import.stdout().trim().to_string()
}

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
    assert!(imported.stdout().ends_with("; active\n"));
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
    assert!(err.contains("stopped: 2 in, 2 out, 0 dropped by gears, 0 errors"), "{err}");
    assert!(d.files("data").iter().all(|f| !f.contains(".tmp")));
}

#[test]
fn shared_vectors_through_sign_and_import() {
    let d = Dir::new("vectors");
    d.write("gear.wasm", vector("gear_module"));
    d.write("vendor.key", vector("vendor_key_file"));
    d.write("data/wasm/keys/vendor.pub", vector("vendor_pub"));
    d.write("data/cluster.key", vector("cluster_key_file"));
    d.run(&["wasm", "sign", "gear.wasm", "vendor.key"], b"").ok();
    assert_eq!(d.read("gear.wasm"), vector("gear_vendor_signed_module"));
    // Re-signing replaces the signature: same bytes again.
    d.run(&["wasm", "sign", "gear.wasm", "vendor.key"], b"").ok();
    assert_eq!(d.read("gear.wasm"), vector("gear_vendor_signed_module"));
    let import = d.run(&["wasm", "import", "gear.wasm"], b"");
    import.ok();
    let hash = hex(&vector("gear_catalog_hash"));
    assert_eq!(import.stdout().trim(), hash);
    assert_eq!(d.read(&format!("data/wasm/{hash}.wasm")), vector("gear_cluster_signed_module"));
    // Importing again is harmless and says so.
    let again = d.run(&["wasm", "import", "gear.wasm"], b"");
    again.ok();
    assert!(again.stderr().contains("already in the catalog"));
    // The 8-byte bare module has no gear exports: refused by name.
    d.write("bare.wasm", vector("vendor_signed_module"));
    d.run(&["wasm", "import", "bare.wasm"], b"").fails(1, "module does not export 'alloc'");
    d.run(&["wasm", "list"], b"").ok();
}

#[test]
fn key_files_bad_and_good() {
    let d = Dir::new("keys");
    d.write("m.wasm", vector("gear_module"));
    d.run(&["wasm", "sign", "m.wasm", "missing.key"], b"")
        .fails(1, "cannot read key file missing.key: no such file");
    d.write("short.key", [1u8; 31]);
    d.run(&["wasm", "sign", "m.wasm", "short.key"], b"").fails(1, "short.key: key is 31 bytes");
    let mut mismatched = vector("vendor_key_file");
    mismatched[63] ^= 1;
    d.write("bad.key", mismatched);
    d.run(&["wasm", "sign", "m.wasm", "bad.key"], b"").fails(1, "public half does not match");
    assert_eq!(d.read("m.wasm"), vector("gear_module"), "a failed sign leaves the module alone");
    // A 32-byte seed and hex text are accepted, as in fluxrig.
    d.write("seed.key", vector("vendor_seed"));
    d.run(&["wasm", "sign", "m.wasm", "seed.key"], b"").ok();
    assert_eq!(d.read("m.wasm"), vector("gear_vendor_signed_module"));
    d.write("hex.key", format!("{}\n", hex(&vector("vendor_key_file"))));
    d.run(&["wasm", "sign", "m.wasm", "hex.key"], b"").ok();
    assert_eq!(d.read("m.wasm"), vector("gear_vendor_signed_module"));
    // gen-cluster with -d/-n (the folder is created), and never over an existing key.
    d.run(&["keys", "gen-cluster", "-d", "k", "-n", "node.key"], b"").ok();
    let before = d.read("k/node.key");
    d.run(&["keys", "gen-cluster", "-o", "k/node.key"], b"").fails(1, "already exists");
    assert_eq!(d.read("k/node.key"), before);
    d.run(&["keys", "gen-cluster", "-o", "k/node.key", "--force"], b"").ok();
    assert_ne!(d.read("k/node.key"), before);
}

#[test]
fn unsigned_tampered_and_untrusted_modules_are_refused() {
    let d = Dir::new("trust");
    d.write("m.wasm", vector("gear_module"));
    d.write("vendor.key", vector("vendor_key_file"));
    d.write("other.key", vector("cluster_key_file"));
    d.write("data/wasm/keys/vendor.pub", vector("vendor_pub"));
    d.write("data/wasm/keys/notes.txt", "not a key");
    d.write("data/wasm/keys/short.pub", [0u8; 31]);

    let unsigned = d.run(&["wasm", "import", "m.wasm"], b"");
    unsigned.fails(3, "missing vendor signature (use allow_unsigned to bypass)");
    assert!(unsigned.stderr().contains("notes.txt: trusted keys end in .pub"), "{}", unsigned.stderr());
    assert!(unsigned.stderr().contains("short.pub: public key is 31 bytes; expected 32"));
    assert!(!d.path("data/wasm").read_dir().unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "wasm")));

    d.run(&["wasm", "sign", "m.wasm", "other.key"], b"").ok();
    d.run(&["wasm", "import", "m.wasm"], b"")
        .fails(3, "vendor signature found but does not match any trusted keys");

    d.run(&["wasm", "sign", "m.wasm", "vendor.key"], b"").ok();
    let mut tampered = d.read("m.wasm");
    // The global's initial value (i32.const 1024 -> 1025): still a valid gear.
    let at = tampered.windows(4).position(|w| w == [0x41, 0x80, 0x08, 0x0b]).unwrap();
    tampered[at + 1] ^= 0x01;
    d.write("t.wasm", &tampered);
    d.run(&["wasm", "import", "t.wasm"], b"")
        .fails(3, "vendor signature found but does not match any trusted keys");
    d.run(&["wasm", "verify", "t.wasm"], b"").fails(3, "vendor signature failed");

    d.write("u.wasm", vector("gear_module"));
    let allowed = d.run(&["wasm", "import", "u.wasm", "--allow-unsigned"], b"");
    allowed.ok();
    assert!(allowed.stderr().contains("unsigned (allowed by --allow-unsigned)"));
    let verify = d.run(&["wasm", "verify", "m.wasm"], b"");
    verify.ok();
    assert!(verify.stdout().contains("vendor signature: ok (trusted key 'vendor')"));
    d.write("junk.wasm", b"\0asm\x01\0\0\0\x00\x05");
    d.run(&["wasm", "import", "junk.wasm", "--allow-unsigned"], b"")
        .fails(1, "runs past the end of the module");
    d.write("notwasm.wasm", b"hello");
    d.run(&["wasm", "import", "notwasm.wasm"], b"").fails(1, "not a WebAssembly module");
}

fn scenario_with(source: &str, extra: &str) -> String {
    format!("name: demo\nversion: '1'\ngears:\n  - name: f\n    type: wasm\n    config:\n      source: \"{source}\"\n{extra}")
}

#[test]
fn bad_scenarios_are_refused_and_nothing_is_written() {
    let d = Dir::new("scenarios");
    let hash = tutorial_up_to_import(&d);
    let good = tutorial_scenario(&hash, 16);
    d.write("good.yaml", &good);
    d.run(&["scenario", "import", "good.yaml", "--activate"], b"").ok();
    let before = d.files("data");
    let active = d.read("data/scenarios/active.yaml");

    // A module that needs more pages than the scenario allows.
    d.write("small.yaml", good.replace("memory_limit_pages: 16", "memory_limit_pages: 1"));
    d.run(&["scenario", "import", "small.yaml", "--activate"], b"").fails(
        1,
        "gear 'my-zig-filter': module wants 2 pages (128 KiB) of initial memory, but memory_limit_pages is 1",
    );
    // Unknown gear type; wire to a missing gear.
    d.write("type.yaml", good.replace("type: wasm", "type: lua"));
    d.run(&["scenario", "import", "type.yaml", "--activate"], b"").fails(1, "unknown gear type \"lua\"");
    d.write("wire.yaml", format!("{good}wires:\n  - from: my-zig-filter.out\n  - to: nowhere.in\n"));
    d.run(&["scenario", "import", "wire.yaml"], b"").fails(1, "wires[0].to must be a string");
    d.write("wire2.yaml", format!("{good}wires:\n  - {{from: my-zig-filter.out, to: nowhere.in}}\n"));
    d.run(&["scenario", "import", "wire2.yaml"], b"")
        .fails(1, "names gear 'nowhere', which the scenario does not have");
    // A renamed catalog file: content no longer matches its name.
    let other = "ab".repeat(32);
    fs::copy(d.path(&format!("data/wasm/{hash}.wasm")), d.path(&format!("data/wasm/{other}.wasm"))).unwrap();
    d.write("renamed.yaml", tutorial_scenario(&other, 16));
    d.run(&["scenario", "import", "renamed.yaml", "--activate"], b"")
        .fails(3, &format!("hashes to {hash}, but it is named {other}"));
    fs::remove_file(d.path(&format!("data/wasm/{other}.wasm"))).unwrap();
    // Not in the catalog at all.
    d.run(&["scenario", "import", "renamed.yaml"], b"").fails(1, "is not in the catalog");
    // A catalog module whose cluster signature is broken.
    let stored_path = format!("data/wasm/{hash}.wasm");
    let stored = d.read(&stored_path);
    let mut broken = stored.clone();
    *broken.last_mut().unwrap() ^= 1;
    d.write(&stored_path, &broken);
    d.run(&["scenario", "import", "good.yaml"], b"")
        .fails(3, "cluster signature does not match the cluster key");
    d.write(&stored_path, &stored);
    // An unsigned file:// module is refused (only cluster-signed files run).
    d.write("plain.wasm", POLYGLOT);
    d.write("file.yaml", scenario_with("file://plain.wasm", ""));
    d.run(&["scenario", "import", "file.yaml"], b"").fails(3, "missing cluster signature");
    // Memory budget too small for the gear.
    d.run(&["scenario", "import", "good.yaml", "--memory-budget-mib", "1"], b"")
        .fails(1, "of the memory budget is left");
    d.write("bad.yaml", "gears: [");
    d.run(&["scenario", "import", "bad.yaml"], b"").fails(1, "bad.yaml: not valid YAML");
    d.run(&["scenario", "import", "missing.yaml"], b"").fails(1, "cannot read scenario missing.yaml");

    assert_eq!(d.files("data"), before, "a refused import writes nothing");
    assert_eq!(d.read("data/scenarios/active.yaml"), active);
}

/// A gear that drops messages whose raw payload starts with "drop", loops forever on
/// "loop", traps on "trap", and passes everything else through; logs at warn on "drop".
fn picky_gear() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1 4)
  (data (i32.const 16) "dropping one")
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param $len i32) (result i32) (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (if (i32.gt_u (global.get $next) (i32.const 60000)) (then (global.set $next (i32.const 1024)) (local.set $p (i32.const 1024)) (global.set $next (i32.add (i32.const 1024) (local.get $len)))))
    (local.get $p))
  (func (export "free") (param i32 i32))
  (func $find (param $ptr i32) (param $len i32) (param $word i32) (result i32) (local $i i32)
    (block $no (loop $l
      (br_if $no (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $len)))
      (if (i32.eq (i32.load (i32.add (local.get $ptr) (local.get $i))) (local.get $word)) (then (return (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.const 0))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64)
    (if (call $find (local.get $ptr) (local.get $len) (i32.const 0x706f7264)) ;; "drop"
      (then (call $log (i32.const 3) (i32.const 16) (i32.const 12)) (return (i64.const 0))))
    (if (call $find (local.get $ptr) (local.get $len) (i32.const 0x706f6f6c)) ;; "loop"
      (then (loop $l (br $l))))
    (if (call $find (local.get $ptr) (local.get $len) (i32.const 0x70617274)) ;; "trap"
      (then unreachable))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))))"#,
    )
    .unwrap()
}

/// Imports `module` (unsigned, allowed) and returns its hash.
fn import_unsigned(d: &Dir, name: &str, module: &[u8]) -> String {
    d.write(name, module);
    let import = d.run(&["wasm", "import", name, "--allow-unsigned"], b"");
    import.ok();
    import.stdout().trim().to_string()
}

#[test]
fn a_rack_keeps_running_through_bad_messages() {
    let d = Dir::new("rack");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    d.write(
        "s.yaml",
        scenario_with(&format!("snake://wasm_catalog/{hash}.wasm"), "      fuel_per_message: 200000\n"),
    );
    d.run(&["scenario", "import", "s.yaml", "--activate"], b"").ok();
    let input = b"one\ndrop this\nloop forever\n{\"id\": \"not-a-uuid\"}\ntrap now\ntwo\n\n{\"raw_text\":\"three\",\"trace\":\"t-1\"}\n";
    let run = d.run(&["run"], input);
    run.ok();
    let out: Vec<serde_json::Value> =
        run.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let texts: Vec<&str> = out.iter().map(|m| m["raw_text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(out[2]["trace"], "t-1");
    let err = run.stderr();
    assert!(err.contains("WARN  f: dropping one"), "{err}");
    assert!(err.contains("guest 'process' ran out of fuel"), "{err}");
    assert!(err.contains("ERROR input: line 4: 'id' is not a UUID"), "{err}");
    assert!(err.contains("guest 'process' trapped: unreachable executed"), "{err}");
    assert!(err.contains("stopped: 6 in, 3 out, 1 dropped by gears, 3 errors"), "{err}");
}

#[test]
fn generate_and_wires_route_through_two_gears() {
    let d = Dir::new("wires");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    let source = format!("snake://wasm_catalog/{hash}.wasm");
    d.write(
        "s.yaml",
        format!(
            "meta: {{name: chain, version: '2'}}\ngears:\n  - {{name: gen, type: generate, config: {{count: 5, payload: 'msg {{n}}'}}}}\n  - {{name: a, type: wasm, config: {{source: '{source}'}}}}\n  - {{name: b, type: wasm, config: {{source: '{source}', memory_limit_pages: 2}}}}\nwires:\n  - {{from: gen.out, to: a.in}}\n  - {{from: a.out, to: b.in}}\n"
        ),
    );
    let run = d.run(&["run", "--scenario", "s.yaml"], b"");
    run.ok();
    let out: Vec<serde_json::Value> =
        run.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(out.len(), 5);
    assert_eq!(out[4]["raw_text"], "msg 5");
    assert_eq!(out[0]["path"].as_array().unwrap().len(), 2, "two hops: a and b");
    assert_ne!(out[0]["path"][0]["g"], out[0]["path"][1]["g"]);
    assert_ne!(out[0]["src_id"], "00000000-0000-0000-0000-000000000000");
}

#[test]
fn a_wiring_loop_is_stopped_by_the_hop_limit() {
    let d = Dir::new("loop");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    let source = format!("snake://wasm_catalog/{hash}.wasm");
    d.write(
        "s.yaml",
        format!(
            "name: loop\nversion: '1'\ngears:\n  - {{name: gen, type: generate, config: {{count: 1}}}}\n  - {{name: a, type: wasm, config: {{source: '{source}'}}}}\nwires:\n  - {{from: gen.out, to: a.in}}\n  - {{from: a.out, to: a.in}}\n"
        ),
    );
    let run = d.run(&["run", "--scenario", "s.yaml"], b"");
    run.ok();
    assert_eq!(run.stdout(), "");
    assert!(run.stderr().contains("dropped: it has passed 64 gears (a wiring loop?)"), "{}", run.stderr());
}

#[test]
fn cbor_in_and_out() {
    let d = Dir::new("cbor");
    let hash = tutorial_up_to_import(&d);
    d.write("s.yaml", tutorial_scenario(&hash, 16));
    let example = unhex(
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/fluxmsg.txt"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("example = "))
            .unwrap(),
    );
    let mut input = example.clone();
    input.extend_from_slice(&example);
    let run =
        d.run(&["run", "--scenario", "s.yaml", "--input-format", "cbor", "--output-format", "cbor"], &input);
    run.ok();
    let out = &run.0.stdout;
    let (first, used) = fluxrig_core::message::FluxMsg::decode_prefix(out).unwrap();
    let second = fluxrig_core::message::FluxMsg::decode(&out[used..]).unwrap();
    let mut want = fluxrig_core::message::FluxMsg::decode(&example).unwrap();
    assert_eq!(first.path.as_ref().unwrap().len(), 1);
    want.path = first.path.clone();
    assert_eq!(first, want);
    assert_eq!(second.id, want.id);
    // A truncated CBOR stream: the good item passes, the bad one is reported.
    let run = d.run(&["run", "--scenario", "s.yaml", "--input-format", "cbor"], &input[..example.len() + 10]);
    run.ok();
    assert_eq!(run.stdout().lines().count(), 1);
    assert!(run.stderr().contains("CBOR item 2: malformed CBOR"), "{}", run.stderr());
}

#[test]
fn wasm_call_runs_one_message() {
    let d = Dir::new("call");
    d.write("polyglot.wasm", POLYGLOT);
    let call = d.run(&["wasm", "call", "polyglot.wasm", "-m", "ping"], b"");
    call.ok();
    let out: serde_json::Value = serde_json::from_str(call.stdout().trim()).unwrap();
    assert_eq!(out["raw_text"], "ping");
    assert!(call.stderr().contains("without checking its signatures"));
    assert!(call.stderr().contains(ZIG_LOG_LINE));
    assert!(call.stderr().contains("fuel used: "));
    d.run(&["wasm", "call", "polyglot.wasm", "--memory-limit-pages", "1"], b"").fails(1, "wants 2 pages");
    let hash = tutorial_up_to_import(&d);
    let by_hash = d.run(&["wasm", "call", &hash, "-m", "{\"raw_text\":\"x\"}"], b"");
    by_hash.ok();
    assert!(!by_hash.stderr().contains("without checking"));
    d.write("picky.wasm", picky_gear());
    d.run(&["wasm", "call", "picky.wasm", "-m", "loop", "--fuel", "100000"], b"")
        .fails(1, "gear: guest 'process' ran out of fuel");
    let dropped = d.run(&["wasm", "call", "picky.wasm", "-m", "drop"], b"");
    dropped.ok();
    assert_eq!(dropped.stdout(), "");
    assert!(dropped.stderr().contains("the gear dropped the message"));
}

#[test]
fn run_without_an_active_scenario_or_with_insecure_mode() {
    let d = Dir::new("run");
    d.run(&["run"], b"").fails(1, "no active scenario in ./data");
    d.write("plain.wasm", POLYGLOT);
    d.write("s.yaml", scenario_with("file://plain.wasm", ""));
    d.run(&["run", "--scenario", "s.yaml"], b"x\n").fails(3, "no cluster key");
    let run = d.run(&["run", "--scenario", "s.yaml", "--insecure"], b"x\n");
    run.ok();
    assert!(run.stderr().contains("--insecure: modules run without checking"));
    assert_eq!(run.stdout().lines().count(), 1);
}

#[test]
fn wasm_list_flags_a_tampered_catalog() {
    let d = Dir::new("list");
    let hash = tutorial_up_to_import(&d);
    let list = d.run(&["wasm", "list"], b"");
    list.ok();
    assert!(list.stdout().contains(&format!("{hash}.wasm")) && list.stdout().contains(" ok"));
    let path = format!("data/wasm/{hash}.wasm");
    let mut bytes = d.read(&path);
    bytes[20] ^= 1;
    d.write(&path, bytes);
    let list = d.run(&["wasm", "list"], b"");
    list.fails(3, "1 of 1 catalog modules would be refused");
    assert!(list.stdout().contains("REFUSED"));
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
    assert!(top.stdout().contains("3 signature or trust failure"));
    assert!(d.run(&["wasm", "import", "--help"], b"").stdout().contains("--allow-unsigned"));
    assert!(d.run(&["run", "--help"], b"").stdout().contains("--data-dir"));
    let bad = d.run(&["wasm", "frobnicate"], b"");
    assert_eq!(bad.code(), 2);
    let bad = d.run(&["run", "--input-format", "xml"], b"");
    assert_eq!(bad.code(), 2);
    assert!(bad.stderr().contains("unknown format \"xml\""));
}

#[test]
fn a_generate_only_scenario_needs_no_catalog() {
    let d = Dir::new("gen-only");
    d.write("g.yaml", "name: g\nversion: '1'\ngears:\n  - {name: gen, type: generate, config: {count: 3, payload: 'tick {n}'}}\n");
    d.run(&["scenario", "import", "g.yaml", "--activate"], b"").ok();
    let run = d.run(&["run"], b"");
    run.ok();
    let texts: Vec<String> = run
        .stdout()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["raw_text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(texts, ["tick 1", "tick 2", "tick 3"]);
}
