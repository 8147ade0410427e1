//! What block objects exist, kept in memory: leaf runs written by flushes, and aggregates
//! written by compaction. Rebuilt at start-up from object names, so it is never written.
//!
//! Object names carry what the planner needs:
//! - `l0/<seq>-<first>-<last>.blk`: leaves `first..=last` flushed from WAL segment `seq`;
//! - `agg/<level>/<index>-<seq>.blk`: the aggregate of block `(level, index)` holding
//!   every run with a sequence number up to `seq`.
//!
//! An aggregate is usable only while no run newer than the ones it holds overlaps its
//! block. Late data thus invalidates stale aggregates by itself, with no delete to order
//! against a crash: the planner descends to finer blocks until compaction catches up.

use std::collections::{BTreeMap, HashMap};

use crate::segment::{Block, TOP_LEVEL};

/// A run object: one flush's trees for a span of leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Object key.
    pub key: String,
    /// WAL segment it came from.
    pub seq: u64,
    /// Leaves covered, inclusive.
    pub first: i64,
    /// Last leaf covered, inclusive.
    pub last: i64,
    /// For a run combined from smaller ones by compaction: the lowest sequence number it
    /// holds. It holds exactly the runs with a sequence number in `min_seq..=seq` that lie
    /// within `first..=last`, so recovery knows which originals a crash left behind.
    pub combined_from: Option<u64>,
}

impl Run {
    /// Whether `self` is one of the runs `combined` was made from.
    ///
    /// A combined `self` holding sequence numbers below `combined`'s lowest is within it
    /// only if it is older (a lower newest sequence number): then those runs had left the
    /// manifest (expired) before `combined` was made from the rest. With the same newest
    /// sequence number it is the other way round: `self` was made first, its write failed
    /// or was torn, runs expired and the block was combined again from fewer runs, so
    /// `self` holds `combined` and not the reverse.
    pub fn is_within(&self, combined: &Run) -> bool {
        combined.combined_from.is_some_and(|min| {
            self.key != combined.key
                && (min..=combined.seq).contains(&self.seq)
                && (self.combined_from.unwrap_or(self.seq) >= min || self.seq < combined.seq)
                && self.first >= combined.first
                && self.last <= combined.last
        })
    }
}

/// An aggregate object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// Object key.
    pub key: String,
    /// The newest run sequence number it holds.
    pub seq: u64,
}

/// Key of the run object for `seq` covering `first..=last`.
pub fn run_key(seq: u64, first: i64, last: i64) -> String {
    format!("l0/{seq:020}-{first:012}-{last:012}.blk")
}

/// Key of a run combined from runs `min_seq..=seq` within `first..=last`.
pub fn combined_key(seq: u64, first: i64, last: i64, min_seq: u64) -> String {
    format!("l0/{seq:020}-{first:012}-{last:012}-{min_seq:020}.blk")
}

/// Key of the aggregate of `block` holding runs up to `seq`.
pub fn aggregate_key(block: Block, seq: u64) -> String {
    format!("agg/{}/{:012}-{seq:020}.blk", block.level, block.index)
}

/// Parses a run key (plain or combined).
pub fn parse_run(key: &str) -> Option<Run> {
    let name = key.strip_prefix("l0/")?.strip_suffix(".blk")?;
    let mut parts = name.split('-');
    let seq = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    let combined_from = match parts.next() {
        None => None,
        Some(min) => Some(min.parse().ok()?),
    };
    (parts.next().is_none() && first <= last).then(|| Run {
        key: key.to_owned(),
        seq,
        first,
        last,
        combined_from,
    })
}

/// Parses an aggregate key.
pub fn parse_aggregate(key: &str) -> Option<(Block, Aggregate)> {
    let rest = key.strip_prefix("agg/")?.strip_suffix(".blk")?;
    let (level, name) = rest.split_once('/')?;
    let level: u8 = level.parse().ok().filter(|l| (1..=TOP_LEVEL).contains(l))?;
    let (index, seq) = name.split_once('-')?;
    let block = Block {
        level,
        index: index.parse().ok()?,
    };
    Some((
        block,
        Aggregate {
            key: key.to_owned(),
            seq: seq.parse().ok()?,
        },
    ))
}

