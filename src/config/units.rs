//! Human units in the config: durations (`250ms`, `2s`, `1m`, `1h`) and sizes (`512B`, `32KiB`, `10MiB`).
//!
//! They parse at load time into plain numbers, so a bad unit is a located config error, not a
//! surprise at request time.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as `<integer><unit>` with unit `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Parses `250ms`, `2s`, `1m`, `1h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let value: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: expected e.g. 250ms, 2s, 1m, 1h"))?;
        let millis_per_unit = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unit must be ms, s, m or h"
                ));
            }
        };
        value
            .checked_mul(millis_per_unit)
            .map(|ms| Self(std::time::Duration::from_millis(ms)))
            .ok_or_else(|| format!("duration {text:?} is too large"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(ms|s|m|h)$",
            "description": "A duration: 250ms, 2s, 1m, 1h."
        })
    }
}

/// A size in bytes written as `<integer><unit>` with unit `B`, `KiB`, `MiB` or `GiB` (or a bare integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `512B`, `32KiB`, `10MiB`, `1GiB`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let value: u64 = number
            .parse()
            .map_err(|_| format!("invalid size {text:?}: expected e.g. 512B, 32KiB, 10MiB"))?;
        let multiplier: u64 = match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => {
                return Err(format!(
                    "invalid size {text:?}: unit must be B, KiB, MiB or GiB"
                ));
            }
        };
        value
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", n >> 30)
        } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}B")
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl de::Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 512B, 32KiB or 10MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "string", "pattern": "^[0-9]+(B|KiB|MiB|GiB)?$" },
                { "type": "integer", "minimum": 0 }
            ],
            "description": "A size: 512B, 32KiB, 10MiB, 1GiB, or a number of bytes."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(Duration::parse("250ms").unwrap().0.as_millis(), 250);
        assert_eq!(Duration::parse("2s").unwrap().0.as_secs(), 2);
        assert_eq!(Duration::parse("1m").unwrap().0.as_secs(), 60);
        assert_eq!(Duration::parse("1h").unwrap().0.as_secs(), 3600);
        assert!(Duration::parse("2").is_err());
        assert!(Duration::parse("2d").is_err());
        assert!(Duration::parse("-1s").is_err());
        assert!(Duration::parse("99999999999999999999h").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("512B").unwrap().0, 512);
        assert_eq!(ByteSize::parse("32KiB").unwrap().0, 32 * 1024);
        assert_eq!(ByteSize::parse("10MiB").unwrap().0, 10 << 20);
        assert!(ByteSize::parse("10MB").is_err());
        assert_eq!(ByteSize(32 * 1024).to_string(), "32KiB");
    }
}
