//! TLS termination: certificates picked by SNI, ALPN, client certificates, reload on change.
//!
//! Why a resolver of our own instead of rustls's `ResolvesServerCertUsingSni`: ours swaps its
//! certificates in one `ArcSwap` store when the files change on disk, so a rotated certificate is
//! served to the next handshake while established connections (which hold their own session)
//! carry on untouched, and no restart or config reload is needed.
//!
//! Before the handshake, one peek at the first byte tells a ClientHello (record type 0x16) from a
//! plain-HTTP request sent to the TLS port by mistake; the latter gets a readable 400 instead of
//! an opaque TLS alert. The peek and the handshake together are bounded by `handshake_timeout`
//! so a client that never finishes cannot hold a connection slot for long.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use notify::{RecursiveMode, Watcher};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::idle::IdleIo;
use crate::error::GatewayError;
use crate::tls::PemFile;

/// Lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Whether and how client certificates are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked for.
    None,
    /// Verified against the CA when sent; clients without one are let in.
    Optional(PemFile),
    /// Verified against the CA; clients without one fail the handshake.
    Required(PemFile),
}

/// A certificate chain file and its key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A listener's TLS settings as configured; equal settings mean the listener is left alone on a
/// reload (its certificate files are watched on their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Certificates in config order; the first is the default.
    pub certificates: Vec<CertificatePaths>,
    /// Lowest accepted version.
    pub min_version: TlsVersion,
    /// ALPN ids offered, in preference order.
    pub alpn: Vec<Vec<u8>>,
    /// Client certificates.
    pub client_auth: ClientAuth,
    /// Bound on peek plus handshake.
    pub handshake_timeout: Duration,
}

/// Why a listener's TLS could not be set up; `key` is relative to the listener's `tls` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSetupError {
    /// E.g. `certificates[1].key` or `client_auth.ca`.
    pub key: String,
    /// What is wrong, naming the file.
    pub message: String,
}

/// Handshake outcomes of one listener since its accept loop started.
#[derive(Debug, Default)]
pub struct TlsCounters {
    completed: AtomicU64,
    completed_tls12: AtomicU64,
    completed_tls13: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    plain_http: AtomicU64,
    certificates_reloaded: AtomicU64,
    certificates_rejected: AtomicU64,
}

/// A snapshot of [`TlsCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlsStats {
    /// Handshakes that succeeded.
    pub completed: u64,
    /// Of those, TLS 1.2.
    pub completed_tls12: u64,
    /// Of those, TLS 1.3.
    pub completed_tls13: u64,
    /// Handshakes that failed (bad ClientHello, no shared version, missing or bad client cert).
    pub failed: u64,
    /// Connections closed because the handshake did not finish within `handshake_timeout`.
    pub timed_out: u64,
    /// Connections that sent plain HTTP to the TLS port (answered 400).
    pub plain_http: u64,
    /// Times changed certificate files were loaded and swapped in.
    pub certificates_reloaded: u64,
    /// Times changed certificate files did not load (the previous certificate stayed in use).
    pub certificates_rejected: u64,
}

/// What a completed handshake tells the HTTP layer.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// ALPN chose h2.
    pub h2: bool,
    /// The verified client certificate's subject, ready to forward.
    pub client_subject: Option<HeaderValue>,
}

/// Why a connection never got to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Peek plus handshake took longer than `handshake_timeout`.
    #[error("TLS handshake timed out")]
    TimedOut,
    /// The client spoke plain HTTP to the TLS port (it got a 400).
    #[error("plain HTTP on a TLS port")]
    PlainHttp,
    /// The handshake failed (garbage, no common version or cipher, client certificate).
    #[error("TLS handshake failed")]
    Failed(#[source] io::Error),
}

/// A listener's compiled TLS: the rustls config, the live certificate store and counters.
pub struct ListenerTls {
    settings: TlsSettings,
    acceptor: TlsAcceptor,
    store: Arc<CertStore>,
    counters: Arc<TlsCounters>,
}

impl PartialEq for ListenerTls {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for ListenerTls {}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ListenerTls {
    /// Loads every certificate and the client CA; reports every file that is unusable.
    pub fn new(settings: TlsSettings) -> Result<Self, Vec<TlsSetupError>> {
        let provider = crate::tls::provider();
        let mut errors = Vec::new();
        let mut entries = Vec::with_capacity(settings.certificates.len());
        for (i, paths) in settings.certificates.iter().enumerate() {
            match load_entry(&provider, paths) {
                Ok(entry) => entries.push(entry),
                Err(message) => errors.push(TlsSetupError {
                    key: format!("certificates[{i}]"),
                    message,
                }),
            }
        }
        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = match ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
        {
            Ok(builder) => builder,
            Err(err) => {
                errors.push(TlsSetupError {
                    key: "min_version".to_owned(),
                    message: format!("not supported by the crypto provider: {err}"),
                });
                return Err(errors);
            }
        };
        let verifier = match &settings.client_auth {
            ClientAuth::None => None,
            ClientAuth::Optional(ca) | ClientAuth::Required(ca) => {
                match client_verifier(&provider, ca, &settings.client_auth) {
                    Ok(verifier) => Some(verifier),
                    Err(message) => {
                        errors.push(TlsSetupError {
                            key: "client_auth.ca".to_owned(),
                            message,
                        });
                        None
                    }
                }
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let store = Arc::new(CertStore {
            sources: settings.certificates.clone(),
            provider,
            current: ArcSwap::from_pointee(entries),
        });
        let resolver: Arc<dyn ResolvesServerCert> = Arc::clone(&store) as _;
        let mut config = match verifier {
            Some(verifier) => builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(resolver),
            None => builder.with_no_client_auth().with_cert_resolver(resolver),
        };
        config.alpn_protocols.clone_from(&settings.alpn);
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            settings,
            store,
            counters: Arc::default(),
        })
    }

