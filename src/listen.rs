//! Socket inputs: `--listen unix:PATH` and `--listen tcp:[HOST:]PORT`, JSON lines or CBOR
//! sequences from many clients at once.
//!
//! Contract:
//! - every socket is bound before the rack starts ([`Listeners::bind`]); a busy address
//!   or a live UNIX socket stops the start with an error naming it;
//! - one thread accepts on each socket and one thread reads each connection (no thread
//!   per message); a connection is read with [`crate::pump::read_input`], so it is
//!   backpressured on its own: while the queue is full its thread waits, the kernel's
//!   buffers fill and its client's writes block; other clients are not affected until they
//!   need room in the queue too;
//! - limits ([`ListenLimits`]): open connections (one more is accepted and closed at once,
//!   with a log line), bytes of one line or item (plus one read chunk), idle time (a
//!   silent client is closed); a slow or silent client holds no more than its buffer;
//! - a bad line or item is logged naming the connection and skipped (JSON), or ends that
//!   connection (malformed CBOR); the other clients carry on;
//! - a UNIX socket is created with mode 0660 (bound under a temporary name, set, then
//!   renamed into place, so no client ever sees it with other permissions); a stale socket
//!   file (nobody accepting) is replaced, a live one is refused; the file is removed when
//!   the rack stops;
//! - TCP without a host listens on 127.0.0.1; any other address is logged as a warning
//!   (anyone who reaches it can inject messages);
//! - [`Listeners::shutdown`] (the first stop signal) closes the read side of every
//!   connection, so that no more is read; what was read is finished by the rack.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::cli::Format;
use crate::error::{Error, Result};
use crate::logger;
use crate::pump::{self, End, Input};
use crate::queue::Queue;

/// Default most open input connections over all sockets.
///
/// Reason: a gateway's local producers are a handful of programs; 64 leaves room, and with
/// [`DEFAULT_CONNECTION_BUFFER_BYTES`] it bounds what clients can make the rack hold to
/// 68 MiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Default longest line or item on one connection: 1 MiB (and one 64 KiB read chunk).
///
/// Reason: local producers send readings and events of a few KiB; a larger message
/// (up to the 4 MiB fluxMsg limit) needs `--connection-buffer-bytes` raised on purpose.
pub const DEFAULT_CONNECTION_BUFFER_BYTES: usize = 1024 * 1024;

/// Default seconds a connection may stay silent before it is closed: 300.
pub const DEFAULT_IDLE_SECS: u64 = 300;

/// Limits of socket inputs; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    /// Most open connections over all sockets.
    pub max_connections: usize,
    /// Longest line or item of one connection, in bytes.
    pub buffer_bytes: usize,
    /// Longest silence before a connection is closed.
    pub idle: Duration,
}

impl Default for ListenLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            buffer_bytes: DEFAULT_CONNECTION_BUFFER_BYTES,
            idle: Duration::from_secs(DEFAULT_IDLE_SECS),
        }
    }
}

/// One `--listen` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A UNIX stream socket at this path.
    Unix(PathBuf),
    /// A TCP address (host names are resolved when the value is parsed).
    Tcp(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, as in unix:/run/fluxrig/in.sock".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("tcp:") else {
            return Err(format!("{s:?} is not unix:PATH, tcp:PORT or tcp:HOST:PORT"));
        };
        let text = if rest.parse::<u16>().is_ok() { format!("127.0.0.1:{rest}") } else { rest.to_string() };
        let mut addrs = text.to_socket_addrs().map_err(|e| format!("tcp:{rest:?}: {e}"))?;
        addrs.next().map(Self::Tcp).ok_or_else(|| format!("tcp:{rest:?} names no address"))
    }
}

enum Bound {
    Unix { listener: UnixListener, path: PathBuf },
    Tcp(TcpListener),
}

