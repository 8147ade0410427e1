//! Connect `querier.v1.QuerierService`, the API Grafana's Pyroscope data source and the
//! Profiles Drilldown app call, on the messages generated from Grafana Pyroscope's own
//! protos ([`crate::grafana_proto`]), in both Connect encodings ([`connect`]).
//!
//! One module per group of methods: [`labels`] (profile types, label names and values,
//! series, stats, query analysis), [`merge`] (flame graphs, trees, pprof, diffs, with
//! call-site focus), [`series`] (time series and heatmaps over the store's 10 s leaves).
//! Every method bounds its range with [`QueryRange`] and reads the store in a query slot.

pub(crate) mod connect;
mod labels;
mod merge;
mod series;
pub(crate) mod settings;

use std::future::Future;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use embers_profile::Labels;
use embers_store::{MatchOp, Matcher, Selector, Store, PROFILE_TYPE};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) use connect::Codec;
pub(crate) use merge::{flame_graph, span_ids, tree_bytes, FORMAT_TREE};

use crate::error::ApiError;
use crate::grafana_proto::types::v1 as types;
use crate::profile_type::{parts, resolve};
use crate::range::QueryRange;
use crate::tenants::Tenant;
use crate::warnings::with_warnings;

/// Most flame-graph nodes a client may ask for (Grafana Pyroscope's cap, 1 << 20).
pub(crate) const MAX_NODES_CAP: usize = 1 << 20;

/// `POST /querier.v1.QuerierService/{method}`.
pub async fn call(
    state: Tenant,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let timer = state.metrics.start();
    let result = dispatch(&state, &method, &headers, &body).await;
    state.metrics.queried(result.is_ok(), timer);
    result
}

async fn dispatch(
    state: &Tenant,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let s = state;
    match method {
        "ProfileTypes" => unary(s, headers, body, labels::profile_types).await,
        "LabelNames" => unary(s, headers, body, labels::label_names).await,
        "LabelValues" => unary(s, headers, body, labels::label_values).await,
        "Series" => unary(s, headers, body, labels::series).await,
        "GetProfileStats" => unary(s, headers, body, labels::profile_stats).await,
        "AnalyzeQuery" => unary(s, headers, body, labels::analyze_query).await,
        "SelectMergeStacktraces" => unary(s, headers, body, merge::stacktraces).await,
        "SelectMergeProfile" => merge::profile(s, headers, body).await,
        "Diff" => unary(s, headers, body, merge::diff).await,
        "SelectSeries" => unary(s, headers, body, series::select_series).await,
        "SelectHeatmap" => unary(s, headers, body, series::select_heatmap).await,
        other => Err(connect::unimplemented(format!(
            "querier.v1.QuerierService/{other} is not implemented"
        ))),
    }
}

/// An answer and the damage warnings of the ranges it read.
pub(crate) struct Answer<T> {
    pub message: T,
    pub warnings: Vec<String>,
}

impl<T> From<T> for Answer<T> {
    fn from(message: T) -> Self {
        Answer {
            message,
            warnings: Vec::new(),
        }
    }
}

/// Decodes the request, runs `f`, encodes the answer like the request.
pub(crate) async fn unary<Req, Resp, Fut>(
    state: &Tenant,
    headers: &HeaderMap,
    body: &[u8],
    f: impl FnOnce(Tenant, Req) -> Fut,
) -> Result<Response, ApiError>
where
    Req: Message + Default + DeserializeOwned,
    Resp: Message + Serialize,
    Fut: Future<Output = Result<Answer<Resp>, ApiError>>,
{
    let (request, codec) = decode(state, headers, body)?;
    let answer = f(state.clone(), request).await.map_err(ApiError::connect)?;
    Ok(with_warnings(
        connect::reply(&answer.message, codec),
        &answer.warnings,
    ))
}

/// Decodes a request body, inflating gzip within the server's `max_decoded_bytes`.
pub(crate) fn decode<Req: Message + Default + DeserializeOwned>(
    state: &Tenant,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Req, Codec), ApiError> {
    connect::decode(headers, body, state.budget.max_decoded_bytes)
}

/// Matchers of a label selector (`{}` or empty: everything).
pub(crate) fn selector_matchers(s: &str) -> Result<Vec<Matcher>, ApiError> {
    let s = if s.trim().is_empty() { "{}" } else { s };
    let sel = Selector::parse(s)
        .map_err(|e| ApiError::bad_request(format!("label selector {s:?}: {e}")).connect())?;
    Ok(resolve(&sel))
}

/// `matchers` narrowed to one profile type ID.
pub(crate) fn with_type(mut m: Vec<Matcher>, profile_type: &str) -> Result<Vec<Matcher>, ApiError> {
    if parts(profile_type).is_none() {
        return Err(ApiError::bad_request(format!(
            "profile_typeID {profile_type:?}: expected name:type:unit:period_type:period_unit"
        ))
        .connect());
    }
    m.push(Matcher::new(PROFILE_TYPE, MatchOp::Eq, profile_type).expect("not a regex"));
    Ok(m)
}

/// The matchers of a typed selection (`profile_typeID` + `label_selector`) and its range.
pub(crate) fn selection(
    state: &Tenant,
    profile_type: &str,
    label_selector: &str,
    start: i64,
    end: i64,
) -> Result<(Vec<Matcher>, QueryRange), ApiError> {
    let m = with_type(selector_matchers(label_selector)?, profile_type)?;
    Ok((m, state.range_ms(start, end)?))
}

/// Each selector's matchers (one empty selector if none).
fn all_matchers(list: &[String]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    if list.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    list.iter().map(|s| selector_matchers(s)).collect()
}

/// The sorted union of `f` over each selector of a request, computed in a query slot.
async fn union_over(
    state: &Tenant,
    selectors: &[String],
    f: impl Fn(&Store, &[Matcher]) -> Vec<String> + Send + 'static,
) -> Result<Vec<String>, ApiError> {
    let all = all_matchers(selectors)?;
    state
        .query(move |store| {
            let mut out = Vec::new();
            for m in &all {
                out.extend(f(store, m));
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
        .await
}

/// Labels as `types.v1` pairs.
pub(crate) fn pairs(labels: &Labels) -> Vec<types::LabelPair> {
    labels
        .iter()
        .map(|(k, v)| types::LabelPair {
            name: k.into(),
            value: v.into(),
        })
        .collect()
}

/// A request's node budget: unset or 0 is the default, at most [`MAX_NODES_CAP`].
pub(crate) fn node_budget(max_nodes: Option<i64>) -> usize {
    let asked = max_nodes.and_then(|n| usize::try_from(n).ok());
    crate::query::max_nodes(asked).min(MAX_NODES_CAP)
}
