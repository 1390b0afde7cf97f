//! The harness of the CLI tests: a fresh folder per test ([`Dir`]), a `fluxrig` command run
//! in it with a timeout ([`Run`]), and the steps several topics share (the tutorial up to
//! the import, scenario text, unsigned imports). Vectors, hex and WAT guests come from the
//! test kit (`tests/kit`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use fluxrig_testkit::hex;

/// Longest a single `fluxrig` command may take in a test (under qemu included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Held around each spawn: one fork at a time in this test process. Under qemu-user, a test
/// that spawned four imports from four threads at once hung for CI's 30 minutes (aarch64,
/// once); `spawn` waits for the child's `exec` with no timeout, so a child stuck between
/// fork and exec hangs it, and forks from several threads at once are the case to avoid.
static SPAWNING: Mutex<()> = Mutex::new(());

/// The tutorial's Zig gear, as committed (see tests/data/README.md).
pub const POLYGLOT: &[u8] = include_bytes!("../examples/polyglot/polyglot.wasm");
/// The line the Zig gear logs for every message.
pub const ZIG_LOG_LINE: &str = "Zig Wasm Gear: Processing message!";

/// The signature vector `name` (tests/data/vectors/signatures.txt).
pub fn vector(name: &str) -> Vec<u8> {
    fluxrig_testkit::vectors::get("signatures.txt", name)
}

/// SHA-256 as lowercase hex, via the core crate (the same code the binary uses).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&fluxrig_core::verify::sha256(bytes))
}

/// A fresh working folder; removed when the test passes.
pub struct Dir(PathBuf);

impl Dir {
    pub fn new(name: &str) -> Self {
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

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Runs `fluxrig ARGS` in this folder with `stdin`, failing the test if it takes more
    /// than [`COMMAND_TIMEOUT`].
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
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

    /// `fluxrig ARGS` in this folder, under `runner` (an emulator, or nothing), with its
    /// three standard streams piped, started.
    pub fn start(&self, runner: &str, args: &[&str]) -> std::process::Child {
        let mut words: Vec<String> = runner.split_whitespace().map(String::from).collect();
        words.push(env!("CARGO_BIN_EXE_fluxrig").to_string());
        let _one_at_a_time = SPAWNING.lock().unwrap_or_else(PoisonError::into_inner);
        Command::new(&words[0])
            .args(&words[1..])
            .args(args)
            .current_dir(&self.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run_once(&self, runner: &str, args: &[&str], stdin: &[u8]) -> Option<Output> {
        let mut child = self.start(runner, args);
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
    pub fn files(&self, rel: &str) -> Vec<String> {
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

pub struct Run(pub Output, String);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code(), 0, "`fluxrig {}` failed:\n{}{}", self.1, self.stdout(), self.stderr());
        self
    }
    /// Asserts exit `code` and that standard error names the problem in one line.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) -> &Self {
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

/// The tutorial's `scenario.yaml`, word for word, for catalog module `hash`.
pub fn tutorial_scenario(hash: &str, pages: u32) -> String {
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
pub fn tutorial_up_to_import(d: &Dir) -> String {
    d.write("polyglot.wasm", POLYGLOT);
    d.run(&["keys", "gen-cluster", "-o", "./my_vendor.key"], b"").ok();
    d.write("data/wasm/keys/my_vendor.key.pub", d.read("my_vendor.key.pub"));
    d.run(&["wasm", "sign", "./polyglot.wasm", "./my_vendor.key"], b"").ok();
    let import = d.run(&["wasm", "import", "./polyglot.wasm"], b"");
    import.ok();
    import.stdout().trim().to_string()
}

/// A one-gear scenario for module `source`, with `extra` lines appended to its config.
pub fn scenario_with(source: &str, extra: &str) -> String {
    format!("name: demo\nversion: '1'\ngears:\n  - name: f\n    type: wasm\n    config:\n      source: \"{source}\"\n{extra}")
}

/// The test kit's picky gear, compiled: drops on "drop", loops on "loop", traps on "trap",
/// passes everything else through (see `fluxrig_testkit::PICKY_WAT`).
pub fn picky_gear() -> Vec<u8> {
    wat::parse_str(fluxrig_testkit::PICKY_WAT).unwrap()
}

/// Imports `module` (unsigned, allowed) and returns its hash.
pub fn import_unsigned(d: &Dir, name: &str, module: &[u8]) -> String {
    d.write(name, module);
    let import = d.run(&["wasm", "import", name, "--allow-unsigned"], b"");
    import.ok();
    import.stdout().trim().to_string()
}

/// A gear that passes every message through after spinning `iterations` times (about
/// five fuel units each): a gear that falls behind its input, for backpressure, stop and
/// reload tests. Messages up to 60 KiB.
pub fn slow_gear(iterations: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (memory (export "memory") 1 16)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32)
    (local.set $i (i32.const {iterations}))
    (block $done (loop $spin
      (br_if $done (i32.eqz (local.get $i)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br $spin)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))"#
    ))
    .unwrap()
}

/// A `fluxrig` process left running (a service), with its output collected as it comes.
pub struct Service {
    child: std::sync::Mutex<std::process::Child>,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    args: String,
}

impl Dir {
    /// Starts `fluxrig ARGS` in this folder and returns at once; its standard input stays
    /// open until [`Service::take_stdin`]'s writer drops it or [`Service::wait`].
    pub fn spawn(&self, args: &[&str]) -> Service {
        let runner = std::env::var("FLUXRIG_TEST_RUNNER").unwrap_or_default();
        let mut child = self.start(&runner, args);
        let collect = |mut pipe: Box<dyn std::io::Read + Send>,
                       into: std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut chunk = [0u8; 65536];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => into.lock().unwrap().extend_from_slice(&chunk[..n]),
                        // A signal for this test process (a child exiting) is not the end.
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            })
        };
        let stdout = std::sync::Arc::default();
        let stderr = std::sync::Arc::default();
        let readers = vec![
            collect(Box::new(child.stdout.take().unwrap()), std::sync::Arc::clone(&stdout)),
            collect(Box::new(child.stderr.take().unwrap()), std::sync::Arc::clone(&stderr)),
        ];
        let stdin = child.stdin.take();
        Service { child: std::sync::Mutex::new(child), stdin, stdout, stderr, readers, args: args.join(" ") }
    }
}

