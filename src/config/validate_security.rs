//! Semantic checks of the security area (consumers, auth providers, `server.ip`, route policies),
//! every problem located like the rest of `validate`.

use std::collections::HashMap;

use http::{HeaderName, Method};

use super::LoadedFile;
use super::error::ConfigError;
use super::file_security::{FileCors, FileIpRules, FileJwt};
use super::suggest;
use super::validate::check_credential;
use crate::policy::auth::jwt::{Family, family};

/// The built-in auth methods; any other name must be an `auth_providers` entry.
pub(crate) const BUILTIN_METHODS: [&str; 2] = ["api_key", "basic"];

/// Largest argon2 memory cost accepted in a `password_hash` (KiB): 64 MiB per check at most.
const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;

/// Appends every problem of the security area to `errors`.
pub(crate) fn validate(loaded: &LoadedFile, errors: &mut Vec<ConfigError>) {
    let mut v = Checker { loaded, errors };
    v.consumers();
    v.providers();
    if let Some(ip) = &loaded.config.server.ip {
        v.ip_rules("server.ip", ip);
    }
    v.routes();
}

struct Checker<'a> {
    loaded: &'a LoadedFile,
    errors: &'a mut Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.loaded.error(path, message));
    }

    fn credential(&mut self, path: &str, value: &str) {
        if let Some(error) = check_credential(self.loaded, path, value) {
            self.errors.push(error);
        }
    }

    fn consumers(&mut self) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut keys: HashMap<&str, usize> = HashMap::new();
        let mut users: HashMap<&str, usize> = HashMap::new();
        for (i, consumer) in self.loaded.config.consumers.iter().enumerate() {
            let base = format!("consumers[{i}]");
            if consumer.name.trim().is_empty() {
                self.error(&format!("{base}.name"), "a consumer name cannot be empty");
            } else if http::HeaderValue::from_str(&consumer.name).is_err() {
                self.error(
                    &format!("{base}.name"),
                    "must be printable text (it is sent as Gantry-Consumer)",
                );
            } else if let Some(first) = names.insert(&consumer.name, i) {
                self.error(
                    &format!("{base}.name"),
                    format!(
                        "duplicate consumer {:?} (first is consumers[{first}])",
                        consumer.name
                    ),
                );
            }
            for (j, key) in consumer.api_keys.iter().enumerate() {
                let path = format!("{base}.api_keys[{j}]");
                self.credential(&path, key);
                if !key.trim().is_empty()
                    && let Some(first) = keys.insert(key, i)
                {
                    self.error(
                        &path,
                        format!("this API key is already used by consumers[{first}]"),
                    );
                }
            }
            if let Some(basic) = &consumer.basic_auth {
                let path = format!("{base}.basic_auth.username");
                if basic.username.is_empty() || basic.username.contains(':') {
                    self.error(&path, "a user name must be non-empty and without ':'");
                } else if let Some(first) = users.insert(&basic.username, i) {
                    self.error(
                        &path,
                        format!("user name already used by consumers[{first}]"),
                    );
                }
                let path = format!("{base}.basic_auth.password_hash");
                self.credential(&path, &basic.password_hash);
                if let Some(problem) = argon2_problem(&basic.password_hash) {
                    self.error(&path, problem);
                }
            }
            for key in consumer.metadata.keys() {
                if HeaderName::from_bytes(format!("gantry-consumer-{key}").as_bytes()).is_err() {
                    self.error(
                        &format!("{base}.metadata.{key}"),
                        "metadata keys must be header-name characters",
                    );
                }
            }
        }
    }

    fn providers(&mut self) {
        for (name, provider) in &self.loaded.config.auth_providers {
            let base = format!("auth_providers.{name}");
            if BUILTIN_METHODS.contains(&name.as_str()) {
                self.errors.push(
                    self.loaded
                        .key_error(&base, format!("{name:?} is a built-in method name")),
                );
            }
            match (&provider.jwt, &provider.oauth2_introspection) {
                (Some(jwt), None) => self.jwt(&format!("{base}.jwt"), jwt),
                (None, Some(intro)) => {
                    let base = format!("{base}.oauth2_introspection");
                    self.url(&format!("{base}.url"), &intro.url);
                    self.credential(&format!("{base}.client_id"), &intro.client_id);
                    self.credential(&format!("{base}.client_secret"), &intro.client_secret);
                    if intro.timeout.is_some_and(|t| t.0.is_zero()) {
                        self.error(&format!("{base}.timeout"), "must be greater than 0");
                    }
                }
                _ => self.error(&base, "needs exactly one of jwt and oauth2_introspection"),
            }
        }
    }

    fn url(&mut self, path: &str, url: &str) {
        let ok = url.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        });
        if !ok {
            self.error(path, format!("{url:?} is not an http(s) URL"));
        }
    }

    fn jwt(&mut self, base: &str, jwt: &FileJwt) {
        let mut families = Vec::new();
        if jwt.algorithms.is_empty() {
            self.error(
                &format!("{base}.algorithms"),
                "list at least one algorithm, e.g. [RS256]",
            );
        }
        for (i, alg) in jwt.algorithms.iter().enumerate() {
            match alg.parse::<jsonwebtoken::Algorithm>() {
                Ok(alg) => families.push(family(alg)),
                Err(_) if alg.eq_ignore_ascii_case("none") => self.error(&format!("{base}.algorithms[{i}]"), "\"none\" is never accepted"),
                Err(_) => self.error(&format!("{base}.algorithms[{i}]"), format!("unknown algorithm {alg:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)")),
            }
        }
        let hmac = families.contains(&Family::Hmac);
        let asymmetric = families.iter().any(|f| *f != Family::Hmac);
        if let Some(secret) = &jwt.secret {
            self.credential(&format!("{base}.secret"), secret);
            if !hmac {
                self.error(
                    &format!("{base}.secret"),
                    "a secret is only used by HS* algorithms; list one or remove the secret",
                );
            }
        } else if hmac {
            self.error(
                &format!("{base}.algorithms"),
                "HS* algorithms need `secret` (a public key is never used as an HMAC secret)",
            );
        }
        if asymmetric
            && jwt.jwks_url.is_none()
            && jwt.jwks.is_none()
            && jwt.public_key_pem.is_none()
        {
            self.error(
                base,
                "asymmetric algorithms need keys: jwks_url, jwks or public_key_pem",
            );
        }
        if let Some(url) = &jwt.jwks_url {
            self.url(&format!("{base}.jwks_url"), url);
        }
        if let Some(pem) = &jwt.public_key_pem
            && super::compile_security::pem_key(pem).is_none()
        {
            self.error(
                &format!("{base}.public_key_pem"),
                "not an RSA, EC or Ed25519 public key in PEM",
            );
        }
        if let Some(jwks) = &jwt.jwks
            && crate::policy::auth::jwks::parse_jwks(jwks.as_bytes())
                .is_none_or(|keys| keys.is_empty())
        {
            self.error(
                &format!("{base}.jwks"),
                "not a JWK set with at least one usable public key",
            );
        }
        if let Some(claim) = &jwt.consumer_claim
            && claim.trim().is_empty()
        {
            self.error(&format!("{base}.consumer_claim"), "cannot be empty");
        }
    }

    fn ip_rules(&mut self, base: &str, rules: &FileIpRules) {
        for (list, entries) in [("allow", &rules.allow), ("deny", &rules.deny)] {
            for (i, entry) in entries.iter().enumerate() {
                if super::compile_security::parse_cidr(entry).is_none() {
                    self.error(
                        &format!("{base}.{list}[{i}]"),
                        format!("{entry:?} is not an IP address or CIDR"),
                    );
                }
            }
        }
    }

    fn cors(&mut self, base: &str, cors: &FileCors) {
        if cors.allow_origins.is_empty() {
            self.error(&format!("{base}.allow_origins"), "list at least one origin");
        }
        for (i, origin) in cors.allow_origins.iter().enumerate() {
            let path = format!("{base}.allow_origins[{i}]");
            if origin == "*" {
                if cors.allow_credentials {
                    self.error(
                        &path,
                        "\"*\" cannot be used with allow_credentials: list the origins",
                    );
                }
            } else if !valid_origin(origin) {
                self.error(
                    &path,
                    format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
                );
            }
        }
        for (i, method) in cors.allow_methods.iter().enumerate() {
            if Method::from_bytes(method.as_bytes()).is_err() {
                self.error(
                    &format!("{base}.allow_methods[{i}]"),
                    format!("{method:?} is not a method"),
                );
            }
        }
        for (list, names) in [
            ("allow_headers", &cors.allow_headers),
            ("expose_headers", &cors.expose_headers),
        ] {
            for (i, name) in names.iter().enumerate() {
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    self.error(
                        &format!("{base}.{list}[{i}]"),
                        format!("{name:?} is not a header name"),
                    );
                }
            }
        }
    }

    fn routes(&mut self) {
        let providers = &self.loaded.config.auth_providers;
        for (i, route) in self.loaded.config.routes.iter().enumerate() {
            let Some(policies) = &route.policies else {
                continue;
            };
            let base = format!("routes[{i}].policies");
            if let Some(ip) = &policies.ip {
                self.ip_rules(&format!("{base}.ip"), ip);
            }
            if let Some(cors) = &policies.cors {
                self.cors(&format!("{base}.cors"), cors);
            }
            let Some(auth) = &policies.auth else {
                continue;
            };
            if auth.methods.is_empty() {
                self.error(
                    &format!("{base}.auth.methods"),
                    "list at least one method: api_key, basic or an auth_providers name",
                );
            }
            for (j, method) in auth.methods.iter().enumerate() {
                if BUILTIN_METHODS.contains(&method.as_str()) || providers.contains_key(method) {
                    continue;
                }
                let mut message = format!(
                    "unknown auth method {method:?}: expected api_key, basic or an auth_providers name"
                );
                let names = BUILTIN_METHODS
                    .iter()
                    .copied()
                    .chain(providers.keys().map(String::as_str));
                if let Some(close) = suggest::closest(method, names) {
                    message.push_str(&format!(" (did you mean {close:?}?)"));
                }
                self.error(&format!("{base}.auth.methods[{j}]"), message);
            }
            for (j, key) in auth.forward_metadata.iter().enumerate() {
                if HeaderName::from_bytes(format!("gantry-consumer-{key}").as_bytes()).is_err() {
                    self.error(
                        &format!("{base}.auth.forward_metadata[{j}]"),
                        "must be header-name characters",
                    );
                }
            }
        }
    }
}

