//! Tenants: the walls between teams sharing one server.
//!
//! Every request is answered for exactly one tenant. `crate::access` decides which,
//! before any handler runs, and puts the [`TenantId`] in the request's extensions:
//! from the token's tenant when an auth file is configured, from `X-Scope-OrgID` with
//! `multitenancy` on (Grafana Pyroscope's behaviour, behind an authenticating proxy),
//! and [`TenantId::DEFAULT`] otherwise. Handlers never read the header themselves.

use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;

use crate::error::ApiError;

/// The header Grafana Pyroscope and its clients name the tenant with.
pub const ORG_ID_HEADER: &str = "x-scope-orgid";

/// Longest tenant ID (Grafana's limit).
pub const MAX_TENANT_ID_LENGTH: usize = 150;

/// A valid tenant ID: 1 to 150 of `A-Z a-z 0-9 ! - _ . * ' ( )`, not `.` or `..`
/// (Grafana's rules), so it is also safe as a directory name and an object-key prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// The tenant of a server without tenants, and of tokens that name none
    /// (Grafana's default tenant ID). Its data lives at the data directory's root.
    pub const DEFAULT: &'static str = "anonymous";

    /// Checks `id` against the rules above.
    pub fn parse(id: &str) -> Result<TenantId, String> {
        if id.is_empty() {
            return Err("the tenant ID is empty".into());
        }
        if id.len() > MAX_TENANT_ID_LENGTH {
            return Err(format!(
                "the tenant ID is {} bytes long; at most {MAX_TENANT_ID_LENGTH} are allowed",
                id.len()
            ));
        }
        if id == "." || id == ".." {
            return Err(format!("{id:?} is not a valid tenant ID"));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
        {
            return Err(format!(
                "the tenant ID {id:?} contains {c:?}; allowed are letters, digits and !-_.*'()"
            ));
        }
        Ok(TenantId(id.into()))
    }

    /// The default tenant.
    pub fn default_tenant() -> TenantId {
        TenantId(Self::DEFAULT.into())
    }

    /// Whether this is [`TenantId::DEFAULT`].
    pub fn is_default(&self) -> bool {
        &*self.0 == Self::DEFAULT
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant a request names in `X-Scope-OrgID`, if any: `Ok(None)` without the
/// header, 400 when it is not a valid tenant ID.
pub fn from_header(headers: &HeaderMap) -> Result<Option<TenantId>, ApiError> {
    let Some(value) = headers.get(ORG_ID_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Scope-OrgID is not ASCII text"))?;
    TenantId::parse(text.trim())
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("X-Scope-OrgID: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_grafanas_rules() {
        for ok in [
            "anonymous",
            "team-a",
            "Team_B.2",
            "a!*'()",
            &"x".repeat(150),
        ] {
            assert_eq!(TenantId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "tëam",
            "a\\b",
            &"x".repeat(151),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(TenantId::default_tenant().is_default());
    }

    #[test]
    fn the_header_names_a_tenant_or_is_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(from_header(&headers).unwrap(), None);
        headers.insert(ORG_ID_HEADER, "team-a".parse().unwrap());
        assert_eq!(from_header(&headers).unwrap().unwrap().as_str(), "team-a");
        headers.insert(ORG_ID_HEADER, "../etc".parse().unwrap());
        assert_eq!(from_header(&headers).unwrap_err().status, 400);
    }
}
