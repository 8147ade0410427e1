//! Path clean-up: shorten file paths the way seed 004's `sed` step did, so flame graphs
//! show `django/db/models/query.py` instead of `/usr/local/lib/python3.11/site-packages/…`.

use regex::Regex;

use crate::frame::Frame;

/// Errors building [`PathRules`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A user rule was not `REGEX=REPLACEMENT`.
    #[error("rewrite rule {0:?} is not REGEX=REPLACEMENT")]
    NotARule(String),
    /// A user rule's regex does not compile.
    #[error("rewrite rule {rule:?}: {source}")]
    BadRegex {
        /// The rule as given.
        rule: String,
        /// Why the regex was refused.
        source: regex::Error,
    },
}

/// Ordered regex rewrites applied to frame file paths.
#[derive(Debug, Clone)]
pub struct PathRules {
    rules: Vec<(Regex, String)>,
}

/// Prefixes stripped by default: Python's site-packages and stdlib, virtualenvs, Ruby's
/// gem directories and stdlib.
const DEFAULT_RULES: &[(&str, &str)] = &[
    (r"^.*/(?:site|dist)-packages/", ""),
    (r"^.*/lib/python\d+(?:\.\d+)?/", ""),
    (r"^.*/gems/[^/]+/gems/([^/]+)/", "$1/"),
    (r"^.*/lib/ruby/(?:gems/)?\d+\.\d+\.\d+/", ""),
];

impl Default for PathRules {
    fn default() -> Self {
        PathRules::defaults()
    }
}

impl PathRules {
    /// No rewriting at all (`--full-paths`).
    pub fn none() -> Self {
        PathRules { rules: Vec::new() }
    }

    /// The default prefix stripping.
    pub fn defaults() -> Self {
        let rules = DEFAULT_RULES
            .iter()
            .map(|(re, to)| {
                (
                    Regex::new(re).expect("default rule compiles"),
                    (*to).to_owned(),
                )
            })
            .collect();
        PathRules { rules }
    }

    /// Appends a user rule written `REGEX=REPLACEMENT` (`$1` refers to groups). User rules
    /// run after the defaults, in the order given.
    pub fn push_rule(&mut self, rule: &str) -> Result<(), RuleError> {
        let (re, to) = rule
            .split_once('=')
            .ok_or_else(|| RuleError::NotARule(rule.to_owned()))?;
        let re = Regex::new(re).map_err(|source| RuleError::BadRegex {
            rule: rule.to_owned(),
            source,
        })?;
        self.rules.push((re, to.to_owned()));
        Ok(())
    }

    /// The path after every rule.
    pub fn apply(&self, path: &str) -> String {
        let mut out = path.to_owned();
        for (re, to) in &self.rules {
            if let std::borrow::Cow::Owned(changed) = re.replace(&out, to.as_str()) {
                out = changed;
            }
        }
        out
    }

    /// The frame with its file rewritten.
    pub fn apply_frame(&self, frame: &Frame) -> Frame {
        Frame {
            file: frame.file.as_deref().map(|f| self.apply(f)),
            ..frame.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_known_prefixes() {
        let r = PathRules::defaults();
        assert_eq!(
            r.apply("/usr/local/lib/python3.11/site-packages/django/db/models/query.py"),
            "django/db/models/query.py"
        );
        assert_eq!(r.apply("/usr/lib/python3.11/threading.py"), "threading.py");
        assert_eq!(
            r.apply("/var/lib/gems/3.1.0/gems/rack-2.2.4/lib/rack/builder.rb"),
            "rack-2.2.4/lib/rack/builder.rb"
        );
        assert_eq!(r.apply("/usr/lib/ruby/3.1.0/set.rb"), "set.rb");
        assert_eq!(r.apply("/srv/app/server.py"), "/srv/app/server.py");
    }

    #[test]
    fn user_rules_run_after_defaults() {
        let mut r = PathRules::defaults();
        r.push_rule("^/srv/app/=").unwrap();
        assert_eq!(r.apply("/srv/app/server.py"), "server.py");
        assert!(matches!(
            r.push_rule("no-equals"),
            Err(RuleError::NotARule(_))
        ));
        assert!(matches!(
            r.push_rule("(=x"),
            Err(RuleError::BadRegex { .. })
        ));
    }
}
