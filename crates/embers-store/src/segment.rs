//! The segment tree of pre-aggregated profiles, as a query planner.
//!
//! Time is cut into 10 s *leaves*; a block of level L spans 10^L leaves (10 s, 100 s,
//! 1,000 s, … about 115 days at level 6). A query over any range merges the fewest blocks
//! that cover it exactly: whole coarse blocks in the middle, finer ones only at the edges.
//! With every aggregate present that is at most 2·9 blocks per level, so an hour, a day or
//! a month costs O(log n) merges instead of one per 10 s leaf.
//!
//! Aggregates are written once, by compaction, after their period is complete (immutable
//! files, never read-modify-write), so recent data may not have its coarse blocks yet: the
//! planner takes an `available` predicate and descends to finer levels wherever a block's
//! aggregate does not exist (yet). Leaves are always usable: an absent leaf is empty.

/// Seconds in one leaf.
pub const LEAF_SECONDS: i64 = 10;
/// Children per block.
pub const FANOUT: i64 = 10;
/// The coarsest level kept (10^6 leaves ≈ 115 days).
pub const TOP_LEVEL: u8 = 6;

/// One node of the segment tree: level 0 is a 10 s leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    /// 0 for leaves; a level-L block spans `FANOUT^L` leaves.
    pub level: u8,
    /// Position among the blocks of its level: it covers leaves
    /// `[index · FANOUT^level, (index + 1) · FANOUT^level)`.
    pub index: i64,
}

fn span_leaves(level: u8) -> i64 {
    FANOUT.pow(u32::from(level))
}

impl Block {
    /// The block of `level` that contains `leaf`.
    pub fn containing(leaf: i64, level: u8) -> Block {
        Block {
            level,
            index: leaf.div_euclid(span_leaves(level)),
        }
    }

    /// Leaves covered, as `[first, end)`.
    pub fn leaves(self) -> (i64, i64) {
        let n = span_leaves(self.level);
        (self.index * n, (self.index + 1) * n)
    }

    /// Unix seconds covered, as `[start, end)`.
    pub fn seconds(self) -> (i64, i64) {
        let (a, b) = self.leaves();
        (a * LEAF_SECONDS, b * LEAF_SECONDS)
    }

    /// The blocks one level down (none for a leaf).
    pub fn children(self) -> impl Iterator<Item = Block> {
        let level = self.level.checked_sub(1);
        let first = self.index * FANOUT;
        level.into_iter().flat_map(move |level| {
            (0..FANOUT).map(move |i| Block {
                level,
                index: first + i,
            })
        })
    }
}

/// The leaf holding the Unix second `t`.
pub fn leaf_of(t: i64) -> i64 {
    t.div_euclid(LEAF_SECONDS)
}

/// Leaves `[first, end)` that a query over Unix seconds `[from, until)` reads: every leaf
/// that overlaps the range (leaves are the store's resolution).
pub fn leaves_for(from: i64, until: i64) -> (i64, i64) {
    if until <= from {
        return (0, 0);
    }
    (leaf_of(from), leaf_of(until - 1) + 1)
}

/// The fewest blocks covering leaves `[first, end)` exactly, in time order, using a block
/// above level 0 only where `available(block)` says its aggregate exists.
pub fn plan(first: i64, end: i64, available: impl Fn(Block) -> bool) -> Vec<Block> {
    let mut out = Vec::new();
    if first >= end {
        return out;
    }
    let top_first = Block::containing(first, TOP_LEVEL).index;
    let top_last = Block::containing(end - 1, TOP_LEVEL).index;
    for index in top_first..=top_last {
        cover(
            Block {
                level: TOP_LEVEL,
                index,
            },
            first,
            end,
            &available,
            &mut out,
        );
    }
    out
}

fn cover(
    block: Block,
    first: i64,
    end: i64,
    available: &impl Fn(Block) -> bool,
    out: &mut Vec<Block>,
) {
    let (a, b) = block.leaves();
    if b <= first || a >= end {
        return;
    }
    let inside = a >= first && b <= end;
    if inside && (block.level == 0 || available(block)) {
        out.push(block);
        return;
    }
    for child in block.children() {
        cover(child, first, end, available, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_exact_cover(plan: &[Block], first: i64, end: i64) {
        let mut at = first;
        for b in plan {
            let (a, z) = b.leaves();
            assert_eq!(a, at, "gap or overlap before {b:?}");
            at = z;
        }
        assert_eq!(at, end, "plan stops short");
    }

    #[test]
    fn thirty_days_take_a_few_dozen_blocks() {
        let start = 1_700_000_000; // an arbitrary Unix second, not aligned
        let (first, end) = leaves_for(start, start + 30 * 86_400);
        let p = plan(first, end, |_| true);
        assert_exact_cover(&p, first, end);
        assert!(
            p.len() <= 2 * 9 * (usize::from(TOP_LEVEL) + 1),
            "{} blocks",
            p.len()
        );
        assert_eq!(end - first, 259_200, "a naive merge reads every leaf");
    }

    #[test]
    fn missing_aggregates_are_replaced_by_their_children() {
        // Level 3 (1,000 leaves) not compacted yet: ten level-2 blocks of 100 leaves.
        let p = plan(0, 1_000, |b| b.level < 3);
        assert_eq!(p.len(), 10);
        assert!(p.iter().all(|b| b.level == 2));
        assert_eq!(plan(0, 1_000, |_| true), vec![Block { level: 3, index: 0 }]);
    }

    #[test]
    fn negative_times_work() {
        assert_eq!(leaf_of(-1), -1);
        assert_eq!(
            Block::containing(-1, 1),
            Block {
                level: 1,
                index: -1
            }
        );
        let p = plan(-15, 7, |_| true);
        assert_exact_cover(&p, -15, 7);
    }

    #[test]
    fn ranges_round_out_to_leaves() {
        assert_eq!(leaves_for(100, 101), (10, 11));
        assert_eq!(leaves_for(100, 110), (10, 11));
        assert_eq!(leaves_for(105, 125), (10, 13));
        assert_eq!(leaves_for(5, 5), (0, 0));
    }

    proptest! {
        #[test]
        fn plans_cover_exactly_and_stay_small(
            first in -10_000_000i64..10_000_000,
            len in 0i64..5_000_000,
            missing in prop::collection::hash_set((1u8..=TOP_LEVEL, -100i64..100), 0..50),
        ) {
            let end = first + len;
            let all = plan(first, end, |_| true);
            assert_exact_cover(&all, first, end);
            prop_assert!(all.len() <= 2 * 9 * (usize::from(TOP_LEVEL) + 1) + 10);

            // Some aggregates absent: still exact, and never uses one of them.
            let avail = |b: Block| !missing.contains(&(b.level, b.index.rem_euclid(200) - 100));
            let partial = plan(first, end, avail);
            assert_exact_cover(&partial, first, end);
            prop_assert!(partial.iter().all(|&b| b.level == 0 || avail(b)));
        }
    }
}
