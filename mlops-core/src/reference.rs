//! Model references: how a caller names a model version without knowing where it lives.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The longest model name or alias accepted.
pub const MAX_NAME_LEN: usize = 128;

/// A reference to one version of a registered model, in the forms MLflow users know:
///
/// | text | meaning |
/// |---|---|
/// | `mlp` | the latest ready version of `mlp` |
/// | `mlp/latest` | the same |
/// | `mlp/7` | version 7 |
/// | `mlp@production` | the version the alias `production` points at |
/// | `models:/mlp/7`, `models:/mlp@production` | MLflow's URI forms of the above |
///
/// ```
/// use mlops_core::{ModelRef, VersionSelector};
///
/// let r: ModelRef = "models:/fraud@production".parse()?;
/// assert_eq!(r.name, "fraud");
/// assert_eq!(r.selector, VersionSelector::Alias("production".into()));
/// assert_eq!(r.to_string(), "fraud@production");
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// The registered model's name.
    pub name: String,
    /// Which of its versions.
    pub selector: VersionSelector,
}

/// Which version of a model a [`ModelRef`] means.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VersionSelector {
    /// The highest-numbered ready version.
    Latest,
    /// One version number (from 1).
    Version(u64),
    /// The version an alias points at.
    Alias(String),
}

impl ModelRef {
    /// Parses any of the forms in the type's documentation.
    pub fn parse(text: &str) -> Result<Self> {
        let body = text.strip_prefix("models:/").unwrap_or(text);
        let invalid = |reason: String| Error::InvalidReference {
            reference: text.to_owned(),
            reason,
        };
        let (name, selector) = if let Some((name, alias)) = body.split_once('@') {
            validate_alias(alias).map_err(|e| invalid(e.to_string()))?;
            (name, VersionSelector::Alias(alias.to_owned()))
        } else if let Some((name, version)) = body.split_once('/') {
            let selector = if version == "latest" {
                VersionSelector::Latest
            } else {
                match version.parse::<u64>() {
                    Ok(v) if v > 0 && !version.starts_with('+') => VersionSelector::Version(v),
                    _ => {
                        return Err(invalid(format!(
                            "'{version}' is not a version number (1, 2, ...) or 'latest'"
                        )));
                    }
                }
            };
            (name, selector)
        } else {
            (body, VersionSelector::Latest)
        };
        validate_model_name(name).map_err(|e| invalid(e.to_string()))?;
        Ok(ModelRef {
            name: name.to_owned(),
            selector,
        })
    }

    /// The latest version of `name`.
    pub fn latest(name: impl Into<String>) -> Self {
        ModelRef {
            name: name.into(),
            selector: VersionSelector::Latest,
        }
    }

    /// Version `version` of `name`.
    pub fn version(name: impl Into<String>, version: u64) -> Self {
        ModelRef {
            name: name.into(),
            selector: VersionSelector::Version(version),
        }
    }

    /// The version of `name` that `alias` points at.
    pub fn alias(name: impl Into<String>, alias: impl Into<String>) -> Self {
        ModelRef {
            name: name.into(),
            selector: VersionSelector::Alias(alias.into()),
        }
    }

    /// The MLflow URI form: `models:/name/7`, `models:/name@alias`, `models:/name/latest`.
    pub fn to_uri(&self) -> String {
        match &self.selector {
            VersionSelector::Latest => format!("models:/{}/latest", self.name),
            _ => format!("models:/{self}"),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            VersionSelector::Latest => f.write_str(&self.name),
            VersionSelector::Version(v) => write!(f, "{}/{v}", self.name),
            VersionSelector::Alias(a) => write!(f, "{}@{a}", self.name),
        }
    }
}

impl FromStr for ModelRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ModelRef::parse(s)
    }
}

/// Checks a registered model's name: 1 to [`MAX_NAME_LEN`] characters of ASCII letters,
/// digits, `.`, `_` and `-`, starting with a letter or digit. The characters that separate
/// a reference (`/`, `@`, `:`) and anything a path or URL would need to escape are refused.
pub fn validate_model_name(name: &str) -> Result<()> {
    validate_token(name, "model name", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })?;
    if name.ends_with('.') {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: "a model name cannot end with '.'".into(),
        });
    }
    Ok(())
}

/// Checks an alias: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `_` and `-`, starting with
/// a letter; `latest` is reserved (it means the highest ready version).
pub fn validate_alias(alias: &str) -> Result<()> {
    validate_token(alias, "alias", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
    })?;
    if !alias.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(Error::InvalidName {
            name: alias.to_owned(),
            reason: "an alias must start with a letter".into(),
        });
    }
    if alias == "latest" {
        return Err(Error::InvalidName {
            name: alias.to_owned(),
            reason: "'latest' is reserved: it means the highest ready version".into(),
        });
    }
    Ok(())
}

fn validate_token(text: &str, what: &str, allowed: impl Fn(char) -> bool) -> Result<()> {
    let bad = |reason: String| {
        Err(Error::InvalidName {
            name: text.to_owned(),
            reason,
        })
    };
    if text.is_empty() {
        return bad(format!("a {what} cannot be empty"));
    }
    if text.len() > MAX_NAME_LEN {
        return bad(format!(
            "a {what} has at most {MAX_NAME_LEN} characters, this one {}",
            text.len()
        ));
    }
    if let Some(c) = text.chars().find(|&c| !allowed(c)) {
        return bad(format!("{c:?} is not allowed in a {what}"));
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad(format!("a {what} must start with a letter or digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        let cases = [
            ("mlp", ModelRef::latest("mlp"), "mlp"),
            ("mlp/latest", ModelRef::latest("mlp"), "mlp"),
            ("mlp/7", ModelRef::version("mlp", 7), "mlp/7"),
            (
                "mlp@production",
                ModelRef::alias("mlp", "production"),
                "mlp@production",
            ),
            ("models:/mlp/7", ModelRef::version("mlp", 7), "mlp/7"),
            (
                "models:/my-model.v2@champ_1",
                ModelRef::alias("my-model.v2", "champ_1"),
                "my-model.v2@champ_1",
            ),
        ];
        for (text, want, display) in cases {
            let got = ModelRef::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), display);
        }
        assert_eq!(ModelRef::version("a", 3).to_uri(), "models:/a/3");
        assert_eq!(ModelRef::latest("a").to_uri(), "models:/a/latest");
    }

    #[test]
    fn bad_references_say_why() {
        for (text, needle) in [
            ("", "cannot be empty"),
            ("mlp/0", "not a version number"),
            ("mlp/-1", "not a version number"),
            ("mlp/+3", "not a version number"),
            ("mlp/x", "not a version number"),
            ("mlp/1/2", "not a version number"),
            ("mlp@", "cannot be empty"),
            ("mlp@latest", "reserved"),
            ("mlp@9lives", "start with a letter"),
            ("mlp@a/b", "'/' is not allowed"),
            ("../etc@prod", "'/' is not allowed"),
            ("a b", "' ' is not allowed"),
            ("-x", "must start with a letter or digit"),
            ("x.", "cannot end with '.'"),
            ("a\0b", "'\\0' is not allowed"),
        ] {
            let err = ModelRef::parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let long = "m".repeat(MAX_NAME_LEN + 1);
        assert!(validate_model_name(&long).is_err());
        assert!(validate_model_name(&long[..MAX_NAME_LEN]).is_ok());
    }
}
