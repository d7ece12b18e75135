//! `${VAR}` and `${VAR:-default}` substitution inside scalar values.
//!
//! It runs on each scalar after the YAML is parsed, so an environment value can never add YAML
//! structure and every location stays exact. `$${` writes a literal `${`. As in the shell,
//! `${VAR:-default}` uses the default when `VAR` is unset or empty.

/// The result of substituting one scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Substitution {
    /// The text with every reference replaced.
    pub(crate) text: String,
    /// Whether at least one `${…}` reference was replaced (escapes do not count).
    pub(crate) replaced: bool,
}

/// Replaces every `${VAR}` / `${VAR:-default}` in `text` using `env`.
pub(crate) fn substitute(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Substitution, String> {
    let mut out = String::with_capacity(text.len());
    let mut replaced = false;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let tail = &rest[dollar..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(close) = after.find('}') else {
                return Err("unterminated ${ (write $${ for a literal ${)".to_owned());
            };
            let inner = &after[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_variable_name(name) {
                return Err(format!(
                    "invalid environment variable name {name:?} in ${{{inner}}}: use letters, digits and _"
                ));
            }
            let value = match (env(name), default) {
                (Some(value), Some(default)) if value.is_empty() => default.to_owned(),
                (Some(value), _) => value,
                (None, Some(default)) => default.to_owned(),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            };
            out.push_str(&value);
            replaced = true;
            rest = &after[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Substitution {
        text: out,
        replaced,
    })
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".to_owned()),
            "EMPTY" => Some(String::new()),
            "TRICKY" => Some("a: [x]".to_owned()),
            _ => None,
        }
    }

    fn sub(text: &str) -> Result<String, String> {
        substitute(text, &env).map(|s| s.text)
    }

    #[test]
    fn substitutes_set_unset_default_and_escape() {
        assert_eq!(sub("127.0.0.1:${PORT}").unwrap(), "127.0.0.1:8080");
        assert_eq!(sub("${NOPE:-redis://x:1}").unwrap(), "redis://x:1");
        assert_eq!(sub("${EMPTY:-fallback}").unwrap(), "fallback");
        assert_eq!(sub("${EMPTY}").unwrap(), "");
        assert_eq!(sub("${NOPE:-}").unwrap(), "");
        assert_eq!(sub("$${PORT} costs $5").unwrap(), "${PORT} costs $5");
        assert_eq!(sub("${TRICKY}").unwrap(), "a: [x]");
        assert_eq!(
            sub("${NOPE}").unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(sub("${PORT").unwrap_err().contains("unterminated"));
        assert!(
            sub("${1X}")
                .unwrap_err()
                .contains("invalid environment variable name")
        );
        assert!(!substitute("$${X}", &env).unwrap().replaced);
        assert!(substitute("${PORT}", &env).unwrap().replaced);
    }
}
