//! The head: what was acknowledged since the last flush, in memory (and in the WAL), as
//! `(call path id, value)` pairs sorted by path: a few bytes per distinct stack, where a
//! call tree would take tens of bytes per node.

use std::collections::{BTreeMap, HashMap};

use crate::series::SeriesId;
use crate::spans::SpanHead;

/// Sorted `(path, value)` pairs of one tree.
pub type Pairs = Vec<(u32, u64)>;

/// Trees by leaf, then series.
#[derive(Debug, Default)]
pub struct Head {
    leaves: BTreeMap<i64, HashMap<SeriesId, Pairs>>,
    pairs: usize,
    /// The pairs of each span, beside the trees (`spans.rs`).
    pub spans: SpanHead,
}

/// Adds sorted `more` into sorted `into`, summing equal paths. Sums saturate: ingest
/// refuses a write whose values would overflow before it is staged ([`add_checked`]), so
/// saturation is only reached by data written before that check existed, and a pinned
/// maximum is a truer answer than a wrapped small number.
pub(crate) fn merge_sorted(into: &mut Pairs, more: &[(u32, u64)]) {
    let mut out = Vec::with_capacity(into.len() + more.len());
    let (mut a, mut b) = (into.iter().peekable(), more.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(&&(pa, va)), Some(&&(pb, vb))) => {
                if pa == pb {
                    out.push((pa, va.saturating_add(vb)));
                    a.next();
                    b.next();
                } else if pa < pb {
                    out.push((pa, va));
                    a.next();
                } else {
                    out.push((pb, vb));
                    b.next();
                }
            }
            (Some(&&x), None) => {
                out.push(x);
                a.next();
            }
            (None, Some(&&x)) => {
                out.push(x);
                b.next();
            }
            (None, None) => break,
        }
    }
    *into = out;
}

/// Adds the values of sorted `more` to the equal paths of sorted `into` (paths only in
/// `more` are ignored); `Err` if a sum passes `u64::MAX`, with `into` partly added.
pub fn add_checked(into: &mut Pairs, more: &[(u32, u64)]) -> Result<(), ValuesOverflow> {
    let mut more = more.iter().peekable();
    for (path, value) in into.iter_mut() {
        while more.next_if(|(p, _)| p < path).is_some() {}
        if let Some((_, v)) = more.next_if(|(p, _)| p == path) {
            *value = value.checked_add(*v).ok_or(ValuesOverflow)?;
        }
    }
    Ok(())
}

/// Merges sorted `more` into sorted `into`; `Err` if a sum of one path passes `u64::MAX`.
pub fn merge_checked(into: &mut Pairs, more: &[(u32, u64)]) -> Result<(), ValuesOverflow> {
    add_checked(into, more)?;
    let mut merged = std::mem::take(into);
    let new: Vec<(u32, u64)> = more
        .iter()
        .filter(|(p, _)| merged.binary_search_by_key(p, |&(q, _)| q).is_err())
        .copied()
        .collect();
    merge_sorted(&mut merged, &new);
    *into = merged;
    Ok(())
}

/// The values of one call path would add up past `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValuesOverflow;

impl Head {
    /// The pairs of `series` at `leaf`.
    pub fn get(&self, leaf: i64, series: SeriesId) -> Option<&Pairs> {
        self.leaves.get(&leaf)?.get(&series)
    }

    /// Adds the pairs of `series` at `leaf`.
    pub fn add(&mut self, leaf: i64, series: SeriesId, pairs: Pairs) {
        let at = self.leaves.entry(leaf).or_default();
        match at.get_mut(&series) {
            Some(existing) => {
                self.pairs -= existing.len();
                merge_sorted(existing, &pairs);
                self.pairs += existing.len();
            }
            None => {
                self.pairs += pairs.len();
                at.insert(series, pairs);
            }
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// How many pairs are held (span pairs included), for memory metrics.
    pub fn pairs(&self) -> usize {
        self.pairs + self.spans.pairs()
    }

    /// Trees of leaves in `[first, end)`.
    pub fn range(
        &self,
        first: i64,
        end: i64,
    ) -> impl Iterator<Item = (i64, &HashMap<SeriesId, Pairs>)> {
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
        self.spans.expire(first_kept);
        self.leaves = self.leaves.split_off(&first_kept);
        self.pairs = self
            .leaves
            .values()
            .flat_map(|s| s.values())
            .map(Vec::len)
            .sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_merge_sorted_pairs() {
        let mut head = Head::default();
        head.add(5, SeriesId(1), vec![(1, 10), (4, 1)]);
        head.add(5, SeriesId(1), vec![(0, 2), (4, 2), (9, 3)]);
        head.add(7, SeriesId(1), vec![(1, 1)]);
        let (_, trees) = head.range(5, 6).next().unwrap();
        assert_eq!(trees[&SeriesId(1)], vec![(0, 2), (1, 10), (4, 3), (9, 3)]);
        assert_eq!(head.pairs(), 5);
        assert_eq!(head.runs(), vec![(5, 5), (7, 7)]);
        head.expire(6);
        assert_eq!(head.pairs(), 1);
    }

    /// Regression: large values wrapped around when added, so a total became smaller.
    #[test]
    fn sums_never_wrap() {
        let big = u64::MAX - 5;
        let mut acc = vec![(1, 3), (4, big)];
        assert_eq!(add_checked(&mut acc.clone(), &[(0, 9), (4, 5)]), Ok(()));
        assert_eq!(add_checked(&mut acc, &[(4, 6)]), Err(ValuesOverflow));
        let mut merged = vec![(1, 3), (4, big)];
        merge_checked(&mut merged, &[(0, 9), (4, 5)]).unwrap();
        assert_eq!(merged, vec![(0, 9), (1, 3), (4, u64::MAX)]);
        assert_eq!(merge_checked(&mut merged, &[(4, 1)]), Err(ValuesOverflow));

        let mut head = Head::default();
        head.add(1, SeriesId(1), vec![(4, big)]);
        head.add(1, SeriesId(1), vec![(4, big)]);
        assert_eq!(head.get(1, SeriesId(1)).unwrap(), &vec![(4, u64::MAX)]);
    }
}
