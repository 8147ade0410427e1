//! The head: trees acknowledged since the last flush, in memory (and in the WAL).

use std::collections::{BTreeMap, HashMap};

use embers_profile::StackTree;

use crate::series::SeriesId;

/// Trees by leaf, then series.
#[derive(Debug, Default)]
pub struct Head {
    leaves: BTreeMap<i64, HashMap<SeriesId, StackTree>>,
    nodes: usize,
}

impl Head {
    /// Adds `tree` for `series` at `leaf`, taking it as is when it is the first.
    pub fn add(&mut self, leaf: i64, series: SeriesId, tree: StackTree) {
        let at = self.leaves.entry(leaf).or_default();
        self.nodes += tree.node_count();
        match at.get_mut(&series) {
            Some(existing) => existing.merge(&tree),
            None => {
                at.insert(series, tree);
            }
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Roughly how many tree nodes are held (an upper bound), to decide early flushes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Trees of leaves in `[first, end)`.
    pub fn range(
        &self,
        first: i64,
        end: i64,
    ) -> impl Iterator<Item = (i64, &HashMap<SeriesId, StackTree>)> {
        self.leaves
            .range(first..end.max(first))
            .map(|(l, t)| (*l, t))
    }

    /// Maximal runs of consecutive leaves, as `(first, last)` inclusive.
    pub fn runs(&self) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        for &leaf in self.leaves.keys() {
            match out.last_mut() {
                Some((_, last)) if *last + 1 == leaf => *last = leaf,
                _ => out.push((leaf, leaf)),
            }
        }
        out
    }

    /// Drops leaves before `first_kept` (retention).
    pub fn expire(&mut self, first_kept: i64) {
        self.leaves = self.leaves.split_off(&first_kept);
    }
}
