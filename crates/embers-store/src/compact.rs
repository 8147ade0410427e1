//! Compaction builds the segment tree's aggregates; retention deletes what is too old.
//!
//! An aggregate of block B is built from the fewest objects covering B (its children's
//! aggregates where they are usable, runs elsewhere), once B has ended plus a delay. It
//! is written as a new immutable object; the one it replaces is deleted a minute later,
//! when no query can still be reading it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use embers_profile::FxHashMap;

use crate::block::BlockWriter;
use crate::error::StoreError;
use crate::manifest::{aggregate_key, Aggregate};
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
}

impl Store {
    /// Applies retention and builds every missing or stale aggregate of blocks that ended
    /// before `now` (Unix seconds) minus the compaction delay.
    pub fn compact(&self, now: i64) -> Result<CompactReport, StoreError> {
        let _one_at_a_time = lock(&self.compact_lock);
        let mut report = CompactReport::default();
        self.expire(now, &mut report)?;
        let delay = self.config.compaction_delay.as_secs() as i64;
        let before = leaf_of(now - delay);
        let stale = lock(&self.state).manifest.stale_blocks(before);
        for (block, newest) in stale {
            self.build(block, newest)?;
            report.aggregates += 1;
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
        let mut trees: BTreeMap<SeriesId, FxHashMap<u32, u64>> = BTreeMap::new();
        for source in &srcs {
            let Some(reader) = self.load(&source.key)? else {
                continue;
            };
            for entry in reader.entries() {
                if source.wants(entry.position) {
                    let paths = trees.entry(entry.series).or_default();
                    reader
                        .add_into(entry, paths)
                        .map_err(|e| StoreError::Damaged {
                            key: source.key.clone(),
                            source: e.into(),
                        })?;
                }
            }
        }
        let mut writer = BlockWriter::default();
        for (series, paths) in trees {
            let mut pairs: Vec<(u32, u64)> = paths.into_iter().collect();
            pairs.sort_unstable();
            writer.add(series, block.index, &pairs);
        }
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

    fn expire(&self, now: i64, report: &mut CompactReport) -> Result<(), StoreError> {
        let mut doomed = Vec::new();
        {
            let mut st = lock(&self.state);
            if let Some(retention) = self.config.retention {
                let first_kept = leaf_of(now - retention.as_secs() as i64);
                if first_kept > st.first_kept {
                    st.first_kept = first_kept;
                    st.head.expire(first_kept);
                    let gone = st.manifest.expire(first_kept);
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
