//! The token a request presents, from its `Authorization` header.
//!
//! `Bearer TOKEN` is what the agent, `embers query`, the web UI, pyroscope-io's
//! `auth_token` and @pyroscope/nodejs's `authToken` send. `Basic base64(user:password)`
//! is what pyroscope-io's `basic_auth_username/password`, @pyroscope/nodejs's
//! `basicAuthUser/basicAuthPassword` and Grafana's data source send: the password is the
//! token and the user is free text. When the password is empty the user is taken as the
//! token, for clients that only let one fill in a user name.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use base64::Engine;

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    /// No `Authorization` header.
    Nothing,
    /// A header we cannot read a token from (another scheme, bad base64, several headers).
    Malformed,
    /// The token.
    Token(String),
}

/// Reads the token from `headers`.
pub fn presented(headers: &HeaderMap) -> Presented {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Presented::Nothing;
    };
    if values.next().is_some() {
        return Presented::Malformed;
    }
    from_value(value.as_bytes())
}

/// Reads the token from one `Authorization` header value (untrusted bytes).
pub fn from_value(value: &[u8]) -> Presented {
    let Ok(value) = std::str::from_utf8(value) else {
        return Presented::Malformed;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if rest.is_empty() {
        return Presented::Malformed;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Token(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Some(pair) = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
        else {
            return Presented::Malformed;
        };
        let (user, password) = pair.split_once(':').unwrap_or((&pair, ""));
        let token = if password.is_empty() { user } else { password };
        if token.is_empty() {
            return Presented::Malformed;
        }
        return Presented::Token(token.to_owned());
    }
    Presented::Malformed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, v.parse().unwrap());
        }
        headers
    }

    fn basic(pair: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    #[test]
    fn bearer_and_basic_give_the_token() {
        let token = Presented::Token("embers_abc".into());
        assert_eq!(presented(&with(&["Bearer embers_abc"])), token);
        assert_eq!(presented(&with(&["bearer  embers_abc "])), token);
        assert_eq!(presented(&with(&[&basic("grafana:embers_abc")])), token);
        assert_eq!(presented(&with(&[&basic("embers_abc:")])), token);
        assert_eq!(presented(&with(&[&basic("embers_abc")])), token);
        assert_eq!(
            presented(&with(&[&basic("user:pass:with:colons")])),
            Presented::Token("pass:with:colons".into())
        );
    }

    #[test]
    fn anything_else_is_missing_or_malformed() {
        assert_eq!(presented(&HeaderMap::new()), Presented::Nothing);
        for bad in ["Bearer", "Bearer ", "Digest abc", "Basic !!!", "embers_abc"] {
            assert_eq!(presented(&with(&[bad])), Presented::Malformed, "{bad}");
        }
        assert_eq!(presented(&with(&[&basic(":")])), Presented::Malformed);
        assert_eq!(
            presented(&with(&["Bearer a", "Bearer b"])),
            Presented::Malformed
        );
    }
}