fn valid_origin(origin: &str) -> bool {
    let Ok(uri) = origin.parse::<http::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.authority().is_some()
        && uri
            .path_and_query()
            .is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/")
        && !origin.ends_with('/')
}

/// Checks the PHC shape `$argon2<variant>$v=<n>$m=<KiB>,t=<n>,p=<n>$<salt>$<hash>` and the
/// memory cost. The shape is checked by hand rather than by `argon2::PasswordHash` so that a
/// placeholder hash with a short output (as in the shared example) still loads; it just never
/// matches a password.
fn argon2_problem(hash: &str) -> Option<String> {
    const SHAPE: &str =
        "not an argon2 PHC hash string ($argon2id$v=19$m=...,t=...,p=...$salt$hash)";
    let parts: Vec<&str> = hash.split('$').collect();
    let [empty, algorithm, version, params, salt, output] = parts.as_slice() else {
        return Some(SHAPE.to_owned());
    };
    let b64 = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    let version_ok = version
        .strip_prefix("v=")
        .is_some_and(|v| v.parse::<u32>().is_ok());
    let shape_ok = empty.is_empty()
        && matches!(*algorithm, "argon2id" | "argon2i" | "argon2d")
        && version_ok
        && b64(salt)
        && b64(output);
    if !shape_ok {
        return Some(SHAPE.to_owned());
    }
    let mut memory = None;
    for pair in params.split(',') {
        let Some((name, value)) = pair.split_once('=') else {
            return Some(SHAPE.to_owned());
        };
        let Ok(value) = value.parse::<u32>() else {
            return Some(SHAPE.to_owned());
        };
        match name {
            "m" => memory = Some(value),
            "t" | "p" if value > 0 => {}
            _ => return Some(SHAPE.to_owned()),
        }
    }
    match memory {
        None => Some(SHAPE.to_owned()),
        Some(m) if m > MAX_ARGON2_MEMORY_KIB => Some(format!(
            "memory cost {m} KiB is above the {MAX_ARGON2_MEMORY_KIB} KiB allowed per check"
        )),
        Some(_) => None,
    }
}
