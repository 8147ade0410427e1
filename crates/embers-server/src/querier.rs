//! Connect `querier.v1.QuerierService`, the API Grafana's Pyroscope data source calls,
//! in both Connect encodings (`application/proto` and `application/json`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use embers_profile::{Granularity, Labels};
use embers_store::{MatchOp, Matcher, Selector, Store, LEAF_SECONDS, PROFILE_TYPE};
use prost::Message;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::flamebearer::{self, Flamegraph};
use crate::profile_type::{parts, resolve};
use crate::query::max_nodes;
use crate::range::QueryRange;
use crate::warnings::with_warnings;
use crate::wire;
use crate::AppState;

/// A request body in either encoding.
pub(crate) fn decode<P: Message + Default, J: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    from_json: impl FnOnce(J) -> P,
) -> Result<(P, bool), ApiError> {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if json {
        let j: J = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("request JSON: {e}")).connect())?;
        Ok((from_json(j), true))
    } else {
        Ok((
            P::decode(body)
                .map_err(|e| ApiError::bad_request(format!("request protobuf: {e}")).connect())?,
            false,
        ))
    }
}

pub(crate) fn reply<P: Message>(
    message: P,
    json: bool,
    as_json: impl FnOnce(&P) -> Value,
) -> Response {
    if json {
        (
            [("content-type", "application/json")],
            as_json(&message).to_string(),
        )
            .into_response()
    } else {
        (
            [("content-type", "application/proto")],
            message.encode_to_vec(),
        )
            .into_response()
    }
}

