//! Fleet mode: the NATS JetStream bus that fluxrig racks share (`spec/fleet-nats.md`).
//!
//! Contract: [`BusOptions`] is how to reach the server (URL, TLS, credentials), parsed
//! from the command line in every build; [`Bus`] is a connected client, in builds with
//! the cargo feature `nats` only (a build without it refuses `--nats` with one line).
//! What goes over the bus:
//! - the catalog ([`crate::catalog::publish`], [`crate::catalog::fetch_missing`]): modules
//!   in the JetStream key-value bucket [`CATALOG_BUCKET`] under `<hash>.wasm`, at most
//!   [`MAX_KV_VALUE_BYTES`] each, as fluxrig v0.12 stores them;
//! - messages ([`Link`], `link.rs`): wires to and from gears of other racks, on the
//!   subjects `flux.msg.<rack>.<gear>.<port>` of the stream `flux-msg`.
//!
//! TLS as fluxrig's racks do it: the server certificate is checked against the CA file
//! and the *server name* [`DEFAULT_SERVER_NAME`] (fluxrig's `snake.domain`), not the host
//! in the URL; a client certificate is optional (fluxrig's Go rack has none). Secrets are
//! read from files, never taken on the command line (where `ps` shows them).
//!
//! Out of scope today: enrollment, passports, heartbeats, scenario push (README "Fleet").

#[cfg(feature = "nats")]
mod client;
#[cfg(feature = "nats")]
pub mod link;
#[cfg(feature = "nats")]
pub use client::Bus;
#[cfg(feature = "nats")]
pub use link::Link;

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The key-value bucket of fluxrig's module catalog (`snake://wasm_catalog/<hash>.wasm`).
pub const CATALOG_BUCKET: &str = "wasm_catalog";

/// The subject of a gear's port on the bus, fluxrig's data-plane layout
/// `flux.msg.<rack>.<gear>.<port>` (spec/fleet-nats.md, 1.3): one home for it.
pub fn subject(rack: &str, gear: &str, port: &str) -> String {
    format!("flux.msg.{rack}.{gear}.{port}")
}

/// Largest value of the catalog bucket: 1 MiB, fluxrig v0.12's `snake.kv_max_value_size`
/// (C9 in `spec/fleet-nats.md`): a larger module cannot be stored on a fluxrig bus.
pub const MAX_KV_VALUE_BYTES: usize = 1024 * 1024;

/// Largest catalog bucket in bytes: 1 GiB, fluxrig v0.12's `snake.kv_max_bytes`.
pub const CATALOG_BUCKET_BYTES: i64 = 1024 * 1024 * 1024;

/// Default TLS server name: fluxrig's `snake.domain` default, which its racks check the
/// server certificate against whatever host the URL names.
pub const DEFAULT_SERVER_NAME: &str = "flux";

/// Longest wait for the server when connecting or for one request: 10 s, fluxrig's
/// `snake.connect_timeout`.
pub const CONNECT_TIMEOUT_SECS: u64 = 10;

/// Default `--nats-ack-wait-secs`: how long JetStream waits for a bus message's ack
/// before it delivers it again (JetStream's default, 30 s).
pub const DEFAULT_ACK_WAIT_SECS: u64 = 30;

/// Largest secret file read (password, token, nkey seed, creds file): 64 KiB.
pub const MAX_SECRET_FILE_BYTES: usize = 64 * 1024;

/// How to reach the NATS server: URL, TLS and credentials (each optional but the URL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusOptions {
    /// `nats://HOST:PORT` or `tls://HOST:PORT` (TLS is also used when a CA file is given).
    pub url: String,
    /// The name given to the server in CONNECT (the rack name, as fluxrig does).
    pub name: String,
    /// PEM file of the CA that signed the server certificate.
    pub ca: Option<PathBuf>,
    /// The name the server certificate must be valid for.
    pub server_name: String,
    /// PEM client certificate and its key, for servers that require one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// User name and the file holding its password.
    pub user: Option<(String, PathBuf)>,
    /// File holding a token.
    pub token_file: Option<PathBuf>,
    /// File holding an nkey seed (`SU...`).
    pub nkey_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and nkey seed).
    pub creds_file: Option<PathBuf>,
}

