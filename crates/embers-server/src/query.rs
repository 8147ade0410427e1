//! The legacy query API: `/render` (flamebearer JSON, pprof, collapsed, SVG),
//! `/render-diff`, and label, series and app listings.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use axum::Json;
use embers_formats::{Format, WriteOptions};
use embers_profile::{Granularity, Profile, StackTree};
use embers_store::{Matcher, Selector, Store, LEAF_SECONDS, SERVICE_NAME};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::flamebearer::{self, Units};
use crate::profile_type::{legacy_suffix, resolve};
use crate::range::{DefaultFrom, QueryRange};
use crate::tenants::Tenant;
use crate::warnings::{json_with_warnings, with_warnings};

/// Default `maxNodes`.
pub const DEFAULT_MAX_NODES: usize = 8192;

/// A client's `maxNodes` (absent or 0: the default).
pub fn max_nodes(n: Option<usize>) -> usize {
    n.filter(|&n| n > 0).unwrap_or(DEFAULT_MAX_NODES)
}

/// The node budget a `/render` or `/render-diff` request asked for, if any: Pyroscope's
/// frontends send `max-nodes`, Grafana's and ours `maxNodes`; as Grafana Pyroscope reads
/// them, a non-zero `maxNodes` wins over `max-nodes`.
fn asked_max_nodes(camel: Option<usize>, dashed: Option<usize>) -> Option<usize> {
    camel.filter(|&n| n > 0).or(dashed).filter(|&n| n > 0)
}

/// The `aggregation` parameter: `function` (the default, one node per function name, as
/// Grafana shows trees) or `line` (one node per function, file and line).
pub fn granularity(aggregation: Option<&str>) -> Result<Granularity, ApiError> {
    let a = aggregation.unwrap_or("");
    Granularity::parse(a).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown aggregation {a:?}: use function (the default) or line"
        ))
    })
}

/// Parses a selector into store matchers, with a 400 that points at the problem.
pub fn matchers(query: &str) -> Result<(Selector, Vec<Matcher>), ApiError> {
    let selector = Selector::parse(query)
        .map_err(|e| ApiError::bad_request(format!("query {query:?}: {e}")))?;
    let m = resolve(&selector);
    Ok((selector, m))
}

/// Parameters of `/render`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderParams {
    query: Option<String>,
    name: Option<String>,
    from: Option<String>,
    until: Option<String>,
    max_nodes: Option<usize>,
    #[serde(rename = "max-nodes")]
    max_nodes_dashed: Option<usize>,
    format: Option<String>,
    aggregation: Option<String>,
}

/// The profile type the matchers select, if they pin one.
fn pinned_type(m: &[Matcher]) -> Option<&str> {
    crate::profile_type::pinned(m)
}

/// Merged tree and timeline of a query.
struct Rendered {
    tree: StackTree,
    timeline_start: i64,
    timeline: Vec<u64>,
    step_seconds: i64,
    /// The merged series' sampling period (`Store::period`), for pprof exports.
    period: i64,
}

/// Points the `/render` timeline aims at (the web UI's width).
const TIMELINE_POINTS: i64 = 1024;

fn render_query(
    store: &Store,
    m: &[Matcher],
    range: QueryRange,
    granularity: Granularity,
) -> Result<Rendered, ApiError> {
    let QueryRange { from, until } = range;
    let tree = store.merge(m, from, until)?.into_granularity(granularity);
    let step = range.step_for(TIMELINE_POINTS);
    let (first, per_series) = store.totals(m, from, until, step)?;
    let mut timeline: Vec<u64> = Vec::new();
    for totals in per_series.values() {
        timeline.resize(timeline.len().max(totals.len()), 0);
        for (i, v) in totals.iter().enumerate() {
            timeline[i] += v;
        }
    }
    if timeline.is_empty() {
        let (a, b) = embers_store::leaves_for(from, until);
        let first = a.div_euclid(step) * step;
        timeline = vec![0; usize::try_from((b - first + step - 1) / step).unwrap_or(0)];
    }
    Ok(Rendered {
        tree,
        timeline_start: first * LEAF_SECONDS,
        timeline,
        step_seconds: step * LEAF_SECONDS,
        period: store.period(m, from, until),
    })
}

