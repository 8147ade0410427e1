//! Connect unary framing for generated messages: `application/proto` through prost,
//! `application/json` through the generated proto3 JSON (pbjson: both field spellings,
//! int64 as string or number), request bodies gzipped or not (`Content-Encoding`).

use std::borrow::Cow;
use std::io::Read;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// A request's encoding, answered in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    Proto,
    Json,
}

impl Codec {
    /// The encoding the `Content-Type` names (proto when absent, as Connect's default).
    pub(super) fn of(headers: &HeaderMap) -> Result<Codec, ApiError> {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/proto");
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/proto" | "application/protobuf" | "application/x-protobuf" => {
                Ok(Codec::Proto)
            }
            "application/json" => Ok(Codec::Json),
            other => Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ..ApiError::bad_request(format!(
                    "content type {other:?}: send application/proto or application/json"
                ))
            }),
        }
    }

    pub(super) fn decode<M: Message + Default + DeserializeOwned>(
        self,
        body: &[u8],
    ) -> Result<M, ApiError> {
        match self {
            Codec::Proto => {
                M::decode(body).map_err(|e| ApiError::bad_request(format!("request protobuf: {e}")))
            }
            // An empty body is the empty message in either encoding.
            Codec::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(M::default()),
            Codec::Json => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("request JSON: {e}"))),
        }
    }

    pub(super) fn reply<M: Message + Serialize>(self, message: &M) -> Response {
        match self {
            Codec::Proto => (
                [("content-type", "application/proto")],
                message.encode_to_vec(),
            )
                .into_response(),
            Codec::Json => match serde_json::to_vec(message) {
                Ok(bytes) => ([("content-type", "application/json")], bytes).into_response(),
                Err(e) => ApiError::internal(format_args!("JSON reply: {e}"))
                    .connect()
                    .into_response(),
            },
        }
    }
}

/// The body, gunzipped when `Content-Encoding: gzip`, at most `limit` bytes after.
pub(super) fn inflate<'b>(
    headers: &HeaderMap,
    body: &'b [u8],
    limit: usize,
) -> Result<Cow<'b, [u8]>, ApiError> {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" => Ok(body.into()),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request(format!("corrupt gzip body: {e}")))?;
            if out.len() > limit {
                return Err(ApiError::too_large(format!(
                    "the request is over max_body_bytes ({limit} bytes) after decompression"
                )));
            }
            Ok(out.into())
        }
        other => Err(ApiError {
            code: "unimplemented",
            ..ApiError::bad_request(format!("content encoding {other:?}: use gzip or identity"))
        }),
    }
}
