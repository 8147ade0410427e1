//! Merged profiles of a selection: `SelectMergeStacktraces` (flame graph, Pyroscope tree
//! bytes, DOT or pprof by `format`), `SelectMergeProfile` (a pprof of the merge) and
//! `Diff`, each with Grafana's selectors:
//! - `stack_trace_selector.call_site`: only samples whose stack starts with that call
//!   path (root first, matched by function name), stacks kept whole, as Grafana
//!   Pyroscope's stack-trace selection does; Drilldown's function details and progressive
//!   flame-graph loading re-query subtrees this way;
//! - `span_selector`: the samples of those tracing spans (the store's span pairs);
//! - `profile_id_selector`, `trace_id_selector`: Embers keeps no per-profile or per-trace
//!   index (profile IDs become span IDs at ingest, as in Grafana), so a non-empty one is
//!   answered `unimplemented` rather than silently ignored.

use axum::http::HeaderMap;
use axum::response::Response;
use embers_formats::Format;
use embers_profile::{Granularity, Profile, StackTree};
use embers_store::Matcher;
use prost::encoding::encode_varint;
use prost::Message;

use super::{connect, decode, node_budget, selection, Answer};
use crate::error::ApiError;
use crate::flamebearer::{self, Flamegraph};
use crate::grafana_proto::google::v1 as pprof;
use crate::grafana_proto::querier::v1 as q;
use crate::grafana_proto::types::v1 as types;
use crate::ingest::spans::parse_span_id;
use crate::range::QueryRange;
use crate::tenants::Tenant;
use crate::warnings::with_warnings;

/// `ProfileFormat.PROFILE_FORMAT_TREE`.
pub(crate) const FORMAT_TREE: i32 = q::ProfileFormat::Tree as i32;

/// What to merge: one typed selection and its selectors.
struct Selection {
    matchers: Vec<Matcher>,
    range: QueryRange,
    call_site: Vec<String>,
    spans: Option<Vec<u64>>,
    granularity: Granularity,
}

impl Selection {
    #[allow(clippy::too_many_arguments)]
    fn new(
        state: &Tenant,
        profile_type: &str,
        label_selector: &str,
        start: i64,
        end: i64,
        stack_trace_selector: Option<&types::StackTraceSelector>,
        span_selector: &[String],
        unsupported: &[(&str, &[String])],
    ) -> Result<Selection, ApiError> {
        for (name, list) in unsupported {
            if !list.is_empty() {
                return Err(connect::unimplemented(format!(
                    "{name}: Embers keeps no index by this ID; select by labels, spans or call site"
                )));
            }
        }
        let (matchers, range) = selection(state, profile_type, label_selector, start, end)?;
        let spans = if span_selector.is_empty() {
            None
        } else {
            Some(span_ids(span_selector)?)
        };
        Ok(Selection {
            matchers,
            range,
            call_site: call_site(stack_trace_selector),
            spans,
            granularity: Granularity::Function,
        })
    }

    /// The merged, focused tree and the damage warnings of its range.
    /// The sampling period of the selected series, for a pprof answer (0: unknown).
    fn period(&self, state: &Tenant) -> i64 {
        state
            .store()
            .period(&self.matchers, self.range.from, self.range.until)
    }

    async fn merge(self, state: &Tenant) -> Result<(StackTree, Vec<String>), ApiError> {
        let QueryRange { from, until } = self.range;
        let Selection {
            matchers,
            call_site,
            spans,
            granularity,
            ..
        } = self;
        let tree = state
            .query(move |store| {
                let tree = match &spans {
                    Some(spans) => store.merge_spans(&matchers, from, until, spans)?,
                    None => store.merge(&matchers, from, until)?,
                };
                Ok(focus(&tree.into_granularity(granularity), &call_site))
            })
            .await?;
        Ok((tree, state.store().damage_warnings(from, until)))
    }
}

/// The call path of a stack-trace selector, root first.
pub(crate) fn call_site(selector: Option<&types::StackTraceSelector>) -> Vec<String> {
    selector
        .map(|s| s.call_site.iter().map(|l| l.name.clone()).collect())
        .unwrap_or_default()
}

/// Span IDs of a `span_selector` (16 hex digits each).
pub(crate) fn span_ids(list: &[String]) -> Result<Vec<u64>, ApiError> {
    list.iter()
        .map(|s| {
            parse_span_id(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "span_selector {s:?}: a span ID is 16 hex digits, not 0"
                ))
            })
        })
        .collect()
}

