//! Ingest: the legacy `/ingest` API and Connect `PusherService/Push`, turned into store
//! puts (one series per profile type and per set of pprof sample labels, which is how
//! dynamic tags such as `tag_wrapper`'s arrive).

use std::collections::BTreeMap;
use std::io::Read;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use embers_formats::pprof::LabelledTrees;
use embers_formats::{FormatError, ReadLimits};
use embers_profile::{validate_name, Frame, Labels, ProfileMeta, StackTree};
use embers_store::{Put, SeriesKey, NAME, SERVICE_NAME};
use prost::Message;

use crate::error::ApiError;
use crate::params::{now, parse_time};
use crate::profile_type::{family, split_app_name, type_id};
use crate::wire;
use crate::AppState;

/// Bounds on what one request may carry.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Largest body after decompression.
    pub max_decoded_bytes: usize,
    /// Most labels on one series.
    pub max_labels: usize,
    /// Longest label name or value.
    pub max_label_len: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_decoded_bytes: 64 << 20,
            max_labels: 64,
            max_label_len: 1024,
        }
    }
}

fn read_limits(limits: &IngestLimits) -> ReadLimits {
    ReadLimits {
        max_decoded_bytes: limits.max_decoded_bytes,
        ..ReadLimits::default()
    }
}

fn format_error(e: FormatError) -> ApiError {
    match e {
        FormatError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::unprocessable(other.to_string()),
    }
}

/// Gunzips `body` if it is gzip, refusing to inflate past `max`.
pub fn maybe_gunzip(body: &[u8], max: usize) -> Result<std::borrow::Cow<'_, [u8]>, ApiError> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        if body.len() > max {
            return Err(ApiError::too_large(format!("body larger than {max} bytes")));
        }
        return Ok(body.into());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::unprocessable(format!("bad gzip body: {e}")))?;
    if out.len() > max {
        return Err(ApiError::too_large(format!(
            "body inflates past {max} bytes (a gzip bomb?)"
        )));
    }
    Ok(out.into())
}

/// Checks one label against the limits and naming rules.
fn check_label(name: &str, value: &str, limits: &IngestLimits) -> Result<(), ApiError> {
    validate_name(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if name.len() > limits.max_label_len || value.len() > limits.max_label_len {
        return Err(ApiError::bad_request(format!(
            "label {name:?} is longer than {} bytes",
            limits.max_label_len
        )));
    }
    Ok(())
}

/// Builds the puts for profiles decoded from one upload (one per sample type, each
/// split by pprof sample labels). `base` holds the series labels (service name, static
/// tags); sample labels add to them.
pub fn puts_from_trees(
    decoded: Vec<LabelledTrees>,
    base: &Labels,
    name: Option<&str>,
    time: i64,
    limits: &IngestLimits,
) -> Result<Vec<Put>, ApiError> {
    let metas: Vec<&ProfileMeta> = decoded.iter().map(|d| &d.meta).collect();
    let family = name.map_or_else(|| family(&metas), str::to_owned);
    let mut puts = Vec::new();
    for typed in decoded {
        let profile_type = type_id(&family, &typed.meta);
        let time = if typed.meta.time_nanos > 0 {
            typed.meta.time_nanos / 1_000_000_000
        } else {
            time
        };
        for (sample_labels, tree) in typed.trees {
            if tree.total() == 0 {
                continue;
            }
            let mut labels = base.clone();
            for (k, v) in sample_labels.iter() {
                check_label(k, v, limits)?;
                if labels.get(k).is_none() {
                    labels.set(k, v);
                }
            }
            labels.set(NAME, family.clone());
            if labels.len() > limits.max_labels {
                return Err(ApiError::bad_request(format!(
                    "a series has {} labels, more than the limit of {}",
                    labels.len(),
                    limits.max_labels
                )));
            }
            puts.push(Put {
                key: SeriesKey {
                    profile_type: profile_type.clone(),
                    labels,
                },
                time,
                tree,
            });
        }
    }
    Ok(puts)
}

/// What the push API does with one raw pprof (gzip or not): decode every sample type and
/// build the puts for the series `base` names (`__name__` picks the profile family).
pub fn pprof_puts(
    raw: &[u8],
    base: &Labels,
    name: Option<&str>,
    time: i64,
    limits: &IngestLimits,
) -> Result<Vec<Put>, ApiError> {
    let decoded =
        embers_formats::pprof::decode_trees(raw, &read_limits(limits)).map_err(format_error)?;
    puts_from_trees(decoded, base, name, time, limits)
}

/// Parameters of `POST /ingest`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestParams {
    name: Option<String>,
    from: Option<String>,
    until: Option<String>,
    sample_rate: Option<String>,
    #[allow(dead_code)]
    spy_name: Option<String>,
    format: Option<String>,
    #[allow(dead_code)]
    units: Option<String>,
    aggregation_type: Option<String>,
}