/// proto3 JSON writes int64 as strings; accept both.
pub(crate) fn int(v: &Option<Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn selector_matchers(s: &str) -> Result<Vec<Matcher>, ApiError> {
    let s = if s.trim().is_empty() { "{}" } else { s };
    let sel = Selector::parse(s)
        .map_err(|e| ApiError::bad_request(format!("label selector {s:?}: {e}")).connect())?;
    Ok(resolve(&sel))
}

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

fn all_matchers(list: &[String]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    if list.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    list.iter().map(|s| selector_matchers(s)).collect()
}

/// The sorted union of `f` over each selector of a request (one empty selector if none),
/// computed in a query slot.
async fn union_over(
    state: &AppState,
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
        .map_err(ApiError::connect)
}

fn labels_json(labels: &[wire::LabelPair]) -> Value {
    Value::Array(
        labels
            .iter()
            .map(|l| json!({"name": l.name, "value": l.value}))
            .collect(),
    )
}

fn pairs(labels: &Labels) -> Vec<wire::LabelPair> {
    labels
        .iter()
        .map(|(k, v)| wire::LabelPair {
            name: k.into(),
            value: v.into(),
        })
        .collect()
}

pub(crate) fn fg_wire(fg: &Flamegraph) -> wire::FlameGraph {
    wire::FlameGraph {
        names: fg.names.clone(),
        levels: fg
            .levels
            .iter()
            .map(|l| wire::Level { values: l.clone() })
            .collect(),
        total: fg.num_ticks,
        max_self: fg.max_self,
    }
}

pub(crate) fn fg_json(
    names: &[String],
    levels: &[wire::Level],
    total: i64,
    max_self: i64,
) -> Value {
    json!({
        "names": names,
        "levels": levels.iter().map(|l| json!({"values": l.values.iter().map(|v| v.to_string()).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "total": total.to_string(),
        "maxSelf": max_self.to_string(),
    })
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JStart {
    start: Option<Value>,
    end: Option<Value>,
    matchers: Vec<String>,
    name: String,
    label_names: Vec<String>,
}

#[derive(serde::Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
struct JSelect {
    #[serde(
        rename = "profileTypeID",
        alias = "profile_typeID",
        alias = "profileTypeId"
    )]
    profile_type_id: String,
    label_selector: String,
    start: Option<Value>,
    end: Option<Value>,
    max_nodes: Option<Value>,
    group_by: Vec<String>,
    step: Option<f64>,
    limit: Option<Value>,
}

impl JSelect {
    fn merge_request(self) -> wire::SelectMergeStacktracesRequest {
        wire::SelectMergeStacktracesRequest {
            profile_type_id: self.profile_type_id,
            label_selector: self.label_selector,
            start: int(&self.start),
            end: int(&self.end),
            max_nodes: self.max_nodes.as_ref().map(|v| int(&Some(v.clone()))),
            format: 0,
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct JDiff {
    left: JSelect,
    right: JSelect,
}

/// `POST /querier.v1.QuerierService/{method}`.
pub async fn call(
    State(state): State<AppState>,
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
    state: &AppState,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    match method {
        "ProfileTypes" => {
            let (req, json) = decode(headers, body, |j: JStart| wire::ProfileTypesRequest {
                start: int(&j.start),
                end: int(&j.end),
            })?;
            let r = state.range_ms(req.start, req.end)?;
            let types = union_over(state, &[], move |store, m| {
                store.label_values(PROFILE_TYPE, m, r.from, r.until)
            })
            .await?;
            let profile_types = types
                .iter()
                .filter_map(|id| {
                    let p = parts(id)?;
                    Some(wire::ProfileType {
                        id: id.clone(),
                        name: p[0].into(),
                        sample_type: p[1].into(),
                        sample_unit: p[2].into(),
                        period_type: p[3].into(),
                        period_unit: p[4].into(),
                    })
                })
                .collect();
            Ok(reply(
                wire::ProfileTypesResponse { profile_types },
                json,
                |m| json!({"profileTypes": m.profile_types.iter().map(|t| json!({"ID": t.id, "name": t.name, "sampleType": t.sample_type, "sampleUnit": t.sample_unit, "periodType": t.period_type, "periodUnit": t.period_unit})).collect::<Vec<_>>()}),
            ))
        }
        "LabelNames" => {
            let (req, json) = decode(headers, body, |j: JStart| wire::LabelNamesRequest {
                matchers: j.matchers,
                start: int(&j.start),
                end: int(&j.end),
            })?;
            let r = state.range_ms(req.start, req.end)?;
            let names = union_over(state, &req.matchers, move |store, m| {
                store.label_names(m, r.from, r.until)
            })
            .await?;
            Ok(reply(
                wire::LabelNamesResponse { names },
                json,
                |m| json!({"names": m.names}),
            ))
        }
        "LabelValues" => {
            let (req, json) = decode(headers, body, |j: JStart| wire::LabelValuesRequest {
                name: j.name,
                matchers: j.matchers,
                start: int(&j.start),
                end: int(&j.end),
            })?;
            let r = state.range_ms(req.start, req.end)?;
            let name = req.name.clone();
            let names = union_over(state, &req.matchers, move |store, m| {
                store.label_values(&name, m, r.from, r.until)
            })
            .await?;
            Ok(reply(
                wire::LabelValuesResponse { names },
                json,
                |m| json!({"names": m.names}),
            ))
        }
        "Series" => {
            let (req, json) = decode(headers, body, |j: JStart| wire::SeriesRequest {
                matchers: j.matchers,
                label_names: j.label_names,
                start: int(&j.start),
                end: int(&j.end),
            })?;
            let r = state.range_ms(req.start, req.end)?;
            let all = all_matchers(&req.matchers)?;
            let found = state
                .query(move |store| {
                    Ok(all
                        .iter()
                        .flat_map(|m| store.series(m, r.from, r.until))
                        .collect::<Vec<_>>())
                })
                .await
                .map_err(ApiError::connect)?;
            let mut sets = std::collections::BTreeSet::new();
            {
                for (_, key) in found {
                    let mut labels = key.labels.clone();
                    labels.set(PROFILE_TYPE, key.profile_type.clone());
                    let kept: Labels = if req.label_names.is_empty() {
                        labels
                    } else {
                        Labels::from_pairs(
                            labels
                                .iter()
                                .filter(|(k, _)| req.label_names.iter().any(|n| n == k)),
                        )
                    };
                    sets.insert(kept);
                }
            }
            let labels_set = sets
                .iter()
                .map(|l| wire::Labels { labels: pairs(l) })
                .collect();
            Ok(reply(
                wire::SeriesResponse { labels_set },
                json,
                |m| json!({"labelsSet": m.labels_set.iter().map(|l| json!({"labels": labels_json(&l.labels)})).collect::<Vec<_>>()}),
            ))
        }
        "SelectMergeStacktraces" => {
            let (req, json) = decode(headers, body, JSelect::merge_request)?;
            let (tree, (from, until)) = merged(state, &req).await?;
            let warnings = state.store.damage_warnings(from, until);
            let max = max_nodes(req.max_nodes.and_then(|n| usize::try_from(n).ok()));
            let fg = flamebearer::single(&tree.truncated(max).0);
            let message = wire::SelectMergeStacktracesResponse {
                flamegraph: Some(fg_wire(&fg)),
                tree: Vec::new(),
            };
            let response = reply(message, json, |m| {
                let f = m.flamegraph.as_ref().expect("set above");
                json!({"flamegraph": fg_json(&f.names, &f.levels, f.total, f.max_self)})
            });
            Ok(with_warnings(response, &warnings))
        }
        "Diff" => {
            let (req, json) = decode(headers, body, |j: JDiff| wire::DiffRequest {
                left: Some(j.left.merge_request()),
                right: Some(j.right.merge_request()),
            })?;
            let (left, right) = (req.left.unwrap_or_default(), req.right.unwrap_or_default());
            let (l, (lf, lu)) = merged(state, &left).await?;
            let (r, (rf, ru)) = merged(state, &right).await?;
            let warnings = state.store.damage_warnings_for(&[(lf, lu), (rf, ru)]);
            let max = max_nodes(left.max_nodes.and_then(|n| usize::try_from(n).ok()));
            let (fg, lt, rt) = flamebearer::diff(&l.truncated(max).0, &r.truncated(max).0);
            let g = fg_wire(&fg);
            let message = wire::DiffResponse {
                flamegraph: Some(wire::FlameGraphDiff {
                    names: g.names,
                    levels: g.levels,
                    total: g.total,
                    max_self: g.max_self,
                    left_ticks: lt,
                    right_ticks: rt,
                }),
            };
            let response = reply(message, json, |m| {
                let f = m.flamegraph.as_ref().expect("set above");
                let mut v = fg_json(&f.names, &f.levels, f.total, f.max_self);
                v["leftTicks"] = json!(f.left_ticks.to_string());
                v["rightTicks"] = json!(f.right_ticks.to_string());
                json!({"flamegraph": v})
            });
            Ok(with_warnings(response, &warnings))
        }
        "SelectSeries" => {
            let (req, json) = decode(headers, body, |j: JSelect| wire::SelectSeriesRequest {
                group_by: j.group_by.clone(),
                step: j.step.unwrap_or(0.0),
                limit: j.limit.as_ref().map(|v| int(&Some(v.clone()))),
                aggregation: None,
                profile_type_id: j.profile_type_id.clone(),
                label_selector: j.label_selector.clone(),
                start: int(&j.start),
                end: int(&j.end),
            })?;
            let range = state.range_ms(req.start, req.end)?;
            let QueryRange { from, until } = range;
            let series = select_series(state, req, range).await?;
            let warnings = state.store.damage_warnings(from, until);
            let response = reply(wire::SelectSeriesResponse { series }, json, |m| {
                json!({"series": m.series.iter().map(|s| json!({
                    "labels": labels_json(&s.labels),
                    "points": s.points.iter().map(|p| json!({"value": p.value, "timestamp": p.timestamp.to_string()})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()})
            });
            Ok(with_warnings(response, &warnings))
        }
        other => Err(ApiError::not_implemented(format!(
            "QuerierService/{other} is not implemented"
        ))
        .connect()),
    }
}

async fn merged(
    state: &AppState,
    req: &wire::SelectMergeStacktracesRequest,
) -> Result<(embers_profile::StackTree, (i64, i64)), ApiError> {
    let m = with_type(
        selector_matchers(&req.label_selector)?,
        &req.profile_type_id,
    )?;
    let QueryRange { from, until } = state.range_ms(req.start, req.end)?;
    // Grafana's panels show one node per function name; lines stay in the store.
    let tree = state
        .query(move |store| {
            Ok(store
                .merge(&m, from, until)?
                .into_granularity(Granularity::Function))
        })
        .await
        .map_err(ApiError::connect)?;
    Ok((tree, (from, until)))
}

async fn select_series(
    state: &AppState,
    req: wire::SelectSeriesRequest,
    range: QueryRange,
) -> Result<Vec<wire::Series>, ApiError> {
    let m = with_type(
        selector_matchers(&req.label_selector)?,
        &req.profile_type_id,
    )?;
    let QueryRange { from, until } = range;
    // Steps are whole powers of ten of leaves (the segment tree's block sizes), widened
    // until the range has at most 11,000 points (`as` saturates: NaN is 0, ∞ is max).
    let step = range.step_leaves(req.step as i64, state.query_limits.max_points);
    let group_by = req.group_by.clone();
    let series = state
        .query(move |store| {
            let keys: BTreeMap<_, _> = store.series(&m, from, until).into_iter().collect();
            let (first, totals) = store
                .totals(&m, from, until, step)
                .map_err(|e| ApiError::from(e).connect())?;
            let mut groups: BTreeMap<Labels, Vec<u64>> = BTreeMap::new();
            for (id, values) in totals {
                let Some(key) = keys.get(&id) else { continue };
                let group = Labels::from_pairs(
                    group_by
                        .iter()
                        .filter_map(|g| key.labels.get(g).map(|v| (g.clone(), v.to_owned()))),
                );
                let sums = groups.entry(group).or_insert_with(|| vec![0; values.len()]);
                for (i, v) in values.iter().enumerate() {
                    sums[i] += v;
                }
            }
            Ok((first, groups))
        })
        .await
        .map_err(ApiError::connect)?;
    let (first, groups) = series;
    let mut out: Vec<wire::Series> = groups
        .into_iter()
        .map(|(labels, values)| wire::Series {
            labels: pairs(&labels),
            points: values
                .iter()
                .enumerate()
                .filter(|(_, v)| **v > 0)
                .map(|(i, v)| wire::Point {
                    value: *v as f64,
                    timestamp: (first + i as i64 * step) * LEAF_SECONDS * 1000,
                })
                .collect(),
        })
        .collect();
    if let Some(limit) = req
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| l > 0)
    {
        out.sort_by(|a, b| {
            let sum = |s: &wire::Series| s.points.iter().map(|p| p.value).sum::<f64>();
            sum(b).total_cmp(&sum(a))
        });
        out.truncate(limit);
    }
    Ok(out)
}