/// What an export says about the query it answers.
pub struct Export<'a> {
    /// The profile type the query pins, if it does.
    pub profile_type: Option<&'a str>,
    /// The sampling period of the merged series (0: unknown).
    pub period: i64,
    /// The title (the query).
    pub title: &'a str,
    /// The time range.
    pub range: QueryRange,
    /// How many nodes a call graph keeps.
    pub max_nodes: Option<usize>,
}

/// Writes a tree in one of the CLI's codec formats.
pub fn encode(tree: &StackTree, format: Format, export: Export<'_>) -> Result<Vec<u8>, ApiError> {
    let Export {
        profile_type,
        period,
        title,
        range,
        max_nodes,
    } = export;
    let mut meta = crate::profile_type::export_meta(profile_type, period);
    meta.time_nanos = range.from.saturating_mul(1_000_000_000);
    meta.duration_nanos = (range.until - range.from).saturating_mul(1_000_000_000);
    let profile = Profile::from_tree(tree, meta);
    let mut out = Vec::new();
    let options = WriteOptions {
        title: Some(title.to_owned()),
        max_nodes,
        ..WriteOptions::default()
    };
    // A profile the format cannot hold (an empty one has no SVG) is the query's answer,
    // not a server fault; only failing to write is.
    embers_formats::write(&profile, format, &options, &mut out).map_err(|e| match e {
        embers_formats::FormatError::Io(_) => ApiError::internal(e),
        other => ApiError::unprocessable(other.to_string()),
    })?;
    Ok(out)
}

/// `GET /render`.
pub async fn render(state: Tenant, Query(p): Query<RenderParams>) -> Result<Response, ApiError> {
    let timer = state.metrics.start();
    let result = render_inner(&state, p).await;
    state.metrics.queried(result.is_ok(), timer);
    result
}

async fn render_inner(state: &Tenant, p: RenderParams) -> Result<Response, ApiError> {
    let query = p.query.or(p.name).ok_or_else(|| {
        ApiError::bad_request("missing `query` parameter, e.g. app.cpu{region=\"eu\"}")
    })?;
    let (selector, m) = matchers(&query)?;
    let range = state.range(p.from.as_deref(), p.until.as_deref(), DefaultFrom::LastHour)?;
    let QueryRange { from, until } = range;
    let asked_nodes = asked_max_nodes(p.max_nodes, p.max_nodes_dashed);
    let max_nodes = max_nodes(asked_nodes);
    let granularity = granularity(p.aggregation.as_deref())?;
    let m2 = m.clone();
    let r = state
        .query(move |store| render_query(store, &m2, range, granularity))
        .await?;
    let warnings = state.store().damage_warnings(from, until);
    let profile_type = pinned_type(&m).map(str::to_owned);
    let format = p.format.as_deref().unwrap_or("json");
    let codec = match format {
        "json" => None,
        "pprof" => Some((Format::Pprof, "application/octet-stream")),
        "collapsed" | "folded" => Some((Format::Folded, "text/plain; charset=utf-8")),
        "svg" | "html" => Some((Format::Svg, "image/svg+xml")),
        "speedscope" => Some((Format::Speedscope, "application/json")),
        "callgrind" => Some((Format::Callgrind, "text/plain; charset=utf-8")),
        "dot" => Some((Format::Dot, "text/vnd.graphviz; charset=utf-8")),
        other => {
            return Err(ApiError::bad_request(format!(
            "unknown format {other:?}: use json, pprof, collapsed, svg, speedscope, callgrind or dot"
        )))
        }
    };
    if let Some((codec, content_type)) = codec {
        // Exports keep every node unless the client asked for fewer; the call graph
        // drops small frames itself (to its own default when not asked).
        let (tree, graph_nodes) = match (codec, asked_nodes) {
            (Format::Dot, n) => (r.tree, n),
            (_, Some(n)) => (r.tree.truncated(n).0, None),
            (_, None) => (r.tree, None),
        };
        let export = Export {
            profile_type: profile_type.as_deref(),
            period: r.period,
            title: &query,
            range,
            max_nodes: graph_nodes,
        };
        let bytes = encode(&tree, codec, export)?;
        let response = ([("content-type", content_type)], bytes).into_response();
        return Ok(with_warnings(response, &warnings));
    }
    let (tree, _) = r.tree.truncated(max_nodes);
    let fg = flamebearer::single(&tree);
    let app = selector.name.clone().unwrap_or_default();
    let units = Units::of(profile_type.as_deref());
    let body = json!({
        "version": 1,
        "flamebearer": { "names": fg.names, "levels": fg.levels, "numTicks": fg.num_ticks, "maxSelf": fg.max_self },
        "metadata": {
            "format": "single",
            "spyName": "",
            "sampleRate": units.sample_rate,
            "units": units.units,
            "name": flamebearer::metadata_name(profile_type.as_deref()),
            "appName": app,
            "startTime": from,
            "endTime": until,
            "query": query,
            "maxNodes": max_nodes,
            "aggregation": granularity.as_str(),
        },
        "timeline": { "startTime": r.timeline_start, "samples": r.timeline, "durationDelta": r.step_seconds },
    });
    Ok(json_with_warnings(body, &warnings))
}

