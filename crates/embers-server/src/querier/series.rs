//! Time series of a selection: `SelectSeries` (totals per step, summed or averaged,
//! grouped, top N) and `SelectHeatmap` (how many profiles fell in each value band per
//! step), over the store's per-series totals.
//!
//! The store keeps one total per series and 10 s leaf; a "profile" here is one (series,
//! leaf) cell with data, which is exact for clients that push every 10 s (every
//! Pyroscope SDK's default) and merges faster pushers' profiles of one leaf.
//!
//! Steps are any number of seconds; buckets start at multiples of the step (Unix epoch
//! aligned), and a point's timestamp is its bucket's start. Each leaf counts in the
//! bucket its start falls in: with a step that is a multiple of 10 s this is exact;
//! otherwise a leaf is not split between two buckets (a 15 s step's buckets hold one or
//! two leaves alternately; below 10 s some buckets are empty). The store is read at the
//! coarsest power-of-ten-of-leaves block dividing the step; a step is widened (to a
//! multiple of itself) until the range has at most `max_points` buckets, and rounded up
//! to a multiple of a coarser block when reading leaves would mean more than ten times
//! that many cells.
//!
//! With a `stack_trace_selector`, a point is the total of the stacks starting with the
//! call site: one merge per (group, bucket), at most 4,096 of them.

use std::collections::BTreeMap;

use embers_profile::Labels;
use embers_store::{MatchOp, Matcher, LEAF_SECONDS};

use super::merge::{call_site, focus};
use super::{connect, pairs, selection, Answer};
use crate::error::ApiError;
use crate::grafana_proto::querier::v1 as q;
use crate::grafana_proto::types::v1 as types;
use crate::range::QueryRange;
use crate::tenants::Tenant;

const LEAF_MS: i64 = LEAF_SECONDS * 1000;

/// Value bands of a heatmap slot.
const HEATMAP_BANDS: usize = 20;

/// How a range is cut into buckets and read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    /// Bucket width, ms (a whole number of ms, at least 1).
    pub step_ms: i64,
    /// Store read step, leaves (a power of ten dividing the bucket when it can).
    pub block_leaves: i64,
}

impl Grid {
    /// The grid for a requested step in seconds (0, negative or not a number: 15 s,
    /// Grafana's default minimum).
    pub(crate) fn new(range: QueryRange, step_seconds: f64, max_points: i64) -> Grid {
        let max_points = max_points.max(2);
        let wanted = if step_seconds.is_finite() && step_seconds > 0.0 {
            // `as` saturates: a huge step is one bucket.
            ((step_seconds * 1000.0).round() as i64).max(1)
        } else {
            15_000
        };
        let range_ms = range.seconds().saturating_mul(1000);
        let mut step_ms = wanted.min(range_ms.max(1));
        let points = range_ms / step_ms + 1;
        if points > max_points {
            step_ms = step_ms.saturating_mul((points + max_points - 1) / max_points);
        }
        let mut block = 1i64;
        while step_ms % (block * 10 * LEAF_MS) == 0 {
            block *= 10;
        }
        let leaves = range.seconds() / LEAF_SECONDS + 1;
        while leaves / block > 10 * max_points {
            block *= 10;
            let unit = block * LEAF_MS;
            step_ms = (step_ms + unit - 1) / unit * unit;
        }
        Grid {
            step_ms,
            block_leaves: block,
        }
    }

    /// The start (ms) of the bucket holding the block starting at `leaf`.
    fn bucket(&self, leaf: i64) -> i64 {
        (leaf * LEAF_MS).div_euclid(self.step_ms) * self.step_ms
    }
}

/// Per group, per bucket start (ms): the values of the cells with data.
type Buckets = BTreeMap<Labels, BTreeMap<i64, Vec<u64>>>;

/// Reads the totals of every matching series on `grid` and groups them by `group_by`.
async fn buckets(
    state: &Tenant,
    matchers: Vec<Matcher>,
    range: QueryRange,
    grid: Grid,
    group_by: Vec<String>,
) -> Result<Buckets, ApiError> {
    let QueryRange { from, until } = range;
    let (first_ms, until_ms) = (from * 1000, until * 1000);
    state
        .query(move |store| {
            let keys: BTreeMap<_, _> = store.series(&matchers, from, until).into_iter().collect();
            let (first, totals) = store.totals(&matchers, from, until, grid.block_leaves)?;
            let mut out = Buckets::new();
            for (id, values) in totals {
                let Some(key) = keys.get(&id) else { continue };
                let group = Labels::from_pairs(
                    group_by
                        .iter()
                        .filter_map(|g| key.labels.get(g).map(|v| (g.clone(), v.to_owned()))),
                );
                let series = out.entry(group).or_default();
                for (i, &v) in values.iter().enumerate() {
                    let leaf = first + i as i64 * grid.block_leaves;
                    let start = leaf * LEAF_MS;
                    if v == 0
                        || start + grid.block_leaves * LEAF_MS <= first_ms
                        || start >= until_ms
                    {
                        continue;
                    }
                    series.entry(grid.bucket(leaf)).or_default().push(v);
                }
            }
            Ok(out)
        })
        .await
}

