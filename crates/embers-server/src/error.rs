//! API errors: an HTTP status, a Connect error code, and a message saying what is wrong.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use embers_store::StoreError;

use crate::metrics::Rejection;

/// What `Retry-After` says on 429 and 503: our clients (the agent, Pyroscope's) back off
/// and retry; a second is long enough for an in-flight burst to drain.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Connect code (`invalid_argument`, `resource_exhausted`, …).
    pub code: &'static str,
    /// Human-readable cause.
    pub message: String,
    /// Answer in Connect's JSON error shape instead of plain text.
    pub connect: bool,
    /// Seconds a client should wait before retrying (`Retry-After`), for 429 and 503.
    pub retry_after: Option<u64>,
    /// Which budget turned the request away, for `embers_rejections_total`.
    pub rejection: Option<Rejection>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            connect: false,
            retry_after: None,
            rejection: None,
        }
    }

    /// The same error, counted as a rejection for `why`.
    pub fn because(mut self, why: Rejection) -> Self {
        self.rejection = Some(why);
        self
    }

    /// 429: over a budget right now (in-flight ingest bytes, series); retry later.
    pub fn too_many(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", message);
        e.retry_after = Some(RETRY_AFTER_SECONDS);
        e
    }

    /// 503: the server cannot do this now (queries saturated, storage failing); retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(RETRY_AFTER_SECONDS);
        e
    }

    /// 404: a method we do not implement.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unimplemented", message)
    }

    /// 404: no such thing (an ad-hoc profile ID never uploaded or dropped).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400: bad parameters.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    /// 422: a body that does not decode.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_argument",
            message,
        )
    }

    /// 413: too large, before or after decompression.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "resource_exhausted", message)
    }

    /// 500: our fault. The detail is logged under a fresh error id; the client sees only
    /// the id, never paths or error chains from inside the server.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let id = format!("{:016x}", fastrand::u64(..));
        tracing::error!(error_id = %id, error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error (id {id}); the server log has the detail"),
        )
    }

    /// The same error, answered in Connect's JSON shape.
    pub fn connect(mut self) -> Self {
        self.connect = true;
        // Connect maps invalid_argument to 400 whatever the cause.
        if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            self.status = StatusCode::BAD_REQUEST;
        }
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Limit(m) => Self::too_many(m).because(Rejection::StoreLimit),
            StoreError::Invalid(m) => Self::bad_request(m),
            // Not stored and not visible; the store heals by itself: ask to retry.
            StoreError::Unavailable(m) => Self::unavailable(m).because(Rejection::StoreUnavailable),
            other => Self::internal(format_args!("store: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = if self.connect {
            let body = serde_json::json!({ "code": self.code, "message": self.message });
            (self.status, axum::Json(body)).into_response()
        } else {
            (self.status, format!("{}\n", self.message)).into_response()
        };
        if let Some(why) = self.rejection {
            response.extensions_mut().insert(why);
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
