//! Who may do what: the middleware every request passes before its handler.
//!
//! It decides the request's tenant (see [`crate::tenant`]) and puts the [`TenantId`]
//! in the request's extensions, where handlers find it. With an auth file
//! (`--auth-file`, see [`crate::auth`]) it also authenticates the request and checks
//! the route's scope, so no handler can forget to:
//!
//! - open to all: `/healthz`, `/ready`, `/` and `/ui/*` (the UI must load to ask for a
//!   token), and `/metrics` when `metrics_open` is set;
//! - any valid token: `/auth/whoami`;
//! - `ingest`: every ingest route (`/ingest`, Connect push, OTLP HTTP and gRPC, ad-hoc
//!   uploads); `admin`: `/metrics`; `read`: everything else (queries, querier.v1,
//!   settings, ad-hoc views; unknown paths too, so a 404 tells a stranger nothing).
//!
//! No or an unknown token is answered 401 with `WWW-Authenticate`, a missing scope or an
//! `X-Scope-OrgID` naming another tenant than the token's 403, in the route's own error
//! shape (Connect JSON, gRPC status, OTLP `Status`, plain text). The tenant is the
//! token's: `X-Scope-OrgID` is never followed then. Failures are counted by reason in
//! `/metrics` and logged with the peer and the token's name (or SHA-256 prefix), never
//! the token.
//!
//! `GET /auth/whoami` tells a client (the web UI) which tenant and scopes its
//! credentials carry, and whether the server asks for credentials at all.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::auth::credentials::{self, Presented};
use crate::auth::file::AuthFileError;
use crate::auth::watch::Auth;
use crate::auth::{sha256, Scope, Scopes};
use crate::error::ApiError;
use crate::tenant::{self, TenantId, ORG_ID_HEADER};
use crate::{AppState, ServerConfig};

/// The access settings and counters every request consults.
#[derive(Debug)]
pub struct Access {
    /// The tokens; `None`: no authentication (tenants from `multitenancy`).
    auth: Option<Arc<Auth>>,
    /// `/metrics` without a token.
    metrics_open: bool,
    /// Bytes of a refused request's body read and dropped, so the client reads the
    /// refusal instead of a reset connection.
    drain_limit: usize,
    /// Failed authentications, by [`Failure`].
    failures: [AtomicU64; Failure::ALL.len()],
    /// Bounds the refusal log lines (see [`LogBudget`]).
    log_budget: std::sync::Mutex<LogBudget>,
}

/// Log lines of refusals per second, at most: a client hammering the server with bad
/// tokens must not fill the disk with logs (every refusal is still counted).
const LOG_LINES_PER_SECOND: u32 = 20;

/// The refusal log lines of the current second, and those left out since the last line.
#[derive(Debug, Default)]
struct LogBudget {
    second: u64,
    lines: u32,
    left_out: u64,
}