/// The stacks of `tree` that start with `call_site` (root first; a frame matches by its
/// function name or by the name the flame graph shows), kept whole. An empty call site
/// keeps everything.
pub(crate) fn focus(tree: &StackTree, call_site: &[String]) -> StackTree {
    if call_site.is_empty() {
        return tree.clone();
    }
    let mut stacks: Vec<(Vec<embers_profile::FrameId>, u64)> = Vec::new();
    tree.for_each_stack(|stack, value| {
        let starts = stack.len() >= call_site.len()
            && stack.iter().zip(call_site).all(|(&id, want)| {
                let frame = tree.symbols().get(id);
                frame.function == *want || frame.to_string() == *want
            });
        if starts {
            stacks.push((stack.to_vec(), value));
        }
    });
    let mut refs: Vec<(&[embers_profile::FrameId], u64)> =
        stacks.iter().map(|(s, v)| (&s[..], *v)).collect();
    StackTree::from_stacks(tree.symbols().clone(), &mut refs)
}

/// A flame graph as `querier.v1.FlameGraph`.
pub(crate) fn flame_graph(fg: Flamegraph) -> q::FlameGraph {
    q::FlameGraph {
        names: fg.names,
        levels: fg
            .levels
            .into_iter()
            .map(|values| q::Level { values })
            .collect(),
        total: fg.num_ticks,
        max_self: fg.max_self,
    }
}

/// Pyroscope's tree bytes (what Grafana Pyroscope's `model.Tree` marshals): nodes in
/// depth-first pre-order from a nameless root, each as uvarint name length, name,
/// uvarint self value, uvarint child count. Empty for an empty tree.
pub(crate) fn tree_bytes(tree: &StackTree) -> Vec<u8> {
    let mut out = Vec::new();
    if tree.total() == 0 {
        return out;
    }
    let mut todo = vec![StackTree::ROOT];
    while let Some(node) = todo.pop() {
        let name = tree.frame(node).map(|f| f.to_string()).unwrap_or_default();
        encode_varint(name.len() as u64, &mut out);
        out.extend_from_slice(name.as_bytes());
        encode_varint(tree.self_value(node), &mut out);
        let children = tree.children_sorted(node);
        encode_varint(children.len() as u64, &mut out);
        todo.extend(children.into_iter().rev());
    }
    out
}

/// A pprof of `tree` with the sample and period types of `profile_type`.
fn pprof_of(
    tree: &StackTree,
    profile_type: &str,
    range: QueryRange,
    period: i64,
) -> pprof::Profile {
    let mut meta = crate::profile_type::export_meta(Some(profile_type), period);
    meta.time_nanos = range.from.saturating_mul(1_000_000_000);
    meta.duration_nanos = range.seconds().saturating_mul(1_000_000_000);
    let bytes =
        embers_formats::pprof::encode_proto(&Profile::from_tree(tree, meta)).encode_to_vec();
    // Same schema (perftools' profile.proto), so the bytes always decode.
    pprof::Profile::decode(&bytes[..]).unwrap_or_default()
}

fn merge_request_selection(
    state: &Tenant,
    r: &q::SelectMergeStacktracesRequest,
) -> Result<Selection, ApiError> {
    Selection::new(
        state,
        &r.profile_type_id,
        &r.label_selector,
        r.start,
        r.end,
        r.stack_trace_selector.as_ref(),
        &r.span_selector,
        &[
            ("profile_id_selector", &r.profile_id_selector),
            ("trace_id_selector", &r.trace_id_selector),
        ],
    )
}

pub(crate) async fn stacktraces(
    state: Tenant,
    req: q::SelectMergeStacktracesRequest,
) -> Result<Answer<q::SelectMergeStacktracesResponse>, ApiError> {
    let format = q::ProfileFormat::try_from(req.format).map_err(|_| {
        connect::unimplemented(format!("format {}: not a known ProfileFormat", req.format))
    })?;
    let mut sel = merge_request_selection(&state, &req)?;
    if format == q::ProfileFormat::Pprof {
        // A pprof carries lines; the others are one node per function.
        sel.granularity = Granularity::Line;
    }
    let range = sel.range;
    // Only the pprof and call-graph answers say the period: no catalog scan for the rest.
    let period = match format {
        q::ProfileFormat::Pprof | q::ProfileFormat::Dot => sel.period(&state),
        _ => 0,
    };
    let (tree, warnings) = sel.merge(&state).await?;
    let (tree, _) = tree.truncated(node_budget(req.max_nodes));
    let mut message = q::SelectMergeStacktracesResponse::default();
    match format {
        q::ProfileFormat::Unspecified | q::ProfileFormat::Flamegraph => {
            message.flamegraph = Some(flame_graph(flamebearer::single(&tree)));
        }
        q::ProfileFormat::Tree => message.tree = tree_bytes(&tree),
        q::ProfileFormat::Dot => {
            let dot = crate::query::encode(
                &tree,
                Format::Dot,
                crate::query::Export {
                    profile_type: Some(&req.profile_type_id),
                    period,
                    title: &req.label_selector,
                    range,
                    max_nodes: None,
                },
            )?;
            message.dot = String::from_utf8_lossy(&dot).into_owned();
        }
        q::ProfileFormat::Pprof => {
            message.pprof = Some(q::PprofProfile {
                profile: Some(pprof_of(&tree, &req.profile_type_id, range, period)),
            });
        }
    }
    Ok(Answer { message, warnings })
}