/// The bus flags of a command, as parsed (`--nats*`), before they are checked.
#[derive(Debug, Clone, Default)]
pub struct BusFlags {
    /// `--nats URL`.
    pub url: Option<String>,
    /// `--nats-ca FILE`.
    pub ca: Option<PathBuf>,
    /// `--nats-server-name NAME`.
    pub server_name: Option<String>,
    /// `--nats-cert FILE`.
    pub cert: Option<PathBuf>,
    /// `--nats-key FILE`.
    pub key: Option<PathBuf>,
    /// `--nats-user USER`.
    pub user: Option<String>,
    /// `--nats-password-file FILE`.
    pub password_file: Option<PathBuf>,
    /// `--nats-token-file FILE`.
    pub token_file: Option<PathBuf>,
    /// `--nats-nkey FILE`.
    pub nkey_file: Option<PathBuf>,
    /// `--nats-creds FILE`.
    pub creds_file: Option<PathBuf>,
}

impl BusFlags {
    /// Checks the flags: `None` without `--nats`; a flag that needs another, or two kinds
    /// of credentials, is a usage error.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the flags that do not go together.
    pub fn options(&self, name: &str) -> Result<Option<BusOptions>> {
        let Some(url) = &self.url else {
            let given = self.ca.is_some()
                || self.server_name.is_some()
                || self.cert.is_some()
                || self.key.is_some()
                || self.user.is_some()
                || self.password_file.is_some()
                || self.token_file.is_some()
                || self.nkey_file.is_some()
                || self.creds_file.is_some();
            if given {
                return Err(Error::Usage("the --nats-* options need --nats URL".into()));
            }
            return Ok(None);
        };
        if !(url.starts_with("nats://") || url.starts_with("tls://")) {
            return Err(Error::Usage(format!("--nats {url:?}: the URL must start with nats:// or tls://")));
        }
        let client_cert = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => return Err(Error::Usage("--nats-cert and --nats-key go together".into())),
        };
        let user = match (&self.user, &self.password_file) {
            (Some(user), Some(file)) => Some((user.clone(), file.clone())),
            (None, None) => None,
            _ => return Err(Error::Usage("--nats-user and --nats-password-file go together".into())),
        };
        let kinds = usize::from(user.is_some())
            + usize::from(self.token_file.is_some())
            + usize::from(self.nkey_file.is_some())
            + usize::from(self.creds_file.is_some());
        if kinds > 1 {
            return Err(Error::Usage(
                "give one kind of NATS credentials: --nats-user, --nats-token-file, --nats-nkey or --nats-creds"
                    .into(),
            ));
        }
        Ok(Some(BusOptions {
            url: url.clone(),
            name: name.to_string(),
            ca: self.ca.clone(),
            server_name: self.server_name.clone().unwrap_or_else(|| DEFAULT_SERVER_NAME.to_string()),
            client_cert,
            user,
            token_file: self.token_file.clone(),
            nkey_file: self.nkey_file.clone(),
            creds_file: self.creds_file.clone(),
        }))
    }
}

/// What the run loop made of one message, for the bus ([`Link::finish`]).
#[derive(Debug, Default)]
pub struct Finished {
    /// For a message that came from the bus: whether every gear succeeded (ack) or not
    /// (nak). `None` for a message from another input.
    pub input: Option<bool>,
    /// Its outputs to publish: the slot whose `out` it left by, and the message.
    pub publishes: Vec<(usize, fluxrig_core::MsgBytes)>,
}

/// A build without the `nats` feature has no bus link: no value of this type exists.
#[cfg(not(feature = "nats"))]
#[derive(Debug)]
pub enum Link {}

#[cfg(not(feature = "nats"))]
impl Link {
    /// Unreachable: there is no bus in this build.
    pub fn publishes(&self, _slot: usize) -> bool {
        match *self {}
    }

    /// Unreachable: there is no bus in this build.
    pub fn max_payload(&self) -> usize {
        match *self {}
    }

    /// Unreachable: there is no bus in this build.
    pub fn stamp_output(
        &self,
        _slot: usize,
        _msg: fluxrig_core::MsgBytes,
        _now: i64,
    ) -> std::result::Result<fluxrig_core::MsgBytes, String> {
        match *self {}
    }

