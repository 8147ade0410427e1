//! Connect `adhocprofiles.v1.AdHocProfileService`: upload a profile file, view it, list
//! uploads, diff two, as Grafana Pyroscope answers (its `pkg/adhocprofiles`), in both
//! Connect encodings.
//!
//! Files are read by content with [`embers_formats::ingest::adhoc::decode_file`] (pprof,
//! JFR, speedscope, folded) within the server's ingest budget, so one upload costs no
//! more than one ingest request; the file as uploaded is kept by the store apart from
//! the time series ([`embers_store::AdHocProfiles`]) and decoded again on each `Get` and
//! `Diff` (uploads are few and looked at a few times; keeping the file keeps every
//! profile type and lets a better decoder read it later). Answers carry the flame graph
//! as a flamebearer JSON string (`flamebearer_profile`), one node per function, as
//! Grafana's do.

mod connect;
#[rustfmt::skip]
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub
)]
mod proto;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use embers_formats::ingest::adhoc::{decode_file, AdHocFile, AdHocProfile, FileFormat};
use embers_formats::IngestBudget;
use embers_profile::{Granularity, StackTree};
use embers_store::{AdHocError, AdHocLimits, AdHocProfiles};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::flamebearer::{self, Units};
use crate::query::max_nodes;
use crate::tenants::Tenant;
use proto::adhocprofiles::v1 as pb;

/// `[adhoc]` in the server's TOML file: how many uploads are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdHocConfig {
    /// Most uploads kept; uploading past it drops the oldest.
    pub max_profiles: usize,
    /// Most bytes kept over every upload; uploading past it drops the oldest.
    pub max_bytes: u64,
}

impl Default for AdHocConfig {
    fn default() -> Self {
        let d = AdHocLimits::default();
        AdHocConfig {
            max_profiles: d.max_profiles,
            max_bytes: d.max_bytes,
        }
    }
}

impl AdHocConfig {
    pub(crate) fn limits(&self) -> AdHocLimits {
        AdHocLimits::new(self.max_profiles, self.max_bytes)
    }
}

/// The largest request body: a file of `max_body_bytes` in base64 (4/3 of it) inside a
/// JSON or protobuf message; the file itself is checked against `max_body_bytes` after
/// decoding, so the refusal names that setting.
pub(crate) fn body_limit(max_body_bytes: usize) -> usize {
    max_body_bytes
        .saturating_add(max_body_bytes / 3)
        .saturating_add(64 << 10)
}

/// `POST /adhocprofiles.v1.AdHocProfileService/{method}`.
pub async fn call(
    state: Tenant,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let timer = state.metrics.start();
    let result = dispatch(&state, &method, &headers, &body).await;
    state.metrics.queried(result.is_ok(), timer);
    result.map_err(ApiError::connect)
}

async fn dispatch(
    state: &Tenant,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let codec = connect::Codec::of(headers)?;
    let body = connect::inflate(headers, body, body_limit(state.budget.max_body_bytes))?;
    let (profiles, budget) = (Arc::clone(&state.data.adhoc), state.budget.clone());
    match method {
        "Upload" => {
            let req: pb::AdHocProfilesUploadRequest = codec.decode(&body)?;
            // An upload is the tenant's write: its store is created if need be.
            let profiles = Arc::clone(&state.writable().await?.data.adhoc);
            let reply = blocking(move || upload(&profiles, &budget, req)).await?;
            Ok(codec.reply(&reply))
        }
        "Get" => {
            let req: pb::AdHocProfilesGetRequest = codec.decode(&body)?;
            let reply = blocking(move || get(&profiles, &budget, req)).await?;
            Ok(codec.reply(&reply))
        }
        "List" => {
            let _: pb::AdHocProfilesListRequest = codec.decode(&body)?;
            let reply = blocking(move || list(&profiles)).await?;
            Ok(codec.reply(&reply))
        }
        "Diff" => {
            let req: pb::AdHocProfilesDiffRequest = codec.decode(&body)?;
            let reply = blocking(move || diff(&profiles, &budget, req)).await?;
            Ok(codec.reply(&reply))
        }
        other => Err(ApiError::not_implemented(format!(
            "adhocprofiles.v1.AdHocProfileService/{other} does not exist (Upload, Get, List, Diff)"
        ))),
    }
}

/// Decoding and storage I/O run off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

fn store_error(e: AdHocError) -> ApiError {
    match e {
        AdHocError::InvalidId(_) => ApiError::bad_request(e.to_string()),
        AdHocError::NotFound(_) => ApiError::not_found(e.to_string()),
        AdHocError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::internal(format_args!("ad-hoc profiles: {other}")),
    }
}

/// Reads a stored or uploaded file.
fn read(name: &str, data: &[u8], budget: &IngestBudget) -> Result<AdHocFile, ApiError> {
    decode_file(name, data, budget).map_err(crate::ingest::format_error)
}

/// The profile named `wanted` (the first when none or an unknown one is asked for, as
/// Grafana Pyroscope picks).
fn pick<'f>(file: &'f AdHocFile, wanted: Option<&str>) -> &'f AdHocProfile {
    wanted
        .and_then(|w| file.profiles.iter().find(|p| p.name == w))
        .unwrap_or(&file.profiles[0])
}

fn type_names(file: &AdHocFile) -> Vec<String> {
    file.profiles.iter().map(|p| p.name.clone()).collect()
}

/// Units and rate of a profile, as the query APIs choose them for its sample type;
/// folded stacks have no type: plain samples.
fn units(file: &AdHocFile, p: &AdHocProfile) -> Units {
    if file.format == FileFormat::Folded {
        return Units::of(None);
    }
    let st = &p.meta.sample_type;
    Units::of(Some(&format!("adhoc:{}:{}::", st.kind, st.unit)))
}