pub(crate) async fn select_series(
    state: Tenant,
    req: q::SelectSeriesRequest,
) -> Result<Answer<q::SelectSeriesResponse>, ApiError> {
    let call_site = call_site(req.stack_trace_selector.as_ref());
    let (matchers, range) = selection(
        &state,
        &req.profile_type_id,
        &req.label_selector,
        req.start,
        req.end,
    )?;
    let grid = Grid::new(range, req.step, state.data.query_limits.max_points);
    let average = req.aggregation == Some(types::TimeSeriesAggregationType::Average as i32);
    let group_by = req.group_by.clone();
    let groups = buckets(&state, matchers.clone(), range, grid, req.group_by).await?;
    let focused = if call_site.is_empty() {
        None
    } else {
        let plan = groups
            .iter()
            .map(|(labels, b)| (labels.clone(), b.keys().copied().collect()))
            .collect();
        let f = focused_sums(&state, matchers, range, grid, plan, group_by, call_site).await?;
        Some(f)
    };
    let mut series: Vec<(f64, types::Series)> = groups
        .into_iter()
        .map(|(labels, buckets)| {
            let mut total = 0.0;
            let focus = focused.as_ref().map(|f| f.get(&labels));
            let points = buckets
                .into_iter()
                .filter_map(|(timestamp, cells)| {
                    let sum = match focus {
                        None => cells.iter().map(|&v| v as f64).sum::<f64>(),
                        Some(f) => {
                            let v = f.and_then(|f| f.get(&timestamp)).copied().unwrap_or(0);
                            if v == 0 {
                                return None;
                            }
                            v as f64
                        }
                    };
                    total += sum;
                    let value = if average {
                        sum / cells.len() as f64
                    } else {
                        sum
                    };
                    Some(types::Point {
                        value,
                        timestamp,
                        ..Default::default()
                    })
                })
                .collect();
            (
                total,
                types::Series {
                    labels: pairs(&labels),
                    points,
                },
            )
        })
        .collect();
    if let Some(limit) = req
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| l > 0)
    {
        series.sort_by(|a, b| b.0.total_cmp(&a.0));
        series.truncate(limit);
    }
    let warnings = state.store().damage_warnings(range.from, range.until);
    Ok(Answer {
        message: q::SelectSeriesResponse {
            series: series.into_iter().map(|(_, s)| s).collect(),
        },
        warnings,
    })
}

/// Most (group, bucket) merges one call-site series query may run.
const MAX_FOCUSED_MERGES: usize = 4096;

/// Per group and bucket, the total of the stacks starting with `call_site`: one merge
/// per (group, bucket) of the leaves whose start falls in the bucket, the same leaves
/// [`buckets`] counts there. Bounded by [`MAX_FOCUSED_MERGES`].
async fn focused_sums(
    state: &Tenant,
    matchers: Vec<Matcher>,
    range: QueryRange,
    grid: Grid,
    plan: Vec<(Labels, Vec<i64>)>,
    group_by: Vec<String>,
    call_site: Vec<String>,
) -> Result<BTreeMap<Labels, BTreeMap<i64, u64>>, ApiError> {
    let merges: usize = plan.iter().map(|(_, b)| b.len()).sum();
    if merges > MAX_FOCUSED_MERGES {
        return Err(ApiError::bad_request(format!(
            "a call-site series over {merges} (group, step) cells; at most \
             {MAX_FOCUSED_MERGES} are merged: widen the step, narrow the range or group_by"
        )));
    }
    let ceil_leaf = |ms: i64| (ms + LEAF_MS - 1).div_euclid(LEAF_MS) * LEAF_SECONDS;
    state
        .query(move |store| {
            let mut out: BTreeMap<Labels, BTreeMap<i64, u64>> = BTreeMap::new();
            for (labels, starts) in plan {
                let mut m = matchers.clone();
                for g in &group_by {
                    let value = labels.get(g).unwrap_or("");
                    m.push(Matcher::new(g, MatchOp::Eq, value).expect("not a regex"));
                }
                let sums = out.entry(labels).or_default();
                for start in starts {
                    let from = ceil_leaf(start).max(range.from);
                    let until = ceil_leaf(start + grid.step_ms).min(range.until);
                    if until <= from {
                        continue;
                    }
                    let tree = store.merge(&m, from, until)?;
                    sums.insert(start, focus(&tree, &call_site).total());
                }
            }
            Ok(out)
        })
        .await
}

