//! OTLP profiles ingest: OTLP/HTTP `POST /v1development/profiles` (protobuf or JSON,
//! gzip or not) and OTLP/gRPC `ProfilesService/Export` on the same port over HTTP/2
//! (h2c, see `serve.rs`), as Grafana Pyroscope serves them.
//!
//! Both decode through [`embers_formats::otlp::decode_export`] within the request's
//! [`IngestBudget`] and store through [`super::puts_from_trees`], one series group per
//! service and profile. gRPC's unary framing (a flag byte, a 4-byte length, the
//! message) and its `grpc-status` trailers are small enough to write here rather than
//! pull in a gRPC framework for one method.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use embers_formats::otlp::{decode_export, Encoding, ExportProfilesServiceResponse, OtlpUpload};
use embers_formats::IngestBudget;
use embers_store::Put;
use http_body_util::BodyExt;
use prost::Message;

use super::{decode_and_store, format_error, puts_from_trees};
use crate::error::ApiError;
use crate::params::now;
use crate::AppState;

/// The gRPC method's path.
pub const GRPC_EXPORT: &str =
    "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export";

/// Decodes an export and builds its puts; the reply (with `partial_success` when some
/// profiles were left out) goes to `reply`.
fn export_puts(
    budget: &IngestBudget,
    upload: &OtlpUpload<'_>,
    reply: &OnceLock<ExportProfilesServiceResponse>,
) -> Result<Vec<Put>, ApiError> {
    let export = decode_export(upload, budget).map_err(format_error)?;
    let _ = reply.set(export.response());
    let now = now();
    let mut puts = Vec::new();
    for series in export.series {
        puts.extend(puts_from_trees(
            vec![series.profile],
            &series.labels,
            Some(&series.name),
            now,
            budget,
        )?);
    }
    Ok(puts)
}

/// Decodes and stores on the blocking pool; the export's reply.
async fn store(
    state: &AppState,
    body: Bytes,
    encoding: Encoding,
) -> Result<ExportProfilesServiceResponse, ApiError> {
    let reply = Arc::new(OnceLock::new());
    let answer = Arc::clone(&reply);
    decode_and_store(state, body.len(), move |budget| {
        let upload = OtlpUpload {
            body: &body,
            encoding,
        };
        Ok((None, export_puts(budget, &upload, &answer)?))
    })
    .await?;
    Ok(Arc::into_inner(reply)
        .and_then(OnceLock::into_inner)
        .unwrap_or_default())
}

fn unsupported(message: String) -> Response {
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, message + "\n").into_response()
}

/// `POST /v1development/profiles`: `application/x-protobuf`, `application/protobuf` or
/// `application/json`, `Content-Encoding: gzip` or none; the reply in the request's
/// encoding.
pub async fn http(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = super::content_type(&headers);
    let media = content_type.split(';').next().unwrap_or("").trim();
    let encoding = match media.to_ascii_lowercase().as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            return unsupported(format!(
                "unsupported Content-Type {content_type:?}: send application/x-protobuf, \
                 application/protobuf or application/json"
            ))
        }
    };
    let gzip = body.starts_with(&[0x1f, 0x8b]);
    match headers.get("content-encoding").map(HeaderValue::to_str) {
        None => {}
        Some(Ok(e)) if e.eq_ignore_ascii_case("identity") => {}
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") && gzip => {}
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") => {
            return ApiError::bad_request("Content-Encoding is gzip but the body is not gzip")
                .into_response();
        }
        Some(e) => {
            return unsupported(format!(
                "unsupported Content-Encoding {:?}: send gzip or none",
                e.unwrap_or("(not text)")
            ))
        }
    }
    match store(&state, body, encoding).await {
        Ok(reply) if encoding == Encoding::Json => match serde_json::to_vec(&reply) {
            Ok(json) => ([(CONTENT_TYPE, "application/json")], json).into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        },
        Ok(reply) => (
            [(CONTENT_TYPE, "application/x-protobuf")],
            reply.encode_to_vec(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// gRPC status codes we answer with.
#[derive(Debug, Clone, Copy)]
enum Code {
    InvalidArgument = 3,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

impl Code {
    /// The code for an API error: a bad body is the caller's to fix, a full budget or
    /// a store that cannot write now is worth retrying (`UNAVAILABLE`, which OTLP
    /// exporters retry), a bound is `RESOURCE_EXHAUSTED`.
    fn of(e: &ApiError) -> Code {
        match e.status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidArgument,
            StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            StatusCode::NOT_FOUND | StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::Unimplemented,
            _ => Code::Internal,
        }
    }
}

/// `grpc-message` is percent-encoded: printable ASCII but `%` as is, the rest `%XX`.
fn grpc_message(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static("error"))
}

/// A Trailers-Only error reply: HTTP 200, the status in the headers, no body.
fn grpc_error(code: Code, message: &str) -> Response {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code as u16));
    headers.insert("grpc-message", grpc_message(message));
    response
}

