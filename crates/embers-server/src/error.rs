//! API errors: an HTTP status, a Connect error code, and a message saying what is wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use embers_store::StoreError;

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
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            connect: false,
        }
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

    /// 500: our fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
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
            StoreError::Limit(m) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", m)
            }
            StoreError::Invalid(m) => Self::bad_request(m),
            // Not stored and not visible; the store heals by itself: ask to retry.
            StoreError::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::internal(other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unavailable = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = if self.connect {
            let body = serde_json::json!({ "code": self.code, "message": self.message });
            (self.status, axum::Json(body)).into_response()
        } else {
            (self.status, format!("{}\n", self.message)).into_response()
        };
        if unavailable {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        response
    }
}
