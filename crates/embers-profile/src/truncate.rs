//! Truncation to a node budget that keeps the heaviest paths and never hides weight: what
//! is cut from under a node reappears as one `other` child of that node.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::frame::{Frame, FrameId};
use crate::tree::{NodeId, StackTree};

/// The name of the node that stands for truncated children.
pub const OTHER: &str = "other";

/// The frame used for truncated weight. Its module marks it as ours, so it never merges
/// with a real function that happens to be called `other`.
pub fn other_frame() -> Frame {
    Frame {
        function: OTHER.to_owned(),
        module: Some("embers:truncated".to_owned()),
        ..Frame::default()
    }
}

/// Whether `frame` stands for truncated weight.
pub fn is_other(frame: &Frame) -> bool {
    frame.function == OTHER && frame.module.as_deref() == Some("embers:truncated")
}

/// What a truncation removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Truncation {
    /// Nodes of the original tree not kept.
    pub dropped_nodes: usize,
    /// Their weight, now shown by `other` nodes.
    pub dropped_value: u64,
}

impl StackTree {
    /// Keeps the `max_nodes` heaviest nodes (a node is never heavier than its parent, so
    /// the kept nodes form a connected tree of the heaviest paths). The weight of what is
    /// cut below each kept node becomes that node's `other` child, so totals are exact.
    pub fn truncated(&self, max_nodes: usize) -> (StackTree, Truncation) {
        if self.node_count() <= max_nodes {
            return (self.clone(), Truncation::default());
        }
        let mut keep = vec![false; self.node_count() + 1];
        keep[0] = true;
        let mut heap: BinaryHeap<(u64, Reverse<NodeId>)> = BinaryHeap::new();
        let push_children = |heap: &mut BinaryHeap<_>, node| {
            heap.extend(
                self.children(node)
                    .map(|c| (self.total_value(c), Reverse(c))),
            );
        };
        push_children(&mut heap, StackTree::ROOT);
        let mut kept = 0;
        while kept < max_nodes {
            let Some((_, Reverse(node))) = heap.pop() else {
                break;
            };
            keep[node.0 as usize] = true;
            kept += 1;
            push_children(&mut heap, node);
        }

        let mut out = StackTree::new();
        let ids: Vec<FrameId> = self
            .symbols()
            .iter()
            .map(|(_, f)| out.symbols_mut().intern(f))
            .collect();
        let other = out.symbols_mut().intern_owned(other_frame());
        let mut report = Truncation {
            dropped_nodes: self.node_count() - kept,
            dropped_value: 0,
        };
        let mut path: Vec<FrameId> = Vec::new();
        let mut todo: Vec<(NodeId, usize)> = vec![(StackTree::ROOT, 0)];
        while let Some((node, depth)) = todo.pop() {
            path.truncate(depth);
            if let Some(id) = self.frame_id(node) {
                path.push(ids[id.0 as usize]);
            }
            out.add_stack(&path, self.self_value(node));
            let mut dropped = 0;
            for c in self.children(node) {
                if !keep[c.0 as usize] {
                    dropped += self.total_value(c);
                }
            }
            let depth = path.len();
            let start = todo.len();
            todo.extend(
                self.children(node)
                    .filter(|c| keep[c.0 as usize])
                    .map(|c| (c, depth)),
            );
            todo[start..].reverse();
            if dropped > 0 {
                report.dropped_value += dropped;
                path.push(other);
                out.add_stack(&path, dropped);
                path.pop();
            }
        }
        (out, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_heaviest_and_reports_the_rest() {
        let mut t = StackTree::new();
        for (s, v) in [("a;b", 50), ("a;c", 30), ("a;d", 1), ("a;e", 1), ("z", 2)] {
            let frames: Vec<Frame> = s.split(';').map(Frame::named).collect();
            t.add_frames(&frames, v);
        }
        let (cut, report) = t.truncated(3);
        assert_eq!(cut.total(), t.total());
        assert_eq!(
            report,
            Truncation {
                dropped_nodes: 3,
                dropped_value: 4
            }
        );
        let stacks = cut.to_sorted_stacks();
        let other: Vec<_> = stacks
            .iter()
            .filter(|(f, _)| is_other(f.last().unwrap()))
            .collect();
        // "z" is cut at the root, "d" and "e" under "a".
        assert_eq!(other.iter().map(|(_, v)| *v).sum::<u64>(), 4);
        assert_eq!(other.len(), 2);
    }
}