impl Bound {
    fn name(&self) -> String {
        match self {
            Self::Unix { path, .. } => format!("unix:{}", path.display()),
            Self::Tcp(l) => l.local_addr().map_or_else(|_| "tcp:?".into(), |a| format!("tcp:{a}")),
        }
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn shutdown_read(&self) {
        let _ = match self {
            Self::Unix(s) => s.shutdown(Shutdown::Read),
            Self::Tcp(s) => s.shutdown(Shutdown::Read),
        };
    }
}

/// Open connections, for the limit, the metrics and the stop.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<usize, Stream>>,
    next: AtomicUsize,
    stopping: AtomicBool,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Stream>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The bound sockets of a rack. See the module docs.
pub struct Listeners {
    bound: Vec<Bound>,
    limits: ListenLimits,
    format: Format,
    connections: Arc<Connections>,
}

impl Listeners {
    /// Binds every address of `specs`, refusing busy addresses and live UNIX sockets.
    ///
    /// # Errors
    /// The first address that cannot be bound, named.
    pub fn bind(specs: &[Listen], limits: ListenLimits, format: Format) -> Result<Self> {
        let mut bound = Vec::with_capacity(specs.len());
        for spec in specs {
            bound.push(match spec {
                Listen::Unix(path) => Bound::Unix { listener: bind_unix(path)?, path: path.clone() },
                Listen::Tcp(addr) => {
                    let listener = TcpListener::bind(addr)
                        .map_err(|e| Error::invalid(format!("cannot listen on tcp:{addr}: {e}")))?;
                    if !addr.ip().is_loopback() {
                        logger::warn(
                            "listen",
                            &format!("tcp:{addr} is not a loopback address: anyone who reaches it can send messages"),
                        );
                    }
                    Bound::Tcp(listener)
                }
            });
        }
        Ok(Self { bound, limits, format, connections: Arc::default() })
    }

    /// Starts accepting on every socket, each connection a producer of `queue`; returns
    /// the sockets' names (`unix:PATH`, `tcp:127.0.0.1:PORT`) for the start-up line.
    pub fn start(&self, queue: &Arc<Queue>) -> Vec<String> {
        let mut names = Vec::with_capacity(self.bound.len());
        for bound in &self.bound {
            let name = bound.name();
            names.push(name.clone());
            let accept = Acceptor {
                name,
                limits: self.limits,
                format: self.format,
                connections: Arc::clone(&self.connections),
                queue: Arc::clone(queue),
            };
            let cloned = match bound {
                Bound::Unix { listener, .. } => listener.try_clone().map(Bound2::Unix),
                Bound::Tcp(listener) => listener.try_clone().map(Bound2::Tcp),
            };
            match cloned {
                Ok(listener) => {
                    // Registered here, before the run loop first waits: while it lives the
                    // rack serves (until a stop signal).
                    let serving = queue.producer();
                    thread::spawn(move || accept.run(listener, &serving));
                }
                Err(e) => logger::error("listen", &format!("{}: cannot accept: {e}", accept.name)),
            }
        }
        names
    }

    /// Returns how many connections are open now.
    pub fn connections(&self) -> usize {
        self.connections.lock().len()
    }

    /// Stops reading: no connection is accepted any more and every open one has its read
    /// side closed (its reader sees the end and finishes what it has read).
    pub fn shutdown(&self) {
        self.connections.stopping.store(true, Ordering::SeqCst);
        for stream in self.connections.lock().values() {
            stream.shutdown_read();
        }
    }
}

impl Listeners {
    /// Removes the UNIX socket files (when the rack stops; also on drop).
    pub fn remove_files(&self) {
        for bound in &self.bound {
            if let Bound::Unix { path, .. } = bound {
                let _ = fs::remove_file(path);
            }
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.remove_files();
    }
}

/// Binds a UNIX socket at `path` with mode 0660: under a temporary name first, then
/// renamed over `path` (replacing a stale socket; a live one is refused before).
fn bind_unix(path: &PathBuf) -> Result<UnixListener> {
    let shown = path.display();
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(Error::invalid(format!("unix:{shown}: another process is listening there"))),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                logger::info("listen", &format!("unix:{shown}: replacing a stale socket file"));
            }
            Err(e) => {
                return Err(Error::invalid(format!("unix:{shown}: cannot check the existing socket: {e}")))
            }
        },
        Ok(_) => return Err(Error::invalid(format!("unix:{shown}: exists and is not a socket"))),
        Err(_) => {}
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)
        .map_err(|e| Error::invalid(format!("cannot listen on unix:{shown}: {e}")))?;
    let placed = fs::set_permissions(&temporary, fs::Permissions::from_mode(0o660))
        .and_then(|()| fs::rename(&temporary, path));
    if let Err(e) = placed {
        let _ = fs::remove_file(&temporary);
        return Err(Error::invalid(format!("cannot listen on unix:{shown}: {e}")));
    }
    Ok(listener)
}

