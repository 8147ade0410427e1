//! Telling a client its answer may be incomplete: data in the queried range was in an
//! object found damaged and moved to quarantine ([`embers_store::Store::damage_warnings`]).
//! Each warning becomes one `Embers-Warning` response header; JSON bodies that have room
//! also carry them as `warnings`.

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The response header carrying a warning.
pub const HEADER: &str = "embers-warning";

/// Adds one `Embers-Warning` header per warning.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(warning) {
            response.headers_mut().append(HEADER, value);
        }
    }
    response
}

/// A JSON answer with its warnings both in the body (`warnings`) and as headers.
pub fn json_with_warnings(mut body: Value, warnings: &[String]) -> Response {
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    with_warnings(Json(body).into_response(), warnings)
}