    /// The settings this was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Handshake counts so far.
    pub fn stats(&self) -> TlsStats {
        let c = &self.counters;
        TlsStats {
            completed: c.completed.load(Ordering::Relaxed),
            completed_tls12: c.completed_tls12.load(Ordering::Relaxed),
            completed_tls13: c.completed_tls13.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            plain_http: c.plain_http.load(Ordering::Relaxed),
            certificates_reloaded: c.certificates_reloaded.load(Ordering::Relaxed),
            certificates_rejected: c.certificates_rejected.load(Ordering::Relaxed),
        }
    }

    /// Completes the TLS handshake on an accepted connection, within `handshake_timeout`.
    /// Failures are counted and logged here; the caller only closes.
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        listener: &str,
        idle_timeout: Duration,
    ) -> Result<(TlsStream<IdleIo<TcpStream>>, Negotiated), HandshakeError> {
        let result = tokio::time::timeout(
            self.settings.handshake_timeout,
            self.handshake(stream, idle_timeout),
        )
        .await
        .unwrap_or(Err(HandshakeError::TimedOut));
        let c = &self.counters;
        match &result {
            Ok((stream, _)) => {
                match stream.get_ref().1.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => {
                        c.completed_tls13.fetch_add(1, Ordering::Relaxed)
                    }
                    Some(rustls::ProtocolVersion::TLSv1_2) => {
                        c.completed_tls12.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => 0,
                };
                c.completed.fetch_add(1, Ordering::Relaxed)
            }
            Err(HandshakeError::TimedOut) => c.timed_out.fetch_add(1, Ordering::Relaxed),
            Err(HandshakeError::PlainHttp) => c.plain_http.fetch_add(1, Ordering::Relaxed),
            Err(HandshakeError::Failed(_)) => c.failed.fetch_add(1, Ordering::Relaxed),
        };
        if let Err(err) = &result {
            // Debug level: a scanner or a misconfigured client can produce these by the thousand.
            let cause = match err {
                HandshakeError::Failed(io) => io.to_string(),
                _ => String::new(),
            };
            tracing::debug!(listener, %peer, error = %err, cause, "TLS connection closed before HTTP");
        }
        result
    }

    async fn handshake(
        &self,
        stream: TcpStream,
        idle_timeout: Duration,
    ) -> Result<(TlsStream<IdleIo<TcpStream>>, Negotiated), HandshakeError> {
        let mut first = [0u8; 512];
        let seen = stream
            .peek(&mut first)
            .await
            .map_err(HandshakeError::Failed)?;
        if seen > 0 && first[0].is_ascii_uppercase() {
            answer_plain_http(stream, &first[..seen]).await;
            return Err(HandshakeError::PlainHttp);
        }
        let tls = self
            .acceptor
            .accept(IdleIo::new(stream, idle_timeout))
            .await
            .map_err(HandshakeError::Failed)?;
        let connection = tls.get_ref().1;
        let negotiated = Negotiated {
            h2: connection.alpn_protocol() == Some(b"h2"),
            client_subject: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(crate::tls::subject)
                .and_then(|subject| subject_header(&subject)),
        };
        Ok((tls, negotiated))
    }

    /// Starts watching the certificate files' directories; changed files are loaded and swapped
    /// in for new handshakes. The watch ends when the returned guard is dropped.
    pub fn watch(&self, listener: &str) -> Option<CertWatch> {
        let (events, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = events.send(());
                }
            })
            .map_err(|err| {
                tracing::warn!(listener, error = %err, "certificate files cannot be watched; rotation needs a restart");
            })
            .ok()?;
        let mut dirs: Vec<PathBuf> = self
            .settings
            .certificates
            .iter()
            .flat_map(|p| [&p.cert, &p.key])
            .map(|path| match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            if let Err(err) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(listener, dir = %dir.display(), error = %err, "certificate directory cannot be watched");
            }
        }
        let store = Arc::clone(&self.store);
        let counters = Arc::clone(&self.counters);
        let listener = listener.to_owned();
        let task = tokio::spawn(async move {
            // Dropping the watcher stops the notifications, so it lives as long as this task.
            let _watcher = watcher;
            while changes.recv().await.is_some() {
                // Several events per write; one look at the files covers all that are queued. A
                // half-written file fails to parse (or its key does not match) and is retried on
                // the event its last write causes, so no timer is needed.
                while changes.try_recv().is_ok() {}
                let store = Arc::clone(&store);
                let name = listener.clone();
                let (swapped, rejected) = tokio::task::spawn_blocking(move || store.reload(&name))
                    .await
                    .unwrap_or((0, 0));
                counters
                    .certificates_reloaded
                    .fetch_add(swapped, Ordering::Relaxed);
                counters
                    .certificates_rejected
                    .fetch_add(rejected, Ordering::Relaxed);
            }
        });
        Some(CertWatch { task })
    }
}