enum Bound2 {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// One socket's accept loop.
struct Acceptor {
    name: String,
    limits: ListenLimits,
    format: Format,
    connections: Arc<Connections>,
    queue: Arc<Queue>,
}

impl Acceptor {
    fn run(self, listener: Bound2, _serving: &crate::queue::Producer) {
        loop {
            let accepted = match &listener {
                Bound2::Unix(l) => l.accept().map(|(s, _)| (Stream::Unix(s), String::new())),
                Bound2::Tcp(l) => l.accept().map(|(s, peer)| (Stream::Tcp(s), format!(" ({peer})"))),
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::ConnectionAborted => {
                    continue
                }
                Err(e) => {
                    // Out of file descriptors, say: log, breathe, go on.
                    logger::error("listen", &format!("{}: accept failed: {e}", self.name));
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if self.connections.stopping.load(Ordering::SeqCst) {
                continue; // stopping: the connection is closed unread
            }
            self.serve(stream, &peer);
        }
    }

    fn serve(&self, stream: Stream, peer: &str) {
        let id = self.connections.next.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("{} client {id}{peer}", self.name);
        let reader = {
            let mut open = self.connections.lock();
            if open.len() >= self.limits.max_connections {
                logger::warn(
                    "listen",
                    &format!(
                        "{name}: refused, {} connections are open (--max-connections {})",
                        open.len(),
                        self.limits.max_connections
                    ),
                );
                return;
            }
            let cloned = match &stream {
                Stream::Unix(s) => s.try_clone().map(Stream::Unix),
                Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            };
            match cloned {
                Ok(clone) => {
                    open.insert(id, clone);
                    stream
                }
                Err(e) => {
                    logger::error("listen", &format!("{name}: {e}"));
                    return;
                }
            }
        };
        let idle = Some(self.limits.idle);
        let _ = match &reader {
            Stream::Unix(s) => s.set_read_timeout(idle),
            Stream::Tcp(s) => s.set_read_timeout(idle),
        };
        let input = Input { name, format: self.format, max_item_bytes: self.limits.buffer_bytes };
        let producer = self.queue.producer();
        let connections = Arc::clone(&self.connections);
        let idle_secs = self.limits.idle.as_secs();
        thread::spawn(move || {
            logger::log(fluxrig_core::abi::LogLevel::Debug, &input.name, "connected");
            let (end, items) = match &reader {
                Stream::Unix(s) => pump::read_input(s, &input, &producer),
                Stream::Tcp(s) => pump::read_input(s, &input, &producer),
            };
            connections.lock().remove(&id);
            let text = match end {
                End::Idle => format!("closed after {idle_secs} s without input ({items} item(s) read)"),
                _ => format!("disconnected after {items} item(s)"),
            };
            logger::log(fluxrig_core::abi::LogLevel::Debug, &input.name, &text);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!("unix:/run/x.sock".parse::<Listen>(), Ok(Listen::Unix("/run/x.sock".into())));
        assert_eq!("tcp:7000".parse::<Listen>(), Ok(Listen::Tcp("127.0.0.1:7000".parse().unwrap())));
        assert_eq!("tcp:0.0.0.0:7000".parse::<Listen>(), Ok(Listen::Tcp("0.0.0.0:7000".parse().unwrap())));
        assert_eq!("tcp:[::1]:7000".parse::<Listen>(), Ok(Listen::Tcp("[::1]:7000".parse().unwrap())));
        for bad in ["unix:", "udp:1", "7000", "tcp:", "tcp:host-that-does-not-exist.invalid:1"] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }
}
