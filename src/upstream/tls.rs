//! TLS to upstreams: `https://` targets, verified against the system roots or a configured CA,
//! SNI from the target's host (or `server_name`), an optional client certificate (upstream mTLS),
//! and ALPN `h2` for HTTP/2 and gRPC upstreams.
//!
//! There is deliberately no way to skip verification: a test or staging upstream gets its CA
//! configured instead.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tls::PemFile;

/// An upstream's TLS settings as configured; equal settings keep the targets' pools on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsSettings {
    /// CA to verify against; `None` = the system's roots.
    pub ca: Option<PemFile>,
    /// SNI and verified name for every target; `None` = each target's host.
    pub server_name: Option<String>,
    /// Client certificate chain and key (upstream mTLS).
    pub client_identity: Option<(PemFile, PemFile)>,
    /// Offer `h2` by ALPN (HTTP/2 and gRPC upstreams), else `http/1.1`.
    pub h2: bool,
}

/// Why an upstream's TLS could not be set up; `key` is relative to `upstreams.NAME.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsError {
    /// E.g. `ca` or `client_cert`.
    pub key: &'static str,
    /// What is wrong, naming the file.
    pub message: String,
}

/// A compiled client TLS config, shared by the pools of an upstream's `https://` targets.
pub struct UpstreamTls {
    settings: UpstreamTlsSettings,
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for UpstreamTls {}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Builds the client config; every unusable file is reported.
    pub fn new(settings: UpstreamTlsSettings) -> Result<Self, Vec<UpstreamTlsError>> {
        let provider = crate::tls::provider();
        let mut errors = Vec::new();
        let roots = match &settings.ca {
            Some(ca) => roots_from(ca),
            None => system_roots(),
        }
        .map_err(|message| errors.push(UpstreamTlsError { key: "ca", message }))
        .ok();
        let identity = match &settings.client_identity {
            None => None,
            Some((cert, key)) => {
                let certs = crate::tls::certificates(&cert.path, &cert.pem).map_err(|message| {
                    errors.push(UpstreamTlsError {
                        key: "client_cert",
                        message,
                    });
                });
                let private = crate::tls::private_key(&key.path, &key.pem).map_err(|message| {
                    errors.push(UpstreamTlsError {
                        key: "client_key",
                        message,
                    });
                });
                match (certs, private) {
                    (Ok(certs), Ok(private)) => Some((certs, private)),
                    _ => None,
                }
            }
        };
        let server_name = match &settings.server_name {
            None => None,
            Some(name) => match ServerName::try_from(name.clone()) {
                Ok(name) => Some(name),
                Err(_) => {
                    errors.push(UpstreamTlsError {
                        key: "server_name",
                        message: format!("{name:?} is not a DNS name or IP address"),
                    });
                    None
                }
            },
        };
        let Some(roots) = roots else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let builder = match ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => builder.with_root_certificates(roots),
            Err(err) => {
                return Err(vec![UpstreamTlsError {
                    key: "ca",
                    message: format!("the crypto provider cannot be used: {err}"),
                }]);
            }
        };
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|err| {
                vec![UpstreamTlsError {
                    key: "client_key",
                    message: format!("does not match client_cert: {err}"),
                }]
            })?,
        };
        config.alpn_protocols = if settings.h2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Self {
            settings,
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The settings this was built from.
    pub fn settings(&self) -> &UpstreamTlsSettings {
        &self.settings
    }

    /// The name to send as SNI and verify for a target whose host is `host`.
    pub fn server_name_for(&self, host: &str) -> Option<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Some(name.clone());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned()).ok()
    }

    /// Runs the client handshake over `tcp`.
    pub async fn connect(
        &self,
        name: ServerName<'static>,
        tcp: TcpStream,
    ) -> io::Result<TlsStream<TcpStream>> {
        self.connector.connect(name, tcp).await
    }
}

fn roots_from(ca: &PemFile) -> Result<rustls::RootCertStore, String> {
    let certs = crate::tls::certificates(&ca.path, &ca.pem)?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{}: none of its certificates is a usable CA certificate",
            ca.path.display()
        ));
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(
            "no system root certificates were found: set `ca` to the upstream's CA file".to_owned(),
        );
    }
    Ok(roots)
}

/// Why a handshake with an upstream failed, in config terms, for the 502's detail.
pub fn describe(err: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the upstream closed the connection during the handshake"
            }
            _ => "handshake failed",
        };
    };
    match tls {
        Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => "certificate not trusted (unknown issuer)",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "certificate not valid for the server name"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not valid yet"
            }
            CertificateError::Revoked => "certificate revoked",
            _ => "certificate rejected",
        },
        Error::AlertReceived(_) => "the upstream rejected the handshake (TLS alert)",
        Error::NoApplicationProtocol => "no common ALPN protocol",
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "the upstream does not speak TLS"
        }
        _ => "handshake failed",
    }
}

/// The TLS failure behind an HTTP-level error, if that is what it was. With TLS 1.3 the client's
/// handshake is done before the server has checked the client certificate, so a refused one
/// surfaces as the server's alert on the first read, inside hyper's error.
pub fn failure_in(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return Some(describe(io));
        }
        if err.is::<rustls::Error>() {
            return Some("handshake failed");
        }
        current = err.source();
    }
    None
}

/// A connection to a target: plain TCP or TLS over it.
pub enum UpstreamStream {
    /// `http://` targets.
    Plain(TcpStream),
    /// `https://` targets.
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamStream {
    /// Whether a read would return at once (bytes, end of stream or an error) instead of
    /// waiting; consumes at most one byte. No syscall unless the reactor has seen the socket
    /// become readable since the last read. Plain TCP asks the reactor's readiness directly (an
    /// atomic load); TLS polls a read with a no-op waker, as its plaintext may be buffered.
    pub fn read_would_not_wait(&mut self) -> bool {
        let mut probe = [0_u8; 1];
        match self {
            Self::Plain(tcp) => {
                !matches!(tcp.try_read(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
            }
            Self::Tls(tls) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                Pin::new(tls)
                    .poll_read(&mut cx, &mut ReadBuf::new(&mut probe))
                    .is_ready()
            }
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, CertificateError, Error};

    fn wrapped(err: Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn handshake_failures_are_described_in_config_terms() {
        let untrusted = wrapped(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert_eq!(
            describe(&untrusted),
            "certificate not trusted (unknown issuer)"
        );
        let wrong_name = wrapped(Error::InvalidCertificate(CertificateError::NotValidForName));
        assert_eq!(
            describe(&wrong_name),
            "certificate not valid for the server name"
        );
        let refused = wrapped(Error::AlertReceived(AlertDescription::CertificateRequired));
        assert_eq!(
            describe(&refused),
            "the upstream rejected the handshake (TLS alert)"
        );
        assert_eq!(
            describe(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            "the upstream closed the connection during the handshake"
        );
    }

    #[test]
    fn a_tls_error_is_found_inside_other_errors() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = wrapped(Error::AlertReceived(AlertDescription::BadCertificate));
        assert_eq!(
            failure_in(&Outer(inner)),
            Some("the upstream rejected the handshake (TLS alert)")
        );
        assert_eq!(
            failure_in(&Outer(io::Error::from(io::ErrorKind::ConnectionReset))),
            None
        );
    }
}