impl Service {
    /// The process id (of the emulator, under one: it forwards signals).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Fails the test if the process has exited (it should still be running).
    #[track_caller]
    fn assert_running(&self, waiting_for: &str) {
        if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
            thread_sleep_for_output();
            panic!("`fluxrig {}` exited ({status}) before {waiting_for}:\n{}", self.args, self.stderr());
        }
    }

    /// Standard input, to write to (a thread may own it: see [`Service::take_stdin`]).
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.stdin.take().expect("standard input already taken")
    }

    /// Sends signal `name` (`TERM`, `INT`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args(["-s", name, &self.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill -s {name} failed");
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until standard error contains `needle`, failing the test after [`COMMAND_TIMEOUT`].
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let err = self.stderr();
            if err.contains(needle) {
                return err;
            }
            assert!(Instant::now() < deadline, "`fluxrig {}`: no {needle:?} in:\n{err}", self.args);
            self.assert_running(&format!("{needle:?} was logged"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until standard output has at least `n` lines.
    #[track_caller]
    pub fn wait_for_lines(&self, n: usize) {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while self.stdout().lines().count() < n {
            assert!(
                Instant::now() < deadline,
                "`fluxrig {}`: fewer than {n} lines out:\n{}",
                self.args,
                self.stderr()
            );
            self.assert_running(&format!("{n} lines were written"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit (killing it after [`COMMAND_TIMEOUT`]) and returns
    /// its exit code.
    #[track_caller]
    pub fn wait(mut self) -> (i32, String, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.lock().unwrap().kill();
                panic!("`fluxrig {}` did not exit:\n{}", self.args, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (status.code().unwrap_or(-1), self.stdout(), self.stderr())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Gives the pipe readers a moment to collect a process's last words.
fn thread_sleep_for_output() {
    std::thread::sleep(Duration::from_millis(200));
}

/// Reads once from `stream` into a one-byte buffer, again after an interrupted system
/// call (a signal for this test process, such as a child exiting): how a test waits for
/// the rack to close a connection (0) or send a byte (1).
pub fn read_one(stream: &mut impl std::io::Read) -> std::io::Result<usize> {
    loop {
        match stream.read(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
