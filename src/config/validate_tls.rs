//! Semantic checks of the TLS keys: every certificate, key and CA file is read and parsed here,
//! so `gantry validate` reports a missing or garbage file with its path and the YAML key's
//! file:line:col, together with every other problem of the file.

use std::path::Path;

use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;

use super::LoadedFile;
use super::error::ConfigError;
use super::file::FileUpstream;
use super::file_tls::{FileClientAuthMode, FileListenerTls, FileUpstreamTls};
use super::source_map::{child_index, child_key};

/// Appends every TLS problem of `loaded` to `errors`.
pub(super) fn validate(loaded: &LoadedFile, errors: &mut Vec<ConfigError>) {
    let mut check = Checker { loaded, errors };
    for (i, listener) in loaded.config.listeners.iter().enumerate() {
        if let Some(tls) = &listener.tls {
            let base = child_index("listeners", i);
            let protocols = child_key(&base, "protocols");
            // Silently ignoring it would let `protocols: [http1]` look like it disabled h2.
            if loaded.source_map.contains(&protocols) {
                check.error(
                    &protocols,
                    "a TLS listener's protocols are negotiated by ALPN: remove `protocols` and set `tls.alpn` (e.g. [http/1.1])",
                );
            }
            check.listener(&child_key(&base, "tls"), tls);
        }
    }
    for (name, upstream) in &loaded.config.upstreams {
        check.upstream(&child_key("upstreams", name), upstream);
    }
}

struct Checker<'a> {
    loaded: &'a LoadedFile,
    errors: &'a mut Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.loaded.error(path, message));
    }

    fn listener(&mut self, base: &str, tls: &FileListenerTls) {
        let certificates = child_key(base, "certificates");
        if tls.certificates.is_empty() {
            self.error(
                &certificates,
                "at least one certificate is needed (the first is the default)",
            );
        }
        for (i, pair) in tls.certificates.iter().enumerate() {
            let at = child_index(&certificates, i);
            self.key_pair(
                &child_key(&at, "cert"),
                &pair.cert,
                &child_key(&at, "key"),
                &pair.key,
            );
        }
        if let Some(alpn) = &tls.alpn {
            let path = child_key(base, "alpn");
            if alpn.is_empty() {
                self.error(&path, "at least one protocol is needed (h2, http/1.1)");
            }
            for (j, id) in alpn.iter().enumerate() {
                if alpn[..j].contains(id) {
                    self.error(&child_index(&path, j), "duplicate protocol");
                }
            }
        }
        if tls.handshake_timeout.is_some_and(|d| d.0.is_zero()) {
            self.error(
                &child_key(base, "handshake_timeout"),
                "must be greater than 0",
            );
        }
        if let Some(auth) = &tls.client_auth {
            let auth_path = child_key(base, "client_auth");
            match (auth.mode, &auth.ca) {
                (FileClientAuthMode::None, Some(_)) => self.error(
                    &child_key(&auth_path, "ca"),
                    "a client CA with mode none is never used: set mode to optional or required",
                ),
                (FileClientAuthMode::Optional | FileClientAuthMode::Required, None) => self.error(
                    &child_key(&auth_path, "mode"),
                    "client certificates need `ca`: the CA file they must chain to",
                ),
                (_, Some(ca)) => {
                    if let Err(message) = crate::tls::root_store(Path::new(ca)) {
                        self.error(&child_key(&auth_path, "ca"), message);
                    }
                }
                (FileClientAuthMode::None, None) => {}
            }
        }
    }

    fn upstream(&mut self, base: &str, upstream: &FileUpstream) {
        let https = upstream
            .targets
            .iter()
            .any(|t| t.url.starts_with("https://"));
        let Some(tls) = &upstream.tls else {
            return;
        };
        let path = child_key(base, "tls");
        if !https {
            self.error(
                &path,
                "tls applies to https:// targets and this upstream has none",
            );
        }
        self.upstream_tls(&path, tls);
    }

    fn upstream_tls(&mut self, base: &str, tls: &FileUpstreamTls) {
        if let Some(ca) = &tls.ca
            && let Err(message) = crate::tls::root_store(Path::new(ca))
        {
            self.error(&child_key(base, "ca"), message);
        }
        if let Some(name) = &tls.server_name
            && ServerName::try_from(name.as_str()).is_err()
        {
            self.error(
                &child_key(base, "server_name"),
                format!("{name:?} is not a DNS name or IP address"),
            );
        }
        match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => self.key_pair(
                &child_key(base, "client_cert"),
                cert,
                &child_key(base, "client_key"),
                key,
            ),
            (Some(_), None) => self.error(
                &child_key(base, "client_cert"),
                "client_cert needs client_key (the certificate's private key)",
            ),
            (None, Some(_)) => self.error(
                &child_key(base, "client_key"),
                "client_key needs client_cert (the certificate it belongs to)",
            ),
            (None, None) => {}
        }
    }

    /// Reads a certificate and a key file; each problem is reported at the key naming the file,
    /// a mismatch at the key file.
    fn key_pair(&mut self, cert_path: &str, cert: &str, key_path: &str, key: &str) {
        let certs = crate::tls::read(Path::new(cert))
            .and_then(|bytes| crate::tls::certificates(Path::new(cert), &bytes));
        let private = crate::tls::read(Path::new(key))
            .and_then(|bytes| crate::tls::private_key(Path::new(key), &bytes));
        match (certs, private) {
            (Ok(certs), Ok(private)) => {
                if let Err(err) = CertifiedKey::from_der(certs, private, &crate::tls::provider()) {
                    self.error(
                        key_path,
                        format!("{key} does not belong to the certificate in {cert}: {err}"),
                    );
                }
            }
            (certs, private) => {
                if let Err(message) = certs {
                    self.error(cert_path, message);
                }
                if let Err(message) = private {
                    self.error(key_path, message);
                }
            }
        }
    }
}
