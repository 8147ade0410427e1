//! Compaction builds the segment tree's aggregates; retention deletes what is too old,
//! and then collects the dictionary when it has grown (`dict_gc.rs`).
//!
//! Flushes write one small run object every 10 s; once a 1,000 s block has ended, its runs
//! are combined into one object (fewer files, fewer reads at the edges of a range).
//!
//! An aggregate of block B is built from the fewest objects covering B (its children's
//! aggregates where they are usable, runs elsewhere), once B has ended plus a delay. It
//! is written as a new immutable object; the one it replaces is deleted a minute later,
//! when no query can still be reading it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use embers_profile::FxHashMap;

use crate::block::{BlockReader, BlockWriter, Entry};
use crate::dict_gc::DictionaryGc;
use crate::error::StoreError;
use crate::manifest::{aggregate_key, combined_key, Aggregate, Run};
use crate::query::sources;
use crate::segment::{leaf_of, Block};
use crate::series::SeriesId;
use crate::store::{lock, Store};

/// How long a superseded object is kept for queries that may still read it.
const GRACE: Duration = Duration::from_secs(60);

/// What one compaction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Aggregates written.
    pub aggregates: usize,
    /// Objects deleted (expired or superseded).
    pub deleted: usize,
    /// Run objects combined into one per 1,000 s block.
    pub combined: usize,
    /// The dictionary collection this pass ran, if one was due (retention set, and the
    /// dictionary grown or the data turned over since the last one).
    pub dictionary: Option<DictionaryGc>,
}

/// Runs are combined per block of this level (10^2 leaves = 1,000 s).
const COMBINE_LEVEL: u8 = 2;

impl Store {
    /// Applies retention and builds every missing or stale aggregate of blocks that ended
    /// before `now` (Unix seconds) minus the compaction delay.
    pub fn compact(&self, now: i64) -> Result<CompactReport, StoreError> {
        self.compact_with(now, true)
    }

    /// [`Store::compact`] without collecting the dictionary: the dictionary only grows, as
    /// it did before collection existed. For benchmarks that measure what collection saves.
    #[doc(hidden)]
    pub fn compact_keeping_dictionary(&self, now: i64) -> Result<CompactReport, StoreError> {
        self.compact_with(now, false)
    }

    fn compact_with(&self, now: i64, collect: bool) -> Result<CompactReport, StoreError> {
        let _one_at_a_time = lock(&self.compact_lock);
        let mut report = CompactReport::default();
        self.expire(now, &mut report)?;
        let delay = self.config.compaction_delay.as_secs() as i64;
        let before = leaf_of(now - delay);
        report.combined = self.combine_runs(before)?;
        let stale = lock(&self.state).manifest.stale_blocks(before);
        for (block, newest) in stale {
            self.build(block, newest)?;
            report.aggregates += 1;
        }
        if collect && self.config.retention.is_some() {
            report.dictionary = self.collect_dictionary_if_due()?;
        }
        Ok(report)
    }

    fn build(&self, block: Block, newest: u64) -> Result<(), StoreError> {
        let (first, end) = block.leaves();
        let srcs = sources(
            &lock(&self.state).manifest,
            first,
            end,
            block.level,
            Some(block),
        );
        let mut trees: BTreeMap<(i64, SeriesId), FxHashMap<u32, u64>> = BTreeMap::new();
        for source in &srcs {
            let Some(reader) = self.load(&source.key)? else {
                if source.leaves.is_none() {
                    return Ok(()); // a child aggregate went (quarantined): next pass re-plans
                }
                continue;
            };
            let group = |e: &Entry| source.wants(e.position).then_some((block.index, e.series));
            accumulate(&reader, &source.key, group, &mut trees)?;
        }
        let writer = write_entries(trees);
        let key = aggregate_key(block, newest);
        self.storage.put(&key, &writer.finish(block.level))?;
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        let mut st = lock(&self.state);
        if let Some(old) = st
            .manifest
            .add_aggregate(block, Aggregate { key, seq: newest })
        {
            st.graveyard.push((Instant::now(), old.key));
        }
        Ok(())
    }

