//! File model → runtime model for the security area: consumers and their credentials, auth
//! providers (JWKS caches carried over across reloads by provider name and URL), `server.ip`
//! and the per-route policies with every header value rendered once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;
use jsonwebtoken::DecodingKey;

use super::file::FileRoute;
use super::file_security::{FileCors, FileIpRules, FileJwt};
use super::{ConfigError, LoadedFile};
use crate::policy::auth::jwks::{JwksCache, parse_jwks};
use crate::policy::auth::jwt::{Family, JwtVerifier, VerifyingKey};
use crate::policy::auth::{
    ApiKeys, AuthMethod, AuthPolicy, BasicVerifier, Consumer, Introspector, Provider, Security,
};
use crate::policy::cache::BoundedCache;
use crate::policy::clock::{self, SharedClock};
use crate::policy::{CorsPolicy, IpRules, RoutePolicies};

/// Defaults of the security area, documented in the README.
pub(crate) mod defaults {
    /// Minimum time between two JWKS fetches.
    pub const JWKS_REFRESH_SECS: u64 = 30;
    /// Introspection answers are reused this long.
    pub const INTROSPECTION_CACHE_SECS: u64 = 60;
    /// One introspection or JWKS call may take this long.
    pub const IDP_TIMEOUT_SECS: u64 = 2;
    /// Entries in each credential cache (introspection answers, Basic successes).
    pub const CACHE_CAPACITY: usize = 10_000;
    /// Successful Basic checks are reused this long.
    pub const BASIC_CACHE_SECS: u64 = 60;
}

/// A CIDR or a bare address (as a /32 or /128).
pub(crate) fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// A public key in PEM with its family: RSA, then EC, then Ed25519.
pub(crate) fn pem_key(pem: &str) -> Option<(DecodingKey, Family)> {
    let bytes = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Some((key, Family::Rsa));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        return Some((key, Family::Ec));
    }
    DecodingKey::from_ed_pem(bytes)
        .ok()
        .map(|key| (key, Family::Ed))
}

fn ip_rules(rules: &FileIpRules) -> IpRules {
    IpRules {
        allow: rules.allow.iter().filter_map(|s| parse_cidr(s)).collect(),
        deny: rules.deny.iter().filter_map(|s| parse_cidr(s)).collect(),
    }
}

fn http_client(timeout: Duration) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // An IdP answer that redirects elsewhere is not followed: keys come from the URL configured.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()
}

/// Compiles consumers, providers and `server.ip`.
pub(crate) fn security(
    loaded: &LoadedFile,
    previous: Option<&Security>,
    errors: &mut Vec<ConfigError>,
) -> Security {
    security_with_clock(loaded, previous, errors, &clock::system())
}