/// Keeps a listener's certificate watch running; dropping it stops the watch.
pub struct CertWatch {
    task: JoinHandle<()>,
}

impl Drop for CertWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One certificate and the names it is served for.
#[derive(Debug)]
struct CertEntry {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
}

/// The certificates of one listener, swapped whole when files change.
#[derive(Debug)]
struct CertStore {
    sources: Vec<CertificatePaths>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Vec<CertEntry>>,
}

impl CertStore {
    /// Loads every pair again; pairs that load and differ replace their old entry, pairs that
    /// fail (mid-rotation, typo) keep it. Returns how many entries were replaced and rejected.
    fn reload(&self, listener: &str) -> (u64, u64) {
        let current = self.current.load();
        let mut next = Vec::with_capacity(self.sources.len());
        let mut replaced = 0;
        let mut rejected = 0;
        for (paths, old) in self.sources.iter().zip(current.iter()) {
            match load_entry(&self.provider, paths) {
                Ok(entry) if entry.key.cert != old.key.cert || !same_key(&entry.key, &old.key) => {
                    tracing::info!(listener, cert = %paths.cert.display(), "certificate reloaded");
                    replaced += 1;
                    next.push(entry);
                }
                Ok(_) => next.push(CertEntry {
                    key: Arc::clone(&old.key),
                    names: old.names.clone(),
                }),
                Err(message) => {
                    rejected += 1;
                    tracing::warn!(listener, error = %message, "changed certificate not loaded; the previous one stays in use");
                    next.push(CertEntry {
                        key: Arc::clone(&old.key),
                        names: old.names.clone(),
                    });
                }
            }
        }
        if replaced > 0 {
            self.current.store(Arc::new(next));
        }
        (replaced, rejected)
    }
}

/// Whether two certified keys have the same public key (a re-keyed certificate is a change even
/// if the chain bytes were identical, which cannot really happen, but costs nothing to check).
fn same_key(a: &CertifiedKey, b: &CertifiedKey) -> bool {
    a.key.public_key() == b.key.public_key()
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let entries = self.current.load();
        if let Some(sni) = client_hello.server_name() {
            let chosen = entries
                .iter()
                .find(|entry| entry.names.iter().any(|n| crate::tls::name_matches(n, sni)));
            if let Some(entry) = chosen {
                return Some(Arc::clone(&entry.key));
            }
        }
        entries.first().map(|entry| Arc::clone(&entry.key))
    }
}

fn load_entry(provider: &CryptoProvider, paths: &CertificatePaths) -> Result<CertEntry, String> {
    let key = crate::tls::certified_key(provider, &paths.cert, &paths.key)?;
    let names = key
        .cert
        .first()
        .map(crate::tls::dns_names)
        .unwrap_or_default();
    Ok(CertEntry {
        key: Arc::new(key),
        names,
    })
}

fn client_verifier(
    provider: &Arc<CryptoProvider>,
    ca: &PemFile,
    mode: &ClientAuth,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let certs = crate::tls::certificates(&ca.path, &ca.pem)?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{}: none of its certificates is a usable CA certificate",
            ca.path.display()
        ));
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if matches!(mode, ClientAuth::Optional(_)) {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|err| format!("{}: {err}", ca.path.display()))
}

/// A subject as a header value: bytes outside visible ASCII are escaped as `\HH` (RFC 4514's
/// hex escape), so any subject can be forwarded and none can inject a header.
pub fn subject_header(subject: &str) -> Option<HeaderValue> {
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if (0x20..0x7f).contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("\\{byte:02X}"));
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// Answers a plain-HTTP request on the TLS port with a 400 problem+json, then closes.
async fn answer_plain_http(mut stream: TcpStream, head: &[u8]) {
    // The request target, for `instance`; whatever arrived of the first line is enough.
    let instance = std::str::from_utf8(head)
        .ok()
        .and_then(|text| text.split_whitespace().nth(1))
        .map(|target| target.split('?').next().unwrap_or("/"))
        .filter(|path| path.starts_with('/'))
        .unwrap_or("/")
        .to_owned();
    let request_id = crate::observe::request_id::RequestId::generate().to_string();
    let response = GatewayError::PlainHttpOnTlsPort.into_response(&instance, &request_id, false);
    let body = response.body();
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_escaped_into_header_values() {
        let value = subject_header("CN=Zoë,O=Acme\r\nX-Evil: 1").expect("always a value");
        assert_eq!(value, "CN=Zo\\C3\\AB,O=Acme\\0D\\0AX-Evil: 1");
    }
}
