//! File model → runtime model for TLS: a listener's [`ListenerTls`] and an upstream's
//! [`UpstreamTls`], with defaults filled in. File problems were reported by `validate_tls` with
//! precise keys; those that still surface here are reported at the nearest key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::file::FileUpstream;
use super::file_tls::{FileAlpn, FileClientAuthMode, FileListenerTls, FileTlsVersion};
use super::source_map::{child_index, child_key};
use super::{ConfigError, LoadedFile};
use crate::server::tls::{CertificatePaths, ClientAuth, ListenerTls, TlsSettings, TlsVersion};
use crate::tls::PemFile;
use crate::upstream::tls::{UpstreamTls, UpstreamTlsSettings};

/// Default bound on a client's TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS of `listeners[index]`, loaded (certificates read, rustls config built).
pub(super) fn listener_tls(
    loaded: &LoadedFile,
    index: usize,
    tls: &FileListenerTls,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<ListenerTls>> {
    let base = child_key(&child_index("listeners", index), "tls");
    let client_auth = match &tls.client_auth {
        None => ClientAuth::None,
        Some(auth) => {
            let ca = match &auth.ca {
                None => None,
                Some(path) => match PemFile::read(path.as_ref()) {
                    Ok(ca) => Some(ca),
                    Err(message) => {
                        errors.push(loaded.error(child_key(&base, "client_auth.ca"), message));
                        return None;
                    }
                },
            };
            match (auth.mode, ca) {
                (FileClientAuthMode::None, _) => ClientAuth::None,
                (FileClientAuthMode::Optional, Some(ca)) => ClientAuth::Optional(ca),
                (FileClientAuthMode::Required, Some(ca)) => ClientAuth::Required(ca),
                (_, None) => {
                    errors.push(loaded.error(
                        child_key(&base, "client_auth.mode"),
                        "client certificates need `ca`",
                    ));
                    return None;
                }
            }
        }
    };
    let settings = TlsSettings {
        certificates: tls
            .certificates
            .iter()
            .map(|pair| CertificatePaths {
                cert: PathBuf::from(&pair.cert),
                key: PathBuf::from(&pair.key),
            })
            .collect(),
        min_version: match tls.min_version {
            FileTlsVersion::Tls12 => TlsVersion::Tls12,
            FileTlsVersion::Tls13 => TlsVersion::Tls13,
        },
        alpn: tls
            .alpn
            .as_deref()
            .unwrap_or(&[FileAlpn::H2, FileAlpn::Http11])
            .iter()
            .map(|id| match id {
                FileAlpn::H2 => b"h2".to_vec(),
                FileAlpn::Http11 => b"http/1.1".to_vec(),
            })
            .collect(),
        client_auth,
        handshake_timeout: tls.handshake_timeout.map_or(HANDSHAKE_TIMEOUT, |d| d.0),
    };
    match ListenerTls::new(settings) {
        Ok(tls) => Some(Arc::new(tls)),
        Err(problems) => {
            for problem in problems {
                errors.push(loaded.error(child_key(&base, &problem.key), problem.message));
            }
            None
        }
    }
}

/// The client TLS of upstream `name`: `Some` when any target is `https://`.
pub(super) fn upstream_tls(
    loaded: &LoadedFile,
    name: &str,
    upstream: &FileUpstream,
    http2: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<UpstreamTls>> {
    if !upstream
        .targets
        .iter()
        .any(|t| t.url.starts_with("https://"))
    {
        return None;
    }
    let base = child_key(&child_key("upstreams", name), "tls");
    let file = upstream.tls.clone().unwrap_or_default();
    let mut read = |key: &str, path: &Option<String>| -> Result<Option<PemFile>, ()> {
        match path {
            None => Ok(None),
            Some(path) => PemFile::read(path.as_ref()).map(Some).map_err(|message| {
                errors.push(loaded.error(child_key(&base, key), message));
            }),
        }
    };
    let ca = read("ca", &file.ca).ok()?;
    let cert = read("client_cert", &file.client_cert);
    let key = read("client_key", &file.client_key);
    let client_identity = match (cert.ok()?, key.ok()?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => None,
    };
    let settings = UpstreamTlsSettings {
        ca,
        server_name: file.server_name.clone(),
        client_identity,
        h2: http2,
    };
    match UpstreamTls::new(settings) {
        Ok(tls) => Some(Arc::new(tls)),
        Err(problems) => {
            for problem in problems {
                errors.push(loaded.error(child_key(&base, problem.key), problem.message));
            }
            None
        }
    }
}
