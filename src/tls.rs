//! TLS building blocks both sides share: the crypto provider and reading PEM files.
//!
//! Errors from here name the file and say what is wrong with it in a user's terms ("no private
//! key", "not PEM"), because they end up in config errors next to the YAML key that named the file.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file and the bytes it held when the config was loaded, so that a changed file is a
/// changed setting and a config reload rebuilds what uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile {
    /// Where it was read from.
    pub path: std::path::PathBuf,
    /// Its contents.
    pub pem: Vec<u8>,
}

impl PemFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        Ok(Self {
            path: path.to_path_buf(),
            pem: read(path)?,
        })
    }
}

/// The process's crypto provider: aws-lc-rs, installed as rustls's default once.
///
/// Installing is idempotent: a second call (another gateway in the same process, a test) finds it
/// installed and uses it. If some other provider was installed first, that one is used.
pub fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Reads a file, with the path in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}

/// Every certificate in PEM `bytes` (read from `path`), in order; at least one.
pub fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|err| format!("{}: not a PEM certificate file ({err})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key in PEM `bytes` (read from `path`).
pub fn private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|err| {
        format!(
            "{}: no private key found (expected PEM PKCS#8, PKCS#1 or SEC1: {err})",
            path.display()
        )
    })
}

/// A certificate chain and its key from two PEM files, checked to belong together.
pub fn certified_key(
    provider: &CryptoProvider,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, String> {
    let certs = certificates(cert_path, &read(cert_path)?)?;
    let key = private_key(key_path, &read(key_path)?)?;
    CertifiedKey::from_der(certs, key, provider).map_err(|err| {
        format!(
            "{} and {} do not make a usable certificate: {err}",
            cert_path.display(),
            key_path.display()
        )
    })
}

/// The CA certificates of a PEM file as a root store; at least one must be usable.
pub fn root_store(path: &Path) -> Result<RootCertStore, String> {
    let certs = certificates(path, &read(path)?)?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{}: none of its certificates is a usable CA certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// The DNS names a certificate is for (subjectAltName; the CN only when there is no SAN), lower case.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        return san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    Some(dns.to_ascii_lowercase())
                }
                _ => None,
            })
            .collect();
    }
    parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The subject of a certificate as an RFC 4514 string (`CN=client,O=Acme`), if it parses.
pub fn subject(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}

/// Whether `name` (a SNI host name) is covered by certificate name `pattern` (exact, or a
/// `*.` wildcard standing for exactly one label).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix));
    }
    pattern.eq_ignore_ascii_case(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(name_matches("*.example.org", "a.example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(name_matches("api.example.com", "API.example.com"));
        assert!(!name_matches("api.example.com", "www.example.com"));
    }
}
