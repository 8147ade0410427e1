//! The Connect `PusherService/Push` request body, protobuf or proto3 JSON, checked
//! against the budget before it is decoded.

use prost::Message;

use super::budget::{Bound, Spend};
use crate::wire;
use crate::FormatError;

const NAME: &str = "push";

/// The JSON form of a `PushRequest` (proto3 JSON mapping).
#[derive(Debug, serde::Deserialize)]
struct JsonPush {
    #[serde(default)]
    series: Vec<JsonSeries>,
}

#[derive(Debug, serde::Deserialize)]
struct JsonSeries {
    #[serde(default)]
    labels: Vec<JsonLabel>,
    #[serde(default)]
    samples: Vec<JsonSample>,
}

#[derive(Debug, serde::Deserialize)]
struct JsonLabel {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSample {
    #[serde(default, alias = "raw_profile")]
    raw_profile: String,
    #[serde(default, rename = "ID")]
    id: String,
}

fn from_json(body: &[u8], spend: &mut Spend<'_>) -> Result<wire::PushRequest, FormatError> {
    use base64::Engine;
    // Every series, label and sample is an object: counting braces bounds what serde
    // allocates before it runs (a brace inside a string only makes the count larger).
    spend.spend(
        NAME,
        Bound::Samples,
        memchr::memchr_iter(b'{', body).count(),
    )?;
    let json: JsonPush = serde_json::from_slice(body)
        .map_err(|e| FormatError::malformed(NAME, format!("PushRequest JSON: {e}")))?;
    let mut series = Vec::with_capacity(json.series.len());
    for s in json.series {
        let mut samples = Vec::with_capacity(s.samples.len());
        for x in s.samples {
            let raw_profile = base64::engine::general_purpose::STANDARD
                .decode(x.raw_profile.as_bytes())
                .map_err(|e| {
                    FormatError::malformed(NAME, format!("rawProfile is not base64: {e}"))
                })?;
            samples.push(wire::RawSample {
                raw_profile,
                id: x.id,
            });
        }
        let labels = s
            .labels
            .into_iter()
            .map(|l| wire::LabelPair {
                name: l.name,
                value: l.value,
            })
            .collect();
        series.push(wire::RawProfileSeries {
            labels,
            samples,
            annotations: Vec::new(),
        });
    }
    Ok(wire::PushRequest { series })
}

/// Decodes the request message (the body already gunzipped) by its content type.
pub(crate) fn request(
    body: &[u8],
    content_type: &str,
    spend: &mut Spend<'_>,
) -> Result<wire::PushRequest, FormatError> {
    if content_type.starts_with("application/json") {
        from_json(body, spend)
    } else if content_type.starts_with("application/proto")
        || content_type.starts_with("application/x-protobuf")
    {
        super::scan::push(body, spend)?;
        wire::PushRequest::decode(body)
            .map_err(|e| FormatError::malformed(NAME, format!("PushRequest protobuf: {e}")))
    } else {
        Err(FormatError::malformed(
            NAME,
            format!("unsupported content type {content_type:?}: use application/proto or application/json"),
        ))
    }
}
