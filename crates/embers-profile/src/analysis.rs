//! Questions asked of one tree: the top-N table, focus on a subtree, and the sandwich
//! view (callers and callees of one function).

use std::collections::HashMap;

use crate::frame::{Frame, FrameId};
use crate::tree::{NodeId, StackTree};

/// One row of the function table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionStat {
    /// The function (its line is dropped: rows are per function, not per line).
    pub frame: Frame,
    /// Value spent in the function itself.
    pub self_value: u64,
    /// Value spent in the function and its callees, each sample counted once even when
    /// the function recurses.
    pub total: u64,
}

/// Which column orders the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Heaviest self value first.
    #[default]
    SelfValue,
    /// Heaviest total first.
    Total,
}

/// The two halves of the sandwich view of one function.
#[derive(Debug, Clone)]
pub struct Sandwich {
    /// The function at the root and its callers above it (an inverted tree).
    pub callers: StackTree,
    /// The function at the root and its callees above it.
    pub callees: StackTree,
}

impl StackTree {
    /// Per-function self and total, sorted by `by` (ties by name), all rows.
    pub fn functions(&self, by: SortBy) -> Vec<FunctionStat> {
        // Map each frame to its function key (frame without line).
        let mut keys: HashMap<Frame, usize> = HashMap::new();
        let mut rows: Vec<FunctionStat> = Vec::new();
        let key_of: Vec<usize> = self
            .symbols()
            .iter()
            .map(|(_, frame)| {
                let f = frame.without_line();
                *keys.entry(f.clone()).or_insert_with(|| {
                    rows.push(FunctionStat {
                        frame: f,
                        self_value: 0,
                        total: 0,
                    });
                    rows.len() - 1
                })
            })
            .collect();
        let mut on_path = vec![0u32; rows.len()];
        // Depth-first walk; a node adds its total to its function only when that function
        // is not already on the path, so recursion is counted once.
        let mut todo: Vec<(NodeId, bool)> = vec![(StackTree::ROOT, false)];
        while let Some((node, leaving)) = todo.pop() {
            let key = self.frame_id(node).map(|id| key_of[id.0 as usize]);
            if leaving {
                if let Some(k) = key {
                    on_path[k] -= 1;
                }
                continue;
            }
            if let Some(k) = key {
                rows[k].self_value += self.self_value(node);
                if on_path[k] == 0 {
                    rows[k].total += self.total_value(node);
                }
                on_path[k] += 1;
            }
            todo.push((node, true));
            todo.extend(self.children(node).map(|child| (child, false)));
        }
        rows.retain(|r| r.total > 0);
        rows.sort_by(|a, b| {
            let (ka, kb) = match by {
                SortBy::SelfValue => ((a.self_value, a.total), (b.self_value, b.total)),
                SortBy::Total => ((a.total, a.self_value), (b.total, b.self_value)),
            };
            kb.cmp(&ka).then_with(|| a.frame.cmp(&b.frame))
        });
        rows
    }

    /// The `n` heaviest functions by `by`.
    pub fn top_functions(&self, n: usize, by: SortBy) -> Vec<FunctionStat> {
        let mut rows = self.functions(by);
        rows.truncate(n);
        rows
    }

    /// The subtrees rooted at the outermost frames matching `pred`, merged: "what does
    /// this function spend its time on".
    pub fn focus(&self, mut pred: impl FnMut(&Frame) -> bool) -> StackTree {
        let matches = self.matching_frames(&mut pred);
        let mut out = StackTree::new();
        self.copy_stacks(&mut out, |stack| {
            stack
                .iter()
                .position(|id| matches[id.0 as usize])
                .map(|i| stack[i..].to_vec())
        });
        out
    }

    /// Callers and callees of the frames matching `pred`. Each sample counts once, at the
    /// outermost matching frame, so both halves total the function's inclusive value.
    pub fn sandwich(&self, mut pred: impl FnMut(&Frame) -> bool) -> Sandwich {
        let matches = self.matching_frames(&mut pred);
        let outermost = |stack: &[FrameId]| stack.iter().position(|id| matches[id.0 as usize]);
        let mut callees = StackTree::new();
        self.copy_stacks(&mut callees, |stack| {
            outermost(stack).map(|i| stack[i..].to_vec())
        });
        let mut callers = StackTree::new();
        self.copy_stacks(&mut callers, |stack| {
            outermost(stack).map(|i| stack[..=i].iter().rev().copied().collect())
        });
        Sandwich { callers, callees }
    }

    fn matching_frames(&self, pred: &mut impl FnMut(&Frame) -> bool) -> Vec<bool> {
        self.symbols()
            .iter()
            .map(|(_, frame)| pred(frame))
            .collect()
    }

    /// Re-adds every stack of `self` to `out` after `select` rewrites it (or drops it).
    fn copy_stacks(
        &self,
        out: &mut StackTree,
        mut select: impl FnMut(&[FrameId]) -> Option<Vec<FrameId>>,
    ) {
        let ids: Vec<FrameId> = self
            .symbols()
            .iter()
            .map(|(_, f)| out.symbols_mut().intern(f))
            .collect();
        self.for_each_stack(|stack, value| {
            if let Some(selected) = select(stack) {
                let mapped: Vec<FrameId> = selected.iter().map(|id| ids[id.0 as usize]).collect();
                out.add_stack(&mapped, value);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(stacks: &[(&str, u64)]) -> StackTree {
        let mut t = StackTree::new();
        for (s, v) in stacks {
            let frames: Vec<Frame> = s.split(';').map(Frame::named).collect();
            t.add_frames(&frames, *v);
        }
        t
    }

    fn names(t: &StackTree) -> Vec<(String, u64)> {
        t.to_sorted_stacks()
            .into_iter()
            .map(|(f, v)| {
                (
                    f.iter()
                        .map(|f| f.function.clone())
                        .collect::<Vec<_>>()
                        .join(";"),
                    v,
                )
            })
            .collect()
    }

    #[test]
    fn table_counts_recursion_once() {
        let t = tree(&[("main;fib;fib;fib", 10), ("main;fib", 2), ("main;other", 3)]);
        let rows = t.functions(SortBy::Total);
        assert_eq!(rows[0].frame.function, "main");
        assert_eq!((rows[0].self_value, rows[0].total), (0, 15));
        let fib = rows
            .iter()
            .find(|r| r.frame.function == "fib")
            .expect("fib row");
        assert_eq!((fib.self_value, fib.total), (12, 12));
        assert_eq!(
            t.top_functions(1, SortBy::SelfValue)[0].frame.function,
            "fib"
        );
    }

    #[test]
    fn focus_reroots_at_outermost_match() {
        let t = tree(&[
            ("main;foo;work", 75),
            ("main;bar;work", 25),
            ("main;foo;foo", 5),
        ]);
        let f = t.focus(|f| f.function == "foo");
        assert_eq!(
            names(&f),
            vec![("foo;foo".into(), 5), ("foo;work".into(), 75)]
        );
    }

    #[test]
    fn sandwich_halves_total_the_function() {
        let t = tree(&[("main;foo;work", 75), ("main;bar;work", 25), ("x;work", 1)]);
        let s = t.sandwich(|f| f.function == "work");
        assert_eq!(s.callers.total(), 101);
        assert_eq!(s.callees.total(), 101);
        assert_eq!(
            names(&s.callers),
            vec![
                ("work;bar;main".into(), 25),
                ("work;foo;main".into(), 75),
                ("work;x".into(), 1)
            ]
        );
    }
}
