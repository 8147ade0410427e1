//! Ingest: the legacy `/ingest` API and Connect `PusherService/Push`, turned into store
//! puts (one series per profile type and per set of pprof sample labels, which is how
//! dynamic tags such as `tag_wrapper`'s arrive).
//!
//! Every body is decoded by the one entry point in `embers-formats`
//! ([`embers_formats::decode_legacy`], [`embers_formats::decode_push`]) within the
//! request's [`IngestBudget`], built once from the server's settings. Decoding runs on
//! the blocking pool, never on the async workers, so a slow body stalls no one else.

pub(crate) mod otlp;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use embers_formats::ingest::{
    default_sample_types, Bound, Legacy, LegacyUpload, PprofForm, PushUpload, SampleTypes,
};
use embers_formats::pprof::LabelledTrees;
use embers_formats::{FormatError, IngestBudget};
use embers_profile::{Labels, ProfileMeta};
use embers_store::{Put, SeriesKey, NAME, SERVICE_NAME};
use prost::Message;

use crate::error::ApiError;
use crate::params::{ingest_time, now};
use crate::profile_type::{family, legacy_type, type_id};
use crate::tenants::Tenant;
use crate::wire;
use crate::ServerConfig;

mod jfr;
pub mod spans;

/// The ingest budget of every request: the `[ingest]` settings, with the bounds that
/// have their own flags (body sizes, labels) taken from those.
pub fn budget(config: &ServerConfig) -> IngestBudget {
    let mut budget = config.ingest.clone();
    budget.max_body_bytes = config.max_body_bytes;
    budget.max_decoded_bytes = config.max_decoded_bytes;
    budget.max_labels_per_series = config.max_labels_per_series;
    budget.max_label_length = config.max_label_length;
    budget
}

/// The series label naming the client's profiler.
const SPY: &str = "pyroscope_spy";

/// Over a bound: 413 naming it; anything else wrong with the body: 422.
pub(crate) fn format_error(e: FormatError) -> ApiError {
    match e {
        FormatError::OverBudget { bound, .. } => {
            let hint = if bound == Bound::DecodedBytes {
                " (a gzip bomb?)"
            } else {
                ""
            };
            ApiError::too_large(format!("{e}{hint}"))
        }
        FormatError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::unprocessable(other.to_string()),
    }
}

/// Checks one label of a series name or tag; a bad name is a bad parameter (400).
fn check_label(name: &str, value: &str, budget: &IngestBudget) -> Result<(), ApiError> {
    budget.check_label(name, value).map_err(|e| match e {
        FormatError::OverBudget { .. } => format_error(e),
        other => ApiError::bad_request(other.to_string()),
    })
}

fn check_label_count(labels: &Labels, budget: &IngestBudget) -> Result<(), ApiError> {
    if labels.len() > budget.max_labels_per_series {
        return Err(ApiError::too_large(format!(
            "a series has {} labels, more than max_labels_per_series = {}",
            labels.len(),
            budget.max_labels_per_series
        )));
    }
    Ok(())
}

/// Builds the puts for profiles decoded from one upload (one per sample type, each
/// split by pprof sample labels). `base` holds the series labels (service name, static
/// tags); sample labels (checked by the decoder) add to them.
pub fn puts_from_trees(
    decoded: Vec<LabelledTrees>,
    base: &Labels,
    name: Option<&str>,
    time: i64,
    budget: &IngestBudget,
) -> Result<Vec<Put>, ApiError> {
    let family = name.map_or_else(
        || family_of(&decoded, &default_sample_types()),
        str::to_owned,
    );
    let mut puts = Vec::new();
    let mut seen_spans = spans::SpanCount::default();
    for typed in decoded {
        let profile_type = type_id(&family, &typed.meta);
        // Grafana keeps the profile's own time unless it is 0 or in 1970 (old clients
        // wrote microseconds there).
        let time = match typed.meta.time_nanos / 1_000_000_000 {
            t if t >= 365 * 86_400 => t,
            _ => time,
        };
        for spans::SeriesTrees {
            labels: sample_labels,
            tree,
            spans,
        } in spans::split(typed.trees, budget, &mut seen_spans)?
        {
            if tree.total() == 0 {
                continue;
            }
            let mut labels = base.clone();
            for (k, v) in sample_labels.iter() {
                if labels.get(k).is_none() {
                    labels.set(k, v);
                }
            }
            labels.set(NAME, family.clone());
            check_label_count(&labels, budget)?;
            puts.push(Put {
                key: SeriesKey {
                    profile_type: profile_type.clone(),
                    labels,
                },
                time,
                tree,
                spans,
                period: typed.meta.period,
            });
        }
    }
    Ok(puts)
}

