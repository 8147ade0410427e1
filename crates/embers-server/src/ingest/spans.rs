//! Span labels are sample labels, never series labels.
//!
//! pyroscope-otel tags the samples of a root span with `span_id` (16 hex digits),
//! `span_name` and `trace_id`; the Java agent sends `profile_id` (which Grafana Pyroscope
//! renames `span_id`), and the JFR and OTLP decoders emit the same names. Were they series
//! labels, every span would be a new series and the series limit would refuse whole
//! uploads. Here they are split off: the series (named by the other labels) gets every
//! sample, as if the span labels were absent, and each span's samples go to the store
//! beside it ([`Put::spans`](embers_store::Put)), where `SelectMergeSpanProfile` finds
//! them by span ID.

use std::collections::{BTreeMap, HashSet};

use embers_formats::IngestBudget;
use embers_profile::{Labels, StackTree};

use crate::error::ApiError;

/// The sample label holding the span ID.
pub const SPAN_ID: &str = "span_id";
/// What the Java agent (and older clients) call the span ID.
pub const PROFILE_ID: &str = "profile_id";
/// Span labels that are dropped from series labels (their span ID keeps what matters).
const SPAN_LABELS: [&str; 4] = [SPAN_ID, PROFILE_ID, "trace_id", "span_name"];

/// A span ID as clients write it: 16 hex digits (OpenTelemetry's 64-bit span ID).
/// `None` for anything else, and for 0 (OpenTelemetry's invalid span ID).
pub fn parse_span_id(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|&id| id != 0)
}

/// One series' samples, and the part of them each span ran.
#[derive(Debug)]
pub struct SeriesTrees {
    /// The series labels: the sample labels without span labels.
    pub labels: Labels,
    /// Every sample of the series.
    pub tree: StackTree,
    /// Per span ID, the samples that ran in it.
    pub spans: Vec<(u64, StackTree)>,
}

/// The distinct span IDs of one request, bounded by the `[ingest] max_spans` setting (a
/// span met in several profile types of one upload counts once).
#[derive(Debug, Default)]
pub struct SpanCount(HashSet<u64>);

impl SpanCount {
    fn add(&mut self, span: u64, budget: &IngestBudget) -> Result<(), ApiError> {
        if self.0.len() >= budget.max_spans && !self.0.contains(&span) {
            return Err(ApiError::too_large(format!(
                "the upload has more spans than max_spans = {} (an [ingest] setting)",
                budget.max_spans
            )));
        }
        self.0.insert(span);
        Ok(())
    }
}

/// Groups trees by their sample labels without span labels, keeping each span's samples
/// apart too; past `max_spans` distinct spans in the request (`seen`), 413.
pub fn split(
    trees: Vec<(Labels, StackTree)>,
    budget: &IngestBudget,
    seen: &mut SpanCount,
) -> Result<Vec<SeriesTrees>, ApiError> {
    if !trees
        .iter()
        .any(|(labels, _)| SPAN_LABELS.iter().any(|l| labels.get(l).is_some()))
    {
        // The common case: no span labels, nothing to regroup.
        return Ok(trees
            .into_iter()
            .map(|(labels, tree)| SeriesTrees {
                labels,
                tree,
                spans: Vec::new(),
            })
            .collect());
    }
    let mut series: BTreeMap<Labels, (StackTree, BTreeMap<u64, StackTree>)> = BTreeMap::new();
    for (labels, tree) in trees {
        let span = labels
            .get(SPAN_ID)
            .or_else(|| labels.get(PROFILE_ID))
            .and_then(parse_span_id);
        let kept = Labels::from_pairs(labels.iter().filter(|(k, _)| !SPAN_LABELS.contains(k)));
        let (all, spans) = series.entry(kept).or_default();
        all.merge(&tree);
        if let Some(span) = span {
            seen.add(span, budget)?;
            match spans.get_mut(&span) {
                Some(t) => t.merge(&tree),
                None => {
                    spans.insert(span, tree);
                }
            }
        }
    }
    Ok(series
        .into_iter()
        .map(|(labels, (tree, spans))| SeriesTrees {
            labels,
            tree,
            spans: spans.into_iter().collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use embers_profile::Frame;

    use super::*;

    fn tree(frame: &str, value: u64) -> StackTree {
        let mut t = StackTree::new();
        t.add_frames([&Frame::named("main"), &Frame::named(frame)], value);
        t
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn span_labels_leave_the_series_and_keep_their_samples() {
        let budget = IngestBudget::default();
        let trees = vec![
            (
                labels(&[
                    ("region", "eu"),
                    ("span_id", "00000000000000a1"),
                    ("span_name", "GET"),
                    ("trace_id", "0123456789abcdef0123456789abcdef"),
                ]),
                tree("a", 3),
            ),
            (
                labels(&[("region", "eu"), ("profile_id", "00000000000000b2")]),
                tree("b", 5),
            ),
            (labels(&[("region", "eu")]), tree("c", 7)),
            (
                labels(&[("region", "us"), ("span_id", "not-a-span")]),
                tree("d", 1),
            ),
        ];
        let mut seen = SpanCount::default();
        let out = split(trees, &budget, &mut seen).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels, labels(&[("region", "eu")]));
        assert_eq!(out[0].tree.total(), 15);
        let spans: Vec<(u64, u64)> = out[0].spans.iter().map(|(s, t)| (*s, t.total())).collect();
        assert_eq!(spans, vec![(0xa1, 3), (0xb2, 5)]);
        assert_eq!(out[1].labels, labels(&[("region", "us")]));
        assert!(out[1].spans.is_empty());
        assert_eq!(seen.0.len(), 2);
    }

    #[test]
    fn too_many_spans_is_413_naming_the_setting() {
        let mut budget = IngestBudget::default();
        budget.max_spans = 2;
        let trees = |n: u64| -> Vec<_> {
            (1..=n)
                .map(|i| (labels(&[("span_id", &format!("{i:016x}"))]), tree("a", 1)))
                .collect()
        };
        // The same two spans in two profile types: two spans.
        let mut seen = SpanCount::default();
        split(trees(2), &budget, &mut seen).unwrap();
        split(trees(2), &budget, &mut seen).unwrap();
        let err = split(trees(3), &budget, &mut seen).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(err.message.contains("max_spans"));
    }

    #[test]
    fn span_ids_are_sixteen_hex_digits() {
        assert_eq!(
            parse_span_id("9a517183f26a089d"),
            Some(0x9a51_7183_f26a_089d)
        );
        assert_eq!(parse_span_id("0000000000000000"), None);
        assert_eq!(parse_span_id("9a517183f26a089"), None);
        assert_eq!(parse_span_id("+a517183f26a089d"), None);
    }
}
