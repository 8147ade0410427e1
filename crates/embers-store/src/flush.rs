//! Flush: write the head as run objects, then drop the WAL segments it came from.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use crate::block::BlockWriter;
use crate::envelope::{self, Kind};
use crate::error::StoreError;
use crate::head::Head;
use crate::manifest::{run_key, Run};
use crate::record::encode_record;
use crate::series::{encode_entries, SeriesId};
use crate::spans;
use crate::storage::StorageError;
use crate::store::{lock, unix_now, PendingFlush, Store, FLUSHED_KEY};
use crate::wal::{self, Segment};

impl Store {
    /// Writes the head into run objects and drops the WAL segments it came from. Returns
    /// how many trees were written. Safe to call at any time, also concurrently with
    /// ingest and queries; a failed flush is retried by the next one.
    pub fn flush(&self) -> Result<usize, StoreError> {
        let _one_at_a_time = lock(&self.flush_lock);
        let retry = lock(&self.state).pending.clone();
        if let Some(pending) = retry {
            self.write_flush(&pending)?;
        }
        let pending = {
            let mut w = lock(&self.wal);
            let mut st = lock(&self.state);
            // Also retries (and so heals) after a failed WAL write, even with no traffic.
            // Its failure is reported by the WAL's health, not the flush's.
            self.write_staged_locked(&mut w, &mut st).inspect_err(|_| {
                self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
            })?;
            if st.head.is_empty() {
                // Nothing pending either (retried above): nothing the store cannot persist.
                lock(&self.health).flush = None;
                return Ok(0);
            }
            let mut next = Segment::create(&self.wal_dir, w.segment.seq + 1)
                .map_err(|e| self.flush_failed(wal_error("starting a WAL segment", &e)))?;
            // The IDs still remembered open the new segment: the records they came with
            // go away once this flush is done.
            let window = i64::try_from(self.config.dedup_window.as_secs()).unwrap_or(i64::MAX);
            st.seen.forget_before(unix_now().saturating_sub(window));
            if st.seen.len() > 0 {
                let nothing_new = {
                    let dict = self.dict.read().unwrap_or_else(PoisonError::into_inner);
                    dict.segment(dict.len(), dict.len())
                };
                let mut framed = Vec::new();
                wal::frame(
                    &encode_record(&nothing_new, &[], st.seen.entries()),
                    &mut framed,
                );
                if let Err(e) = next.write_durably(&framed) {
                    let seq = next.seq;
                    drop(next);
                    let _ = wal::remove(&self.wal_dir, seq);
                    return Err(self.flush_failed(wal_error("starting a WAL segment", &e)));
                }
            }
            let seq = std::mem::replace(&mut w.segment, next).seq;
            let dirty = st.catalog.take_dirty();
            let catalog = dirty
                .into_iter()
                .filter_map(|id| st.catalog.get(id).map(|info| (id, info.clone())))
                .collect();
            let symbols = {
                let dict = self.dict.read().unwrap_or_else(PoisonError::into_inner);
                dict.segment(dict.persisted(), dict.len())
            };
            let pending = Arc::new(PendingFlush {
                seq,
                head: std::mem::take(&mut st.head),
                catalog,
                symbols,
            });
            st.pending = Some(Arc::clone(&pending));
            pending
        };
        self.write_flush(&pending)
    }

