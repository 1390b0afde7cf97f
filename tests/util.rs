//! The harness of the CLI tests: a fresh folder per test ([`Dir`]), a `fluxrig` command run
//! in it with a timeout ([`Run`]), and the steps several topics share (the tutorial up to
//! the import, scenario text, unsigned imports). Vectors, hex and WAT guests come from the
//! test kit (`tests/kit`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

pub use fluxrig_testkit::hex;

/// Longest a single `fluxrig` command may take in a test (under qemu included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest a spawn may wait under an emulator for its child to `exec` before the harness
/// counts the child as stuck, kills it and spawns again (see [`spawn`]).
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Spawns tried before a test fails because each child stuck before its `exec`.
const SPAWN_ATTEMPTS: u32 = 3;

/// Held around each spawn: one spawn at a time in this test process, so that the watchdog
/// knows which child a stuck spawn is waiting for.
static SPAWNING: Mutex<()> = Mutex::new(());
/// The spawn in flight, shared with the watchdog (see [`spawn`]).
static IN_FLIGHT: Mutex<InFlight> = Mutex::new(InFlight { since: None, killed: false });

struct InFlight {
    /// When the spawn in flight began; `None` between spawns.
    since: Option<Instant>,
    /// Whether the watchdog killed its child.
    killed: bool,
}

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

/// The emulator the tests run `fluxrig` under (`FLUXRIG_TEST_RUNNER`, for example
/// `qemu-aarch64-static`), or "" for none.
pub fn runner() -> String {
    std::env::var("FLUXRIG_TEST_RUNNER").unwrap_or_default()
}

/// Starts `command`, one spawn at a time in this test process.
///
/// Under an emulator (`FLUXRIG_TEST_RUNNER`), qemu-user now and then deadlocks a child
/// forked while other threads of the emulated test binary run, inside the emulator and
/// before the child's `exec` (qemu 7.2.22 on aarch64 and mipsel: once in 15 to 120 runs of
/// `hostile::concurrent_imports_on_a_fresh_node_make_one_cluster_key`; it hung two CI runs
/// for their 30 minutes). `Command::spawn` waits for that `exec` with no timeout. So a
/// watchdog thread kills a child of this process that still runs this test binary once the
/// spawn has waited [`SPAWN_TIMEOUT`], and the spawn is tried again, [`SPAWN_ATTEMPTS`]
/// times in all.
pub fn spawn(command: &mut Command) -> Child {
    let _one_at_a_time = lock(&SPAWNING);
    if !runner().is_empty() {
        start_spawn_watchdog();
    }
    for attempt in 1..=SPAWN_ATTEMPTS {
        lock(&IN_FLIGHT).since = Some(Instant::now());
        let spawned = command.spawn();
        let killed = {
            let mut in_flight = lock(&IN_FLIGHT);
            in_flight.since = None;
            std::mem::take(&mut in_flight.killed)
        };
        match spawned {
            Ok(child) if !killed => return child,
            Ok(mut child) => {
                let _ = child.wait();
            }
            Err(e) if !killed => panic!("cannot start {command:?}: {e}"),
            Err(_) => {}
        }
        eprintln!(
            "util: the child of {command:?} was stuck before its exec for {SPAWN_TIMEOUT:?} and was killed \
             (attempt {attempt} of {SPAWN_ATTEMPTS})"
        );
    }
    panic!("{command:?}: every one of {SPAWN_ATTEMPTS} children was stuck before its exec");
}

/// Starts, once per test process, the thread that kills a child stuck before its `exec`
/// (see [`spawn`]). It tells the stuck child from the others by its command line: only a
/// child that has not yet exec'd still runs this test binary.
fn start_spawn_watchdog() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let exe = std::env::current_exe().unwrap();
        let test_binary = exe.file_name().unwrap().to_owned();
        std::thread::Builder::new()
            .name("spawn-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let mut in_flight = lock(&IN_FLIGHT);
                if in_flight.since.is_some_and(|since| since.elapsed() >= SPAWN_TIMEOUT) {
                    for pid in children_running(&test_binary) {
                        // SAFETY: kill(2) takes two integers and touches no memory of ours.
                        if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                            in_flight.killed = true;
                        }
                    }
                }
            })
            .unwrap();
    });
}

/// The children of this process whose command line names the file `binary` (under qemu-user,
/// /proc shows the host's view: the emulator, then the program it runs).
fn children_running(binary: &std::ffi::OsStr) -> Vec<libc::pid_t> {
    let me = std::process::id().to_string();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            // The parent's pid is the second field after the command name, which may hold
            // spaces and parentheses and ends at the last ')'.
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_name.split_whitespace().nth(1) == Some(me.as_str())
        })
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|&b| b == 0).any(|arg| {
                Path::new(std::str::from_utf8(arg).unwrap_or_default()).file_name() == Some(binary)
            })
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
        let runner = runner();
        match self.run_once(&runner, args, stdin) {
            Some(output) => Run(output, args.join(" ")),
            // A child that hung inside qemu-user after its exec (one stuck before it is
            // `spawn`'s to handle); under an emulator only, try once more.
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
    pub fn start(&self, runner: &str, args: &[&str]) -> Child {
        let mut words: Vec<String> = runner.split_whitespace().map(String::from).collect();
        words.push(env!("CARGO_BIN_EXE_fluxrig").to_string());
        spawn(
            Command::new(&words[0])
                .args(&words[1..])
                .args(args)
                .current_dir(&self.0)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
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
    child: std::sync::Mutex<Child>,
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
        let runner = runner();
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
        let status = spawn(Command::new("kill").args(["-s", name, &self.pid().to_string()])).wait().unwrap();
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