fn security_with_clock(
    loaded: &LoadedFile,
    previous: Option<&Security>,
    errors: &mut Vec<ConfigError>,
    clock: &SharedClock,
) -> Security {
    let file = &loaded.config;
    let mut consumers = Vec::with_capacity(file.consumers.len());
    let mut by_name = HashMap::new();
    let mut api_keys = ApiKeys::default();
    let mut basic: Option<BasicVerifier> = None;
    for (index, consumer) in file.consumers.iter().enumerate() {
        by_name.insert(consumer.name.clone(), index);
        for key in &consumer.api_keys {
            api_keys.add(key, index);
        }
        if let Some(credentials) = &consumer.basic_auth {
            basic
                .get_or_insert_with(|| {
                    let cores = std::thread::available_parallelism().map_or(2, usize::from);
                    BasicVerifier::new(
                        cores,
                        defaults::CACHE_CAPACITY,
                        defaults::BASIC_CACHE_SECS * 1000,
                        Arc::clone(clock),
                    )
                })
                .add(&credentials.username, &credentials.password_hash, index);
        }
        consumers.push(Consumer {
            name: Arc::from(consumer.name.as_str()),
            scopes: consumer.scopes.clone(),
            metadata: consumer.metadata.clone(),
        });
    }
    let mut providers = HashMap::new();
    for (name, provider) in &file.auth_providers {
        let base = format!("auth_providers.{name}");
        let compiled = if let Some(jwt) = &provider.jwt {
            let old = previous.and_then(|p| match p.providers.get(name) {
                Some(Provider::Jwt(old)) => old.jwks.clone(),
                _ => None,
            });
            jwt_verifier(
                loaded,
                name,
                &format!("{base}.jwt"),
                jwt,
                old,
                clock,
                errors,
            )
            .map(|v| Provider::Jwt(Arc::new(v)))
        } else if let Some(intro) = &provider.oauth2_introspection {
            let timeout = intro
                .timeout
                .map_or(Duration::from_secs(defaults::IDP_TIMEOUT_SECS), |d| d.0);
            match http_client(timeout) {
                Some(client) => Some(Provider::Introspection(Arc::new(Introspector {
                    url: intro.url.clone(),
                    client_id: intro.client_id.clone(),
                    client_secret: intro.client_secret.clone(),
                    client,
                    cache_for_ms: intro
                        .cache_for
                        .map_or(defaults::INTROSPECTION_CACHE_SECS * 1000, |d| {
                            u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX)
                        }),
                    cache: BoundedCache::new(defaults::CACHE_CAPACITY),
                    calls: AtomicU64::new(0),
                    clock: Arc::clone(clock),
                    permits: tokio::sync::Semaphore::new(
                        crate::policy::auth::introspection::MAX_CONCURRENT_CALLS,
                    ),
                }))),
                None => {
                    errors.push(loaded.error(&base, "cannot build an HTTP client (TLS roots?)"));
                    None
                }
            }
        } else {
            None
        };
        if let Some(compiled) = compiled {
            providers.insert(name.clone(), compiled);
        }
    }
    Security {
        consumers,
        by_name,
        api_keys,
        basic,
        providers,
        global_ip: file.server.ip.as_ref().map(ip_rules),
    }
}

fn jwt_verifier(
    loaded: &LoadedFile,
    name: &str,
    base: &str,
    jwt: &FileJwt,
    previous_jwks: Option<Arc<JwksCache>>,
    clock: &SharedClock,
    errors: &mut Vec<ConfigError>,
) -> Option<JwtVerifier> {
    let algorithms: Vec<jsonwebtoken::Algorithm> = jwt
        .algorithms
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut static_keys = Vec::new();
    if let Some(secret) = &jwt.secret {
        static_keys.push(VerifyingKey {
            kid: None,
            alg: None,
            family: Family::Hmac,
            key: Arc::new(DecodingKey::from_secret(secret.as_bytes())),
        });
    }
    if let Some(pem) = &jwt.public_key_pem
        && let Some((key, family)) = pem_key(pem)
    {
        static_keys.push(VerifyingKey {
            kid: None,
            alg: None,
            family,
            key: Arc::new(key),
        });
    }
    if let Some(jwks) = &jwt.jwks {
        static_keys.extend(parse_jwks(jwks.as_bytes()).unwrap_or_default());
    }
    // Public keys never verify an HMAC token: only the secret has the Hmac family.
    debug_assert!(
        static_keys
            .iter()
            .all(|k| k.family != Family::Hmac || jwt.secret.is_some())
    );
    let jwks = match &jwt.jwks_url {
        None => None,
        Some(url) => {
            let interval = jwt
                .jwks_refresh_interval
                .map_or(Duration::from_secs(defaults::JWKS_REFRESH_SECS), |d| d.0);
            match previous_jwks.filter(|old| old.same_source(url, interval)) {
                Some(old) => Some(old),
                None => match http_client(Duration::from_secs(defaults::IDP_TIMEOUT_SECS)) {
                    Some(client) => Some(Arc::new(JwksCache::new(
                        url.clone(),
                        client,
                        interval,
                        Arc::clone(clock),
                    ))),
                    None => {
                        errors.push(loaded.error(
                            format!("{base}.jwks_url"),
                            "cannot build an HTTP client (TLS roots?)",
                        ));
                        return None;
                    }
                },
            }
        }
    };
    Some(JwtVerifier {
        name: name.to_owned(),
        algorithms,
        issuer: jwt.issuer.clone(),
        audiences: jwt.audiences.clone(),
        leeway_secs: jwt.leeway.map_or(0, |d| d.0.as_secs()),
        consumer_claim: jwt
            .consumer_claim
            .clone()
            .unwrap_or_else(|| "sub".to_owned()),
        static_keys,
        jwks,
        clock: Arc::clone(clock),
        verified: BoundedCache::new(defaults::CACHE_CAPACITY),
    })
}

