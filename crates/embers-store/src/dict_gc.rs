//! Garbage collection of the dictionary, run with retention.
//!
//! Mark and sweep, ids kept stable: the paths in use are those of every block object in
//! the manifest (runs, combined runs, aggregates), of the head and a flush in progress, and any path ingest resolves while the blocks are read;
//! ancestors of a path in use are in use. Persisted entries outside that set are dropped
//! from memory, and the persisted form is rewritten as one compacted `symbols/` object
//! before the objects it replaces are deleted (`symbols.rs`). Entries no flush has
//! persisted yet are never dropped, so flushes always write gap-free segments.
//!
//! A collection reads every block, so [`Store::compact`] runs one (when retention is
//! set) only when the dictionary has grown by a quarter (at least [`MIN_GROWTH`] paths)
//! since the last one, or when retention has deleted as many objects since as it would
//! read (as there were then, or as there are now, whichever is fewer: the data turned
//! over, so what expired can go even without new growth). Its cost follows how fast
//! code churns and data expires, not how often compaction runs.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use embers_profile::FxHashMap;

use crate::block::BlockReader;
use crate::dict::IdSet;
use crate::error::StoreError;
use crate::head::Pairs;
use crate::manifest::parse_aggregate;
use crate::storage::StorageError;
use crate::store::{lock, State, Store};
use crate::symbols;

/// Paths the dictionary must have grown by before a collection is worth reading blocks.
pub const MIN_GROWTH: usize = 256;

/// What one dictionary collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DictionaryGc {
    /// Paths before and after, the root included.
    pub paths: (usize, usize),
    /// Frames before and after.
    pub frames: (usize, usize),
    /// Block objects read to find the paths in use.
    pub objects_read: usize,
    /// Bytes of those objects.
    pub bytes_read: u64,
    /// Bytes of the compacted `symbols/` object written (0: none was needed).
    pub bytes_written: usize,
    /// Damaged blocks (or blocks with damaged entries) whose paths could not be read;
    /// queries cannot read them either.
    pub unreadable: Vec<String>,
}

/// The dictionary's size, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DictionaryStats {
    /// Call paths held, the root included.
    pub paths: usize,
    /// Frames held.
    pub frames: usize,
    /// Path ids ever given (ids are never reused): the size without collection.
    pub paths_ever: usize,
    /// Estimated heap bytes (map capacities and frame strings).
    pub heap_bytes: usize,
    /// Damaged `symbols/` objects quarantined at start-up.
    pub damaged_objects: usize,
}

/// Marks what the head, a flush in progress and the writes staged for the WAL use (a
/// staged write may have resolved its paths before marking began).
fn mark_head(st: &State, live: &mut IdSet) {
    let pending = st.pending.as_ref().map(|p| &p.head);
    for head in std::iter::once(&st.head).chain(pending) {
        for (_, trees) in head.range(i64::MIN, i64::MAX) {
            live.extend(
                trees
                    .values()
                    .flat_map(|pairs: &Pairs| pairs.iter().map(|p| p.0)),
            );
        }
    }
    live.extend(st.staging.paths());
}

impl Store {
    /// The dictionary's size.
    pub fn dictionary_stats(&self) -> DictionaryStats {
        let dict = self.dict.read().unwrap_or_else(PoisonError::into_inner);
        DictionaryStats {
            paths: dict.paths(),
            frames: dict.frames(),
            paths_ever: dict.len().1,
            heap_bytes: dict.heap_bytes(),
            damaged_objects: dict.damaged_objects(),
        }
    }

    /// Collects the dictionary now, whatever its growth: drops the entries no stored or
    /// unflushed tree uses and rewrites `symbols/` as one object. Safe to call at any
    /// time, also during ingest, queries and flushes.
    pub fn collect_dictionary(&self) -> Result<DictionaryGc, StoreError> {
        let _one_at_a_time = lock(&self.compact_lock);
        self.collect_dictionary_locked()
    }

