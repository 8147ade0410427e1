//! Graphviz call graphs, as `pprof -dot` draws them: one box per frame with its self
//! ("flat") and total ("cum") values and shares, one arrow per caller → callee pair
//! weighted by the value that went through it. Write only.
//!
//! A graph of every frame is unreadable past a few dozen boxes, so only the
//! [`WriteOptions::max_nodes`] heaviest frames by total are kept ([`DEFAULT_MAX_NODES`]
//! when unset, pprof's `-nodecount` default). A path through dropped frames still links
//! the kept frames on either side, with a dashed arrow, so no weight disappears from
//! the arrows either.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use embers_profile::{FrameId, Profile};

use crate::{FormatError, WriteOptions};

/// Frames kept when [`WriteOptions::max_nodes`] is unset.
pub const DEFAULT_MAX_NODES: usize = 80;

/// (self, total) per frame; total counts each stack once even when it recurses.
type Sums = HashMap<FrameId, (u64, u64)>;

fn sums(profile: &Profile) -> (embers_profile::StackTree, Sums) {
    let tree = profile.tree();
    let mut g = Sums::default();
    let mut seen: Vec<FrameId> = Vec::new();
    tree.for_each_stack(|stack, value| {
        seen.clear();
        for &f in stack {
            if !seen.contains(&f) {
                seen.push(f);
                g.entry(f).or_default().1 += value;
            }
        }
        if let Some(&leaf) = stack.last() {
            g.entry(leaf).or_default().0 += value;
        }
    });
    (tree, g)
}

/// The edges between kept frames: each stack links consecutive kept frames, dashed
/// (residual) when dropped frames lay between them; an edge is counted once per stack.
fn edges(
    tree: &embers_profile::StackTree,
    keep: &HashMap<FrameId, usize>,
) -> BTreeMap<(usize, usize), (u64, bool)> {
    let mut out: BTreeMap<(usize, usize), (u64, bool)> = BTreeMap::new();
    let mut seen: Vec<(usize, usize)> = Vec::new();
    tree.for_each_stack(|stack, value| {
        seen.clear();
        let mut prev: Option<usize> = None;
        let mut skipped = false;
        for f in stack {
            match keep.get(f) {
                Some(&n) => {
                    if let Some(p) = prev {
                        if !seen.contains(&(p, n)) {
                            seen.push((p, n));
                            let e = out.entry((p, n)).or_insert((0, true));
                            e.0 += value;
                            // An edge is solid as soon as one stack has the call directly.
                            e.1 &= skipped;
                        }
                    }
                    prev = Some(n);
                    skipped = false;
                }
                None => skipped = prev.is_some(),
            }
        }
    });
    out
}

fn share(v: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        v as f64 * 100.0 / total as f64
    }
}

/// Escapes a string for a double-quoted DOT id or label.
fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

