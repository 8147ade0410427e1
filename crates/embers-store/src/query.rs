//! Reads: which series match, their merged tree over a range, totals over time, labels.
//!
//! A read takes a consistent snapshot under the state lock (matching series, head trees,
//! the plan of objects to read), then reads and merges objects without holding any lock,
//! so a slow query never stalls ingest. The snapshot itself is bounded by the data: the
//! range is narrowed to the leaves the selected series have data in, so `from=0` or a
//! far-future `until` plans over stored leaves, not over every 10 s since 1970.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use embers_profile::{FxHashMap, StackTree};

use crate::block::BlockReader;
use crate::error::StoreError;
use crate::head::Pairs;
use crate::manifest::Manifest;
use crate::segment::{leaves_for, plan, Block};
use crate::selector::Matcher;
use crate::series::{SeriesId, SeriesKey, PROFILE_TYPE};
use crate::store::{lock, State, Store};

/// One object to read and which of its trees count.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub key: String,
    /// For run objects: the leaf ranges `[a, b)` the plan assigned to level 0. `None`
    /// for aggregates, whose every tree counts.
    pub leaves: Option<Vec<(i64, i64)>>,
    /// Time bucket of an aggregate (its first leaf), for timelines.
    pub first_leaf: i64,
}

impl Source {
    pub(crate) fn wants(&self, position: i64) -> bool {
        match &self.leaves {
            None => true,
            Some(ranges) => ranges.iter().any(|&(a, b)| position >= a && position < b),
        }
    }
}

/// The objects covering leaves `[first, end)`: aggregates where usable, runs elsewhere;
/// `max_level` caps the aggregate level (timelines need blocks no wider than a step),
/// `exclude` is a block being compacted.
pub(crate) fn sources(
    manifest: &Manifest,
    first: i64,
    end: i64,
    max_level: u8,
    exclude: Option<Block>,
) -> Vec<Source> {
    let blocks = plan(first, end, |b| {
        b.level <= max_level && Some(b) != exclude && manifest.usable(b)
    });
    let mut out = Vec::new();
    let mut runs: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for block in blocks {
        let (a, b) = block.leaves();
        if block.level == 0 {
            for run in manifest.runs_overlapping(a, b) {
                let ranges = runs.entry(run.key.clone()).or_default();
                match ranges.last_mut() {
                    Some(last) if last.1 == a => last.1 = b,
                    _ => ranges.push((a, b)),
                }
            }
        } else if let Some(agg) = manifest.aggregate(block) {
            out.push(Source {
                key: agg.key.clone(),
                leaves: None,
                first_leaf: a,
            });
        }
    }
    out.extend(runs.into_iter().map(|(key, leaves)| Source {
        key,
        leaves: Some(leaves),
        first_leaf: 0,
    }));
    out
}

/// A selection: matching series over a range of leaves, what the head holds for them,
/// and the objects to read.
struct Snapshot {
    ids: HashSet<SeriesId>,
    sources: Vec<Source>,
}

impl Store {
    fn clip(&self, st: &State, from: i64, until: i64) -> (i64, i64) {
        let (first, end) = leaves_for(from, until);
        (first.max(st.first_kept), end)
    }

    /// Unix second of the oldest data the store holds (the start of its first leaf), or
    /// `None` when empty. Scans the catalog under the lock: for bounding rare huge ranges,
    /// not for every query.
    pub fn oldest_data(&self) -> Option<i64> {
        let st = lock(&self.state);
        let first = st
            .catalog
            .select(&[], i64::MIN, i64::MAX)
            .into_iter()
            .filter_map(|id| st.catalog.get(id))
            .map(|info| info.leaves.0)
            .min()?;
        Some(first.max(st.first_kept) * crate::segment::LEAF_SECONDS)
    }

    /// Unix second of the start of the newest leaf with data, or `None` when empty
    /// (`GetProfileStats`); scans the catalog like [`Store::oldest_data`].
    pub fn newest_data(&self) -> Option<i64> {
        let st = lock(&self.state);
        let last = st
            .catalog
            .select(&[], i64::MIN, i64::MAX)
            .into_iter()
            .filter_map(|id| st.catalog.get(id))
            .map(|info| info.leaves.1)
            .max()?;
        (last >= st.first_kept).then_some(last * crate::segment::LEAF_SECONDS)
    }