/// The `__name__` of a decoded pprof's series, by Grafana's rules.
fn family_of(decoded: &[LabelledTrees], sample_types: &SampleTypes) -> String {
    let metas: Vec<&ProfileMeta> = decoded.iter().map(|d| &d.meta).collect();
    family(&metas, sample_types)
}

/// What the push API does with one raw pprof (gzip or not): decode every sample type
/// through the ingest entry point and build the puts for the series `base` names
/// (`__name__` picks the profile family).
pub fn pprof_puts(
    raw: &[u8],
    base: &Labels,
    name: Option<&str>,
    time: i64,
    budget: &IngestBudget,
) -> Result<Vec<Put>, ApiError> {
    let upload = LegacyUpload {
        body: raw,
        format: "pprof",
        ..LegacyUpload::default()
    };
    match embers_formats::decode_legacy(&upload, budget).map_err(format_error)? {
        Legacy::Pprof(decoded) => puts_from_trees(decoded, base, name, time, budget),
        _ => Err(ApiError::internal("a pprof upload decoded to stacks")),
    }
}

/// Parameters of `POST /ingest`, as Pyroscope clients send them.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestParams {
    name: Option<String>,
    /// Start: Unix s, ms, µs or ns (by digit count), `YYYYMMDD`, or `now-1h`
    /// (`pyroscope-go` sends nanoseconds).
    from: Option<String>,
    /// Unused, as in Grafana: a profile is stored at its start.
    #[allow(dead_code)]
    until: Option<String>,
    /// Hz; only legacy stack uploads use it. `0` means "no rate" (pyroscope-go's
    /// mutex, block and goroutine uploads).
    sample_rate: Option<String>,
    /// The client's profiler (`gospy`, `pyspy`, …), kept as `pyroscope_spy`.
    spy_name: Option<String>,
    format: Option<String>,
    #[allow(dead_code)]
    units: Option<String>,
    #[allow(dead_code)]
    aggregation_type: Option<String>,
}

/// Grafana's `sampleRate`: absent, not a number or negative → 100; `0` stays 0.
fn sample_rate(param: Option<&str>) -> u32 {
    param.and_then(|s| s.parse().ok()).unwrap_or(100)
}

