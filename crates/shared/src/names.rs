//! Validated names: app ids and topic names, and the rule for free text stored as a
//! name (no control characters).
//!
//! A value of these types has passed validation, so code that holds one never checks
//! again. Both deserialize through validation, so a bad name in a request body is a
//! clear 400 rather than a database error.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was rejected; the message is shown to API users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// An app id: a slug of 2-63 characters, lowercase ASCII letters, digits and `-`,
/// starting with a letter and not ending with `-`. It appears in URLs, so it is kept
/// to characters that never need escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppId(String);

impl AppId {
    /// Shortest accepted app id.
    pub const MIN_LEN: usize = 2;
    /// Longest accepted app id.
    pub const MAX_LEN: usize = 63;
    /// The rule [`AppId::parse`] applies, as the API document's pattern.
    pub const PATTERN: &'static str = "^[a-z][a-z0-9-]*[a-z0-9]$";

    /// Validates `value` as an app id.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let len = value.len();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(NameError(format!(
                "app id must be {} to {} characters long, got {len}",
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(NameError(
                "app id may contain only lowercase letters, digits and '-'".into(),
            ));
        }
        if !value.as_bytes()[0].is_ascii_lowercase() {
            return Err(NameError(
                "app id must start with a lowercase letter".into(),
            ));
        }
        if value.ends_with('-') {
            return Err(NameError("app id must not end with '-'".into()));
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A topic name: 1-200 characters of ASCII letters, digits and `. _ - : /`.
/// `*` is reserved for trigger patterns, so it never names a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

impl TopicName {
    /// Shortest accepted topic name.
    pub const MIN_LEN: usize = 1;
    /// Longest accepted topic name.
    pub const MAX_LEN: usize = 200;
    /// The characters [`TopicName::parse`] accepts, as the API document's pattern.
    pub const PATTERN: &'static str = "^[A-Za-z0-9._:/-]+$";

    /// Validates `value` as a topic name.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        if value.is_empty() {
            return Err(NameError("topic name must not be empty".into()));
        }
        if let Some(bad) = value.chars().find(|c| !is_topic_char(*c)) {
            let shown = if bad == '*' {
                "'*' is reserved for trigger patterns".to_owned()
            } else if bad.is_whitespace() {
                "whitespace is not allowed".to_owned()
            } else if bad.is_control() {
                "control characters are not allowed".to_owned()
            } else {
                format!("character {bad:?} is not allowed")
            };
            return Err(NameError(format!(
                "invalid topic name: {shown}; use letters, digits and . _ - : /"
            )));
        }
        if value.len() > Self::MAX_LEN {
            return Err(NameError(format!(
                "topic name must be at most {} characters, got {}",
                Self::MAX_LEN,
                value.len()
            )));
        }
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks free text that names something and is stored (an app's display name, a key's
/// name, an admin's email) for control characters (U+0000-U+001F, U+007F-U+009F): they
/// are invisible in the dashboard, garble logs and terminals, and PostgreSQL refuses
/// NUL outright. The error names `field`.
pub fn check_printable(field: &str, value: &str) -> Result<(), NameError> {
    match value.chars().find(|c| c.is_control()) {
        Some(bad) => Err(NameError(format!(
            "{field} must not contain control characters (found U+{:04X})",
            u32::from(bad)
        ))),
        None => Ok(()),
    }
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $ty {
            /// A string with the type's length bounds and pattern.
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(<$ty>::MIN_LEN))
                    .max_length(Some(<$ty>::MAX_LEN))
                    .pattern(Some(<$ty>::PATTERN))
                    .into()
            }
        }

        impl utoipa::ToSchema for $ty {}
    };
}

string_newtype_impls!(AppId);
string_newtype_impls!(TopicName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids() {
        for ok in ["ab", "shop", "my-app-2", &"a".repeat(63)] {
            assert!(AppId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "Shop",
            "2shop",
            "shop-",
            "sh op",
            "shop_1",
            &"a".repeat(64),
        ] {
            assert!(AppId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_names() {
        for ok in ["orders", "orders.created", "a/b:c_d-e", &"x".repeat(200)] {
            assert!(TopicName::parse(ok).is_ok(), "{ok}");
        }
        let err = TopicName::parse("orders.*").unwrap_err();
        assert!(err.0.contains("reserved"), "{err}");
        assert!(TopicName::parse("").unwrap_err().0.contains("empty"));
        assert!(TopicName::parse("a b")
            .unwrap_err()
            .0
            .contains("whitespace"));
        assert!(TopicName::parse("a\u{7}")
            .unwrap_err()
            .0
            .contains("control"));
        assert!(TopicName::parse("é").is_err());
        assert!(TopicName::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn printable_text_has_no_control_characters() {
        for ok in ["My Shop", "café ☕", "tab-less", ""] {
            assert!(check_printable("name", ok).is_ok(), "{ok}");
        }
        for bad in ["a\0b", "\n", "x\u{1f}", "\u{7f}", "\u{85}", "\u{9f}"] {
            let err = check_printable("app name", bad).unwrap_err();
            assert!(
                err.0.starts_with("app name must not contain control"),
                "{err}"
            );
        }
        assert!(check_printable("name", "a\0")
            .unwrap_err()
            .0
            .contains("U+0000"));
    }

    #[test]
    fn deserialize_validates() {
        let err = serde_json::from_str::<AppId>("\"Bad App\"").unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
        let id: AppId = serde_json::from_str("\"shop\"").unwrap();
        assert_eq!(id.as_str(), "shop");
    }
}