    /// Unreachable: there is no bus in this build.
    pub fn start(&self, _queue: &std::sync::Arc<crate::queue::Queue>) -> Result<Vec<String>> {
        match *self {}
    }

    /// Unreachable: there is no bus in this build.
    pub fn finish(&self, _finished: Finished) {
        match *self {}
    }

    /// Unreachable: there is no bus in this build.
    pub fn close(&self) {
        match *self {}
    }
}

/// A build without the `nats` feature has no bus: this type has no value, so code that
/// holds a `Bus` is unreachable there and needs no `cfg`.
#[cfg(not(feature = "nats"))]
pub enum Bus {}

#[cfg(not(feature = "nats"))]
impl Bus {
    /// Unreachable: there is no bus in this build.
    pub fn catalog_put(&self, _key: &str, _module: &[u8]) -> Result<()> {
        match *self {}
    }

    /// Unreachable: there is no bus in this build.
    pub fn catalog_get(&self, _key: &str) -> Result<Option<Vec<u8>>> {
        match *self {}
    }
}

/// Connects to the bus `options` names.
///
/// # Errors
/// The server cannot be reached or refuses the credentials or TLS; or this binary was
/// built without the `nats` feature.
pub fn connect(options: &BusOptions) -> Result<Bus> {
    #[cfg(feature = "nats")]
    return Bus::connect(options);
    #[cfg(not(feature = "nats"))]
    Err(Error::Usage(format!(
        "--nats {:?}: this fluxrig was built without fleet mode (cargo feature `nats`)",
        options.url
    )))
}

/// A connection made when it is first needed, then kept: a rack whose modules are all in
/// its local catalog starts without the server.
pub struct LazyBus {
    options: BusOptions,
    bus: std::sync::Mutex<Option<Bus>>,
}

impl LazyBus {
    /// Keeps `options` for the first [`LazyBus::with`].
    pub fn new(options: BusOptions) -> Self {
        Self { options, bus: std::sync::Mutex::new(None) }
    }

    /// Runs `work` with the connection, connecting first if needed.
    ///
    /// # Errors
    /// The connection cannot be made, or `work` fails.
    pub fn with<T>(&self, work: impl FnOnce(&Bus) -> Result<T>) -> Result<T> {
        let mut slot = self.bus.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bus = match slot.take() {
            Some(bus) => bus,
            None => connect(&self.options)?,
        };
        let result = work(&bus);
        *slot = Some(bus);
        result
    }
}

/// Reads a secret file (bounded), trimming the line end; an empty file is refused.
#[cfg(feature = "nats")]
pub(crate) fn read_secret(path: &std::path::Path, what: &str) -> Result<String> {
    let bytes = crate::files::read_limited(path, MAX_SECRET_FILE_BYTES, what)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("{}: the {what} is not UTF-8 text", path.display())))?;
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.is_empty() {
        return Err(Error::invalid(format!("{}: the {what} file is empty", path.display())));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_that_go_together() {
        let none = BusFlags::default();
        assert_eq!(none.options("r").unwrap(), None);
        let orphan = BusFlags { ca: Some("ca.pem".into()), ..BusFlags::default() };
        assert!(orphan.options("r").unwrap_err().to_string().contains("need --nats URL"));
        let url = Some("nats://127.0.0.1:4222".to_string());
        let plain = BusFlags { url: url.clone(), ..BusFlags::default() }.options("r").unwrap().unwrap();
        assert_eq!(plain.server_name, "flux");
        let half = BusFlags { url: url.clone(), cert: Some("c".into()), ..BusFlags::default() };
        assert!(half.options("r").unwrap_err().to_string().contains("--nats-cert and --nats-key"));
        let two = BusFlags {
            url: url.clone(),
            token_file: Some("t".into()),
            nkey_file: Some("n".into()),
            ..BusFlags::default()
        };
        assert!(two.options("r").unwrap_err().to_string().contains("one kind of NATS credentials"));
        let http = BusFlags { url: Some("http://x".into()), ..BusFlags::default() };
        assert!(http.options("r").unwrap_err().to_string().contains("nats:// or tls://"));
    }
}