/// `SelectHeatmap` for individual profiles: per bucket, how many (series, leaf) cells
/// fell in each of 20 equal value bands between the smallest and largest cell of the
/// group (`y_min` holds each band's lower bound). Span heatmaps need per-span timings
/// Embers does not keep.
pub(crate) async fn select_heatmap(
    state: Tenant,
    req: q::SelectHeatmapRequest,
) -> Result<Answer<q::SelectHeatmapResponse>, ApiError> {
    if req.query_type == q::HeatmapQueryType::Span as i32 {
        return Err(connect::unimplemented(
            "SelectHeatmap of spans: Embers keeps span profiles, not span durations",
        ));
    }
    let (matchers, range) = selection(
        &state,
        &req.profile_type_id,
        &req.label_selector,
        req.start,
        req.end,
    )?;
    let grid = Grid::new(range, req.step, state.data.query_limits.max_points);
    let groups = buckets(&state, matchers, range, grid, req.group_by).await?;
    let mut series: Vec<(u64, types::HeatmapSeries)> = groups
        .into_iter()
        .map(|(labels, buckets)| {
            let all = buckets.values().flatten().copied();
            let (lo, hi) = all.fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let width = ((hi.saturating_sub(lo)) as f64 / HEATMAP_BANDS as f64).max(1.0);
            let y_min: Vec<f64> = (0..HEATMAP_BANDS)
                .map(|i| lo as f64 + i as f64 * width)
                .collect();
            let mut total = 0u64;
            let slots = buckets
                .into_iter()
                .map(|(timestamp, cells)| {
                    let mut counts = vec![0i32; HEATMAP_BANDS];
                    for v in cells {
                        total = total.saturating_add(v);
                        let band = (((v - lo) as f64 / width) as usize).min(HEATMAP_BANDS - 1);
                        counts[band] += 1;
                    }
                    types::HeatmapSlot {
                        timestamp,
                        y_min: y_min.clone(),
                        counts,
                        exemplars: Vec::new(),
                    }
                })
                .collect();
            (
                total,
                types::HeatmapSeries {
                    labels: pairs(&labels),
                    slots,
                },
            )
        })
        .collect();
    if let Some(limit) = req
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| l > 0)
    {
        series.sort_by_key(|s| std::cmp::Reverse(s.0));
        series.truncate(limit);
    }
    Ok(Answer {
        message: q::SelectHeatmapResponse {
            series: series.into_iter().map(|(_, s)| s).collect(),
        },
        warnings: state.store().damage_warnings(range.from, range.until),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: QueryRange = QueryRange {
        from: 1_700_000_000,
        until: 1_700_086_400,
    };

    #[test]
    fn steps_keep_their_length_and_read_the_coarsest_dividing_block() {
        let g = Grid::new(DAY, 15.0, 11_000);
        assert_eq!(
            g,
            Grid {
                step_ms: 15_000,
                block_leaves: 1
            }
        );
        assert_eq!(Grid::new(DAY, 60.0, 11_000).step_ms, 60_000);
        let g = Grid::new(DAY, 3600.0, 11_000);
        assert_eq!(
            g,
            Grid {
                step_ms: 3_600_000,
                block_leaves: 10
            }
        );
        assert_eq!(Grid::new(DAY, 0.0, 11_000).step_ms, 15_000);
        assert_eq!(Grid::new(DAY, f64::NAN, 11_000).step_ms, 15_000);
        // One bucket for a step longer than the range.
        assert_eq!(Grid::new(DAY, 1e300, 11_000).step_ms, 86_400_000);
    }

    #[test]
    fn tiny_steps_widen_to_the_point_limit() {
        let month = QueryRange {
            from: DAY.from,
            until: DAY.from + 30 * 86_400,
        };
        let g = Grid::new(month, 1.0, 11_000);
        assert!(month.seconds() * 1000 / g.step_ms < 11_000, "{g:?}");
        assert!(
            (month.seconds() / LEAF_SECONDS) / g.block_leaves <= 110_000,
            "{g:?}"
        );
        assert_eq!(g.step_ms % (g.block_leaves * LEAF_MS), 0, "{g:?}");
    }

    #[test]
    fn leaves_fall_in_the_bucket_of_their_start() {
        let g = Grid::new(DAY, 15.0, 11_000);
        // Leaves at 0 s and 10 s fall in bucket 0; 20 s in bucket 15 s.
        let base = 1_700_000_000 / 10 / 3 * 3; // 30 s aligned leaf
        assert_eq!(g.bucket(base), g.bucket(base + 1));
        assert_eq!(g.bucket(base + 2), g.bucket(base) + 15_000);
    }
}
