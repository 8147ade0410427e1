//! Differences between two trees: a tree with both values on each node, and the table of
//! functions whose share changed most.

use std::collections::HashMap;

use crate::analysis::SortBy;
use crate::frame::{Frame, FrameId, SymbolTable};
use crate::tree::StackTree;

/// The union of two trees' call paths with both values per path.
#[derive(Debug, Clone, Default)]
pub struct DiffTree {
    /// Frames of both sides.
    pub symbols: SymbolTable,
    /// Self values per distinct stack (root first), sorted by stack.
    pub stacks: Vec<(Vec<FrameId>, u64, u64)>,
    /// Sum of the left side.
    pub left_total: u64,
    /// Sum of the right side.
    pub right_total: u64,
}

impl DiffTree {
    /// Lines up `left` and `right` stack by stack.
    pub fn new(left: &StackTree, right: &StackTree) -> DiffTree {
        let mut symbols = SymbolTable::new();
        let mut index: HashMap<Vec<FrameId>, (u64, u64)> = HashMap::new();
        for (side, tree) in [(0, left), (1, right)] {
            let ids: Vec<FrameId> = tree
                .symbols()
                .iter()
                .map(|(_, f)| symbols.intern(f))
                .collect();
            tree.for_each_stack(|stack, value| {
                let key: Vec<FrameId> = stack.iter().map(|id| ids[id.0 as usize]).collect();
                let slot = index.entry(key).or_default();
                if side == 0 {
                    slot.0 += value;
                } else {
                    slot.1 += value;
                }
            });
        }
        let mut stacks: Vec<_> = index.into_iter().map(|(k, (l, r))| (k, l, r)).collect();
        stacks.sort();
        DiffTree {
            symbols,
            stacks,
            left_total: left.total(),
            right_total: right.total(),
        }
    }

    /// Whether no path's share changed (diff of a tree with itself, or with a scaled copy).
    pub fn is_unchanged(&self) -> bool {
        // Compare shares exactly: l / L == r / R  <=>  l * R == r * L.
        self.stacks.iter().all(|(_, l, r)| {
            u128::from(*l) * u128::from(self.right_total)
                == u128::from(*r) * u128::from(self.left_total)
        })
    }

    /// The frames of one stack.
    pub fn frames<'a>(&'a self, stack: &'a [FrameId]) -> impl Iterator<Item = &'a Frame> + 'a {
        stack.iter().map(|&id| self.symbols.get(id))
    }
}

/// A function's share of the total on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareChange {
    /// The function.
    pub frame: Frame,
    /// Inclusive share on the left, 0..=1.
    pub left_share: f64,
    /// Inclusive share on the right, 0..=1.
    pub right_share: f64,
    /// Self share on the left.
    pub left_self_share: f64,
    /// Self share on the right.
    pub right_self_share: f64,
}

impl ShareChange {
    /// Change of inclusive share, in percentage points (positive: grew).
    pub fn delta_points(&self) -> f64 {
        (self.right_share - self.left_share) * 100.0
    }
}

/// Functions ordered by how much their inclusive share changed from `left` to `right`.
pub fn share_changes(left: &StackTree, right: &StackTree) -> Vec<ShareChange> {
    let share = |v: u64, t: u64| if t == 0 { 0.0 } else { v as f64 / t as f64 };
    let mut rows: HashMap<Frame, ShareChange> = HashMap::new();
    for (side, tree) in [(0, left), (1, right)] {
        for stat in tree.functions(SortBy::Total) {
            let row = rows
                .entry(stat.frame.clone())
                .or_insert_with(|| ShareChange {
                    frame: stat.frame.clone(),
                    left_share: 0.0,
                    right_share: 0.0,
                    left_self_share: 0.0,
                    right_self_share: 0.0,
                });
            let (total, self_share) = (
                share(stat.total, tree.total()),
                share(stat.self_value, tree.total()),
            );
            if side == 0 {
                row.left_share = total;
                row.left_self_share = self_share;
            } else {
                row.right_share = total;
                row.right_self_share = self_share;
            }
        }
    }
    let mut rows: Vec<ShareChange> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.delta_points()
            .abs()
            .total_cmp(&a.delta_points().abs())
            .then_with(|| a.frame.cmp(&b.frame))
    });
    rows
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

    #[test]
    fn foo_falls_bar_rises() {
        let before = tree(&[("main;foo;work", 75), ("main;bar;work", 25)]);
        let after = tree(&[("main;foo;work", 8), ("main;bar;work", 25)]);
        let changes = share_changes(&before, &after);
        let foo = changes.iter().find(|c| c.frame.function == "foo").unwrap();
        let bar = changes.iter().find(|c| c.frame.function == "bar").unwrap();
        assert!(foo.delta_points() < -40.0);
        assert!(bar.delta_points() > 40.0);
        assert!(!DiffTree::new(&before, &after).is_unchanged());
        assert!(DiffTree::new(&before, &before.scaled(3.0)).is_unchanged());
    }
}