    /// Series matching `matchers` with data in Unix seconds `[from, until)`.
    pub fn series(
        &self,
        matchers: &[Matcher],
        from: i64,
        until: i64,
    ) -> Vec<(SeriesId, SeriesKey)> {
        let st = lock(&self.state);
        let (first, end) = self.clip(&st, from, until);
        st.catalog
            .select(matchers, first, end)
            .into_iter()
            .filter_map(|id| st.catalog.get(id).map(|info| (id, info.key.clone())))
            .collect()
    }

    /// The sampling period of a merge of the matching series over `[from, until)`: the
    /// largest period any of them last had (0 if none is known). The largest, because
    /// that is what Go's `profile.Merge` keeps when it merges pprof profiles of differing
    /// periods (`pprof` shows it, and pprof readers scale by it); series of one profile
    /// type from one client share one period, so usually there is only one.
    pub fn period(&self, matchers: &[Matcher], from: i64, until: i64) -> i64 {
        let st = lock(&self.state);
        let (first, end) = self.clip(&st, from, until);
        st.catalog
            .select(matchers, first, end)
            .into_iter()
            .filter_map(|id| st.catalog.get(id).map(|info| info.period))
            .max()
            .unwrap_or(0)
    }

    /// Label names of the matching series (the virtual `__profile_type__` included).
    pub fn label_names(&self, matchers: &[Matcher], from: i64, until: i64) -> Vec<String> {
        let st = lock(&self.state);
        let (first, end) = self.clip(&st, from, until);
        let ids = st.catalog.select(matchers, first, end);
        let mut names = st.catalog.label_names(&ids);
        if !ids.is_empty() {
            names.push(PROFILE_TYPE.to_owned());
            names.sort();
        }
        names
    }

