//! Labels attached to samples: thread, pid, and any user tag.

use std::fmt;

/// Errors for a label that cannot be stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabelError {
    /// Label names follow Prometheus' rule: `[a-zA-Z_][a-zA-Z0-9_.]*`.
    #[error(
        "invalid label name {0:?}: use letters, digits, '_' and '.', not starting with a digit"
    )]
    InvalidName(String),
    /// Names and values longer than [`MAX_LABEL_LEN`] bytes are refused.
    #[error("label {0:?} is longer than {MAX_LABEL_LEN} bytes")]
    TooLong(String),
    /// `key=value` was expected.
    #[error("expected key=value, got {0:?}")]
    NotAPair(String),
}

/// Longest accepted label name or value, in bytes.
pub const MAX_LABEL_LEN: usize = 1024;

/// A set of `name=value` pairs, kept sorted by name so equal sets compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from pairs; a later pair with the same name wins.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut labels = Labels::new();
        for (k, v) in pairs {
            labels.set(k, v);
        }
        labels
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses a `key=value` tag as given on a command line, validating both sides.
    pub fn parse_pair(s: &str) -> Result<(String, String), LabelError> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| LabelError::NotAPair(s.to_owned()))?;
        let (k, v) = (k.trim(), v.trim());
        validate_name(k)?;
        if v.len() > MAX_LABEL_LEN {
            return Err(LabelError::TooLong(v.to_owned()));
        }
        Ok((k.to_owned(), v.to_owned()))
    }
}

/// Checks a label name against the Prometheus-style rule (dots allowed, as Pyroscope does).
pub fn validate_name(name: &str) -> Result<(), LabelError> {
    if name.len() > MAX_LABEL_LEN {
        return Err(LabelError::TooLong(name.to_owned()));
    }
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(LabelError::InvalidName(name.to_owned()))
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_replacing() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.to_string(), r#"{a="1",b="3"}"#);
    }

    #[test]
    fn pair_validation() {
        assert_eq!(
            Labels::parse_pair("region=us-east-1"),
            Ok(("region".into(), "us-east-1".into()))
        );
        assert!(matches!(
            Labels::parse_pair("1x=y"),
            Err(LabelError::InvalidName(_))
        ));
        assert!(matches!(
            Labels::parse_pair("novalue"),
            Err(LabelError::NotAPair(_))
        ));
    }
}