/// Runs and aggregates, indexed for the planner.
#[derive(Debug, Default)]
pub struct Manifest {
    /// By first leaf, then sequence number and key (unique).
    runs: BTreeMap<(i64, u64, String), Run>,
    /// The widest run, to bound overlap searches.
    max_span: i64,
    /// Per block above level 0: the newest run overlapping it.
    newest_run: HashMap<Block, u64>,
    aggregates: HashMap<Block, Aggregate>,
}

impl Manifest {
    /// Registers a run.
    pub fn add_run(&mut self, run: Run) {
        self.max_span = self.max_span.max(run.last - run.first);
        for level in 1..=TOP_LEVEL {
            let a = Block::containing(run.first, level).index;
            let b = Block::containing(run.last, level).index;
            for index in a..=b {
                let newest = self.newest_run.entry(Block { level, index }).or_default();
                *newest = (*newest).max(run.seq);
            }
        }
        self.runs.insert((run.first, run.seq, run.key.clone()), run);
    }

    /// Runs as flushes wrote them (not combined yet).
    pub fn plain_runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.values().filter(|r| r.combined_from.is_none())
    }

    /// Runs lying wholly within leaves `[first, end)`.
    pub fn runs_within(&self, first: i64, end: i64) -> Vec<Run> {
        self.runs
            .range((first, 0, String::new())..(end, 0, String::new()))
            .map(|(_, run)| run)
            .filter(|run| run.last < end)
            .cloned()
            .collect()
    }

    /// Replaces `old` runs by the run combined from them.
    pub fn replace_runs(&mut self, old: &[Run], combined: Run) {
        for run in old {
            self.runs.remove(&(run.first, run.seq, run.key.clone()));
        }
        self.add_run(combined);
    }

    /// After loading: runs that a combined run already holds (a crash came between
    /// writing the combined run and deleting its originals), each with that combined run.
    /// Recovery deletes an original only once the combined run has been read back whole.
    ///
    /// Only outermost combined runs (within no other) are named: a block combined again
    /// after late data leaves an older combined run that is itself an original of the
    /// newer one, and is deleted as such. Naming it for its own originals as well would
    /// have recovery read an object it has just deleted.
    pub fn combined_originals(&self) -> Vec<(Run, String)> {
        let combined: Vec<&Run> = self
            .runs
            .values()
            .filter(|r| r.combined_from.is_some())
            .collect();
        let outermost: Vec<&Run> = combined
            .iter()
            .filter(|c| !combined.iter().any(|o| c.is_within(o)))
            .copied()
            .collect();
        self.runs
            .values()
            .filter_map(|run| {
                outermost
                    .iter()
                    .find(|c| run.is_within(c))
                    .map(|c| (run.clone(), c.key.clone()))
            })
            .collect()
    }

    /// Forgets the run or aggregate stored under `key` (it was quarantined); returns
    /// whether it was known. A forgotten aggregate makes its block unusable, so the
    /// planner descends to finer blocks and compaction builds it again.
    pub fn forget(&mut self, key: &str) -> bool {
        let before = self.runs.len() + self.aggregates.len();
        self.runs.retain(|_, run| run.key != key);
        self.aggregates.retain(|_, agg| agg.key != key);
        before != self.runs.len() + self.aggregates.len()
    }

    /// Registers an aggregate, returning the one it replaces.
    pub fn add_aggregate(&mut self, block: Block, agg: Aggregate) -> Option<Aggregate> {
        match self.aggregates.get(&block) {
            Some(old) if old.seq >= agg.seq => Some(agg),
            _ => self.aggregates.insert(block, agg),
        }
    }

    /// Keys of every run and aggregate.
    pub fn keys(&self) -> Vec<String> {
        let runs = self.runs.values().map(|r| r.key.clone());
        runs.chain(self.aggregates.values().map(|a| a.key.clone()))
            .collect()
    }

    /// Runs overlapping leaves `[first, end)`.
    pub fn runs_overlapping(&self, first: i64, end: i64) -> impl Iterator<Item = &Run> {
        self.runs
            .range((first.saturating_sub(self.max_span), 0, String::new())..(end, 0, String::new()))
            .map(|(_, run)| run)
            .filter(move |run| run.last >= first)
    }

    /// Whether `block` can be read from its aggregate (or has no data at all): the
    /// planner's `available`.
    pub fn usable(&self, block: Block) -> bool {
        match self.newest_run.get(&block) {
            None => true,
            Some(&newest) => self.aggregates.get(&block).is_some_and(|a| a.seq >= newest),
        }
    }

    /// The aggregate of `block`, if it exists.
    pub fn aggregate(&self, block: Block) -> Option<&Aggregate> {
        self.aggregates.get(&block)
    }

    /// Blocks whose aggregate is missing or stale, finer levels first, ending at or before
    /// leaf `before` (complete blocks only).
    pub fn stale_blocks(&self, before: i64) -> Vec<(Block, u64)> {
        let mut out: Vec<(Block, u64)> = self
            .newest_run
            .iter()
            .filter(|(block, _)| block.leaves().1 <= before && !self.usable(**block))
            .map(|(b, s)| (*b, *s))
            .collect();
        out.sort_unstable();
        out
    }

    /// Forgets everything that lies wholly before leaf `first_kept`; returns the object
    /// keys to delete.
    pub fn expire(&mut self, first_kept: i64) -> Vec<String> {
        let mut gone = Vec::new();
        self.runs.retain(|_, run| {
            let keep = run.last >= first_kept;
            if !keep {
                gone.push(run.key.clone());
            }
            keep
        });
        self.aggregates.retain(|block, agg| {
            let keep = block.leaves().1 > first_kept;
            if !keep {
                gone.push(agg.key.clone());
            }
            keep
        });
        self.newest_run
            .retain(|block, _| block.leaves().1 > first_kept);
        gone
    }

    /// Number of run and aggregate objects.
    pub fn counts(&self) -> (usize, usize) {
        (self.runs.len(), self.aggregates.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let run = parse_run(&run_key(42, 170_000_000, 170_000_002)).unwrap();
        assert_eq!(
            (run.seq, run.first, run.last),
            (42, 170_000_000, 170_000_002)
        );
        let block = Block {
            level: 3,
            index: 170_000,
        };
        let (b, agg) = parse_aggregate(&aggregate_key(block, 9)).unwrap();
        assert_eq!((b, agg.seq), (block, 9));
        assert!(parse_run("l0/x.blk").is_none());
        assert!(parse_aggregate("agg/0/1-2.blk").is_none());
    }

    fn combined(seq: u64, min: u64) -> Run {
        parse_run(&combined_key(seq, 100, 199, min)).unwrap()
    }

    /// A block whose first combination (runs 3..=10) was torn, then combined again from
    /// runs 6..=10 after 3..=5 expired: each used to count as within the other, so
    /// recovery kept the originals beside the good one (counted twice).
    #[test]
    fn a_block_combined_again_from_fewer_runs_is_within_the_first_only() {
        let (first, again) = (combined(10, 3), combined(10, 6));
        assert!(again.is_within(&first));
        assert!(!first.is_within(&again));
        // An older combined run whose lowest runs expired before the newer one was made.
        let (old, new) = (combined(5, 3), combined(7, 5));
        assert!(old.is_within(&new));
        assert!(!new.is_within(&old));
        let mut m = Manifest::default();
        let original = parse_run(&run_key(8, 150, 150)).unwrap();
        for run in [first.clone(), again.clone(), original.clone()] {
            m.add_run(run);
        }
        assert_eq!(
            m.combined_originals(),
            vec![(again, first.key.clone()), (original, first.key)]
        );
    }

    #[test]
    fn late_runs_make_aggregates_stale() {
        let mut m = Manifest::default();
        m.add_run(Run {
            key: "a".into(),
            seq: 1,
            first: 100,
            last: 101,
            combined_from: None,
        });
        let b1 = Block {
            level: 1,
            index: 10,
        };
        assert!(!m.usable(b1));
        assert!(
            m.usable(Block {
                level: 1,
                index: 11
            }),
            "no data: nothing to read"
        );
        assert_eq!(m.stale_blocks(110).first(), Some(&(b1, 1)));
        assert!(m.stale_blocks(109).is_empty(), "incomplete blocks wait");
        m.add_aggregate(
            b1,
            Aggregate {
                key: "agg".into(),
                seq: 1,
            },
        );
        assert!(m.usable(b1));
        m.add_run(Run {
            key: "late".into(),
            seq: 2,
            first: 105,
            last: 105,
            combined_from: None,
        });
        assert!(!m.usable(b1));
        assert_eq!(m.runs_overlapping(101, 106).count(), 2);
        assert_eq!(m.runs_overlapping(102, 105).count(), 0);
        assert_eq!(m.expire(102), vec!["a".to_string()]);
    }
}