fn cors_policy(cors: &FileCors) -> CorsPolicy {
    let origins = cors
        .allow_origins
        .iter()
        .filter(|o| *o != "*")
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let mut methods: Vec<Method> = cors
        .allow_methods
        .iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect();
    if methods.is_empty() {
        methods = vec![Method::GET, Method::HEAD, Method::POST];
    }
    let join = |items: &[String]| -> Option<HeaderValue> {
        (!items.is_empty())
            .then(|| HeaderValue::from_str(&items.join(", ")).ok())
            .flatten()
    };
    let method_names: Vec<String> = methods.iter().map(ToString::to_string).collect();
    CorsPolicy {
        origins,
        any_origin: cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials,
        methods_header: join(&method_names).unwrap_or_else(|| HeaderValue::from_static("GET")),
        methods,
        headers: cors
            .allow_headers
            .iter()
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .collect(),
        headers_header: join(&cors.allow_headers),
        expose_header: join(&cors.expose_headers),
        credentials: cors.allow_credentials,
        max_age: cors.max_age.map(|d| HeaderValue::from(d.0.as_secs())),
    }
}

/// The compiled policies of `routes[index]`; `None` when it has none.
pub(crate) fn route_policies(
    loaded: &LoadedFile,
    index: usize,
    route: &FileRoute,
    security: &Security,
    errors: &mut Vec<ConfigError>,
) -> Option<Box<RoutePolicies>> {
    let policies = route.policies.as_ref()?;
    let auth = match &policies.auth {
        None => None,
        Some(auth) => {
            let mut methods = Vec::new();
            let mut challenges: Vec<HeaderValue> = Vec::new();
            let mut push = |value: &'static str| {
                let value = HeaderValue::from_static(value);
                if !challenges.contains(&value) {
                    challenges.push(value);
                }
            };
            for (j, method) in auth.methods.iter().enumerate() {
                match method.as_str() {
                    "api_key" => {
                        methods.push(AuthMethod::ApiKey);
                        push("ApiKey header=\"X-Api-Key\"");
                    }
                    "basic" => {
                        methods.push(AuthMethod::Basic);
                        push("Basic realm=\"gantry\", charset=\"UTF-8\"");
                    }
                    name => match security.providers.get(name) {
                        Some(provider) => {
                            methods.push(AuthMethod::Provider(provider.clone()));
                            push("Bearer realm=\"gantry\"");
                        }
                        None => errors.push(loaded.error(
                            format!("routes[{index}].policies.auth.methods[{j}]"),
                            format!("unknown auth method {name:?}"),
                        )),
                    },
                }
            }
            Some(AuthPolicy {
                methods,
                scopes: auth.scopes.clone(),
                claims: auth
                    .claims
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                forward_identity: auth.forward_identity,
                forward_metadata: auth
                    .forward_metadata
                    .iter()
                    .filter_map(|key| {
                        let header = HeaderName::from_bytes(
                            format!("gantry-consumer-{key}")
                                .to_ascii_lowercase()
                                .as_bytes(),
                        )
                        .ok()?;
                        Some((key.clone(), header))
                    })
                    .collect(),
                forward_credentials: auth.forward_credentials,
                invalid_token_challenges: challenges
                    .iter()
                    .map(|c| {
                        if c.as_bytes().starts_with(b"Bearer ") {
                            HeaderValue::from_static(
                                "Bearer realm=\"gantry\", error=\"invalid_token\"",
                            )
                        } else {
                            c.clone()
                        }
                    })
                    .collect(),
                challenges: Arc::from(challenges),
            })
        }
    };
    Some(Box::new(RoutePolicies {
        ip: policies.ip.as_ref().map(ip_rules),
        cors: policies.cors.as_ref().map(cors_policy),
        auth,
        rate_limit: None,
    }))
}
