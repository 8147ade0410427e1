//! The auth file's format: parsed once into [`Tokens`], refusing anything doubtful, since
//! a typo here (a misspelt key silently ignored, two entries for one token) would open
//! or close the server in ways nobody meant.

use std::collections::HashMap;

use super::{sha256, Entry, Scope, Scopes, Tokens};
use crate::tenant::TenantId;

/// Shortest plain `token` accepted: a short secret can be guessed. Tokens from
/// `embers token new` are 71 characters.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// Why an auth file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFileError {
    /// The file could not be read.
    #[error("reading the auth file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or keys or values of the wrong kind (unknown keys included).
    #[error("the auth file is not valid: {0}")]
    Syntax(String),
    /// No `[[tokens]]` at all: every request would be refused.
    #[error("the auth file has no [[tokens]]: every request would be refused (make one with `embers token new`)")]
    Empty,
    /// One entry is wrong.
    #[error("[[tokens]] entry {index} ({label}): {problem}")]
    Entry {
        /// 1-based position in the file.
        index: usize,
        /// Its name, or "unnamed".
        label: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    tokens: Vec<EntryToml>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryToml {
    name: Option<String>,
    token: Option<String>,
    token_sha256: Option<String>,
    tenant: Option<String>,
    scopes: Vec<Scope>,
}

/// Parses an auth file's text.
pub fn parse(text: &str) -> Result<Tokens, AuthFileError> {
    let file: FileToml = toml::from_str(text).map_err(|e| syntax(text, &e))?;
    if file.tokens.is_empty() {
        return Err(AuthFileError::Empty);
    }
    let mut seen: HashMap<[u8; 32], usize> = HashMap::new();
    let mut entries = Vec::with_capacity(file.tokens.len());
    let plaintext = file.tokens.iter().any(|t| t.token.is_some());
    for (i, raw) in file.tokens.into_iter().enumerate() {
        let index = i + 1;
        let problem = |problem: String| AuthFileError::Entry {
            index,
            label: raw.name.clone().unwrap_or_else(|| "unnamed".into()),
            problem,
        };
        let digest = match (&raw.token, &raw.token_sha256) {
            (Some(_), Some(_)) => {
                return Err(problem(
                    "give either token or token_sha256, not both".into(),
                ))
            }
            (None, None) => return Err(problem("token or token_sha256 is missing".into())),
            (Some(token), None) => {
                if token.len() < MIN_TOKEN_LENGTH || token.trim() != token {
                    return Err(problem(format!(
                        "the token is shorter than {MIN_TOKEN_LENGTH} characters or has \
                         surrounding spaces; make one with `embers token new`"
                    )));
                }
                sha256(token.as_bytes())
            }
            (None, Some(hex_digest)) => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut digest).map_err(|e| {
                    problem(format!(
                        "token_sha256 must be 64 hexadecimal digits (SHA-256): {e}"
                    ))
                })?;
                digest
            }
        };
        if let Some(first) = seen.insert(digest, index) {
            return Err(problem(format!(
                "the same token as entry {first}: each token may appear once"
            )));
        }
        let tenant = match &raw.tenant {
            Some(t) => TenantId::parse(t).map_err(|e| problem(format!("tenant: {e}")))?,
            None => TenantId::default_tenant(),
        };
        let scopes: Scopes = raw.scopes.iter().copied().collect();
        if scopes.is_empty() {
            return Err(problem(
                "scopes is empty: give at least one of ingest, read, admin".into(),
            ));
        }
        let label = raw
            .name
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", &hex::encode(digest)[..8]));
        entries.push(Entry::new(digest, tenant, scopes, label));
    }
    Ok(Tokens { entries, plaintext })
}

/// A TOML error without the quoted source line, which may hold a token: the message
/// and the line number only.
fn syntax(text: &str, e: &toml::de::Error) -> AuthFileError {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            AuthFileError::Syntax(format!("line {line}: {message}"))
        }
        None => AuthFileError::Syntax(message.to_owned()),
    }
}

