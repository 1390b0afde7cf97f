//! The NATS client (feature `nats`): one connection, on a current-thread tokio runtime
//! that this value owns and drives only inside its calls (`block_on`): no worker pool, no
//! thread of its own. Every request is bounded by [`super::CONNECT_TIMEOUT_SECS`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream::StorageType};
use async_nats::rustls::{self, pki_types};

use super::{
    read_secret, BusOptions, CATALOG_BUCKET, CATALOG_BUCKET_BYTES, CONNECT_TIMEOUT_SECS, MAX_KV_VALUE_BYTES,
};
use crate::error::{Error, Result};

/// A connected NATS client with JetStream. See the module docs.
pub struct Bus {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    url: String,
}

/// One line from an error and its sources (async-nats nests them).
pub(super) fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text.replace(['\n', '\r'], " ")
}

impl Bus {
    /// Connects to the server `options` names (waiting at most
    /// [`super::CONNECT_TIMEOUT_SECS`]), with its TLS and credentials.
    ///
    /// # Errors
    /// A secret or certificate file cannot be read; the server cannot be reached, refuses
    /// the credentials, or its certificate is not valid for the server name.
    pub fn connect(options: &BusOptions) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::invalid(format!("cannot start the NATS client's runtime: {e}")))?;
        let client = runtime.block_on(connect_client(options))?;
        // The JetStream context spawns its acker task on the runtime.
        let js = {
            let _inside = runtime.enter();
            jetstream::new(client)
        };
        Ok(Self { runtime, js, url: options.url.clone() })
    }

    /// Runs one request to completion, bounded by [`super::CONNECT_TIMEOUT_SECS`].
    fn block<T>(&self, what: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
        let timeout = Duration::from_secs(CONNECT_TIMEOUT_SECS);
        self.runtime.block_on(async { tokio::time::timeout(timeout, work).await }).map_err(|_| {
            Error::invalid(format!("NATS server {}: {what}: no answer in {CONNECT_TIMEOUT_SECS} s", self.url))
        })?
    }

    fn fail(&self, what: &str, e: &dyn std::error::Error) -> Error {
        Error::invalid(format!("NATS server {}: {what}: {}", self.url, one_line(e)))
    }

    /// Puts `module` into the catalog bucket under `key`, creating the bucket (or
    /// updating its limits) as fluxrig's Mixer does.
    ///
    /// # Errors
    /// The module is larger than [`MAX_KV_VALUE_BYTES`] (refused before anything is
    /// sent), or the server refuses or does not answer.
    pub fn catalog_put(&self, key: &str, module: &[u8]) -> Result<()> {
        if module.len() > MAX_KV_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "module is {} bytes, more than the {} bytes a value of the bus catalog '{CATALOG_BUCKET}' may hold",
                module.len(),
                MAX_KV_VALUE_BYTES
            )));
        }
        let what = format!("put {CATALOG_BUCKET}/{key}");
        self.block(&what, async {
            let config = kv::Config {
                bucket: CATALOG_BUCKET.to_string(),
                storage: StorageType::File,
                num_replicas: 1,
                max_bytes: CATALOG_BUCKET_BYTES,
                max_value_size: MAX_KV_VALUE_BYTES as i32,
                history: 1,
                ..kv::Config::default()
            };
            let store = self.js.create_or_update_key_value(config).await.map_err(|e| self.fail(&what, &e))?;
            store.put(key, bytes::Bytes::copy_from_slice(module)).await.map_err(|e| self.fail(&what, &e))?;
            Ok(())
        })
    }

    /// Gets the value of `key` in the catalog bucket: `None` when the bucket or the key
    /// does not exist (or was deleted).
    ///
    /// # Errors
    /// The server refuses or does not answer, or the value is larger than
    /// [`MAX_KV_VALUE_BYTES`].
    pub fn catalog_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let what = format!("get {CATALOG_BUCKET}/{key}");
        let value = self.block(&what, async {
            let stream = format!("KV_{CATALOG_BUCKET}");
            match self.js.get_stream(&stream).await {
                Ok(_) => {}
                Err(e) => {
                    if let jetstream::context::GetStreamErrorKind::JetStream(inner) = e.kind() {
                        if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                            return Ok(None);
                        }
                    }
                    return Err(self.fail(&what, &e));
                }
            }
            let store = self.js.get_key_value(CATALOG_BUCKET).await.map_err(|e| self.fail(&what, &e))?;
            store.get(key).await.map_err(|e| self.fail(&what, &e))
        })?;
        match value {
            Some(v) if v.len() > MAX_KV_VALUE_BYTES => Err(Error::invalid(format!(
                "NATS server {}: {what}: the value is {} bytes, more than {MAX_KV_VALUE_BYTES}",
                self.url,
                v.len()
            ))),
            Some(v) => Ok(Some(v.to_vec())),
            None => Ok(None),
        }
    }
}