/// Parameters of `/render-diff`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffParams {
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    left_query: Option<String>,
    left_from: Option<String>,
    left_until: Option<String>,
    right_query: Option<String>,
    right_from: Option<String>,
    right_until: Option<String>,
    max_nodes: Option<usize>,
    #[serde(rename = "max-nodes")]
    max_nodes_dashed: Option<usize>,
    aggregation: Option<String>,
}

/// `GET /render-diff`.
pub async fn render_diff(state: Tenant, Query(p): Query<DiffParams>) -> Result<Response, ApiError> {
    let timer = state.metrics.start();
    let result = render_diff_inner(&state, p).await;
    state.metrics.queried(result.is_ok(), timer);
    result
}

async fn render_diff_inner(state: &Tenant, p: DiffParams) -> Result<Response, ApiError> {
    let missing = || ApiError::bad_request("missing `leftQuery`/`rightQuery` (or `query`)");
    let lq = p
        .left_query
        .clone()
        .or_else(|| p.query.clone())
        .ok_or_else(missing)?;
    let rq = p
        .right_query
        .clone()
        .or_else(|| p.query.clone())
        .ok_or_else(missing)?;
    let (_, lm) = matchers(&lq)?;
    let (_, rm) = matchers(&rq)?;
    let l = state.range(
        p.left_from.as_deref().or(p.from.as_deref()),
        p.left_until.as_deref().or(p.until.as_deref()),
        DefaultFrom::LastHour,
    )?;
    let r = state.range(
        p.right_from.as_deref().or(p.from.as_deref()),
        p.right_until.as_deref().or(p.until.as_deref()),
        DefaultFrom::LastHour,
    )?;
    let max_nodes = max_nodes(asked_max_nodes(p.max_nodes, p.max_nodes_dashed));
    let granularity = granularity(p.aggregation.as_deref())?;
    let profile_type = pinned_type(&lm).map(str::to_owned);
    let (left, right) = state
        .query(move |store| {
            Ok((
                store
                    .merge(&lm, l.from, l.until)?
                    .into_granularity(granularity),
                store
                    .merge(&rm, r.from, r.until)?
                    .into_granularity(granularity),
            ))
        })
        .await?;
    let warnings = state
        .store()
        .damage_warnings_for(&[(l.from, l.until), (r.from, r.until)]);
    let (left, _) = left.truncated(max_nodes);
    let (right, _) = right.truncated(max_nodes);
    let (fg, lt, rt) = flamebearer::diff(&left, &right);
    let units = Units::of(profile_type.as_deref());
    let body = json!({
        "version": 1,
        "flamebearer": { "names": fg.names, "levels": fg.levels, "numTicks": fg.num_ticks, "maxSelf": fg.max_self },
        "metadata": {
            "format": "double", "spyName": "", "sampleRate": units.sample_rate, "units": units.units,
            "name": flamebearer::metadata_name(profile_type.as_deref()), "maxNodes": max_nodes, "aggregation": granularity.as_str(),
        },
        "leftTicks": lt,
        "rightTicks": rt,
    });
    Ok(json_with_warnings(body, &warnings))
}

