//! How finely a tree tells frames apart when it is shown.
//!
//! The store keeps every frame with its file and line, so a query can answer either way;
//! what people and Grafana's panels expect by default is one node per function (Grafana
//! Pyroscope keys its trees by function name), not one per line a function was sampled
//! at: `spin` sampled at lines 7 and 8 is one `spin` node, a script's top level one
//! `<module>` root. [`Granularity::Line`] keeps today's detail for the "by line" view.

use std::borrow::Cow;

use crate::frame::Frame;
use crate::tree::StackTree;
use crate::truncate::is_other;

/// Which frames count as the same node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Granularity {
    /// Frames with the same function name are one node, whatever their file, line or
    /// module (as Grafana Pyroscope groups them).
    #[default]
    Function,
    /// Frames as stored: function, file and line apart.
    Line,
}

impl Granularity {
    /// Parses the query API's `aggregation` parameter: `function` (or absent) and `line`.
    pub fn parse(s: &str) -> Option<Granularity> {
        match s {
            "" | "function" | "functions" => Some(Granularity::Function),
            "line" | "lines" => Some(Granularity::Line),
            _ => None,
        }
    }

    /// The name of this granularity in the query API.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Function => "function",
            Granularity::Line => "line",
        }
    }

    /// The frame `frame` becomes at this granularity. Truncation's `other` marker stays
    /// itself, so it never merges with a real function called `other`.
    pub fn frame(self, frame: &Frame) -> Cow<'_, Frame> {
        match self {
            Granularity::Line => Cow::Borrowed(frame),
            Granularity::Function if is_other(frame) => Cow::Borrowed(frame),
            Granularity::Function => {
                if frame.file.is_none() && frame.line.is_none() && frame.module.is_none() {
                    Cow::Borrowed(frame)
                } else {
                    Cow::Owned(Frame::named(frame.function.clone()))
                }
            }
        }
    }
}

impl StackTree {
    /// This tree at `granularity`: paths that become equal merge, totals stay exact. A
    /// tree whose frames already are function names is returned without a copy.
    pub fn at_granularity(&self, granularity: Granularity) -> Cow<'_, StackTree> {
        if self.is_at(granularity) {
            return Cow::Borrowed(self);
        }
        Cow::Owned(self.map_frames(|f| granularity.frame(f).into_owned()))
    }

    /// [`StackTree::at_granularity`] for an owned tree (no copy when nothing changes).
    pub fn into_granularity(self, granularity: Granularity) -> StackTree {
        if self.is_at(granularity) {
            return self;
        }
        self.map_frames(|f| granularity.frame(f).into_owned())
    }

    fn is_at(&self, granularity: Granularity) -> bool {
        self.symbols()
            .iter()
            .all(|(_, f)| matches!(granularity.frame(f), Cow::Borrowed(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truncate::other_frame;

    fn tree(stacks: &[(&[Frame], u64)]) -> StackTree {
        let mut t = StackTree::new();
        for (stack, v) in stacks {
            t.add_frames(stack.iter(), *v);
        }
        t
    }

    #[test]
    fn lines_of_one_function_become_one_node() {
        let module = |l| Frame::at("<module>", "app.py", Some(l));
        let spin = |l| Frame::at("spin", "app.py", Some(l));
        let t = tree(&[
            (&[module(10), spin(7)], 30),
            (&[module(10), spin(8)], 20),
            (&[module(12), spin(8)], 5),
        ]);
        let f = t.at_granularity(Granularity::Function);
        assert_eq!(
            f.to_sorted_stacks(),
            vec![(vec![Frame::named("<module>"), Frame::named("spin")], 55)]
        );
        assert_eq!(f.node_count(), 2);
        let l = t.at_granularity(Granularity::Line);
        assert_eq!(l.to_sorted_stacks(), t.to_sorted_stacks());
    }

    #[test]
    fn truncation_marker_is_kept_apart() {
        let t = tree(&[
            (&[Frame::at("other", "x.py", Some(1))], 1),
            (&[other_frame()], 2),
        ]);
        let f = t.at_granularity(Granularity::Function);
        assert_eq!(f.node_count(), 2);
        assert!(f
            .to_sorted_stacks()
            .iter()
            .any(|(s, v)| is_other(&s[0]) && *v == 2));
    }

    #[test]
    fn plain_names_are_not_copied() {
        let t = tree(&[(&[Frame::named("main")], 1)]);
        assert!(matches!(
            t.at_granularity(Granularity::Function),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn parses_the_api_names() {
        assert_eq!(Granularity::parse("line"), Some(Granularity::Line));
        assert_eq!(Granularity::parse(""), Some(Granularity::Function));
        assert_eq!(Granularity::parse("bogus"), None);
    }
}

#[cfg(test)]
mod laws {
    use super::*;
    use proptest::prelude::*;

    fn tree() -> impl Strategy<Value = StackTree> {
        let frame = (0..6usize, 0..3usize, prop::option::of(1..5u32))
            .prop_map(|(f, file, line)| Frame::at(format!("fn_{f}"), format!("m{file}.py"), line));
        prop::collection::vec((prop::collection::vec(frame, 1..6), 1..100u64), 0..30).prop_map(
            |stacks| {
                let mut t = StackTree::new();
                for (frames, v) in stacks {
                    t.add_frames(frames.iter(), v);
                }
                t
            },
        )
    }

    proptest! {
        #[test]
        fn grouping_keeps_totals_is_idempotent_and_commutes_with_merge(a in tree(), b in tree()) {
            let f = |t: &StackTree| t.at_granularity(Granularity::Function).into_owned();
            let fa = f(&a);
            prop_assert_eq!(fa.total(), a.total());
            prop_assert_eq!(f(&fa).to_sorted_stacks(), fa.to_sorted_stacks());
            prop_assert!(fa.symbols().iter().all(|(_, fr)| fr.file.is_none() && fr.line.is_none()));
            let mut ab = a.clone();
            ab.merge(&b);
            let mut fab = fa.clone();
            fab.merge(&f(&b));
            prop_assert_eq!(f(&ab).to_sorted_stacks(), fab.to_sorted_stacks());
            prop_assert_eq!(a.at_granularity(Granularity::Line).to_sorted_stacks(), a.to_sorted_stacks());
        }

        #[test]
        fn grouping_equals_adding_the_grouped_stacks(a in tree()) {
            let mut reference = StackTree::new();
            for (frames, v) in a.to_sorted_stacks() {
                let grouped: Vec<Frame> = frames.iter().map(|f| Frame::named(f.function.clone())).collect();
                reference.add_frames(grouped.iter(), v);
            }
            let fa = a.at_granularity(Granularity::Function);
            prop_assert_eq!(fa.to_sorted_stacks(), reference.to_sorted_stacks());
            prop_assert_eq!(fa.node_count(), reference.node_count());
            // Every node's total is its self plus its children's.
            let mut todo = vec![StackTree::ROOT];
            while let Some(n) = todo.pop() {
                let children: u64 = fa.children(n).map(|c| fa.total_value(c)).sum();
                prop_assert_eq!(fa.total_value(n), fa.self_value(n) + children);
                todo.extend(fa.children(n));
            }
        }
    }
}
