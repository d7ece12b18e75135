//! API keys: kept only as SHA-256 digests, compared in constant time against every configured key.

use subtle::ConstantTimeEq;

use super::{API_KEY_HEADER, API_KEY_PARAM, AuthFailure};
use crate::policy::cache::key as digest;

/// The longest API key accepted; longer ones are refused before hashing.
const MAX_KEY_BYTES: usize = 512;

/// Digests of every configured key with the consumer they belong to.
#[derive(Debug, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], usize)>,
}

impl ApiKeys {
    /// Adds `key` for consumer `index`.
    pub fn add(&mut self, key: &str, index: usize) {
        self.keys.push((digest(&[key.as_bytes()]), index));
    }

    /// The consumer owning `key`. Every entry is compared, without an early exit, so timing
    /// says nothing about which key (or how much of a digest) matched.
    pub fn verify(&self, key: &[u8]) -> Result<usize, AuthFailure> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(AuthFailure::Invalid("invalid API key"));
        }
        let given = digest(&[key]);
        let mut found: Option<usize> = None;
        for (stored, index) in &self.keys {
            if bool::from(stored.ct_eq(&given)) {
                found = Some(*index);
            }
        }
        found.ok_or(AuthFailure::Invalid("invalid API key"))
    }
}

/// The API key from `X-Api-Key`, else from `?api_key=`; two different keys are an error.
pub fn credential(
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Option<Result<String, AuthFailure>> {
    let mut header_values = headers.get_all(API_KEY_HEADER).iter();
    let from_header = header_values.next();
    if header_values.next().is_some() {
        return Some(Err(AuthFailure::Invalid("more than one X-Api-Key header")));
    }
    if let Some(value) = from_header {
        return Some(
            value
                .to_str()
                .map(|v| v.trim().to_owned())
                .map_err(|_| AuthFailure::Invalid("invalid API key")),
        );
    }
    let query = query?;
    let mut found = None;
    for pair in query.split('&') {
        if let Some((name, value)) = pair.split_once('=')
            && name == API_KEY_PARAM
        {
            if found.is_some() {
                return Some(Err(AuthFailure::Invalid("more than one api_key parameter")));
            }
            found = Some(percent_decode(value));
        }
    }
    found
}

fn percent_decode(value: &str) -> Result<String, AuthFailure> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(AuthFailure::Invalid("invalid API key"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| AuthFailure::Invalid("invalid API key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_consumer() {
        let mut keys = ApiKeys::default();
        keys.add("alpha", 0);
        keys.add("beta", 1);
        assert_eq!(keys.verify(b"beta"), Ok(1));
        assert!(keys.verify(b"gamma").is_err());
        assert!(keys.verify(b"").is_err());
        assert!(keys.verify(&[b'a'; 600]).is_err());
    }

    #[test]
    fn the_query_parameter_is_decoded_and_duplicates_refused() {
        let h = http::HeaderMap::new();
        assert_eq!(
            credential(&h, Some("x=1&api_key=a%2Bb")),
            Some(Ok("a+b".into()))
        );
        assert!(matches!(
            credential(&h, Some("api_key=a&api_key=b")),
            Some(Err(_))
        ));
        assert_eq!(credential(&h, Some("x=1")), None);
    }
}
