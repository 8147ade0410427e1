//! `querier.v1.QuerierService/SelectMergeSpanProfile`: the merged profile of chosen
//! tracing spans, which Grafana's trace view asks for ("profiles for this span").
//!
//! Span IDs are 16 hex digits, as pyroscope-otel tags samples (`span_id`) and as the
//! span attribute `pyroscope.profile.id` carries them. The store answers from the span
//! pairs kept beside each series (`embers_store::Store::merge_spans`), reading only the
//! leaves of the range.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::error::ApiError;
use crate::flamebearer;
use crate::grafana_proto::querier::v1 as q;
use crate::querier::{
    flame_graph, node_budget, selection, span_ids, tree_bytes, unary, Answer, FORMAT_TREE,
};
use crate::range::QueryRange;
use crate::tenants::Tenant;

/// `POST /querier.v1.QuerierService/SelectMergeSpanProfile`.
pub async fn select_merge_span_profile(
    state: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let timer = state.metrics.start();
    let result = unary(&state, &headers, &body, answer).await;
    state.metrics.queried(result.is_ok(), timer);
    result
}

async fn answer(
    state: Tenant,
    req: q::SelectMergeSpanProfileRequest,
) -> Result<Answer<q::SelectMergeSpanProfileResponse>, ApiError> {
    let (matchers, range) = selection(
        &state,
        &req.profile_type_id,
        &req.label_selector,
        req.start,
        req.end,
    )?;
    let spans = span_ids(&req.span_selector)?;
    let QueryRange { from, until } = range;
    let tree = state
        .query(move |store| Ok(store.merge_spans(&matchers, from, until, &spans)?))
        .await?;
    let warnings = state.store().damage_warnings(from, until);
    let truncated = tree.truncated(node_budget(req.max_nodes)).0;
    let message = if req.format == FORMAT_TREE {
        q::SelectMergeSpanProfileResponse {
            flamegraph: None,
            tree: tree_bytes(&truncated),
        }
    } else {
        q::SelectMergeSpanProfileResponse {
            flamegraph: Some(flame_graph(flamebearer::single(&truncated))),
            tree: Vec::new(),
        }
    };
    Ok(Answer { message, warnings })
}
