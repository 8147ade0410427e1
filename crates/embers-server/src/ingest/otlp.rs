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
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use embers_formats::otlp::{decode_export, Encoding, ExportProfilesServiceResponse, OtlpUpload};
use embers_formats::IngestBudget;
use embers_store::Put;
use http_body_util::BodyExt;
use prost::Message;

use super::{decode_and_store, format_error, puts_from_trees};
use crate::error::ApiError;
use crate::params::now;
use crate::tenants::Tenant;

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
    state: &Tenant,
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

/// A 415 in OTLP/HTTP's error shape (binary protobuf: the request's encoding is unknown).
fn unsupported(message: String) -> Response {
    let body = Status::new(Code::Unimplemented, message, None);
    let mut response = body.into_http(Encoding::Protobuf);
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response
}

/// The request's OTLP/HTTP encoding from its `Content-Type`, if it is one we speak.
fn encoding_of(headers: &HeaderMap) -> Option<Encoding> {
    let content_type = super::content_type(headers);
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media.to_ascii_lowercase().as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// An API error in OTLP/HTTP's shape: the same HTTP status, `Retry-After` and rejection
/// label, with a `google.rpc.Status` body in the request's encoding (the OTLP spec's
/// "Failures"), so OTLP exporters can log the message instead of undecodable text.
fn http_error(e: ApiError, encoding: Encoding) -> Response {
    let code = Code::of(&e);
    coded_http_error(e, code, encoding)
}

/// [`http_error`] with the `Status.code` given.
fn coded_http_error(e: ApiError, code: Code, encoding: Encoding) -> Response {
    let body = Status::new(code, e.message.clone(), e.retry_after);
    let mut response = e.into_response();
    let shaped = body.into_http(encoding);
    let (parts, body) = shaped.into_parts();
    *response.body_mut() = body;
    response.headers_mut().remove(CONTENT_LENGTH);
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.clone());
    }
    response
}

/// The in-flight ingest budget's refusal on the OTLP routes, in their own shapes: for
/// gRPC a Trailers-Only `RESOURCE_EXHAUSTED` (a plain HTTP 429 reads as `UNAVAILABLE`
/// without the message) with the retry delay as `grpc-retry-pushback-ms` and a
/// `RetryInfo` detail; for OTLP/HTTP the same HTTP status with a `Status` body of the
/// same code. `Err` gives the error back for every other route.
pub fn refused(path: &str, headers: &HeaderMap, e: ApiError) -> Result<Response, ApiError> {
    let code = match e.status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        _ => Code::of(&e),
    };
    if super::content_type(headers).starts_with("application/grpc") {
        let mut response = grpc_error(code, &e.message);
        let status = Status::new(code, e.message.clone(), e.retry_after);
        let details =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
        let headers = response.headers_mut();
        if let Ok(details) = HeaderValue::from_str(&details) {
            headers.insert("grpc-status-details-bin", details);
        }
        if let Some(secs) = e.retry_after {
            headers.insert(
                "grpc-retry-pushback-ms",
                HeaderValue::from(secs.saturating_mul(1000)),
            );
        }
        if let Some(why) = e.rejection {
            response.extensions_mut().insert(why);
        }
        return Ok(response);
    }
    if path == "/v1development/profiles" {
        let encoding = encoding_of(headers).unwrap_or(Encoding::Protobuf);
        return Ok(coded_http_error(e, code, encoding));
    }
    Err(e)
}

/// `POST /v1development/profiles`: `application/x-protobuf`, `application/protobuf` or
/// `application/json`, `Content-Encoding: gzip` or none; the reply in the request's
/// encoding.
pub async fn http(state: Tenant, headers: HeaderMap, body: Bytes) -> Response {
    let Some(encoding) = encoding_of(&headers) else {
        return unsupported(format!(
            "unsupported Content-Type {:?}: send application/x-protobuf, \
             application/protobuf or application/json",
            super::content_type(&headers)
        ));
    };
    let gzip = body.starts_with(&[0x1f, 0x8b]);
    match headers.get("content-encoding").map(HeaderValue::to_str) {
        None => {}
        Some(Ok(e)) if e.eq_ignore_ascii_case("identity") => {}
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") && gzip => {}
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") => {
            let e = ApiError::bad_request("Content-Encoding is gzip but the body is not gzip");
            return http_error(e, encoding);
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
            Err(e) => http_error(ApiError::internal(e), encoding),
        },
        Ok(reply) => (
            [(CONTENT_TYPE, "application/x-protobuf")],
            reply.encode_to_vec(),
        )
            .into_response(),
        Err(e) => http_error(e, encoding),
    }
}

/// `google.rpc.Status`, the error body of OTLP/HTTP and gRPC's
/// `grpc-status-details-bin`; declared here (three fields) rather than generated.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1; }`, whose
/// `Duration` is `{ int64 seconds = 1; int32 nanos = 2; }`: OTLP exporters retry a
/// throttled export after this delay.
#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<Duration>,
}

#[derive(Clone, PartialEq, Message)]
struct Duration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl Status {
    /// A status, with a `RetryInfo` detail when the client should retry after a delay.
    fn new(code: Code, message: String, retry_after: Option<u64>) -> Self {
        let details = retry_after
            .map(|secs| Any {
                type_url: RETRY_INFO.to_owned(),
                value: RetryInfo {
                    retry_delay: Some(Duration {
                        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                }
                .encode_to_vec(),
            })
            .into_iter()
            .collect();
        Status {
            code: code as i32,
            message,
            details,
        }
    }

    /// The status as an OTLP/HTTP body: binary protobuf, or proto3's JSON mapping
    /// (`Any` as `@type` plus the message's fields, a `Duration` as `"1s"`).
    fn into_http(self, encoding: Encoding) -> Response {
        if encoding != Encoding::Json {
            let body = self.encode_to_vec();
            return ([(CONTENT_TYPE, "application/x-protobuf")], body).into_response();
        }
        let details: Vec<_> = self
            .details
            .iter()
            .filter_map(|any| RetryInfo::decode(any.value.as_slice()).ok())
            .map(|info| {
                let secs = info.retry_delay.unwrap_or_default().seconds;
                serde_json::json!({ "@type": RETRY_INFO, "retryDelay": format!("{secs}s") })
            })
            .collect();
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if !details.is_empty() {
            body["details"] = serde_json::Value::Array(details);
        }
        ([(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

/// gRPC status codes we answer with.
#[derive(Debug, Clone, Copy)]
enum Code {
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
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
            StatusCode::UNAUTHORIZED => Code::Unauthenticated,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
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
pub async fn grpc(state: Tenant, headers: HeaderMap, body: Body) -> Response {
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