fn function_tree(p: &AdHocProfile, nodes: usize) -> StackTree {
    p.tree
        .clone()
        .into_granularity(Granularity::Function)
        .truncated(nodes)
        .0
}

fn single_json(file: &AdHocFile, p: &AdHocProfile, max: Option<i64>) -> String {
    let nodes = max_nodes(max.and_then(|n| usize::try_from(n).ok()));
    let fg = flamebearer::single(&function_tree(p, nodes));
    let u = units(file, p);
    flamebearer_json(&fg, "single", u, &p.name, Value::Null).to_string()
}

fn flamebearer_json(
    fg: &flamebearer::Flamegraph,
    format: &str,
    u: Units,
    name: &str,
    extra: Value,
) -> Value {
    let mut body = json!({
        "version": 1,
        "flamebearer": { "names": fg.names, "levels": fg.levels, "numTicks": fg.num_ticks, "maxSelf": fg.max_self },
        "metadata": { "format": format, "spyName": "", "sampleRate": u.sample_rate, "units": u.units, "name": name },
        "timeline": null,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn upload(
    profiles: &AdHocProfiles,
    budget: &IngestBudget,
    req: pb::AdHocProfilesUploadRequest,
) -> Result<pb::AdHocProfilesGetResponse, ApiError> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(req.profile.trim())
        .map_err(|e| ApiError::bad_request(format!("`profile` is not base64: {e}")))?;
    if data.len() > budget.max_body_bytes {
        return Err(ApiError::too_large(format!(
            "the file has {} bytes, over max_body_bytes ({} bytes)",
            data.len(),
            budget.max_body_bytes
        )));
    }
    let name = embers_store::clean_name(&req.name);
    let file = read(&name, &data, budget)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let entry = profiles.put(&name, now, &data).map_err(store_error)?;
    let p = pick(&file, None);
    Ok(pb::AdHocProfilesGetResponse {
        id: entry.id,
        name: entry.name,
        uploaded_at: entry.uploaded_at_ms,
        profile_type: p.name.clone(),
        profile_types: type_names(&file),
        flamebearer_profile: single_json(&file, p, req.max_nodes),
    })
}

fn get(
    profiles: &AdHocProfiles,
    budget: &IngestBudget,
    req: pb::AdHocProfilesGetRequest,
) -> Result<pb::AdHocProfilesGetResponse, ApiError> {
    let stored = profiles.get(&req.id).map_err(store_error)?;
    let file = read(&stored.entry.name, &stored.data, budget)?;
    let p = pick(&file, req.profile_type.as_deref());
    Ok(pb::AdHocProfilesGetResponse {
        id: stored.entry.id,
        name: stored.entry.name,
        uploaded_at: stored.entry.uploaded_at_ms,
        profile_type: p.name.clone(),
        profile_types: type_names(&file),
        flamebearer_profile: single_json(&file, p, req.max_nodes),
    })
}

fn list(profiles: &AdHocProfiles) -> Result<pb::AdHocProfilesListResponse, ApiError> {
    Ok(pb::AdHocProfilesListResponse {
        profiles: profiles
            .list()
            .map_err(store_error)?
            .into_iter()
            .map(|e| pb::AdHocProfilesProfileMetadata {
                id: e.id,
                name: e.name,
                uploaded_at: e.uploaded_at_ms,
            })
            .collect(),
    })
}

/// Grafana Pyroscope's diff: both files with the type asked for (or each one's first),
/// refused unless both have that type.
fn diff(
    profiles: &AdHocProfiles,
    budget: &IngestBudget,
    req: pb::AdHocProfilesDiffRequest,
) -> Result<pb::AdHocProfilesDiffResponse, ApiError> {
    let left = profiles.get(&req.left_id).map_err(store_error)?;
    let right = profiles.get(&req.right_id).map_err(store_error)?;
    let left = read(&left.entry.name, &left.data, budget)?;
    let right = read(&right.entry.name, &right.data, budget)?;
    let (lnames, rnames) = (type_names(&left), type_names(&right));
    let common: Vec<String> = lnames
        .iter()
        .filter(|n| rnames.contains(n))
        .cloned()
        .collect();
    let wanted = req.profile_type.as_deref();
    let (lp, rp) = (pick(&left, wanted), pick(&right, wanted));
    // Folded files are named after themselves: any two compare, as samples.
    let folded = left.format == FileFormat::Folded || right.format == FileFormat::Folded;
    if !folded {
        if common.is_empty() {
            return Err(ApiError::bad_request(format!(
                "no common profile types between left ({lnames:?}) and right ({rnames:?})"
            )));
        }
        if lp.name != rp.name {
            return Err(ApiError::bad_request(format!(
                "profile type mismatch: left profile uses {:?}, right profile uses {:?}; \
                 pick one of the common types: {common:?}",
                lp.name, rp.name
            )));
        }
    }
    let nodes = max_nodes(req.max_nodes.and_then(|n| usize::try_from(n).ok()));
    let (fg, lt, rt) = flamebearer::diff(&function_tree(lp, nodes), &function_tree(rp, nodes));
    let body = flamebearer_json(
        &fg,
        "double",
        units(&left, lp),
        &lp.name,
        json!({ "leftTicks": lt, "rightTicks": rt }),
    );
    Ok(pb::AdHocProfilesDiffResponse {
        profile_types: if folded {
            vec![lp.name.clone()]
        } else {
            common
        },
        flamebearer_profile: body.to_string(),
    })
}