/// Escapes text to sit inside a double-quoted DOT string next to our own `\n` escapes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Writes `profile` as a DOT digraph.
pub fn write(
    profile: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let (tree, g) = sums(profile);
    let total = tree.total();
    let vt = &profile.meta.sample_type;
    let unit = vt.unit.as_str();
    let max_nodes = options.max_nodes.unwrap_or(DEFAULT_MAX_NODES).max(1);
    let mut order: Vec<(FrameId, (u64, u64))> = g.iter().map(|(&f, &v)| (f, v)).collect();
    let symbols = tree.symbols();
    order.sort_by(|a, b| {
        (b.1 .1, b.1 .0)
            .cmp(&(a.1 .1, a.1 .0))
            .then_with(|| symbols.get(a.0).cmp(symbols.get(b.0)))
    });
    let dropped = order.len().saturating_sub(max_nodes);
    order.truncate(max_nodes);
    let keep: HashMap<FrameId, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (f, _))| (*f, i + 1))
        .collect();
    let shown: u64 = order.iter().map(|(_, (s, _))| s).sum();
    let kind = match profile.meta.sample_type.kind.as_str() {
        "" => "samples",
        k => k,
    };
    let title = options.title.as_deref().unwrap_or("embers");

    let mut w = String::new();
    w.push_str(&format!("digraph {} {{\n", quote(title)));
    w.push_str("node [style=filled fillcolor=\"#f8f8f8\"]\n");
    let legend = format!(
        "{}\\lType: {kind}\\lShowing nodes accounting for {}, {:.2}% of {} total\\lDropped {dropped} nodes\\l",
        escape(title),
        vt.format_value(shown),
        share(shown, total),
        vt.format_value(total),
    );
    w.push_str(&format!(
        "subgraph cluster_L {{ \"legend\" [shape=box fontsize=16 label=\"{legend}\"] }}\n",
    ));
    let max_self = order.iter().map(|(_, (s, _))| *s).max().unwrap_or(0).max(1);
    for (frame, (self_value, cum)) in &order {
        let n = keep[frame];
        let name = symbols.get(*frame).to_string();
        let label = format!(
            "{}\\n{} ({:.2}%)\\nof {} ({:.2}%)",
            escape(&name),
            vt.format_value(*self_value),
            share(*self_value, total),
            vt.format_value(*cum),
            share(*cum, total),
        );
        // Font grows with the self share, as pprof's does, so hot spots stand out.
        let fontsize = 8 + 32 * u128::from(*self_value) / u128::from(max_self);
        let heat = (share(*cum, total) * 2.55).round() as u8;
        w.push_str(&format!(
            "N{n} [label=\"{label}\" id=\"node{n}\" fontsize={fontsize} shape=box tooltip={} color=\"#{heat:02x}0000\" fillcolor=\"#edd5d5\"]\n",
            quote(&format!("{name} (self {self_value}, total {cum} {unit})")),
        ));
    }
    for ((from, to), (weight, residual)) in edges(&tree, &keep) {
        // Graphviz wants small integer weights: the share in percent, as pprof's.
        let rank = 1 + 100 * u128::from(weight) / u128::from(total.max(1));
        let width = 1 + 5 * u128::from(weight) / u128::from(total.max(1));
        let style = if residual { " style=\"dotted\"" } else { "" };
        w.push_str(&format!(
            "N{from} -> N{to} [label=\" {}\" weight={rank} penwidth={width}{style} tooltip=\"{weight} {unit}\"]\n",
            vt.format_value(weight),
        ));
    }
    w.push_str("}\n");
    out.write_all(w.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embers_profile::{Frame, Labels, ProfileMeta, ValueType};

    fn profile(stacks: &[(&[&str], u64)]) -> Profile {
        let mut p = Profile::new(ProfileMeta {
            sample_type: ValueType::new("cpu", "nanoseconds"),
            ..ProfileMeta::default()
        });
        for (s, v) in stacks {
            let frames: Vec<Frame> = s.iter().map(|f| Frame::named(*f)).collect();
            p.add_frames(frames.iter(), Labels::new(), *v);
        }
        p
    }

    fn dot(p: &Profile, max_nodes: Option<usize>) -> String {
        let mut out = Vec::new();
        let o = WriteOptions {
            max_nodes,
            ..WriteOptions::default()
        };
        write(p, &o, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nodes_carry_self_and_total_and_edges_their_weight() {
        let p = profile(&[
            (&["main", "work"], 3_000_000_000),
            (&["main", "idle"], 1_000_000_000),
        ]);
        let d = dot(&p, None);
        assert!(d.starts_with("digraph \"embers\" {\n"), "{d}");
        assert!(
            d.contains("N1 [label=\"main\\n0 s (0.00%)\\nof 4.00 s (100.00%)\""),
            "{d}"
        );
        assert!(
            d.contains("N2 [label=\"work\\n3.00 s (75.00%)\\nof 3.00 s (75.00%)\""),
            "{d}"
        );
        assert!(d.contains("N1 -> N2 [label=\" 3.00 s\" weight=76 penwidth=4 tooltip=\"3000000000 nanoseconds\"]"), "{d}");
        assert!(d.contains("N1 -> N3 [label=\" 1.00 s\" weight=26 penwidth=2 tooltip=\"1000000000 nanoseconds\"]"), "{d}");
        assert!(d.contains("Dropped 0 nodes"), "{d}");
    }

    #[test]
    fn recursion_is_counted_once() {
        let p = profile(&[(&["f", "f", "g"], 10)]);
        let d = dot(&p, None);
        // Equal totals: the heavier self (g) comes first.
        assert!(
            d.contains("N2 [label=\"f\\n0 s (0.00%)\\nof 10 ns (100.00%)\""),
            "{d}"
        );
        assert!(d.contains("N2 -> N2 [label=\" 10 ns\" weight=101 "), "{d}");
        assert!(d.contains("N2 -> N1 [label=\" 10 ns\" weight=101 "), "{d}");
    }

    #[test]
    fn dropped_frames_leave_dotted_edges() {
        let p = profile(&[(&["main", "tiny", "leaf"], 10), (&["main", "big"], 100)]);
        let d = dot(&p, Some(3));
        assert!(!d.contains("tiny"), "{d}");
        assert!(d.contains("Dropped 1 nodes"), "{d}");
        let leaf = d
            .lines()
            .find(|l| l.contains("label=\"leaf"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_owned();
        assert!(
            d.contains(&format!(
                "N1 -> {leaf} [label=\" 10 ns\" weight=10 penwidth=1 style=\"dotted\""
            )),
            "{d}"
        );
    }

    #[test]
    fn names_are_escaped() {
        let p = profile(&[(&["say \"hi\"\\"], 1)]);
        let d = dot(&p, None);
        assert!(d.contains("label=\"say \\\"hi\\\"\\\\\\n"), "{d}");
    }
}
