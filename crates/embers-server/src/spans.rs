//! `querier.v1.QuerierService/SelectMergeSpanProfile`: the merged profile of chosen
//! tracing spans, which Grafana's trace view asks for ("profiles for this span").
//!
//! Span IDs are 16 hex digits, as pyroscope-otel tags samples (`span_id`) and as the
//! span attribute `pyroscope.profile.id` carries them. The store answers from the span
//! pairs kept beside each series (`embers_store::Store::merge_spans`), reading only the
//! leaves of the range.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use embers_profile::StackTree;
use prost::encoding::encode_varint;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::flamebearer;
use crate::ingest::spans::parse_span_id;
use crate::querier::{decode, fg_json, fg_wire, int, reply, selector_matchers, with_type};
use crate::query::max_nodes;
use crate::range::QueryRange;
use crate::warnings::with_warnings;
use crate::wire;
use crate::AppState;

/// `ProfileFormat.PROFILE_FORMAT_TREE`: Pyroscope tree bytes instead of a flame graph.
const FORMAT_TREE: i32 = 2;

/// The JSON request, in both field spellings (Connect's camelCase and the proto names).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JSpan {
    #[serde(
        rename = "profileTypeID",
        alias = "profile_typeID",
        alias = "profileTypeId"
    )]
    profile_type_id: String,
    #[serde(alias = "label_selector")]
    label_selector: String,
    #[serde(alias = "span_selector")]
    span_selector: Vec<String>,
    start: Option<Value>,
    end: Option<Value>,
    #[serde(alias = "max_nodes")]
    max_nodes: Option<Value>,
    format: Option<Value>,
}

impl JSpan {
    fn request(self) -> wire::SelectMergeSpanProfileRequest {
        let format = match &self.format {
            Some(Value::String(s)) if s == "PROFILE_FORMAT_TREE" => FORMAT_TREE,
            Some(Value::String(s)) if s == "PROFILE_FORMAT_FLAMEGRAPH" => 1,
            other => int(other) as i32,
        };
        wire::SelectMergeSpanProfileRequest {
            profile_type_id: self.profile_type_id,
            label_selector: self.label_selector,
            span_selector: self.span_selector,
            start: int(&self.start),
            end: int(&self.end),
            max_nodes: self.max_nodes.map(|v| int(&Some(v))),
            format,
        }
    }
}

/// `POST /querier.v1.QuerierService/SelectMergeSpanProfile`.
pub async fn select_merge_span_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let timer = state.metrics.start();
    let result = answer(&state, &headers, &body).await;
    state.metrics.queried(result.is_ok(), timer);
    result
}

async fn answer(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let (req, json) = decode(headers, body, JSpan::request)?;
    let matchers = with_type(
        selector_matchers(&req.label_selector)?,
        &req.profile_type_id,
    )?;
    let spans = req
        .span_selector
        .iter()
        .map(|s| {
            parse_span_id(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "span_selector {s:?}: a span ID is 16 hex digits, not 0"
                ))
                .connect()
            })
        })
        .collect::<Result<Vec<u64>, ApiError>>()?;
    let QueryRange { from, until } = state.range_ms(req.start, req.end)?;
    let tree = state
        .query(move |store| Ok(store.merge_spans(&matchers, from, until, &spans)?))
        .await
        .map_err(ApiError::connect)?;
    let warnings = state.store.damage_warnings(from, until);
    let max = max_nodes(req.max_nodes.and_then(|n| usize::try_from(n).ok()));
    let truncated = tree.truncated(max).0;
    let message = if req.format == FORMAT_TREE {
        wire::SelectMergeSpanProfileResponse {
            flamegraph: None,
            tree: tree_bytes(&truncated),
        }
    } else {
        wire::SelectMergeSpanProfileResponse {
            flamegraph: Some(fg_wire(&flamebearer::single(&truncated))),
            tree: Vec::new(),
        }
    };
    let response = reply(message, json, |m| match &m.flamegraph {
        Some(f) => json!({"flamegraph": fg_json(&f.names, &f.levels, f.total, f.max_self)}),
        None => {
            use base64::Engine as _;
            json!({"tree": base64::engine::general_purpose::STANDARD.encode(&m.tree)})
        }
    });
    Ok(with_warnings(response, &warnings))
}

/// Pyroscope's tree bytes (what Grafana Pyroscope's `model.Tree` marshals): nodes in
/// depth-first pre-order from a nameless root, each as uvarint name length, name,
/// uvarint self value, uvarint child count. Empty for an empty tree.
fn tree_bytes(tree: &StackTree) -> Vec<u8> {
    let mut out = Vec::new();
    if tree.total() == 0 {
        return out;
    }
    let mut todo = vec![StackTree::ROOT];
    while let Some(node) = todo.pop() {
        let name = tree.frame(node).map(|f| f.to_string()).unwrap_or_default();
        encode_varint(name.len() as u64, &mut out);
        out.extend_from_slice(name.as_bytes());
        encode_varint(tree.self_value(node), &mut out);
        let children = tree.children_sorted(node);
        encode_varint(children.len() as u64, &mut out);
        todo.extend(children.into_iter().rev());
    }
    out
}

#[cfg(test)]
mod tests {
    use embers_profile::Frame;

    use super::*;

    #[test]
    fn tree_bytes_are_pre_order_with_child_counts() {
        let mut tree = StackTree::new();
        tree.add_frames([&Frame::named("a"), &Frame::named("b")], 3);
        tree.add_frames([&Frame::named("a")], 2);
        let bytes = tree_bytes(&tree);
        // root: "", self 0, 1 child; a: self 2, 1 child; b: self 3, 0 children.
        assert_eq!(bytes, vec![0, 0, 1, 1, b'a', 2, 1, 1, b'b', 3, 0]);
        assert!(tree_bytes(&StackTree::new()).is_empty());
    }
}