    /// Counts a failed flush and reports it by [`Store::unwritable_reason`] until one
    /// succeeds.
    fn flush_failed(&self, e: StoreError) -> StoreError {
        self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.health).flush = Some(e.to_string());
        e
    }

    /// The run objects of a flushed head: one per run of consecutive leaves.
    fn encode_runs(head: &Head) -> (Vec<(i64, i64, Vec<u8>)>, usize) {
        let mut runs = Vec::new();
        let mut trees = 0;
        for (first, last) in head.runs() {
            let mut writer = BlockWriter::default();
            for (leaf, series) in head.range(first, last + 1) {
                let mut ids: Vec<&SeriesId> = series.keys().collect();
                ids.sort_unstable();
                for id in ids {
                    writer.add(*id, leaf, &series[id]);
                    trees += 1;
                }
            }
            runs.push((first, last, writer.finish(0)));
        }
        (runs, trees)
    }

    fn write_flush(&self, pending: &PendingFlush) -> Result<usize, StoreError> {
        let written = self.write_flush_objects(pending);
        match written {
            Ok(_) => lock(&self.health).flush = None,
            Err(e) => return Err(self.flush_failed(e)),
        }
        written
    }

    fn write_flush_objects(&self, pending: &PendingFlush) -> Result<usize, StoreError> {
        let seq = pending.seq;
        let (runs_bytes, trees) = Self::encode_runs(&pending.head);
        // Catalog and dictionary first: run objects refer to both.
        let catalog_key = format!("series/{seq:020}.cat");
        let mut payload = Vec::new();
        encode_entries(
            pending.catalog.iter().map(|(id, info)| (*id, info)),
            &mut payload,
        );
        self.storage
            .put(&catalog_key, &envelope::seal(Kind::Catalog, &payload, true))
            .map_err(cannot_persist)?;
        if !pending.symbols.is_empty() {
            let key = crate::symbols::segment_key(seq, &pending.symbols);
            self.storage
                .put(
                    &key,
                    &envelope::seal(Kind::Symbols, &pending.symbols.encode(), true),
                )
                .map_err(cannot_persist)?;
        }
        self.dict
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .mark_persisted(&pending.symbols);
        let mut runs = Vec::new();
        let mut span_objects = Vec::new();
        for (first, last, bytes) in &runs_bytes {
            let key = run_key(seq, *first, *last);
            self.storage.put(&key, bytes).map_err(cannot_persist)?;
            runs.push(Run {
                key,
                seq,
                first: *first,
                last: *last,
                combined_from: None,
            });
            // Beside its run, before `meta/flushed`: recovery treats both alike.
            if let Some(bytes) = pending.head.spans.encode(*first, *last) {
                let key = spans::object_key(seq, *first, *last);
                self.storage.put(&key, &bytes).map_err(cannot_persist)?;
                span_objects.push(key);
            }
        }

        self.storage
            .put(FLUSHED_KEY, &crate::recover::flushed_marker(seq))
            .map_err(cannot_persist)?;
        {
            let mut st = lock(&self.state);
            for run in runs {
                st.manifest.add_run(run);
            }
            for key in span_objects {
                st.spans.add(key);
            }
            st.pending = None;
            st.catalog_objects.push(catalog_key);
        }
        for old in wal::segments(&self.wal_dir).map_err(StoreError::Wal)? {
            if old <= seq {
                wal::remove(&self.wal_dir, old).map_err(StoreError::Wal)?;
            }
        }
        self.rewrite_catalog_if_fragmented(seq)?;
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(trees)
    }

    /// Many small catalog objects slow start-up; past 64, write one with every entry
    /// and delete the others.
    fn rewrite_catalog_if_fragmented(&self, seq: u64) -> Result<(), StoreError> {
        let (payload, old) = {
            let st = lock(&self.state);
            if st.catalog_objects.len() <= 64 {
                return Ok(());
            }
            let mut payload = Vec::new();
            let all = st.catalog.all();
            encode_entries(all.into_iter(), &mut payload);
            (payload, st.catalog_objects.clone())
        };
        let key = format!("series/{seq:020}-full.cat");
        self.storage
            .put(&key, &envelope::seal(Kind::Catalog, &payload, true))?;
        for k in &old {
            self.storage.delete(k)?;
        }
        let mut st = lock(&self.state);
        st.catalog_objects.retain(|k| !old.contains(k));
        st.catalog_objects.push(key);
        Ok(())
    }
}

/// A failed object write means the store cannot persist now (a full disk, a failing
/// object store): the flush is retried, and the data stays in the WAL meanwhile.
fn cannot_persist(e: StorageError) -> StoreError {
    match e {
        StorageError::Io { .. } => StoreError::Unavailable(format!("cannot write objects ({e})")),
        other => other.into(),
    }
}

fn wal_error(doing: &str, e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{doing} failed ({e})"))
}