/// Parses `app.cpu{k=v,k2=v2}` into the app (with suffix) and tags.
pub fn parse_name(name: &str, limits: &IngestLimits) -> Result<(String, Labels), ApiError> {
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
        check_label(k, v, limits)?;
        if k.starts_with("__") {
            continue;
        }
        labels.set(k, v);
    }
    Ok((app.to_owned(), labels))
}

/// `POST /ingest` (and `/pyroscope/ingest`).
pub async fn legacy(
    State(state): State<AppState>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let timer = state.metrics.start();
    let result = legacy_puts(&state, &params, &headers, &body);
    let puts = match result {
        Ok(p) => p,
        Err(e) => {
            state.metrics.ingest_error();
            return Err(e);
        }
    };
    let count = puts.len();
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.ingest(puts))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    state.metrics.ingested(body.len(), count, timer);
    Ok(StatusCode::OK)
}

fn legacy_puts(
    state: &AppState,
    params: &IngestParams,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Put>, ApiError> {
    let limits = &state.limits;
    let name = params
        .name
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("missing `name` parameter (app.cpu{tag=value})"))?;
    let (app, tags) = parse_name(name, limits)?;
    let now = now();
    let from = params
        .from
        .as_deref()
        .map_or(Ok(now), |s| parse_time(s, now))
        .map_err(ApiError::bad_request)?;
    let _until = params
        .until
        .as_deref()
        .map_or(Ok(now), |s| parse_time(s, now))
        .map_err(ApiError::bad_request)?;
    let sample_rate: u32 = match params.sample_rate.as_deref() {
        None | Some("") => 100,
        Some(s) => s
            .parse()
            .ok()
            .filter(|&r| r > 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid sampleRate {s:?}")))?,
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = params.format.as_deref().unwrap_or("");
    let (service, profile_type) = split_app_name(&app);
    let mut base = tags;
    base.set(SERVICE_NAME, service);
    let body = maybe_gunzip(body, limits.max_decoded_bytes)?;

    let is_pprof = format == "pprof" || content_type.starts_with("multipart/form-data");
    if is_pprof || format == "jfr" || format == "speedscope" {
        if !is_pprof {
            return Err(ApiError::unprocessable(format!("format {format:?} is not supported for ingest; send pprof, folded, lines, trie or tree")));
        }
        let pprof: std::borrow::Cow<'_, [u8]> = match crate::multipart::boundary(content_type) {
            Some(b) => {
                let parts = crate::multipart::parts(&body, b).map_err(ApiError::unprocessable)?;
                if parts.iter().any(|(n, _)| n == "prev_profile") {
                    return Err(ApiError::unprocessable(
                        "prev_profile (cumulative profiles) is not supported",
                    ));
                }
                let (_, bytes) =
                    parts
                        .into_iter()
                        .find(|(n, _)| n == "profile")
                        .ok_or_else(|| {
                            ApiError::unprocessable("multipart body has no `profile` part")
                        })?;
                maybe_gunzip(bytes, limits.max_decoded_bytes)?
                    .into_owned()
                    .into()
            }
            None => body,
        };
        return pprof_puts(&pprof, &base, None, from, limits);
    }

    let tree = if format == "trie" || content_type == "binary/octet-stream+trie" {
        crate::trie::decode_trie(&body)
            .map_err(|e| ApiError::unprocessable(format!("trie body: {e}")))?
    } else if format == "tree" || content_type == "binary/octet-stream+tree" {
        crate::trie::decode_tree(&body)
            .map_err(|e| ApiError::unprocessable(format!("tree body: {e}")))?
    } else if format == "lines" {
        lines_tree(&body)?
    } else {
        embers_formats::folded::parse(&body, &read_limits(limits))
            .map_err(format_error)?
            .tree()
    };
    // Legacy CPU profiles count samples; the profile type counts nanoseconds.
    let parts = crate::profile_type::parts(profile_type).expect("table ids have 5 parts");
    let tree = if parts[2] == "nanoseconds" && params.aggregation_type.as_deref() != Some("average")
    {
        tree.scaled(1e9 / f64::from(sample_rate))
    } else {
        tree
    };
    let mut labels = base;
    labels.set(NAME, parts[0]);
    if labels.len() > limits.max_labels {
        return Err(ApiError::bad_request(format!(
            "more than {} tags",
            limits.max_labels
        )));
    }
    Ok(vec![Put {
        key: SeriesKey {
            profile_type: profile_type.to_owned(),
            labels,
        },
        time: from,
        tree,
    }])
}

/// `lines`: one stack per line (frames separated by `;`), each line one sample.
fn lines_tree(body: &[u8]) -> Result<StackTree, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::unprocessable("lines body is not UTF-8"))?;
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        *counts.entry(line).or_default() += 1;
    }
    let mut tree = StackTree::new();
    for (stack, n) in counts {
        let frames: Vec<Frame> = stack.split(';').map(Frame::parse_label).collect();
        tree.add_frames(frames.iter(), n);
    }
    Ok(tree)
}

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

