//! Tokens: who may reach which tenant with which scopes (issue 13).
//!
//! An auth file (`--auth-file`, TOML) lists `[[tokens]]`, each with the token itself or
//! only its SHA-256 (so the file need hold no secret), a tenant and scopes:
//!
//! ```toml
//! [[tokens]]
//! name = "ci-agents"             # optional; logs name the token by it
//! token_sha256 = "9f86d0…"       # or token = "embers_…"
//! tenant = "team-a"              # optional; the default tenant otherwise
//! scopes = ["ingest"]            # ingest | read | admin
//! ```
//!
//! [`file::parse`] turns the text into [`Tokens`] once, refusing anything doubtful
//! (unknown keys, both or neither of `token`/`token_sha256`, duplicates, bad hex, no
//! tokens); [`Tokens::find`] looks a presented token up by its SHA-256, comparing against
//! every entry in constant time; [`watch::Auth`] keeps the live set and reloads it when
//! the file changes or on SIGHUP. The middleware that asks is [`crate::access`].
//!
//! ```
//! let tokens = embers_server::auth::file::parse(r#"
//!     [[tokens]]
//!     token = "embers_0123456789abcdef"
//!     tenant = "team-a"
//!     scopes = ["read"]
//! "#).unwrap();
//! let entry = tokens.find("embers_0123456789abcdef").unwrap();
//! assert_eq!(entry.tenant.as_str(), "team-a");
//! assert!(tokens.find("embers_guess").is_none());
//! ```

pub mod credentials;
pub mod file;
pub mod watch;

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::tenant::TenantId;

/// What a token may do. Scopes are independent: `admin` does not imply `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Scope {
    /// Push profiles (every ingest route, OTLP, ad-hoc uploads).
    Ingest,
    /// Query (the HTTP query API, querier.v1, settings, ad-hoc views).
    Read,
    /// Operate the server (`/metrics`).
    Admin,
}

impl Scope {
    /// Every scope, in the order whoami lists them.
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    /// The scope's name in the auth file.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}: use ingest, read or admin"))
    }
}

/// A set of [`Scope`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes in the set, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

/// One `[[tokens]]` entry, as the server keeps it: the digest, never the token.
#[derive(Debug, Clone)]
pub struct Entry {
    /// SHA-256 of the token.
    pub digest: [u8; 32],
    /// The only tenant the token reaches.
    pub tenant: TenantId,
    /// What it may do there.
    pub scopes: Scopes,
    /// How logs name it: its `name`, or `sha256:` and the digest's first 8 hex digits.
    pub label: String,
    /// The digest as four words, compared word by word (4 constant-time comparisons
    /// instead of 32).
    lanes: [u64; 4],
}

impl Entry {
    /// An entry for the token whose SHA-256 is `digest`.
    pub fn new(digest: [u8; 32], tenant: TenantId, scopes: Scopes, label: String) -> Entry {
        Entry {
            digest,
            tenant,
            scopes,
            label,
            lanes: lanes(&digest),
        }
    }
}

fn lanes(digest: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (lane, chunk) in out.iter_mut().zip(digest.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *lane = u64::from_le_bytes(word);
    }
    out
}

/// The tokens of one auth file.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
    /// Some entry gives the token itself (`token`), not only its digest.
    plaintext: bool,
}

impl Tokens {
    /// The entry whose token is `presented`, if any. Every entry is compared, in
    /// constant time, whether or not one matched earlier, so the time taken says
    /// nothing about which entry (or which digest prefix) came close.
    pub fn find(&self, presented: &str) -> Option<&Entry> {
        let digest = lanes(&sha256(presented.as_bytes()));
        let mut hit = 0u32;
        for (i, entry) in self.entries.iter().enumerate() {
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let equal = digest
                .iter()
                .zip(&entry.lanes)
                .fold(Choice::from(1), |all, (a, b)| all & a.ct_eq(b));
            hit = u32::conditional_select(&hit, &index, equal);
        }
        let hit = usize::try_from(hit).ok()?;
        hit.checked_sub(1).and_then(|i| self.entries.get(i))
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether some entry holds a token itself rather than its SHA-256.
    pub fn has_plaintext(&self) -> bool {
        self.plaintext
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A fresh token: `embers_` and 256 bits from the operating system's RNG in hex, so it
/// is recognisable in a leaked log or secret scanner and cannot be guessed.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The prefix of tokens made by [`new_token`].
pub const TOKEN_PREFIX: &str = "embers_";

/// The `[[tokens]]` block for `token`, holding only its SHA-256.
pub fn toml_entry(token: &str, tenant: &TenantId, scopes: Scopes, name: Option<&str>) -> String {
    let mut out = String::from("[[tokens]]\n");
    if let Some(name) = name {
        out.push_str(&format!("name = {}\n", toml_string(name)));
    }
    out.push_str(&format!(
        "token_sha256 = \"{}\"\ntenant = {}\nscopes = [{}]\n",
        hex::encode(sha256(token.as_bytes())),
        toml_string(tenant.as_str()),
        scopes
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out
}

/// A TOML basic string (names are free text): JSON's string escapes (`\"`, `\\`, `\n`,
/// `\uXXXX`) are all valid in TOML basic strings too.
fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_are_long_prefixed_and_distinct() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
    }

    #[test]
    fn toml_entry_round_trips_through_the_parser() {
        let token = new_token().unwrap();
        let tenant = TenantId::parse("team-a").unwrap();
        let scopes: Scopes = [Scope::Read, Scope::Ingest].into_iter().collect();
        let text = toml_entry(&token, &tenant, scopes, Some("ci \"agents\""));
        assert!(!text.contains(&token), "the block holds no secret");
        let tokens = file::parse(&text).unwrap();
        let entry = tokens.find(&token).unwrap();
        assert_eq!(entry.tenant, tenant);
        assert_eq!(entry.scopes, scopes);
        assert_eq!(entry.label, "ci \"agents\"");
        assert!(tokens.find(&new_token().unwrap()).is_none());
    }

    #[test]
    fn find_picks_the_matching_entry_among_many() {
        let mut text = String::new();
        for i in 0..50 {
            text.push_str(&format!(
                "[[tokens]]\ntoken = \"embers_token_number_{i:03}\"\ntenant = \"t{i}\"\nscopes = [\"read\"]\n"
            ));
        }
        let tokens = file::parse(&text).unwrap();
        assert_eq!(tokens.len(), 50);
        for i in [0, 17, 49] {
            let entry = tokens.find(&format!("embers_token_number_{i:03}")).unwrap();
            assert_eq!(entry.tenant.as_str(), format!("t{i}"));
        }
        assert!(tokens.find("embers_token_number_050").is_none());
        assert!(tokens.find("").is_none());
    }
}
