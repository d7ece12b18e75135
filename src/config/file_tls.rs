//! The file model of TLS: `listeners[].tls` (termination) and `upstreams.NAME.tls` (origination).
//!
//! Kept apart from `file.rs` so the TLS keys can grow without touching the shared model. Paths are
//! read relative to the working directory, like every other path in the file.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::Duration;

/// TLS termination on a listener.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileListenerTls {
    /// Certificate/key pairs, picked by SNI; the first is served when no other matches.
    pub certificates: Vec<FileCertificate>,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: FileTlsVersion,
    /// Protocols offered by ALPN, in order of preference (default `[h2, http/1.1]`).
    pub alpn: Option<Vec<FileAlpn>>,
    /// Client certificates (mTLS): `mode: none | optional | required` and the `ca` they chain to.
    pub client_auth: Option<FileClientAuth>,
    /// A TLS handshake must finish within this (default 10s); slower ones are closed.
    pub handshake_timeout: Option<Duration>,
}

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    /// PEM file with the certificate chain, leaf first.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub enum FileTlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// `"1.2"` as the schema says, and also an unquoted `1.2`, which YAML reads as a number: a
/// version looks like one, and refusing it would only produce a confusing type error.
impl<'de> Deserialize<'de> for FileTlsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(f64),
        }
        let text = match Written::deserialize(deserializer) {
            Ok(Written::Text(text)) => text,
            Ok(Written::Number(number)) => number.to_string(),
            Err(_) => String::new(),
        };
        match text.as_str() {
            "1.2" => Ok(Self::Tls12),
            "1.3" => Ok(Self::Tls13),
            _ => Err(serde::de::Error::custom(format!(
                "unsupported TLS version {text:?}: expected \"1.2\" or \"1.3\""
            ))),
        }
    }
}

/// An ALPN protocol id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum FileAlpn {
    /// HTTP/2.
    #[serde(rename = "h2")]
    H2,
    /// HTTP/1.1.
    #[serde(rename = "http/1.1")]
    Http11,
}

/// Client certificate verification.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileClientAuth {
    /// `none` (default), `optional` (verified when sent) or `required` (handshake fails without one).
    #[serde(default)]
    pub mode: FileClientAuthMode,
    /// PEM file with the CA certificates client certificates must chain to.
    pub ca: Option<String>,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileClientAuthMode {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; verified when sent; clients without one are let in.
    Optional,
    /// Asked for and verified; clients without one fail the handshake.
    Required,
}

/// TLS to an upstream's `https://` targets.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamTls {
    /// PEM file with the CA certificates the targets' certificates must chain to (default: the
    /// system's roots).
    pub ca: Option<String>,
    /// Name sent as SNI and verified against the certificate (default: each target's host).
    pub server_name: Option<String>,
    /// PEM certificate chain presented to the upstream (upstream mTLS); needs `client_key`.
    pub client_cert: Option<String>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<String>,
}