/// The message of a unary request: one uncompressed frame, or one gzip frame when
/// `grpc-encoding` says gzip (the decoder inflates it within the budget).
fn unframe(body: &Bytes, headers: &HeaderMap) -> Result<Bytes, (Code, String)> {
    let invalid = |m: &str| (Code::InvalidArgument, m.to_owned());
    let [flag, a, b, c, d] = *body
        .get(..5)
        .ok_or_else(|| invalid("no gRPC message frame"))?
    else {
        return Err(invalid("no gRPC message frame"));
    };
    let length = u32::from_be_bytes([a, b, c, d]) as usize;
    if body.len() - 5 != length {
        return Err(invalid(
            "the gRPC frame's length does not match the body (truncated, or several messages)",
        ));
    }
    let message = body.slice(5..);
    match flag {
        0 => Ok(message),
        1 => {
            let encoding = headers
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("identity");
            if encoding != "gzip" || !message.starts_with(&[0x1f, 0x8b]) {
                return Err((
                    Code::Unimplemented,
                    format!("grpc-encoding {encoding:?} is not supported: use gzip or none"),
                ));
            }
            Ok(message)
        }
        _ => Err(invalid("bad gRPC frame flag")),
    }
}

/// `POST /opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export`.
pub async fn grpc(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let content_type = super::content_type(&headers);
    if !content_type.starts_with("application/grpc") {
        return unsupported(format!(
            "unsupported Content-Type {content_type:?}: this is the OTLP/gRPC method (application/grpc)"
        ));
    }
    let limit = state.budget.max_body_bytes;
    let body = match http_body_util::Limited::new(body, limit.saturating_add(5))
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let message = format!("the message is larger than max_body_bytes = {limit}");
            return grpc_error(Code::ResourceExhausted, &message);
        }
        Err(e) => return grpc_error(Code::Internal, &format!("reading the request: {e}")),
    };
    let message = match unframe(&body, &headers) {
        Ok(message) => message,
        Err((code, message)) => return grpc_error(code, &message),
    };
    match store(&state, message, Encoding::Protobuf).await {
        Ok(reply) => grpc_ok(&reply),
        Err(e) => grpc_error(Code::of(&e), &e.message),
    }
}

/// A unary reply: the framed message, then `grpc-status: 0` in the trailers.
fn grpc_ok(reply: &ExportProfilesServiceResponse) -> Response {
    let message = reply.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = http_body_util::Full::new(Bytes::from(frame))
        .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
    let mut response = Response::new(Body::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message("bad 100% é"), "bad 100%25 %C3%A9");
    }

    #[test]
    fn frames_must_hold_exactly_one_message() {
        let headers = HeaderMap::new();
        let frame = Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1]);
        assert_eq!(
            unframe(&frame, &headers).unwrap(),
            Bytes::from_static(&[8, 1])
        );
        for bad in [&[0u8, 0, 0][..], &[0, 0, 0, 0, 3, 8, 1], &[2, 0, 0, 0, 0]] {
            let (code, _) = unframe(&Bytes::copy_from_slice(bad), &headers).unwrap_err();
            assert!(matches!(code, Code::InvalidArgument));
        }
        let compressed = Bytes::from_static(&[1, 0, 0, 0, 2, 8, 1]);
        let (code, _) = unframe(&compressed, &headers).unwrap_err();
        assert!(matches!(code, Code::Unimplemented));
    }
}
