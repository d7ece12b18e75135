//! The file model of the security area: consumers, auth providers and the per-route policies
//! (`routes[].policies.{auth,ip,cors}`, `server.ip`). Same rules as `file.rs`: every struct denies
//! unknown fields, no `flatten`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::Duration;

/// Who calls the API; referenced by auth methods (`api_key`, `basic`) and, later, rate limits.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConsumer {
    /// Unique name, sent upstream as `Gantry-Consumer`.
    pub name: String,
    /// API keys of this consumer (`X-Api-Key` header or `?api_key=`); kept only as SHA-256 in memory.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Scopes granted to this consumer when it authenticates by API key or Basic credentials.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// HTTP Basic credentials, checked against an argon2 hash.
    pub basic_auth: Option<FileBasicAuth>,
    /// Free-form attributes; sent upstream as `Gantry-Consumer-<Key>` when a route lists them in
    /// `forward_metadata`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// HTTP Basic credentials of a consumer.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBasicAuth {
    /// The user name the client sends.
    pub username: String,
    /// PHC string of an argon2 hash (`$argon2id$v=19$...`), never the password itself.
    pub password_hash: String,
}

/// A named token verifier: exactly one of `jwt` and `oauth2_introspection`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAuthProvider {
    /// Bearer JWTs verified locally.
    pub jwt: Option<FileJwt>,
    /// Opaque bearer tokens checked with an RFC 7662 introspection endpoint.
    pub oauth2_introspection: Option<FileIntrospection>,
}

/// JWT verification settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileJwt {
    /// Required `iss`; omit to accept any issuer.
    pub issuer: Option<String>,
    /// Accepted `aud` values; one must match. Omit to accept tokens without checking `aud`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed algorithms, e.g. `[RS256, ES256]`; `none` does not exist here.
    pub algorithms: Vec<String>,
    /// Where to fetch the signing keys (a JWK set); cached, refetched on an unknown `kid`.
    pub jwks_url: Option<String>,
    /// Minimum time between two JWKS fetches (default 30s), so random `kid`s cannot hammer the IdP.
    pub jwks_refresh_interval: Option<Duration>,
    /// A static JWK set as JSON text (`{"keys":[...]}`).
    pub jwks: Option<String>,
    /// A static public key in PEM (RSA, EC or Ed25519) for the asymmetric algorithms.
    pub public_key_pem: Option<String>,
    /// Shared secret for the HS* algorithms.
    pub secret: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf` (default 0s).
    pub leeway: Option<Duration>,
    /// Claim naming the consumer (default `sub`).
    pub consumer_claim: Option<String>,
}

/// RFC 7662 token introspection settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileIntrospection {
    /// The introspection endpoint.
    pub url: String,
    /// Client id for HTTP Basic client authentication at the endpoint.
    pub client_id: String,
    /// Client secret for the same.
    pub client_secret: String,
    /// How long an answer is reused (default 60s; never past the token's `exp`).
    pub cache_for: Option<Duration>,
    /// Time allowed for one call to the endpoint (default 2s).
    pub timeout: Option<Duration>,
}

/// The policies of one route, applied in the fixed order of `policy` (ip, cors, auth).
/// New policy kinds are new optional fields.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePolicies {
    /// Who must authenticate, and how.
    pub auth: Option<FileAuthPolicy>,
    /// Client IP allow/deny lists.
    pub ip: Option<FileIpRules>,
    /// Cross-origin resource sharing.
    pub cors: Option<FileCors>,
    /// Rate limits and quotas; every entry must admit the request.
    #[serde(default)]
    pub rate_limit: Vec<super::file_rate_limit::FileRateLimit>,
}

/// Authentication and coarse authorization for a route.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAuthPolicy {
    /// `api_key`, `basic` or an `auth_providers` name; any one of them may succeed.
    pub methods: Vec<String>,
    /// Scopes the caller must all hold (JWT `scope`/`scp`, introspection `scope`); 403 otherwise.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims that must equal these values (string comparison); 403 otherwise.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Send `Gantry-Consumer`, `Gantry-Subject` and `Gantry-Scopes` upstream.
    #[serde(default)]
    pub forward_identity: bool,
    /// Consumer metadata keys sent upstream as `Gantry-Consumer-<Key>` (with `forward_identity`).
    #[serde(default)]
    pub forward_metadata: Vec<String>,
    /// Forward the credential (`Authorization`, `X-Api-Key`, `?api_key=`) upstream (default false).
    #[serde(default)]
    pub forward_credentials: bool,
}

/// Client IP rules: deny wins; with a non-empty `allow`, everything else is denied.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileIpRules {
    /// CIDRs or addresses allowed (empty = all).
    #[serde(default)]
    pub allow: Vec<String>,
    /// CIDRs or addresses denied.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// CORS for a route: the gateway answers preflights and decorates responses.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileCors {
    /// Exact origins (`https://app.example.com`), or `"*"` (not with `allow_credentials`).
    pub allow_origins: Vec<String>,
    /// Methods allowed cross-origin (default GET, HEAD, POST).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers allowed cross-origin (default: none beyond the safelisted ones).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and `Authorization` cross-origin; needs explicit origins.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age: Option<Duration>,
}