    /// Combines the runs of every ended 1,000 s block that has more than one.
    fn combine_runs(&self, before: i64) -> Result<usize, StoreError> {
        let blocks: std::collections::BTreeSet<Block> = {
            let st = lock(&self.state);
            st.manifest
                .plain_runs()
                .map(|run| (Block::containing(run.first, COMBINE_LEVEL), run))
                .filter(|(block, run)| {
                    block.leaves().1 <= before
                        && Block::containing(run.last, COMBINE_LEVEL) == *block
                })
                .map(|(block, _)| block)
                .collect()
        };
        let mut combined = 0;
        'blocks: for block in blocks {
            let (first, end) = block.leaves();
            let runs = lock(&self.state).manifest.runs_within(first, end);
            if runs.len() < 2 {
                continue;
            }
            let mut trees: BTreeMap<(i64, SeriesId), FxHashMap<u32, u64>> = BTreeMap::new();
            for run in &runs {
                let Some(reader) = self.open_block(&run.key)? else {
                    continue 'blocks; // damaged (now quarantined): combine next pass
                };
                accumulate(
                    &reader,
                    &run.key,
                    |e| Some((e.position, e.series)),
                    &mut trees,
                )?;
            }
            let writer = write_entries(trees);
            let seq = runs.iter().map(|r| r.seq).max().unwrap_or(0);
            let min_seq = runs
                .iter()
                .map(|r| r.combined_from.unwrap_or(r.seq))
                .min()
                .unwrap_or(0);
            let key = combined_key(seq, first, end - 1, min_seq);
            self.storage.put(&key, &writer.finish(0))?;
            let run = Run {
                key,
                seq,
                first,
                last: end - 1,
                combined_from: Some(min_seq),
            };
            let mut st = lock(&self.state);
            st.manifest.replace_runs(&runs, run);
            let now = Instant::now();
            st.graveyard.extend(runs.into_iter().map(|r| (now, r.key)));
            combined += 1;
        }
        Ok(combined)
    }

    fn expire(&self, now: i64, report: &mut CompactReport) -> Result<(), StoreError> {
        let mut doomed = Vec::new();
        {
            let mut st = lock(&self.state);
            if let Some(retention) = self.config.retention {
                let first_kept = leaf_of(now - retention.as_secs() as i64);
                if first_kept > st.first_kept {
                    st.first_kept = first_kept;
                    st.head.expire(first_kept);
                    let mut gone = st.manifest.expire(first_kept);
                    gone.extend(st.spans.expire(first_kept));
                    let now = Instant::now();
                    st.graveyard
                        .extend(gone.into_iter().map(|k| (now - GRACE, k)));
                    st.catalog.expire(first_kept);
                }
            }
            let now = Instant::now();
            st.graveyard.retain(|(since, key)| {
                let due = now.duration_since(*since) >= GRACE;
                if due {
                    doomed.push(key.clone());
                }
                !due
            });
        }
        for key in doomed {
            self.storage.delete(&key)?;
            self.cache.remove(&key);
            report.deleted += 1;
            self.stats.expired_objects.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Adds the pairs of every entry of `reader` that `group` maps to a (position, series)
/// into that group's map.
fn accumulate(
    reader: &BlockReader,
    key: &str,
    group: impl Fn(&Entry) -> Option<(i64, SeriesId)>,
    into: &mut BTreeMap<(i64, SeriesId), FxHashMap<u32, u64>>,
) -> Result<(), StoreError> {
    for entry in reader.entries() {
        if let Some(g) = group(entry) {
            reader
                .add_into(entry, into.entry(g).or_default())
                .map_err(|e| StoreError::Damaged {
                    key: key.to_owned(),
                    source: e.into(),
                })?;
        }
    }
    Ok(())
}

/// A block of the accumulated trees, one entry per (position, series).
fn write_entries(trees: BTreeMap<(i64, SeriesId), FxHashMap<u32, u64>>) -> BlockWriter {
    let mut writer = BlockWriter::default();
    for ((position, series), paths) in trees {
        let mut pairs: Vec<(u32, u64)> = paths.into_iter().collect();
        pairs.sort_unstable();
        writer.add(series, position, &pairs);
    }
    writer
}
