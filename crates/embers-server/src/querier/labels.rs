//! The catalog methods: `ProfileTypes`, `LabelNames`, `LabelValues`, `Series`,
//! `GetProfileStats` (Drilldown's "no data yet" check) and `AnalyzeQuery` (Drilldown's
//! query-cost hint).

use std::collections::BTreeSet;

use embers_profile::Labels;
use embers_store::PROFILE_TYPE;

use super::{all_matchers, pairs, selector_matchers, union_over, Answer};
use crate::error::ApiError;
use crate::grafana_proto::querier::v1 as q;
use crate::grafana_proto::types::v1 as types;
use crate::profile_type::parts;
use crate::range::QueryRange;
use crate::tenants::Tenant;

pub(crate) async fn profile_types(
    state: Tenant,
    req: q::ProfileTypesRequest,
) -> Result<Answer<q::ProfileTypesResponse>, ApiError> {
    let r = state.range_ms(req.start, req.end)?;
    let ids = union_over(&state, &[], move |store, m| {
        store.label_values(PROFILE_TYPE, m, r.from, r.until)
    })
    .await?;
    let profile_types = ids
        .iter()
        .filter_map(|id| {
            let p = parts(id)?;
            Some(types::ProfileType {
                id: id.clone(),
                name: p[0].into(),
                sample_type: p[1].into(),
                sample_unit: p[2].into(),
                period_type: p[3].into(),
                period_unit: p[4].into(),
            })
        })
        .collect();
    Ok(q::ProfileTypesResponse { profile_types }.into())
}

pub(crate) async fn label_names(
    state: Tenant,
    req: types::LabelNamesRequest,
) -> Result<Answer<types::LabelNamesResponse>, ApiError> {
    let r = state.range_ms(req.start, req.end)?;
    let names = union_over(&state, &req.matchers, move |store, m| {
        store.label_names(m, r.from, r.until)
    })
    .await?;
    Ok(types::LabelNamesResponse { names }.into())
}

pub(crate) async fn label_values(
    state: Tenant,
    req: types::LabelValuesRequest,
) -> Result<Answer<types::LabelValuesResponse>, ApiError> {
    let r = state.range_ms(req.start, req.end)?;
    let name = req.name;
    let names = union_over(&state, &req.matchers, move |store, m| {
        store.label_values(&name, m, r.from, r.until)
    })
    .await?;
    Ok(types::LabelValuesResponse { names }.into())
}

/// Each matching series' label set (with `__profile_type__`), kept to `label_names`
/// when given; Drilldown lists services and types with `label_names:
/// ["service_name", "__profile_type__"]`.
pub(crate) async fn series(
    state: Tenant,
    req: q::SeriesRequest,
) -> Result<Answer<q::SeriesResponse>, ApiError> {
    let QueryRange { from, until } = state.range_ms(req.start, req.end)?;
    let all = all_matchers(&req.matchers)?;
    let found = state
        .query(move |store| {
            Ok(all
                .iter()
                .flat_map(|m| store.series(m, from, until))
                .collect::<Vec<_>>())
        })
        .await?;
    let mut sets = BTreeSet::new();
    for (_, key) in found {
        let mut labels = key.labels.clone();
        labels.set(PROFILE_TYPE, key.profile_type.clone());
        let kept = if req.label_names.is_empty() {
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
    let labels_set = sets
        .iter()
        .map(|l| types::Labels { labels: pairs(l) })
        .collect();
    Ok(q::SeriesResponse { labels_set }.into())
}

/// Whether anything was ingested, and the oldest and newest data (ms; leaf starts).
pub(crate) async fn profile_stats(
    state: Tenant,
    _req: types::GetProfileStatsRequest,
) -> Result<Answer<types::GetProfileStatsResponse>, ApiError> {
    let (oldest, newest) = state
        .query(|store| Ok((store.oldest_data(), store.newest_data())))
        .await?;
    Ok(types::GetProfileStatsResponse {
        data_ingested: oldest.is_some(),
        // Grafana Pyroscope answers 0 for both when there is no data.
        oldest_profile_time: oldest.map_or(0, |s| s * 1000),
        newest_profile_time: newest.map_or(0, |s| s * 1000),
    }
    .into())
}

/// What a query would read: one scope (the embedded store) with the matching series and
/// the number of (series, 10 s leaf) pairs holding data, which is how many pushes of a
/// client sending every 10 s the range covers. Steps coarser than a leaf (ranges past
/// 11,000 leaves) count a step with data once.
pub(crate) async fn analyze_query(
    state: Tenant,
    req: q::AnalyzeQueryRequest,
) -> Result<Answer<q::AnalyzeQueryResponse>, ApiError> {
    let m = selector_matchers(&req.query)?;
    let range = state.range_ms(req.start, req.end)?;
    let step = range.step_leaves(0, state.data.query_limits.max_points);
    let QueryRange { from, until } = range;
    let (series, cells) = state
        .query(move |store| {
            let series = store.series(&m, from, until).len() as u64;
            let (_, totals) = store.totals(&m, from, until, step)?;
            let cells: u64 = totals
                .values()
                .map(|v| v.iter().filter(|&&x| x > 0).count() as u64)
                .sum();
            Ok((series, cells))
        })
        .await?;
    Ok(q::AnalyzeQueryResponse {
        query_scopes: vec![q::QueryScope {
            component_type: "embedded store".into(),
            component_count: 1,
            series_count: series,
            profile_count: cells,
            ..Default::default()
        }],
        query_impact: Some(q::QueryImpact {
            total_queried_series: series,
            deduplication_needed: false,
            ..Default::default()
        }),
    }
    .into())
}