    /// Values of label `name` among the matching series.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        from: i64,
        until: i64,
    ) -> Vec<String> {
        let st = lock(&self.state);
        let (first, end) = self.clip(&st, from, until);
        let ids = st.catalog.select(matchers, first, end);
        st.catalog.label_values(&ids, name)
    }

    /// The merged call tree of the matching series over Unix seconds `[from, until)`.
    pub fn merge(
        &self,
        matchers: &[Matcher],
        from: i64,
        until: i64,
    ) -> Result<StackTree, StoreError> {
        self.merge_with_max_level(matchers, from, until, crate::segment::TOP_LEVEL)
    }

    /// [`Store::merge`] using aggregates of at most `max_level` (0: merge every 10 s
    /// leaf, the naive baseline benchmarks compare against).
    pub fn merge_with_max_level(
        &self,
        matchers: &[Matcher],
        from: i64,
        until: i64,
        max_level: u8,
    ) -> Result<StackTree, StoreError> {
        let mut out = StackTree::new();
        let mut paths: FxHashMap<u32, u64> = FxHashMap::default();
        let Some(snapshot) =
            self.snapshot(matchers, from, until, max_level, |st, first, end, ids| {
                for_head(st, first, end, |_, id, pairs| {
                    if ids.contains(&id) {
                        for &(path, value) in pairs {
                            // Saturates: each stored sum is checked at ingest, but a
                            // query adds many blocks, and a pinned maximum is truer
                            // than a wrapped small number.
                            let sum = paths.entry(path).or_insert(0);
                            *sum = sum.saturating_add(value);
                        }
                    }
                });
            })
        else {
            return Ok(out);
        };
        for source in &snapshot.sources {
            let Some(block) = self.load(&source.key)? else {
                if source.leaves.is_none() {
                    // An aggregate went (quarantined as damaged, or superseded): plan
                    // again, so the finer blocks below it answer.
                    return self.merge_with_max_level(matchers, from, until, max_level);
                }
                continue;
            };
            for entry in block.entries() {
                if snapshot.ids.contains(&entry.series) && source.wants(entry.position) {
                    if let Err(e) = block.add_into(entry, &mut paths) {
                        // Part of it may be added already: plan again without it.
                        self.quarantine_damaged(&source.key, &e.to_string());
                        return self.merge_with_max_level(matchers, from, until, max_level);
                    }
                }
            }
        }
        self.add_paths_to_tree(paths, &mut out);
        Ok(out)
    }

    /// Adds summed values by path id into `out`, through the dictionary.
    pub(crate) fn add_paths_to_tree(&self, paths: FxHashMap<u32, u64>, out: &mut StackTree) {
        let mut sorted: Vec<(u32, u64)> = paths.into_iter().collect();
        sorted.sort_unstable();
        self.dict
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add_to_tree(sorted.iter().map(|(p, v)| (p, v)), out);
    }

    /// Totals of each matching series per time step: `step_leaves` (a power of 10) leaves
    /// per step, steps aligned to multiples of it. Returns the first step's leaf and, per
    /// series, one total per step.
    pub fn totals(
        &self,
        matchers: &[Matcher],
        from: i64,
        until: i64,
        step_leaves: i64,
    ) -> Result<(i64, HashMap<SeriesId, Vec<u64>>), StoreError> {
        let max_level = step_leaves.max(1).ilog10() as u8;
        let step = 10_i64.pow(u32::from(max_level));
        let (first, end) = leaves_for(from, until);
        let first_step = first.div_euclid(step) * step;
        let steps = usize::try_from((end - first_step + step - 1).div_euclid(step)).unwrap_or(0);
        let mut out: HashMap<SeriesId, Vec<u64>> = HashMap::new();
        let add = |out: &mut HashMap<SeriesId, Vec<u64>>, id: SeriesId, leaf: i64, v: u64| {
            let i = (leaf - first_step).div_euclid(step);
            if let Ok(i) = usize::try_from(i) {
                if i < steps {
                    let sum = &mut out.entry(id).or_insert_with(|| vec![0; steps])[i];
                    // Saturates rather than wraps, as in `merge_with_max_level`.
                    *sum = sum.saturating_add(v);
                }
            }
        };
        let Some(snapshot) =
            self.snapshot(matchers, from, until, max_level, |st, first, end, ids| {
                for_head(st, first, end, |leaf, id, pairs| {
                    if ids.contains(&id) {
                        let total = pairs.iter().fold(0u64, |t, p| t.saturating_add(p.1));
                        add(&mut out, id, leaf, total);
                    }
                });
            })
        else {
            return Ok((first_step, out));
        };
        for source in &snapshot.sources {
            let Some(block) = self.load(&source.key)? else {
                if source.leaves.is_none() {
                    return self.totals(matchers, from, until, step_leaves); // see merge
                }
                continue;
            };
            for entry in block.entries() {
                if snapshot.ids.contains(&entry.series) && source.wants(entry.position) {
                    let leaf = if source.leaves.is_some() {
                        entry.position
                    } else {
                        source.first_leaf
                    };
                    add(&mut out, entry.series, leaf, entry.total);
                }
            }
        }
        Ok((first_step, out))
    }

    /// Takes the snapshot of a read, calling `head` with the state locked so it can read
    /// unflushed trees. `None` when no series matches.
    fn snapshot(
        &self,
        matchers: &[Matcher],
        from: i64,
        until: i64,
        max_level: u8,
        head: impl FnOnce(&State, i64, i64, &HashSet<SeriesId>),
    ) -> Option<Snapshot> {
        let st = lock(&self.state);
        let (first, end) = self.clip(&st, from, until);
        let ids: HashSet<SeriesId> = st
            .catalog
            .select(matchers, first, end)
            .into_iter()
            .collect();
        // Nothing exists outside the selected series' own leaves: narrowing to them keeps
        // the answer exact and the plan (and the time the lock is held) bounded by data.
        let (lo, hi) = ids
            .iter()
            .filter_map(|&id| st.catalog.get(id))
            .fold((i64::MAX, i64::MIN), |(lo, hi), info| {
                (lo.min(info.leaves.0), hi.max(info.leaves.1))
            });
        let (first, end) = (first.max(lo), end.min(hi.saturating_add(1)));
        if ids.is_empty() || first >= end {
            return None;
        }
        head(&st, first, end, &ids);
        let sources = sources(&st.manifest, first, end, max_level, None);
        Some(Snapshot { ids, sources })
    }

    /// Opens the object under `key` through the cache; `None` if it was deleted since the
    /// snapshot (retention or a superseded aggregate) or is damaged (then quarantined).
    pub(crate) fn load(&self, key: &str) -> Result<Option<Arc<BlockReader>>, StoreError> {
        if let Some(block) = self.cache.get(key) {
            return Ok(Some(block));
        }
        let Some(block) = self.open_block(key)? else {
            return Ok(None);
        };
        let block = Arc::new(block);
        self.cache.insert(key, Arc::clone(&block), block.size());
        Ok(Some(block))
    }
}