/// Connects to the server `options` names (waiting at most [`CONNECT_TIMEOUT_SECS`]),
/// with its TLS and credentials; inside a tokio runtime.
///
/// # Errors
/// A secret or certificate file cannot be read; the server cannot be reached, refuses
/// the credentials, or its certificate is not valid for the server name.
pub(super) async fn connect_client(options: &BusOptions) -> Result<async_nats::Client> {
    let timeout = Duration::from_secs(CONNECT_TIMEOUT_SECS);
    let base = |connect: async_nats::ConnectOptions| {
        connect
            .name(&options.name)
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            // Keep trying after a lost connection: the rack waits (bounded by its queue).
            .max_reconnects(None)
    };
    let mut connect = base(async_nats::ConnectOptions::new());
    if let Some((user, file)) = &options.user {
        connect = connect.user_and_password(user.clone(), read_secret(file, "NATS password")?);
    }
    if let Some(file) = &options.token_file {
        connect = connect.token(read_secret(file, "NATS token")?);
    }
    if let Some(file) = &options.nkey_file {
        connect = connect.nkey(read_secret(file, "NATS nkey seed")?);
    }
    if let Some(file) = &options.creds_file {
        let text = read_secret(file, "NATS creds")?;
        connect = base(async_nats::ConnectOptions::with_credentials(&text).map_err(|e| {
            Error::invalid(format!("{}: not a NATS .creds file ({})", file.display(), one_line(&e)))
        })?);
    }
    let tls = options.ca.is_some() || options.client_cert.is_some() || options.url.starts_with("tls://");
    if tls {
        connect = connect.require_tls(true).tls_client_config(tls_config(options)?);
    }
    let url = &options.url;
    tokio::time::timeout(timeout, connect.connect(url))
        .await
        .map_err(|_| Error::invalid(format!("NATS server {url}: no answer in {CONNECT_TIMEOUT_SECS} s")))?
        .map_err(|e| Error::invalid(format!("NATS server {url}: cannot connect ({})", one_line(&e))))
}

/// The TLS settings: the CA file's certificates as the only roots, the server
/// certificate checked against `options.server_name` (not the URL's host), and the client
/// certificate if one is given.
fn tls_config(options: &BusOptions) -> Result<rustls::ClientConfig> {
    use pki_types::pem::PemObject;
    let Some(ca) = &options.ca else {
        return Err(Error::Usage(format!(
            "--nats {}: TLS needs --nats-ca FILE (the CA that signed the server's certificate)",
            options.url
        )));
    };
    let mut roots = rustls::RootCertStore::empty();
    let pem = crate::files::read_limited(ca, super::MAX_SECRET_FILE_BYTES, "CA file")?;
    for cert in pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| Error::invalid(format!("{}: not a PEM certificate ({e})", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| Error::invalid(format!("{}: unusable CA certificate ({e})", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(Error::invalid(format!("{}: no certificate in the CA file", ca.display())));
    }
    let name = pki_types::ServerName::try_from(options.server_name.clone())
        .map_err(|_| Error::Usage(format!("--nats-server-name {:?}: not a DNS name", options.server_name)))?;
    let inner = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| Error::invalid(format!("{}: {e}", ca.display())))?;
    let verifier = Arc::new(NamedServer { inner, name });
    let builder = rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(verifier);
    match &options.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let cert_pem =
                crate::files::read_limited(cert, super::MAX_SECRET_FILE_BYTES, "client certificate")?;
            let chain = pki_types::CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::invalid(format!("{}: not a PEM certificate ({e})", cert.display())))?;
            let key_pem = crate::files::read_limited(key, super::MAX_SECRET_FILE_BYTES, "client key")?;
            let key_der = pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| Error::invalid(format!("{}: not a PEM private key ({e})", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::invalid(format!("{} and {}: {e}", cert.display(), key.display())))
        }
    }
}

/// Checks the server certificate as rustls's WebPKI verifier does, but against the
/// configured server name (fluxrig's `snake.domain`) instead of the URL's host: fluxrig's
/// racks connect to `nats://10.0.0.5:4222` and expect a certificate for `flux`.
#[derive(Debug)]
struct NamedServer {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &pki_types::CertificateDer<'_>,
        intermediates: &[pki_types::CertificateDer<'_>],
        _url_host: &pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