    /// Called by compaction (which holds the compaction lock) when retention is set.
    pub(crate) fn collect_dictionary_if_due(&self) -> Result<Option<DictionaryGc>, StoreError> {
        let deleted = self.stats.expired_objects.load(Ordering::Relaxed);
        let (_, runs, aggregates) = self.counts();
        let due = {
            let mut dict = self.dict.write().unwrap_or_else(PoisonError::into_inner);
            let (then, objects) = *dict
                .last_collection
                .get_or_insert((deleted, runs + aggregates));
            // Reading `now` objects is paid for by as many deletions since the last one.
            let now = runs + aggregates;
            let turned_over = deleted.saturating_sub(then) >= objects.min(now).max(1) as u64;
            dict.collection_due(MIN_GROWTH) || (turned_over && dict.paths() > 1)
        };
        if !due {
            return Ok(None);
        }
        self.collect_dictionary_locked().map(Some)
    }

    fn collect_dictionary_locked(&self) -> Result<DictionaryGc, StoreError> {
        let mut report = DictionaryGc::default();
        // Mark, part 1: the objects in the manifest and what the head holds now; from
        // now on ingest records what it uses. (Superseded objects still on disk hold
        // nothing their replacements lack.)
        let aggregates = self.storage.list("agg/")?;
        let (floor, mut live, keys) = {
            let st = lock(&self.state);
            let mut dict = self.dict.write().unwrap_or_else(PoisonError::into_inner);
            report.paths.0 = dict.paths();
            report.frames.0 = dict.frames();
            dict.start_marking();
            let mut live = IdSet::default();
            mark_head(&st, &mut live);
            let mut keys: Vec<String> = st
                .manifest
                .runs_overlapping(i64::MIN, i64::MAX)
                .map(|run| run.key.clone())
                .collect();
            keys.extend(aggregates.into_iter().filter(|key| {
                parse_aggregate(key)
                    .and_then(|(block, _)| st.manifest.aggregate(block))
                    .is_some_and(|agg| agg.key == *key)
            }));
            (dict.persisted(), live, keys)
        };
        // Part 2: read them. Objects a flush registers meanwhile hold head trees marked
        // above or paths ingest records.
        if let Err(e) = self.mark_blocks(keys, &mut live, &mut report) {
            self.dict
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .stop_marking();
            return Err(e.into());
        }
        // Sweep, with no flush in progress: the persisted entries are exactly those of
        // the `symbols/` objects there are.
        let _no_flush = lock(&self.flush_lock);
        let objects = self.storage.list("symbols/")?.len();
        let full = {
            let st = lock(&self.state);
            mark_head(&st, &mut live);
            let mut dict = self.dict.write().unwrap_or_else(PoisonError::into_inner);
            let swept = dict.sweep(floor, live);
            report.paths.1 = dict.paths();
            report.frames.1 = dict.frames();
            (swept.paths > 0 || objects > 1).then(|| symbols::encode_full(&dict))
        };
        if let Some(full) = full {
            report.bytes_written = symbols::replace_with_full(self.storage.as_ref(), full)?;
        }
        self.collected(&report);
        tracing::info!(
            paths_before = report.paths.0,
            paths_after = report.paths.1,
            objects_read = report.objects_read,
            "dictionary collected"
        );
        Ok(report)
    }

    fn collected(&self, report: &DictionaryGc) {
        self.dict
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .last_collection = Some((
            self.stats.expired_objects.load(Ordering::Relaxed),
            report.objects_read,
        ));
    }

    fn mark_blocks(
        &self,
        keys: Vec<String>,
        live: &mut IdSet,
        report: &mut DictionaryGc,
    ) -> Result<(), StorageError> {
        let mut scratch: FxHashMap<u32, u64> = FxHashMap::default();
        for key in keys {
            let bytes = match self.storage.get(&key) {
                Ok(bytes) => bytes,
                // Deleted meanwhile: superseded or expired, its trees counted elsewhere.
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            report.objects_read += 1;
            report.bytes_read += bytes.len() as u64;
            // A damaged block (or entry) cannot be read by queries either: the paths only
            // it used are not kept for it. Checksums make damage permanent, not transient.
            let reader = match BlockReader::open(&bytes) {
                Ok(reader) => reader,
                Err(e) => {
                    tracing::warn!(key, error = %e, "dictionary collection skips a damaged block");
                    report.unreadable.push(key);
                    continue;
                }
            };
            for entry in reader.entries() {
                scratch.clear();
                let read = reader.add_into(entry, &mut scratch);
                live.extend(scratch.keys().copied());
                if let Err(e) = read {
                    tracing::warn!(key, error = %e, "dictionary collection skips a damaged entry");
                    if report.unreadable.last() != Some(&key) {
                        report.unreadable.push(key.clone());
                    }
                }
            }
        }
        Ok(())
    }
}