/// Calls `f` for every unflushed tree in leaves `[first, end)`: the head and a flush in
/// progress.
fn for_head(st: &State, first: i64, end: i64, mut f: impl FnMut(i64, SeriesId, &Pairs)) {
    let pending = st.pending.as_ref().map(|p| &p.head);
    for head in std::iter::once(&st.head).chain(pending) {
        for (leaf, trees) in head.range(first, end) {
            for (&id, tree) in trees {
                f(leaf, id, tree);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Condvar, Mutex};

    use embers_profile::{Frame, Labels, StackTree};

    use crate::storage::{MemoryStorage, Storage, StorageError};
    use crate::{Config, Put, SeriesKey, Store};

    /// Storage whose block reads wait until the test opens the gate, and say when one
    /// started: a query provably in the middle of reading objects.
    #[derive(Debug)]
    struct GatedReads {
        inner: MemoryStorage,
        open: Mutex<bool>,
        opened: Condvar,
        reading: Mutex<Option<mpsc::Sender<()>>>,
    }

    impl Storage for GatedReads {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
            if key.ends_with(".blk") {
                if let Some(tx) = self.reading.lock().unwrap().as_ref() {
                    let _ = tx.send(());
                }
                let mut open = self.open.lock().unwrap();
                while !*open {
                    open = self.opened.wait(open).unwrap();
                }
            }
            self.inner.get(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.inner.delete(key)
        }
    }

    fn put(service: &str, time: i64, value: u64) -> Put {
        let mut tree = StackTree::new();
        tree.add_frames([&Frame::named("main"), &Frame::named(service)], value);
        Put {
            key: SeriesKey {
                profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
                labels: Labels::from_pairs([("service_name", service)]),
            },
            time,
            tree,
            ..Default::default()
        }
    }

    #[test]
    fn a_query_reading_objects_never_stalls_ingest() {
        let wal = tempfile::tempdir().unwrap();
        let storage = Arc::new(GatedReads {
            inner: MemoryStorage::default(),
            open: Mutex::new(true),
            opened: Condvar::new(),
            reading: Mutex::new(None),
        });
        let t = 1_700_000_000;
        {
            let store = Store::open(storage.clone(), wal.path().into(), Config::default()).unwrap();
            store.ingest(vec![put("old", t, 7)]).unwrap();
            store.close().unwrap();
        }
        // Reopened, the block cache is cold: the query must read the run object.
        let store =
            Arc::new(Store::open(storage.clone(), wal.path().into(), Config::default()).unwrap());
        *storage.open.lock().unwrap() = false;
        let (tx, started) = mpsc::channel();
        *storage.reading.lock().unwrap() = Some(tx);
        let query = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.merge(&[], t - 3600, t + 3600).unwrap().total())
        };
        started.recv().unwrap();
        // The query is inside an object read it cannot finish: pushes are acknowledged
        // (were the state lock held across reads, this would deadlock).
        for i in 0..5 {
            store.ingest(vec![put("new", t + 10 * i, 1)]).unwrap();
        }
        assert!(!query.is_finished(), "the query waits on the gate");
        *storage.open.lock().unwrap() = true;
        storage.opened.notify_all();
        // It answers from its snapshot: the old data, not the pushes made meanwhile.
        assert_eq!(query.join().unwrap(), 7);
        assert_eq!(store.merge(&[], t - 3600, t + 3600).unwrap().total(), 12);
    }
}