/// Parameters of the label and series listings.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelParams {
    query: Option<String>,
    label: Option<String>,
    name: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

fn label_scope(state: &Tenant, p: &LabelParams) -> Result<(Vec<Matcher>, i64, i64), ApiError> {
    let m = match p.query.as_deref().filter(|q| !q.is_empty()) {
        Some(q) => matchers(q)?.1,
        None => Vec::new(),
    };
    let r = state.range(
        p.from.as_deref(),
        p.until.as_deref(),
        DefaultFrom::LastMonth,
    )?;
    Ok((m, r.from, r.until))
}

/// `GET /labels`: label names of the selected series.
pub async fn labels(
    state: Tenant,
    Query(p): Query<LabelParams>,
) -> Result<Json<Vec<String>>, ApiError> {
    let (m, from, until) = label_scope(&state, &p)?;
    let names = state
        .query(move |store| Ok(store.label_names(&m, from, until)))
        .await?;
    Ok(Json(names))
}

/// `GET /label-values?label=region`: values of one label.
pub async fn label_values(
    state: Tenant,
    Query(p): Query<LabelParams>,
) -> Result<Json<Vec<String>>, ApiError> {
    let (m, from, until) = label_scope(&state, &p)?;
    let name = p
        .label
        .or(p.name)
        .ok_or_else(|| ApiError::bad_request("missing `label` parameter"))?;
    let values = state
        .query(move |store| Ok(store.label_values(&name, &m, from, until)))
        .await?;
    Ok(Json(values))
}

/// `GET /series`: every matching series with its labels and profile type.
pub async fn series(state: Tenant, Query(p): Query<LabelParams>) -> Result<Json<Value>, ApiError> {
    let (m, from, until) = label_scope(&state, &p)?;
    let found = state
        .query(move |store| Ok(store.series(&m, from, until)))
        .await?;
    let list: Vec<Value> = found
        .into_iter()
        .map(|(_, key)| {
            let labels: BTreeMap<&str, &str> = key.labels.iter().collect();
            json!({ "profileType": key.profile_type, "labels": labels })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// `GET /apps`: services with their profile types, and the legacy `app.cpu` names.
pub async fn apps(state: Tenant, Query(p): Query<LabelParams>) -> Result<Json<Value>, ApiError> {
    let (m, from, until) = label_scope(&state, &p)?;
    let found = state
        .query(move |store| Ok(store.series(&m, from, until)))
        .await?;
    let mut apps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, key) in found {
        let service = key
            .labels
            .get(SERVICE_NAME)
            .unwrap_or("unknown_service")
            .to_owned();
        apps.entry(service)
            .or_default()
            .insert(key.profile_type.clone());
    }
    let list: Vec<Value> = apps
        .into_iter()
        .map(|(service, types)| {
            let legacy: Vec<String> = types
                .iter()
                .filter_map(|t| legacy_suffix(t))
                .map(|s| format!("{service}.{s}"))
                .collect();
            json!({ "name": service, "profileTypes": types, "legacyNames": legacy })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}
