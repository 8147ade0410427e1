//! Connect unary calls in both encodings, as connect-go (Grafana's backend) and
//! connect-web (Profiles Drilldown) send them: `application/proto` or
//! `application/json` bodies, `Content-Encoding: gzip` or none, replies gzipped when the
//! client accepts it, errors as Connect's `{"code", "message"}` JSON.
//!
//! JSON goes through the generated proto3 mapping (`pbjson`, see
//! `crate::grafana_proto`), which reads both field spellings (`labelSelector` and
//! `label_selector`), int64 as string or number and enums by name or number, and writes
//! what `protojson` writes (camelCase, int64 as strings, defaults left out).

use std::io::Read;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// Replies smaller than this are sent plain: gzip would not pay for its header.
const GZIP_REPLY_FROM: usize = 1024;

/// How a call was encoded, so the reply matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Codec {
    /// `application/json` (else `application/proto`).
    pub json: bool,
    /// The client accepts a gzipped reply.
    pub gzip_reply: bool,
}

/// Decodes a request body: the `Content-Type` picks the encoding, `Content-Encoding:
/// gzip` is inflated up to `max_decoded` bytes (a query request is tiny; more is a bomb).
pub(crate) fn decode<T>(
    headers: &HeaderMap,
    body: &[u8],
    max_decoded: usize,
) -> Result<(T, Codec), ApiError>
where
    T: Message + Default + DeserializeOwned,
{
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str());
    let media = content_type.split(';').next().unwrap_or("").trim();
    let json = match media.to_ascii_lowercase().as_str() {
        "application/json" => true,
        "application/proto" | "application/protobuf" | "application/x-protobuf" | "" => false,
        other => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unimplemented",
                format!("Content-Type {other:?}: send application/proto or application/json"),
            ))
        }
    };
    let codec = Codec {
        json,
        gzip_reply: header_str(headers, header::ACCEPT_ENCODING.as_str())
            .split(',')
            .any(|e| e.trim().split(';').next() == Some("gzip")),
    };
    let inflated;
    let body = match header_str(headers, header::CONTENT_ENCODING.as_str()).trim() {
        "" | "identity" => body,
        e if e.eq_ignore_ascii_case("gzip") => {
            inflated = gunzip(body, max_decoded)?;
            &inflated[..]
        }
        other => {
            return Err(unimplemented(format!(
                "Content-Encoding {other:?}: send gzip or none"
            )))
        }
    };
    let message = if json {
        // An empty JSON body is the empty message, as connect-go reads it.
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            body
        };
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("request JSON: {e}")).connect())?
    } else {
        T::decode(body)
            .map_err(|e| ApiError::bad_request(format!("request protobuf: {e}")).connect())?
    };
    Ok((message, codec))
}

/// A Connect error with its own status (the shared constructors cover the common ones).
fn error(status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError {
        status,
        code,
        message,
        connect: true,
        retry_after: None,
        rejection: None,
    }
}

/// Connect's `unimplemented` (HTTP 501): a method, format or selector we do not answer.
/// Profiles Drilldown falls back to older calls on 501.
pub(crate) fn unimplemented(message: impl Into<String>) -> ApiError {
    error(StatusCode::NOT_IMPLEMENTED, "unimplemented", message.into())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    MultiGzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("request gzip: {e}")).connect())?;
    if out.len() > max {
        return Err(ApiError::too_large(format!(
            "the request inflates past {max} bytes (max_decoded_bytes)"
        ))
        .connect());
    }
    Ok(out)
}

/// The reply in the request's encoding.
pub(crate) fn reply<T: Message + Serialize>(message: &T, codec: Codec) -> Response {
    let (content_type, body) = if codec.json {
        match serde_json::to_vec(message) {
            Ok(body) => ("application/json", body),
            Err(e) => return ApiError::internal(e).connect().into_response(),
        }
    } else {
        ("application/proto", message.encode_to_vec())
    };
    raw_reply(content_type, body, codec)
}

/// Bytes already encoded as `content_type`, gzipped if the client accepts it.
pub(crate) fn raw_reply(content_type: &'static str, body: Vec<u8>, codec: Codec) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if codec.gzip_reply && body.len() >= GZIP_REPLY_FROM {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if std::io::Write::write_all(&mut gz, &body).is_ok() {
            if let Ok(zipped) = gz.finish() {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                return (headers, zipped).into_response();
            }
        }
    }
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grafana_proto::querier::v1::SelectMergeStacktracesRequest;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn json_takes_both_spellings_and_int64_as_strings() {
        let h = headers(&[("content-type", "application/json")]);
        let snake = br#"{"profile_typeID":"a:b:c:d:e","label_selector":"{x=\"1\"}","start":"5","max_nodes":7,"format":"PROFILE_FORMAT_TREE"}"#;
        let camel = br#"{"profileTypeID":"a:b:c:d:e","labelSelector":"{x=\"1\"}","start":5,"maxNodes":"7","format":2}"#;
        let (a, codec): (SelectMergeStacktracesRequest, _) = decode(&h, snake, 1 << 20).unwrap();
        let (b, _): (SelectMergeStacktracesRequest, _) = decode(&h, camel, 1 << 20).unwrap();
        assert!(codec.json);
        assert_eq!(a, b);
        assert_eq!(a.label_selector, "{x=\"1\"}");
        assert_eq!((a.start, a.max_nodes, a.format), (5, Some(7), 2));
    }

    #[test]
    fn gzip_bodies_inflate_within_the_bound() {
        let msg = SelectMergeStacktracesRequest {
            label_selector: "{}".into(),
            ..Default::default()
        };
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &msg.encode_to_vec()).unwrap();
        let zipped = gz.finish().unwrap();
        let h = headers(&[
            ("content-type", "application/proto"),
            ("content-encoding", "gzip"),
        ]);
        let (got, _): (SelectMergeStacktracesRequest, _) = decode(&h, &zipped, 1 << 20).unwrap();
        assert_eq!(got, msg);
        let err = decode::<SelectMergeStacktracesRequest>(&h, &zipped, 1).unwrap_err();
        assert_eq!(err.code, "resource_exhausted");
    }

    #[test]
    fn unknown_media_types_and_encodings_are_refused() {
        let h = headers(&[("content-type", "text/plain")]);
        assert!(decode::<SelectMergeStacktracesRequest>(&h, b"", 10).is_err());
        let h = headers(&[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ]);
        assert!(decode::<SelectMergeStacktracesRequest>(&h, b"{}", 10).is_err());
    }
}