/// Parses `app.cpu{k=v,k2=v2}` into the app (with suffix) and tags.
pub fn parse_name(name: &str, budget: &IngestBudget) -> Result<(String, Labels), ApiError> {
    let (app, tags) = match name.split_once('{') {
        None => (name, ""),
        Some((app, rest)) => {
            let tags = rest.strip_suffix('}').ok_or_else(|| {
                ApiError::bad_request(format!("name {name:?}: missing closing `}}`"))
            })?;
            (app, tags)
        }
    };
    let app = app.trim();
    if app.is_empty() {
        return Err(ApiError::bad_request(
            "name has no application name (expected app.cpu{tag=value})",
        ));
    }
    let mut labels = Labels::new();
    for pair in tags.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ApiError::bad_request(format!("tag {pair:?} is not key=value")))?;
        let (k, v) = (k.trim(), v.trim());
        check_label(k, v, budget)?;
        if k.starts_with("__") {
            continue;
        }
        labels.set(k, v);
    }
    Ok((app.to_owned(), labels))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Decodes and stores on the blocking pool, in one hop (for a push, once per request
/// ID); counts the request in the metrics either way.
async fn decode_and_store(
    state: &Tenant,
    bytes: usize,
    decode: impl FnOnce(&IngestBudget) -> Result<(Option<Vec<String>>, Vec<Put>), ApiError>
        + Send
        + 'static,
) -> Result<(), ApiError> {
    let timer = state.metrics.start();
    let budget = Arc::clone(&state.budget);
    let (tenants, tenant) = (Arc::clone(&state.tenants), state.id.clone());
    let stored = tokio::task::spawn_blocking(move || {
        let (ids, puts) = decode(&budget)?;
        let count = puts.len();
        if puts.iter().all(|p| p.tree.total() == 0) && tenants.get(&tenant).is_none() {
            // Nothing to store (no puts, or empty profiles): a tenant without data gets
            // no store for it.
            return Ok(0);
        }
        // The tenant's store is created only now, for a request that decoded.
        let store = Arc::clone(&tenants.write(&tenant)?.store);
        match ids {
            None => store.ingest(puts),
            Some(ids) => store.ingest_once(&ids, puts).map(drop),
        }?;
        Ok(count)
    })
    .await
    .map_err(ApiError::internal)
    .and_then(|r| r);
    match stored {
        Ok(count) => {
            state.metrics.ingested(bytes, count, timer);
            Ok(())
        }
        Err(e) => {
            state.metrics.ingest_error();
            Err(e)
        }
    }
}

/// `POST /ingest` (and `/pyroscope/ingest`).
pub async fn legacy(
    state: Tenant,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let content_type = content_type(&headers);
    decode_and_store(&state, body.len(), move |budget| {
        Ok((None, legacy_puts(budget, &params, &content_type, &body)?))
    })
    .await?;
    Ok(StatusCode::OK)
}

fn legacy_puts(
    budget: &IngestBudget,
    params: &IngestParams,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<Put>, ApiError> {
    let name = params
        .name
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("missing `name` parameter (app.cpu{tag=value})"))?;
    let (app, mut tags) = parse_name(name, budget)?;
    // Grafana labels every /ingest series with the client's profiler (its UI picks the
    // language from it); a tag of that name wins.
    if tags.get(SPY).is_none() {
        let spy = params.spy_name.as_deref().filter(|s| !s.is_empty());
        let spy = spy.unwrap_or("unknown");
        check_label(SPY, spy, budget)?;
        tags.set(SPY, spy);
    }
    let from = params
        .from
        .as_deref()
        .map_or_else(now, |s| ingest_time(s, now()));
    let format = params.format.as_deref().unwrap_or("");
    // pprof keeps the whole app name as the service name (Grafana splits only the
    // names of stack formats); a `service_name` tag wins.
    let pprof_base = || {
        let mut base = tags.clone();
        if base.get(SERVICE_NAME).is_none() {
            base.set(SERVICE_NAME, app.as_str());
        }
        base
    };
    // pprof carries its own period; JFR (multipart too) takes the period from `sampleRate`.
    let is_pprof =
        format == "pprof" || (format != "jfr" && content_type.contains("multipart/form-data"));
    let legacy = legacy_type(&app, sample_rate(params.sample_rate.as_deref()));
    let upload = LegacyUpload {
        body,
        content_type,
        format,
        scale: legacy.scale.filter(|_| !is_pprof),
    };
    let tree = match embers_formats::decode_legacy(&upload, budget).map_err(format_error)? {
        // Without a config, Grafana's defaults decide the family.
        Legacy::Pprof(decoded) => {
            return puts_from_trees(decoded, &pprof_base(), None, from, budget)
        }
        Legacy::PprofForm(form) => {
            let PprofForm {
                profiles,
                sample_types,
                ..
            } = form;
            let name = family_of(&profiles, &sample_types);
            return puts_from_trees(profiles, &pprof_base(), Some(&name), from, budget);
        }
        Legacy::Jfr(groups) => return jfr::puts(groups, &pprof_base(), from, budget),
        Legacy::Stacks(tree) => tree,
        _ => return Err(ApiError::internal("an upload decoded to an unknown kind")),
    };
    let mut labels = tags;
    // Grafana: a `service_name` tag wins, and the app name is kept as `app_name`.
    if labels.get(SERVICE_NAME).is_some() {
        if labels.get("app_name").is_none() {
            labels.set("app_name", legacy.service.as_str());
        }
    } else {
        labels.set(SERVICE_NAME, legacy.service.as_str());
    }
    let family = crate::profile_type::parts(&legacy.id).map_or("", |p| p[0]);
    labels.set(NAME, family);
    check_label_count(&labels, budget)?;
    Ok(vec![Put {
        key: SeriesKey {
            profile_type: legacy.id,
            labels,
        },
        time: from,
        tree,
        // A sample rate made the values nanoseconds: one sample is this many.
        period: legacy.scale.map_or(0, |ns| ns as i64),
        ..Default::default()
    }])
}

/// Connect `POST /push.v1.PusherService/Push`.
pub async fn push(
    state: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::response::Response, ApiError> {
    let content_type = content_type(&headers);
    let json = content_type.starts_with("application/json");
    decode_and_store(&state, body.len(), move |budget| {
        push_puts(budget, &content_type, &body).map(|(ids, puts)| (Some(ids), puts))
    })
    .await
    .map_err(ApiError::connect)?;
    Ok(if json {
        ([("content-type", "application/json")], "{}").into_response()
    } else {
        (
            [("content-type", "application/proto")],
            wire::PushResponse {}.encode_to_vec(),
        )
            .into_response()
    })
}

/// The puts of a push, and the IDs its samples carry: a client that retries a push sends
/// the same IDs, and the store keeps the data once.
fn push_puts(
    budget: &IngestBudget,
    content_type: &str,
    body: &[u8],
) -> Result<(Vec<String>, Vec<Put>), ApiError> {
    let upload = PushUpload { body, content_type };
    let pushed = embers_formats::decode_push(&upload, budget).map_err(format_error)?;
    let now = now();
    let mut puts = Vec::new();
    for series in pushed.series {
        let mut base = Labels::new();
        let mut name = None;
        for (k, v) in series.labels {
            if k == NAME {
                name = Some(v);
            } else if !k.starts_with("__") {
                // Grafana drops internal labels (`__delta__`, …); so do we.
                base.set(k, v);
            }
        }
        if base.get(SERVICE_NAME).is_none() {
            base.set(SERVICE_NAME, "unknown_service");
        }
        for decoded in series.profiles {
            puts.extend(puts_from_trees(
                decoded,
                &base,
                name.as_deref(),
                now,
                budget,
            )?);
        }
    }
    Ok((pushed.ids, puts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_comes_from_the_settings() {
        let config = ServerConfig::from_toml(
            "max_decoded_bytes = 1000\n[ingest]\nmax_stack_depth = 8192\nmax_decoded_bytes = 5\n",
        )
        .unwrap();
        let budget = budget(&config);
        assert_eq!(budget.max_stack_depth, 8192);
        assert_eq!(budget.max_decoded_bytes, 1000, "the top-level key wins");
        assert!(ServerConfig::from_toml("[ingest]\nmax_stak_depth = 1\n").is_err());
    }

    #[test]
    fn over_a_bound_is_413_and_malformed_is_422() {
        let budget = IngestBudget::default();
        let deep = vec!["f"; 5000].join(";");
        let e = pprof_puts(deep.as_bytes(), &Labels::new(), None, 0, &budget).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", e.message);
        let upload = LegacyUpload {
            body: deep.as_bytes(),
            format: "lines",
            ..LegacyUpload::default()
        };
        let e = format_error(embers_formats::decode_legacy(&upload, &budget).unwrap_err());
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message.contains("max_stack_depth"), "{}", e.message);
    }
}
