//! Config errors: each one names the file, the line and column, and the key path it is about.

use std::fmt;

/// One config problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to the loader.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Key path in serde_path_to_error syntax (`routes[3].match.path`); empty for the whole file.
    pub path: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.path, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one pass, in file order where it could be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Wraps a single error.
    pub fn one(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self::one(error)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(path: &str) -> ConfigError {
        ConfigError {
            file: "gantry.yaml".to_owned(),
            line: 42,
            column: 7,
            path: path.to_owned(),
            message: "unknown upstream \"user\"".to_owned(),
        }
    }

    #[test]
    fn display_with_and_without_path() {
        assert_eq!(
            error("routes[3].upstream").to_string(),
            "gantry.yaml:42:7: routes[3].upstream: unknown upstream \"user\""
        );
        assert_eq!(
            error("").to_string(),
            "gantry.yaml:42:7: unknown upstream \"user\""
        );
        let all = ConfigErrors(vec![error("a"), error("b")]);
        assert_eq!(all.to_string().lines().count(), 2);
    }
}