fn push_request(
    headers: &HeaderMap,
    body: &[u8],
    limits: &IngestLimits,
) -> Result<wire::PushRequest, ApiError> {
    let body = maybe_gunzip(body, limits.max_decoded_bytes)?;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/proto");
    if content_type.starts_with("application/json") {
        use base64::Engine;
        let json: JsonPush = serde_json::from_slice(&body)
            .map_err(|e| ApiError::unprocessable(format!("PushRequest JSON: {e}")))?;
        let series = json
            .series
            .into_iter()
            .map(|s| {
                let samples = s
                    .samples
                    .into_iter()
                    .map(|x| {
                        base64::engine::general_purpose::STANDARD
                            .decode(x.raw_profile.as_bytes())
                            .map(|raw_profile| wire::RawSample {
                                raw_profile,
                                id: x.id,
                            })
                            .map_err(|e| {
                                ApiError::unprocessable(format!("rawProfile is not base64: {e}"))
                            })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(wire::RawProfileSeries {
                    labels: s
                        .labels
                        .into_iter()
                        .map(|l| wire::LabelPair {
                            name: l.name,
                            value: l.value,
                        })
                        .collect(),
                    samples,
                    annotations: Vec::new(),
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(wire::PushRequest { series })
    } else if content_type.starts_with("application/proto")
        || content_type.starts_with("application/x-protobuf")
    {
        wire::PushRequest::decode(body.as_ref())
            .map_err(|e| ApiError::unprocessable(format!("PushRequest protobuf: {e}")))
    } else {
        Err(ApiError::unprocessable(format!(
            "unsupported content type {content_type:?}: use application/proto or application/json"
        )))
    }
}

/// Connect `POST /push.v1.PusherService/Push`.
pub async fn push(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::response::Response, ApiError> {
    let timer = state.metrics.start();
    let (ids, puts) = match push_puts(&state, &headers, &body) {
        Ok(p) => p,
        Err(e) => {
            state.metrics.ingest_error();
            return Err(e.connect());
        }
    };
    let count = puts.len();
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.ingest_once(&ids, puts))
        .await
        .map_err(|e| ApiError::internal(e.to_string()).connect())?
        .map_err(|e| ApiError::from(e).connect())?;
    state.metrics.ingested(body.len(), count, timer);
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
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
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Vec<String>, Vec<Put>), ApiError> {
    let limits = &state.limits;
    let request = push_request(headers, body, limits)?;
    let now = now();
    let mut puts = Vec::new();
    let mut ids = Vec::new();
    for series in request.series {
        let mut base = Labels::new();
        let mut name = None;
        for l in series.labels {
            if l.name == NAME {
                name = Some(l.value);
                continue;
            }
            // Grafana drops internal labels (`__delta__`, …); so do we.
            if l.name.starts_with("__") {
                continue;
            }
            check_label(&l.name, &l.value, limits)?;
            base.set(l.name, l.value);
        }
        if base.get(SERVICE_NAME).is_none() {
            base.set(SERVICE_NAME, "unknown_service");
        }
        for sample in series.samples {
            if !sample.id.is_empty() {
                ids.push(sample.id);
            }
            puts.extend(pprof_puts(
                &sample.raw_profile,
                &base,
                name.as_deref(),
                now,
                limits,
            )?);
        }
    }
    Ok((ids, puts))
}
