//! Trees as flame graph "levels", the layout Pyroscope's render API and Grafana's
//! `FlameGraph` message share: one row per depth, each node as integers
//! `[x offset, total, self, name index]` (or 7 integers for a diff, left then right),
//! offsets delta-encoded against the end of the previous node in the row.

use std::collections::HashMap;

use embers_profile::{NodeId, StackTree};

/// The `units` and `sampleRate` of a flamebearer's metadata, chosen from the profile
/// type as Grafana Pyroscope chooses them (`pkg/model/flamegraph.go`,
/// `ExportToFlamebearer`), so that every consumer of the format computes the same
/// seconds, bytes or counts: CPU nanoseconds are `samples` at a rate of 1e9 (numTicks ÷
/// sampleRate = seconds), object counts are `objects`, other sample units pass through
/// (`bytes`, `nanoseconds`, `count`) at the nominal rate 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units {
    /// The `units` field.
    pub units: &'static str,
    /// The `sampleRate` field.
    pub sample_rate: u64,
}

impl Units {
    /// Units of the profile type `name:sample_type:sample_unit:period_type:period_unit`;
    /// a query that does not pin one type gets the legacy `samples` at 100.
    pub fn of(profile_type: Option<&str>) -> Units {
        let mut parts = profile_type.map(|t| t.split(':')).into_iter().flatten();
        let (_, sample_type, sample_unit) = (parts.next(), parts.next(), parts.next());
        let (units, sample_rate) = match (sample_type, sample_unit) {
            (Some("cpu"), _) => ("samples", 1_000_000_000),
            (Some("inuse_objects" | "alloc_objects" | "goroutine" | "samples"), _) => {
                ("objects", 100)
            }
            (Some(_), Some(unit)) => (known_unit(unit), 100),
            _ => ("samples", 100),
        };
        Units { units, sample_rate }
    }
}

/// The metadata's `name`: the sample type of the profile type (`cpu`, `alloc_space`,
/// `contentions`, …), as Grafana Pyroscope's `ExportToFlamebearer` sends it; empty when
/// the query does not pin one profile type.
pub fn metadata_name(profile_type: Option<&str>) -> &str {
    profile_type
        .and_then(|t| t.split(':').nth(1))
        .unwrap_or_default()
}

/// A sample unit as the `'static` name the metadata carries; a unit we do not know is
/// sent as `""`, which consumers show as a plain number.
fn known_unit(unit: &str) -> &'static str {
    match unit {
        "nanoseconds" => "nanoseconds",
        "microseconds" => "microseconds",
        "milliseconds" => "milliseconds",
        "seconds" => "seconds",
        "bytes" => "bytes",
        "count" => "count",
        _ => "",
    }
}

/// A single flame graph.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flamegraph {
    /// Distinct frame names; `names[0]` is `"total"`, the root.
    pub names: Vec<String>,
    /// Rows of 4-integer (or 7 for diffs) node records.
    pub levels: Vec<Vec<i64>>,
    /// The root's total (for a diff, left plus right).
    pub num_ticks: i64,
    /// The largest self value.
    pub max_self: i64,
}

struct Names {
    names: Vec<String>,
    index: HashMap<String, i64>,
}

impl Names {
    fn new() -> Self {
        let mut n = Names {
            names: Vec::new(),
            index: HashMap::new(),
        };
        n.get("total");
        n
    }

    fn get(&mut self, name: &str) -> i64 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as i64;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }
}

/// Per-row state for delta-encoding offsets.
#[derive(Default, Clone, Copy)]
struct RowEnd {
    end: i64,
}

fn push_node(
    levels: &mut Vec<Vec<i64>>,
    ends: &mut Vec<Vec<RowEnd>>,
    depth: usize,
    side_values: &[(i64, i64, i64)],
    name: i64,
) {
    if levels.len() <= depth {
        levels.resize(depth + 1, Vec::new());
        ends.resize(depth + 1, vec![RowEnd::default(); side_values.len()]);
    }
    for (side, &(x, total, self_value)) in side_values.iter().enumerate() {
        let row_end = &mut ends[depth][side];
        levels[depth].extend_from_slice(&[x - row_end.end, total, self_value]);
        row_end.end = x + total;
    }
    levels[depth].push(name);
}