impl LogBudget {
    /// `Some(lines left out before this one)` when this refusal may be logged.
    fn admit(&mut self, second: u64) -> Option<u64> {
        if second != self.second {
            self.second = second;
            self.lines = 0;
        }
        if self.lines >= LOG_LINES_PER_SECOND {
            self.left_out += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

impl Access {
    /// Loads the auth file, if any (a bad one refuses to start the server).
    pub fn from_config(config: &ServerConfig) -> Result<Access, AuthFileError> {
        let auth = config.auth_file.as_deref().map(Auth::open).transpose()?;
        Ok(Access {
            auth,
            metrics_open: config.metrics_open,
            drain_limit: config.max_body_bytes,
            failures: Default::default(),
            log_budget: Default::default(),
        })
    }

    /// The `/metrics` lines about authentication.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP embers_auth_failures_total Requests refused for their credentials, by reason.\n\
             # TYPE embers_auth_failures_total counter"
        );
        for (failure, n) in Failure::ALL.iter().zip(&self.failures) {
            let _ = writeln!(
                out,
                "embers_auth_failures_total{{reason=\"{}\"}} {}",
                failure.label(),
                n.load(Ordering::Relaxed)
            );
        }
        if let Some(auth) = &self.auth {
            let _ = writeln!(
                out,
                "# HELP embers_auth_tokens Tokens in force.\n# TYPE embers_auth_tokens gauge\n\
                 embers_auth_tokens {}\n\
                 # HELP embers_auth_reloads_total Auth file reloads that replaced the tokens.\n\
                 # TYPE embers_auth_reloads_total counter\nembers_auth_reloads_total {}\n\
                 # HELP embers_auth_reload_failures_total Auth file reloads refused (the old tokens stayed).\n\
                 # TYPE embers_auth_reload_failures_total counter\nembers_auth_reload_failures_total {}",
                auth.tokens().len(),
                auth.reloads.load(Ordering::Relaxed),
                auth.reload_failures.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// What a route asks of the request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    AnyToken,
    Scope(Scope),
}

/// The route's need, by path (the middleware runs before the handler and knows the
/// path; every route is listed in `lib.rs`).
fn need(path: &str, metrics_open: bool) -> Need {
    let path_without_prefix = path.strip_prefix("/pyroscope").unwrap_or(path);
    match path {
        "/healthz" | "/ready" | "/" => return Need::Nothing,
        "/metrics" if metrics_open => return Need::Nothing,
        "/metrics" => return Need::Scope(Scope::Admin),
        "/auth/whoami" => return Need::AnyToken,
        "/push.v1.PusherService/Push"
        | "/v1development/profiles"
        | crate::ingest::otlp::GRPC_EXPORT
        | "/adhocprofiles.v1.AdHocProfileService/Upload" => return Need::Scope(Scope::Ingest),
        _ => {}
    }
    if path.starts_with("/ui/") {
        Need::Nothing
    } else if path_without_prefix == "/ingest" {
        Need::Scope(Scope::Ingest)
    } else {
        Need::Scope(Scope::Read)
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Missing,
    Malformed,
    Unknown,
    Scope,
    Tenant,
}

impl Failure {
    const ALL: [Failure; 5] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::Unknown,
        Failure::Scope,
        Failure::Tenant,
    ];

    fn label(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Unknown => "unknown",
            Failure::Scope => "scope",
            Failure::Tenant => "tenant",
        }
    }
}

/// What an authenticated request may do, for `/auth/whoami`.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// The token's scopes.
    pub scopes: Scopes,
}

/// The middleware: resolves the tenant, or answers the refusal itself.
pub async fn check(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let access = &state.access;
    let Some(auth) = &access.auth else {
        let tenant = if state.multitenancy {
            match tenant::from_header(request.headers()) {
                Ok(named) => named.unwrap_or_else(TenantId::default_tenant),
                Err(e) => return e.into_response(),
            }
        } else {
            TenantId::default_tenant()
        };
        request.extensions_mut().insert(tenant);
        return next.run(request).await;
    };
    let path = request.uri().path().to_owned();
    let need = need(&path, access.metrics_open);
    if need == Need::Nothing {
        request.extensions_mut().insert(TenantId::default_tenant());
        return next.run(request).await;
    }
    let tokens = auth.tokens();
    let outcome = match credentials::presented(request.headers()) {
        Presented::Nothing => Err((Failure::Missing, None, None)),
        Presented::Malformed => Err((Failure::Malformed, None, None)),
        Presented::Token(token) => match tokens.find(&token) {
            None => Err((
                Failure::Unknown,
                Some(format!(
                    "sha256:{}",
                    &hex::encode(sha256(token.as_bytes()))[..8]
                )),
                None,
            )),
            Some(entry) => {
                if crosses_tenant(request.headers(), &entry.tenant) {
                    Err((Failure::Tenant, Some(entry.label.clone()), Some(entry)))
                } else if matches!(need, Need::Scope(s) if !entry.scopes.contains(s)) {
                    Err((Failure::Scope, Some(entry.label.clone()), Some(entry)))
                } else {
                    Ok(entry)
                }
            }
        },
    };
    match outcome {
        Ok(entry) => {
            let grant = Grant {
                scopes: entry.scopes,
            };
            request.extensions_mut().insert(entry.tenant.clone());
            request.extensions_mut().insert(grant);
            next.run(request).await
        }
        Err((failure, label, entry)) => {
            access.failures[failure as usize].fetch_add(1, Ordering::Relaxed);
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_else(|| "unknown".into());
            let second = u64::try_from(crate::params::now()).unwrap_or(0);
            let admitted = access
                .log_budget
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .admit(second);
            if let Some(left_out) = admitted {
                tracing::warn!(
                    reason = failure.label(),
                    peer = %peer,
                    path = %path,
                    token = label.as_deref().unwrap_or("-"),
                    left_out,
                    "request refused: authentication"
                );
            }
            let message = match (failure, entry) {
                (Failure::Missing, _) => {
                    "this server needs a token: send `Authorization: Bearer TOKEN` \
                     (or Basic authentication with the token as the password)"
                        .to_owned()
                }
                (Failure::Malformed, _) => {
                    "the Authorization header is neither `Bearer TOKEN` nor \
                     `Basic base64(user:TOKEN)`"
                        .to_owned()
                }
                (Failure::Tenant, Some(entry)) => format!(
                    "X-Scope-OrgID names another tenant than this token's ({:?}); a token reaches \
                     only its own tenant",
                    entry.tenant.as_str()
                ),
                (Failure::Scope, Some(entry)) => {
                    let Need::Scope(scope) = need else {
                        unreachable!("scope failures come from scoped routes")
                    };
                    let has: Vec<&str> = entry.scopes.iter().map(Scope::as_str).collect();
                    format!(
                        "this token lacks the `{scope}` scope that {path} needs (it has: {})",
                        has.join(", ")
                    )
                }
                _ => "the token presented is not known to this server".to_owned(),
            };
            let (parts, body) = request.into_parts();
            crate::budget::drain(body, access.drain_limit).await;
            refuse(&path, &parts.headers, failure, message)
        }
    }
}

/// Whether the request names (in any `X-Scope-OrgID`) a tenant other than `tenant`.
fn crosses_tenant(headers: &HeaderMap, tenant: &TenantId) -> bool {
    headers
        .get_all(ORG_ID_HEADER)
        .iter()
        .any(|v| v.as_bytes() != tenant.as_str().as_bytes())
}

/// The refusal, in the route's error shape.
fn refuse(path: &str, headers: &HeaderMap, failure: Failure, message: String) -> Response {
    let unauthenticated = matches!(
        failure,
        Failure::Missing | Failure::Malformed | Failure::Unknown
    );
    let e = ApiError {
        status: if unauthenticated {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        },
        code: if unauthenticated {
            "unauthenticated"
        } else {
            "permission_denied"
        },
        message,
        connect: false,
        retry_after: None,
        rejection: None,
    };
    let grpc = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let connect = [
        "/push.v1.",
        "/querier.v1.",
        "/settings.v1.",
        "/adhocprofiles.v1.",
    ]
    .iter()
    .any(|p| path.starts_with(p));
    let mut response = if connect && !grpc {
        e.connect().into_response()
    } else {
        crate::ingest::otlp::refused(path, headers, e).unwrap_or_else(IntoResponse::into_response)
    };
    if unauthenticated {
        for challenge in ["Bearer realm=\"embers\"", "Basic realm=\"embers\""] {
            response
                .headers_mut()
                .append(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
    }
    response
}

/// `GET /auth/whoami`: `{"tenant": …, "scopes": […], "auth": bool}`.
pub async fn whoami(
    Extension(tenant): Extension<TenantId>,
    grant: Option<Extension<Grant>>,
) -> Response {
    let (scopes, auth): (Vec<&str>, bool) = match grant {
        Some(Extension(grant)) => (grant.scopes.iter().map(Scope::as_str).collect(), true),
        None => (Scope::ALL.iter().map(|s| s.as_str()).collect(), false),
    };
    axum::Json(serde_json::json!({
        "tenant": tenant.as_str(),
        "scopes": scopes,
        "auth": auth,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_logs_are_bounded_per_second_and_say_what_was_left_out() {
        let mut budget = LogBudget::default();
        for _ in 0..LOG_LINES_PER_SECOND {
            assert_eq!(budget.admit(7), Some(0));
        }
        assert_eq!(budget.admit(7), None);
        assert_eq!(budget.admit(7), None);
        assert_eq!(budget.admit(8), Some(2));
        assert_eq!(budget.admit(8), Some(0));
    }

    #[test]
    fn every_route_has_the_scope_issue_13_gives_it() {
        let cases = [
            ("/healthz", Need::Nothing),
            ("/ready", Need::Nothing),
            ("/", Need::Nothing),
            ("/ui/app.js", Need::Nothing),
            ("/auth/whoami", Need::AnyToken),
            ("/metrics", Need::Scope(Scope::Admin)),
            ("/ingest", Need::Scope(Scope::Ingest)),
            ("/pyroscope/ingest", Need::Scope(Scope::Ingest)),
            ("/push.v1.PusherService/Push", Need::Scope(Scope::Ingest)),
            ("/v1development/profiles", Need::Scope(Scope::Ingest)),
            (crate::ingest::otlp::GRPC_EXPORT, Need::Scope(Scope::Ingest)),
            (
                "/adhocprofiles.v1.AdHocProfileService/Upload",
                Need::Scope(Scope::Ingest),
            ),
            (
                "/adhocprofiles.v1.AdHocProfileService/Get",
                Need::Scope(Scope::Read),
            ),
            ("/render", Need::Scope(Scope::Read)),
            ("/pyroscope/render", Need::Scope(Scope::Read)),
            (
                "/querier.v1.QuerierService/SelectMergeStacktraces",
                Need::Scope(Scope::Read),
            ),
            ("/settings.v1.SettingsService/Set", Need::Scope(Scope::Read)),
            ("/no-such-route", Need::Scope(Scope::Read)),
            ("/uix", Need::Scope(Scope::Read)),
            ("/ingestx", Need::Scope(Scope::Read)),
        ];
        for (path, expect) in cases {
            assert_eq!(need(path, false), expect, "{path}");
        }
        assert_eq!(need("/metrics", true), Need::Nothing);
    }
}