/// `SelectMergeProfile`: the merge as a pprof (lines kept), truncated only when the
/// request sets `max_nodes`.
pub(crate) async fn profile(
    state: &Tenant,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (req, codec): (q::SelectMergeProfileRequest, _) = decode(state, headers, body)?;
    let run = async {
        let mut sel = Selection::new(
            state,
            &req.profile_type_id,
            &req.label_selector,
            req.start,
            req.end,
            req.stack_trace_selector.as_ref(),
            &[],
            &[
                ("profile_id_selector", &req.profile_id_selector),
                ("trace_id_selector", &req.trace_id_selector),
            ],
        )?;
        sel.granularity = Granularity::Line;
        let range = sel.range;
        let period = sel.period(state);
        let (mut tree, warnings) = sel.merge(state).await?;
        if req.max_nodes.is_some_and(|n| n > 0) {
            tree = tree.truncated(node_budget(req.max_nodes)).0;
        }
        Ok::<_, ApiError>((
            pprof_of(&tree, &req.profile_type_id, range, period),
            warnings,
        ))
    };
    let (message, warnings) = run.await.map_err(ApiError::connect)?;
    Ok(with_warnings(connect::reply(&message, codec), &warnings))
}

pub(crate) async fn diff(
    state: Tenant,
    req: q::DiffRequest,
) -> Result<Answer<q::DiffResponse>, ApiError> {
    let (left, right) = (req.left.unwrap_or_default(), req.right.unwrap_or_default());
    let (l, mut warnings) = merge_request_selection(&state, &left)?
        .merge(&state)
        .await?;
    let (r, more) = merge_request_selection(&state, &right)?
        .merge(&state)
        .await?;
    warnings.extend(more);
    warnings.dedup();
    let max = node_budget(left.max_nodes.or(right.max_nodes));
    let (fg, left_ticks, right_ticks) = flamebearer::diff(&l.truncated(max).0, &r.truncated(max).0);
    let g = flame_graph(fg);
    let message = q::DiffResponse {
        flamegraph: Some(q::FlameGraphDiff {
            names: g.names,
            levels: g.levels,
            total: g.total,
            max_self: g.max_self,
            left_ticks,
            right_ticks,
        }),
    };
    Ok(Answer { message, warnings })
}

#[cfg(test)]
mod tests {
    use embers_profile::Frame;

    use super::*;

    fn tree(stacks: &[(&[&str], u64)]) -> StackTree {
        let mut t = StackTree::new();
        for (names, v) in stacks {
            let frames: Vec<Frame> = names.iter().map(|n| Frame::named(*n)).collect();
            t.add_frames(frames.iter(), *v);
        }
        t
    }

    #[test]
    fn tree_bytes_are_pre_order_with_child_counts() {
        let t = tree(&[(&["a", "b"], 3), (&["a"], 2)]);
        // root: "", self 0, 1 child; a: self 2, 1 child; b: self 3, 0 children.
        assert_eq!(tree_bytes(&t), vec![0, 0, 1, 1, b'a', 2, 1, 1, b'b', 3, 0]);
        assert!(tree_bytes(&StackTree::new()).is_empty());
    }

    #[test]
    fn focus_keeps_whole_stacks_that_start_with_the_call_site() {
        let t = tree(&[
            (&["main", "work", "spin"], 5),
            (&["main", "work"], 2),
            (&["main", "idle"], 7),
            (&["other", "work"], 11),
        ]);
        let f = focus(&t, &["main".into(), "work".into()]);
        assert_eq!(f.total(), 7);
        assert_eq!(
            f.to_sorted_stacks()
                .iter()
                .map(|(s, v)| (s.len(), *v))
                .collect::<Vec<_>>(),
            vec![(2, 2), (3, 5)]
        );
        assert_eq!(focus(&t, &[]).total(), t.total());
        assert_eq!(focus(&t, &["work".into()]).total(), 0);
    }
}