/// Reads and parses the auth file at `path`.
pub fn load(path: &std::path::Path) -> Result<Tokens, AuthFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "embers_0123456789abcdef";

    fn refused(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_to_the_default_tenant_and_names_by_digest_prefix() {
        let tokens = parse(&format!(
            "[[tokens]]\ntoken = \"{GOOD}\"\nscopes = [\"ingest\", \"admin\"]\n"
        ))
        .unwrap();
        let e = tokens.find(GOOD).unwrap();
        assert!(e.tenant.is_default());
        assert!(e.scopes.contains(Scope::Ingest) && e.scopes.contains(Scope::Admin));
        assert!(!e.scopes.contains(Scope::Read));
        assert!(tokens.has_plaintext());
        assert_eq!(
            e.label,
            format!("sha256:{}", &hex::encode(sha256(GOOD.as_bytes()))[..8])
        );
    }

    #[test]
    fn sha256_entries_match_the_token() {
        let digest = hex::encode(sha256(GOOD.as_bytes())).to_uppercase();
        let tokens = parse(&format!(
            "[[tokens]]\ntoken_sha256 = \"{digest}\"\nscopes = [\"read\"]\n"
        ))
        .unwrap();
        assert!(tokens.find(GOOD).is_some());
        assert!(!tokens.has_plaintext());
    }

    #[test]
    fn doubtful_files_are_refused_with_the_reason() {
        let cases = [
            ("", "no [[tokens]]"),
            ("tokens = []", "no [[tokens]]"),
            (
                "[[tokens]]\nscopes = [\"read\"]\n",
                "token or token_sha256 is missing",
            ),
            (
                &format!(
                    "[[tokens]]\ntoken = \"{GOOD}\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\n",
                    "ab".repeat(32)
                ),
                "not both",
            ),
            (
                "[[tokens]]\ntoken_sha256 = \"xyz\"\nscopes = [\"read\"]\n",
                "64 hexadecimal",
            ),
            (
                &format!(
                    "[[tokens]]\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\n",
                    "ab".repeat(31)
                ),
                "64 hexadecimal",
            ),
            (
                "[[tokens]]\ntoken = \"short\"\nscopes = [\"read\"]\n",
                "shorter than 16",
            ),
            (
                &format!("[[tokens]]\ntoken = {GOOD}\nscopes = [\"read\"]\n"),
                "line 2",
            ),
            (
                &format!("[[tokens]]\ntoken = \"{GOOD}\"\nscopes = []\n"),
                "scopes is empty",
            ),
            (
                &format!("[[tokens]]\ntoken = \"{GOOD}\"\nscopes = [\"write\"]\n"),
                "unknown variant",
            ),
            (
                &format!("[[tokens]]\ntoken = \"{GOOD}\"\nscope = [\"read\"]\n"),
                "unknown field",
            ),
            (
                &format!("[[token]]\ntoken = \"{GOOD}\"\nscopes = [\"read\"]\n"),
                "unknown field",
            ),
            (
                &format!("[[tokens]]\ntoken = \"{GOOD}\"\ntenant = \"a/b\"\nscopes = [\"read\"]\n"),
                "tenant",
            ),
            (
                &format!(
                    "[[tokens]]\nname = \"one\"\ntoken = \"{GOOD}\"\nscopes = [\"read\"]\n\
                     [[tokens]]\nname = \"two\"\ntoken_sha256 = \"{}\"\nscopes = [\"ingest\"]\n",
                    hex::encode(sha256(GOOD.as_bytes()))
                ),
                "entry 2 (two): the same token as entry 1",
            ),
        ];
        for (text, expect) in cases {
            let message = refused(text);
            assert!(message.contains(expect), "{text:?}: {message}");
            assert!(
                !message.contains(GOOD),
                "the message never echoes a token: {message}"
            );
        }
    }
}