/// The flame graph of `tree` (truncate it first to bound its size).
pub fn single(tree: &StackTree) -> Flamegraph {
    let mut names = Names::new();
    let mut levels = Vec::new();
    let mut ends = Vec::new();
    let mut max_self = 0;
    // (node, depth, x)
    let mut todo = vec![(StackTree::ROOT, 0usize, 0i64)];
    while let Some((node, depth, x)) = todo.pop() {
        let total = tree.total_value(node) as i64;
        let self_value = tree.self_value(node) as i64;
        max_self = max_self.max(self_value);
        let name = match tree.frame(node) {
            None => 0,
            Some(frame) => names.get(&frame.to_string()),
        };
        push_node(
            &mut levels,
            &mut ends,
            depth,
            &[(x, total, self_value)],
            name,
        );
        let children = tree.children_sorted(node);
        let mut cx = x;
        let mut placed = Vec::with_capacity(children.len());
        for child in children {
            placed.push((child, depth + 1, cx));
            cx += tree.total_value(child) as i64;
        }
        todo.extend(placed.into_iter().rev());
    }
    Flamegraph {
        names: names.names,
        levels,
        num_ticks: tree.total() as i64,
        max_self,
    }
}

/// The diff flame graph of two trees: every path of either, with left and right values.
pub fn diff(left: &StackTree, right: &StackTree) -> (Flamegraph, i64, i64) {
    let mut union = left.clone();
    union.merge(right);
    let side = |t: &StackTree| -> Vec<Option<embers_profile::FrameId>> {
        union
            .symbols()
            .iter()
            .map(|(_, f)| t.symbols().lookup(f))
            .collect()
    };
    let (lmap, rmap) = (side(left), side(right));
    let mut names = Names::new();
    let mut levels = Vec::new();
    let mut ends = Vec::new();
    let mut max_self = 0;
    let value = |t: &StackTree, n: Option<NodeId>| {
        n.map_or((0, 0), |n| {
            (t.total_value(n) as i64, t.self_value(n) as i64)
        })
    };
    // (union node, left node, right node, depth, left x, right x)
    let mut todo = vec![(
        StackTree::ROOT,
        Some(StackTree::ROOT),
        Some(StackTree::ROOT),
        0usize,
        0i64,
        0i64,
    )];
    while let Some((node, l, r, depth, lx, rx)) = todo.pop() {
        let (lt, ls) = value(left, l);
        let (rt, rs) = value(right, r);
        max_self = max_self.max(ls).max(rs);
        let name = match union.frame(node) {
            None => 0,
            Some(frame) => names.get(&frame.to_string()),
        };
        push_node(
            &mut levels,
            &mut ends,
            depth,
            &[(lx, lt, ls), (rx, rt, rs)],
            name,
        );
        let mut placed = Vec::new();
        let (mut clx, mut crx) = (lx, rx);
        for child in union.children_sorted(node) {
            let frame = union.frame_id(child).expect("children have frames");
            let cl = l
                .zip(lmap[frame.0 as usize])
                .and_then(|(p, f)| left.child(p, f));
            let cr = r
                .zip(rmap[frame.0 as usize])
                .and_then(|(p, f)| right.child(p, f));
            placed.push((child, cl, cr, depth + 1, clx, crx));
            clx += value(left, cl).0;
            crx += value(right, cr).0;
        }
        todo.extend(placed.into_iter().rev());
    }
    let (lt, rt) = (left.total() as i64, right.total() as i64);
    (
        Flamegraph {
            names: names.names,
            levels,
            num_ticks: lt + rt,
            max_self,
        },
        lt,
        rt,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use embers_profile::Frame;

    #[test]
    fn metadata_name_is_the_sample_type_as_grafana_sends_it() {
        let name = |t| metadata_name(Some(t));
        assert_eq!(name("process_cpu:cpu:nanoseconds:cpu:nanoseconds"), "cpu");
        assert_eq!(
            name("mutex:contentions:count:contentions:count"),
            "contentions"
        );
        assert_eq!(name("memory:alloc_space:bytes::"), "alloc_space");
        assert_eq!(metadata_name(None), "");
    }

    fn tree(stacks: &[(&[&str], u64)]) -> StackTree {
        let mut t = StackTree::new();
        for (stack, v) in stacks {
            let frames: Vec<Frame> = stack.iter().map(|f| Frame::named(*f)).collect();
            t.add_frames(frames.iter(), *v);
        }
        t
    }

    #[test]
    fn units_follow_grafana_pyroscope() {
        let u = |t: &str| {
            let u = Units::of(Some(t));
            (u.units, u.sample_rate)
        };
        assert_eq!(
            u("process_cpu:cpu:nanoseconds:cpu:nanoseconds"),
            ("samples", 1_000_000_000)
        );
        assert_eq!(
            u("wall:wall:nanoseconds:wall:nanoseconds"),
            ("nanoseconds", 100)
        );
        assert_eq!(u("memory:alloc_space:bytes:space:bytes"), ("bytes", 100));
        assert_eq!(
            u("memory:inuse_objects:count:space:bytes"),
            ("objects", 100)
        );
        assert_eq!(
            u("goroutine:goroutine:count:goroutine:count"),
            ("objects", 100)
        );
        assert_eq!(
            u("process_cpu:samples:count:cpu:nanoseconds"),
            ("objects", 100)
        );
        assert_eq!(
            u("mutex:contentions:count:contentions:count"),
            ("count", 100)
        );
        assert_eq!(
            u("mutex:delay:nanoseconds:contentions:count"),
            ("nanoseconds", 100)
        );
        assert_eq!(
            Units::of(None),
            Units {
                units: "samples",
                sample_rate: 100
            }
        );
    }

    #[test]
    fn levels_follow_the_pyroscope_layout() {
        let fg = single(&tree(&[(&["main", "foo"], 75), (&["main", "bar"], 25)]));
        assert_eq!(fg.names, vec!["total", "main", "foo", "bar"]);
        assert_eq!(
            fg.levels,
            vec![
                vec![0, 100, 0, 0],
                vec![0, 100, 0, 1],
                vec![0, 75, 75, 2, 0, 25, 25, 3]
            ]
        );
        assert_eq!((fg.num_ticks, fg.max_self), (100, 75));
    }

    #[test]
    fn offsets_are_deltas_within_a_row() {
        // a;x 10, b 5, b;y 5: children start at their parent's offset (self is drawn
        // after them), so y starts at 10, where x ends: delta 0.
        let fg = single(&tree(&[(&["a", "x"], 10), (&["b"], 5), (&["b", "y"], 5)]));
        assert_eq!(fg.levels[1], vec![0, 10, 0, 1, 0, 10, 5, 3]);
        assert_eq!(fg.levels[2], vec![0, 10, 10, 2, 0, 5, 5, 4]);
    }

    #[test]
    fn diff_levels_hold_both_sides() {
        let (fg, l, r) = diff(
            &tree(&[(&["main", "foo"], 75), (&["main", "bar"], 25)]),
            &tree(&[(&["main", "bar"], 60), (&["main", "baz"], 40)]),
        );
        assert_eq!((l, r, fg.num_ticks), (100, 100, 200));
        assert_eq!(fg.levels[0], vec![0, 100, 0, 0, 100, 0, 0]);
        // Union children heaviest first: bar (85), foo (75), baz (40).
        let row = &fg.levels[2];
        assert_eq!(row.len(), 21);
        assert_eq!(
            &row[..7],
            &[
                0,
                25,
                25,
                0,
                60,
                60,
                fg.names.iter().position(|n| n == "bar").unwrap() as i64
            ]
        );
        assert_eq!(&row[7..13], &[0, 75, 75, 0, 0, 0]);
        assert_eq!(&row[14..20], &[0, 0, 0, 0, 40, 40]);
    }
}
