//! The span read: the merged tree of chosen spans over a range (`SelectMergeSpanProfile`).
//!
//! Like every read it takes its snapshot under the state lock (matching series, the
//! head's span pairs, the `spans/` objects of the range) and reads objects without it.
//! It reads only the span objects whose leaves meet the range: never the runs, never an
//! aggregate, never a span object outside the range.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use embers_profile::{FxHashMap, StackTree};

use crate::error::StoreError;
use crate::selector::Matcher;
use crate::series::SeriesId;
use crate::storage::StorageError;
use crate::store::{lock, Store};

impl Store {
    /// The merged call tree of the samples that ran in the spans `span_ids`, of the series
    /// matching `matchers`, over Unix seconds `[from, until)`.
    ///
    /// A damaged span object is quarantined and the read answers from the rest (the
    /// series' own trees are not affected: they live in the run objects).
    pub fn merge_spans(
        &self,
        matchers: &[Matcher],
        from: i64,
        until: i64,
        span_ids: &[u64],
    ) -> Result<StackTree, StoreError> {
        let mut out = StackTree::new();
        if span_ids.is_empty() {
            return Ok(out);
        }
        let spans: HashSet<u64> = span_ids.iter().copied().collect();
        let mut paths: FxHashMap<u32, u64> = FxHashMap::default();
        let (ids, first, end, objects) = {
            let st = lock(&self.state);
            let (first, end) = crate::segment::leaves_for(from, until);
            let first = first.max(st.first_kept);
            let ids: HashSet<SeriesId> = st
                .catalog
                .select(matchers, first, end)
                .into_iter()
                .collect();
            if ids.is_empty() || first >= end {
                return Ok(out);
            }
            let pending = st.pending.as_ref().map(|p| &p.head);
            for head in std::iter::once(&st.head).chain(pending) {
                head.spans.add_into(
                    first,
                    end,
                    |id, span| ids.contains(&id) && spans.contains(&span),
                    &mut paths,
                );
            }
            (ids, first, end, st.spans.overlapping(first, end))
        };
        for key in objects {
            let bytes = match self.storage.get(&key) {
                Ok(bytes) => bytes,
                // Expired by retention since the snapshot.
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            crate::quarantine::refuse_other_version(&key, &bytes)?;
            let wanted = |id: SeriesId, leaf: i64, span: u64| {
                leaf >= first && leaf < end && ids.contains(&id) && spans.contains(&span)
            };
            if let Err(e) = crate::spans::read_object(&bytes, wanted, &mut paths) {
                self.quarantine_spans(&key, &e.to_string());
            }
        }
        self.add_paths_to_tree(paths, &mut out);
        Ok(out)
    }

    /// Number of `spans/` objects, for tests and metrics.
    pub fn span_objects(&self) -> usize {
        lock(&self.state).spans.len()
    }

    /// Moves a damaged span object aside; only which samples ran in which span is lost
    /// with it (the trees are in the runs).
    fn quarantine_spans(&self, key: &str, reason: &str) {
        self.stats.damaged_reads.fetch_add(1, Ordering::Relaxed);
        lock(&self.state).spans.forget(key);
        if let Err(e) =
            self.quarantine
                .isolate(self.storage.as_ref(), &self.stats, key, reason, false)
        {
            tracing::error!(object = key, reason, error = %e, "a damaged span object could not be moved to quarantine");
        }
    }
}
