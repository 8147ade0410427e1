//! Opening a store: load the catalog, dictionary and object names, check what a crash
//! or damage left, and replay the WAL.
//!
//! Recovery never deletes what it does not understand. It deletes only what it can show
//! to be redundant: runs of a flush that did not finish (every WAL segment their data
//! came from is still there and is replayed), originals of a combined run that was read
//! back whole, and aggregates superseded by a newer one of the same block. Objects with
//! names it does not know, and objects that fail their envelope or decode, are moved to
//! quarantine (`quarantine.rs`) with a log line each. A missing or damaged `meta/flushed`
//! is rebuilt from the object names and the WAL segments present ([`rebuild_flushed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use embers_profile::FxHashMap;

use crate::block::BlockReader;
use crate::cache::StoreCache;
use crate::envelope::{self, Kind};
use crate::error::StoreError;
use crate::head::Head;
use crate::lock::{DirLock, LOCK_FILE};
use crate::manifest::{parse_aggregate, parse_run, Manifest};
use crate::quarantine::{refuse_other_version, Quarantine, QUARANTINE_PREFIX};
use crate::record::decode_record;
use crate::seen::Seen;
use crate::segment::leaf_of;
use crate::series::{decode_entries, Catalog, SeriesId};
use crate::spans::SpanIndex;
use crate::storage::{FileStorage, Storage, StorageError};
use crate::store::{Config, State, Stats, Store, WalWriter, FLUSHED_KEY};
use crate::wal::{self, Segment};

impl Store {
    /// Opens (or creates) a store in `dir`: objects under it, the WAL in `dir/wal`. The
    /// store holds the directory's lock (`embers.lock`) while open, so a second server
    /// or `embers fsck` cannot work on it meanwhile ([`StoreError::Locked`]).
    pub fn open_dir(dir: impl AsRef<Path>, config: Config) -> Result<Store, StoreError> {
        let dir = dir.as_ref();
        let lock = DirLock::acquire(dir)?;
        let storage = Arc::new(FileStorage::open(dir)?);
        let mut store = Store::open(storage, dir.join("wal"), config)?;
        store.dir_lock = Some(lock);
        Ok(store)
    }

    /// Opens a store on `storage` with its WAL in `wal_dir`, recovering what a crash left:
    /// objects of an unfinished flush are removed and the WAL is replayed; damaged and
    /// unknown objects are quarantined, and the store opens on everything else.
    pub fn open(
        storage: Arc<dyn Storage>,
        wal_dir: PathBuf,
        config: Config,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&wal_dir).map_err(StoreError::Wal)?;
        let stats = Stats::default();
        let quarantine = Quarantine::load(storage.as_ref())?;
        let isolate = |key: &str, reason: &str| {
            quarantine.isolate(storage.as_ref(), &stats, key, reason, false)
        };
        for (key, reason) in unknown_objects(storage.as_ref())? {
            isolate(&key, reason)?;
        }
        let catalog_keys = storage.list("series/")?;
        let mut catalog = Catalog::default();
        let mut catalog_objects = Vec::new();
        let mut lost_catalogs = Vec::new();
        for key in &catalog_keys {
            match read_catalog(storage.as_ref(), key)? {
                Ok(entries) => {
                    for (id, info) in entries {
                        catalog.load(id, info);
                    }
                    catalog_objects.push(key.clone());
                }
                Err(reason) => {
                    isolate(key, &reason)?;
                    lost_catalogs.push(key.clone());
                }
            }
        }
        let mut dict = crate::symbols::load(storage.as_ref(), &|key, reason| {
            quarantine.isolate(storage.as_ref(), &stats, key, reason, false)
        })?;
        let wal_segments = wal::segments(&wal_dir).map_err(StoreError::Wal)?;
        let run_keys = storage.list("l0/")?;
        let mut flushed = match read_flushed(storage.as_ref())? {
            Ok(Some(flushed)) => Some(flushed),
            Ok(None) if run_keys.is_empty() && catalog_keys.is_empty() => Some(0), // a new store
            Ok(None) => None,
            Err(reason) => {
                isolate(FLUSHED_KEY, &reason)?;
                None
            }
        };
        let mut rewrite_flushed = flushed.is_none();
        let known = flushed.unwrap_or_else(|| {
            let flushes: BTreeSet<u64> = catalog_keys
                .iter()
                .filter_map(|k| catalog_seq(k))
                .chain(run_keys.iter().filter_map(|k| parse_run(k).map(|r| r.seq)))
                .collect();
            let rebuilt = rebuild_flushed(&flushes, &wal_segments);
            tracing::error!(
                flushed = rebuilt,
                "meta/flushed was missing or damaged; rebuilt it from the object names and the WAL segments present"
            );
            rebuilt
        });
        let mut manifest = Manifest::default();
        for run in run_keys.iter().filter_map(|k| parse_run(k)) {
            if run.seq <= known {
                manifest.add_run(run);
            } else if wal_segments.contains(&run.seq) {
                // A flush that did not finish: its data is replayed from the WAL. Only
                // if every segment it read is whole is the run surely redundant.
                let whole = wal_segments
                    .iter()
                    .filter(|&&seq| seq <= run.seq)
                    .all(|&seq| wal_whole(&wal_dir, seq));
                if whole {
                    tracing::info!(object = run.key.as_str(), "removing a run of a flush that did not finish; its data is replayed from the WAL");
                    storage.delete(&run.key)?;
                } else {
                    let why =
                        "a run of a flush that did not finish, whose WAL segments are damaged";
                    quarantine.isolate(storage.as_ref(), &stats, &run.key, why, true)?;
                }
            } else {
                // Its WAL segment is gone, which happens only after its flush finished:
                // the run holds data found nowhere else.
                tracing::warn!(object = run.key.as_str(), flushed = known, "keeping a run newer than meta/flushed whose WAL segment is gone; meta/flushed is raised");
                flushed = Some(flushed.unwrap_or(known).max(run.seq));
                rewrite_flushed = true;
                manifest.add_run(run);
            }
        }
        let flushed = flushed.unwrap_or(known).max(known);
        if rewrite_flushed {
            storage.put(FLUSHED_KEY, &flushed_marker(flushed))?;
        }
        let spans = load_spans(
            storage.as_ref(),
            &quarantine,
            &stats,
            &wal_dir,
            &wal_segments,
            flushed,
        )?;
        remove_combined_originals(storage.as_ref(), &quarantine, &stats, &mut manifest)?;
        for key in storage.list("agg/")? {
            if let Some((block, agg)) = parse_aggregate(&key) {
                if let Some(old) = manifest.add_aggregate(block, agg) {
                    storage.delete(&old.key)?;
                }
            }
        }
        // Before the WAL replay, which may register new series.
        if !lost_catalogs.is_empty() {
            report_lost_series(storage.as_ref(), &manifest, &mut catalog, &lost_catalogs)?;
        }
        let mut head = Head::default();
        let mut seen = Seen::new(config.max_request_ids);
        let mut last_seq = flushed;
        for seq in wal_segments {
            last_seq = last_seq.max(seq);
            if seq <= flushed {
                wal::remove(&wal_dir, seq).map_err(StoreError::Wal)?;
                continue;
            }
            let replay = wal::read(&wal_dir, seq).map_err(StoreError::Wal)?;
            replay.log_losses(seq);
            for record in replay.records {
                let damaged = |what: String| {
                    StoreError::Wal(std::io::Error::other(format!("WAL segment {seq}: {what}")))
                };
                let record = decode_record(&record).map_err(|e| damaged(e.to_string()))?;
                if let Some(e) = &record.spans_damaged {
                    // The record's checksum held, so this is a bug rather than a bad disk;
                    // the trees stand, only which span they ran in (or their period) is lost.
                    tracing::error!(segment = seq, error = %e, "the spans or periods of a WAL record cannot be read; its profiles are replayed without them");
                }
                for (id, at) in record.ids {
                    seen.remember(&id, at);
                }
                dict.apply_logged(record.segment);
                for (key, time, pairs, spans, period) in record.puts {
                    let leaf = leaf_of(time);
                    let id = catalog.touch(&key, leaf, period);
                    head.add(leaf, id, pairs);
                    head.spans.add(leaf, id, spans);
                }
            }
        }
        let held = quarantine.all();
        if !held.is_empty() {
            let lost: Vec<&str> = held
                .iter()
                .filter(|q| q.lost_leaves().is_some())
                .map(|q| q.key.as_str())
                .collect();
            tracing::warn!(
                objects = held.len(),
                runs_lost = ?lost,
                "objects are in quarantine/ (see the .reason beside each, and `embers fsck`); queries over lost runs carry a warning"
            );
        }
        let segment = Segment::create(&wal_dir, last_seq + 1).map_err(StoreError::Wal)?;
        let cache = StoreCache::new(config.shared_cache.as_ref(), config.cache_bytes);
        Ok(Store {
            storage,
            wal_dir,
            state: Mutex::new(State {
                catalog,
                head,
                pending: None,
                manifest,
                staging: Default::default(),
                catalog_objects,
                graveyard: Vec::new(),
                first_kept: i64::MIN,
                seen,
                spans,
            }),
            wal: Mutex::new(WalWriter::new(segment, dict.len())),
            health: Default::default(),
            flush_lock: Mutex::new(()),
            compact_lock: Mutex::new(()),
            cache,
            dict: RwLock::new(dict),
            config,
            stats,
            quarantine,
            dir_lock: None,
        })
    }
}

/// The payload of `key` through its envelope, or why it cannot be read.
fn open_object(
    storage: &dyn Storage,
    key: &str,
    kind: Kind,
    max: usize,
) -> Result<Result<Vec<u8>, String>, StoreError> {
    let bytes = storage.get(key)?;
    refuse_other_version(key, &bytes)?;
    Ok(envelope::open(kind, &bytes, max).map_err(|e| e.to_string()))
}

/// The span objects to use: those of finished flushes. A span object of a flush that
/// did not finish is redundant when its WAL segments are present and whole (the replay
/// brings its spans back) and is removed; with damaged segments it is quarantined, as its
/// runs are. One whose segment is gone is kept (its flush finished: `meta/flushed` was
/// raised for its runs).
fn load_spans(
    storage: &dyn Storage,
    quarantine: &Quarantine,
    stats: &Stats,
    wal_dir: &Path,
    wal_segments: &[u64],
    flushed: u64,
) -> Result<SpanIndex, StoreError> {
    let mut index = SpanIndex::default();
    for key in storage.list(crate::spans::PREFIX)? {
        let Some((seq, _, _)) = crate::spans::parse_key(&key) else {
            continue;
        };
        if seq <= flushed || !wal_segments.contains(&seq) {
            index.add(key);
            continue;
        }
        let whole = wal_segments
            .iter()
            .filter(|&&s| s <= seq)
            .all(|&s| wal_whole(wal_dir, s));
        if whole {
            tracing::info!(object = key.as_str(), "removing a span object of a flush that did not finish; its spans are replayed from the WAL");
            storage.delete(&key)?;
        } else {
            let why =
                "a span object of a flush that did not finish, whose WAL segments are damaged";
            quarantine.isolate(storage, stats, &key, why, true)?;
        }
    }
    Ok(index)
}

/// The entries of catalog object `key`, or why it cannot be read.
pub(crate) fn read_catalog(
    storage: &dyn Storage,
    key: &str,
) -> Result<Result<Vec<(SeriesId, crate::series::SeriesInfo)>, String>, StoreError> {
    Ok(open_object(storage, key, Kind::Catalog, 1 << 30)?
        .and_then(|payload| decode_entries(&payload).map_err(|e| e.to_string())))
}

/// The bytes of `meta/flushed` for flush `seq`.
pub(crate) fn flushed_marker(seq: u64) -> Vec<u8> {
    envelope::seal(Kind::Catalog, &seq.to_le_bytes(), false)
}

/// `meta/flushed`: `Ok(None)` when missing, `Err(reason)` when damaged.
pub(crate) fn read_flushed(
    storage: &dyn Storage,
) -> Result<Result<Option<u64>, String>, StoreError> {
    match open_object(storage, FLUSHED_KEY, Kind::Catalog, 64) {
        Ok(payload) => Ok(payload.and_then(|p| {
            <[u8; 8]>::try_from(p.as_slice())
                .map(|raw| Some(u64::from_le_bytes(raw)))
                .map_err(|_| "expected 8 bytes".to_owned())
        })),
        Err(StoreError::Storage(StorageError::NotFound(_))) => Ok(Ok(None)),
        Err(e) => Err(e),
    }
}

/// Reads block `key` whole (envelope, index and every pair), or says why it cannot be.
pub(crate) fn check_block(
    storage: &dyn Storage,
    key: &str,
) -> Result<Result<BlockReader, String>, StoreError> {
    let bytes = storage.get(key)?;
    refuse_other_version(key, &bytes)?;
    let block = match BlockReader::open(&bytes) {
        Ok(block) => block,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut scratch = FxHashMap::default();
    for entry in block.entries() {
        if let Err(e) = block.add_into(entry, &mut scratch) {
            return Ok(Err(e.to_string()));
        }
        scratch.clear();
    }
    Ok(Ok(block))
}

/// Deletes the originals a crash left beside the combined run holding them, once that
/// combined run has been read back whole. A damaged combined run is quarantined instead
/// and its originals kept; as it may itself have held an older combined run, which is
/// then the outermost one for its own originals, the pairs are worked out again.
fn remove_combined_originals(
    storage: &dyn Storage,
    quarantine: &Quarantine,
    stats: &Stats,
    manifest: &mut Manifest,
) -> Result<(), StoreError> {
    let mut whole: BTreeSet<String> = BTreeSet::new();
    'again: loop {
        for (original, combined) in manifest.combined_originals() {
            if !whole.contains(&combined) {
                if let Err(reason) = check_block(storage, &combined)? {
                    // The originals it was made from are still here: kept.
                    quarantine.isolate(storage, stats, &combined, &reason, true)?;
                    manifest.forget(&combined);
                    continue 'again;
                }
                whole.insert(combined);
            }
            manifest.forget(&original.key);
            storage.delete(&original.key)?;
        }
        return Ok(());
    }
}

/// Whether WAL segment `seq` reads to its end with every record decoding.
fn wal_whole(dir: &Path, seq: u64) -> bool {
    wal::read(dir, seq).is_ok_and(|replay| {
        replay.lost.is_empty() && replay.records.iter().all(|r| decode_record(r).is_ok())
    })
}

/// The flush sequence number in a catalog object's name (`series/<seq>.cat`, or
/// `series/<seq>-full.cat` for a full rewrite).
pub(crate) fn catalog_seq(key: &str) -> Option<u64> {
    let name = key.strip_prefix("series/")?.strip_suffix(".cat")?;
    name.strip_suffix("-full").unwrap_or(name).parse().ok()
}

/// Objects under the store's own prefixes whose names it does not know, with why.
/// Keys outside them (the lock file, files a person put there) are not the store's to
/// move; `symbols/` names are checked by the dictionary loader.
pub(crate) fn unknown_objects(
    storage: &dyn Storage,
) -> Result<Vec<(String, &'static str)>, StorageError> {
    Ok(storage
        .list("")?
        .into_iter()
        .filter_map(|key| {
            let reason = if key.starts_with("l0/") {
                parse_run(&key).is_none().then_some("not a run object name")
            } else if key.starts_with("agg/") {
                parse_aggregate(&key)
                    .is_none()
                    .then_some("not an aggregate object name")
            } else if key.starts_with("series/") {
                catalog_seq(&key)
                    .is_none()
                    .then_some("not a catalog object name")
            } else if key.starts_with(crate::spans::PREFIX) {
                crate::spans::parse_key(&key)
                    .is_none()
                    .then_some("not a span object name")
            } else if key.starts_with("meta/") {
                (key != FLUSHED_KEY).then_some("not a metadata object this store knows")
            } else {
                None
            };
            reason.map(|r| (key, r))
        })
        .filter(|(key, _)| !key.starts_with(QUARANTINE_PREFIX) && key != LOCK_FILE)
        .collect())
}

/// The last finished flush, when `meta/flushed` is missing or damaged, from the flush
/// sequence numbers that object names show (`flushes`: catalogs and runs) and the WAL
/// segments present (`wal`, ascending).
///
/// Why this is right: flush `s` writes its catalog first, then its runs, then
/// `meta/flushed = s`, and only then deletes the WAL segments `≤ s`, oldest first. Its
/// data came from the segments after the previous flush `p`, `p+1..=s`, and segment
/// numbers are consecutive, so the segments present are one range `w..`. Let `s` be the
/// newest flush named by any object. If `s < w`, its segments are gone, so it finished:
/// the answer is `s`. Otherwise segment `s` is present; if also `w ≤ p + 1`, every
/// segment flush `s` read is present, so whether it finished or not its runs are
/// redundant (the WAL replays them): the answer is `p`. If instead `w > p + 1`, some of
/// its segments were deleted, which happens only after it finished: the answer is `s`.
/// Runs newer than the answer are then dropped only where their WAL segment is present.
pub(crate) fn rebuild_flushed(flushes: &BTreeSet<u64>, wal: &[u64]) -> u64 {
    let Some(&newest) = flushes.last() else {
        return 0;
    };
    match wal.first() {
        Some(&oldest) if oldest <= newest => {
            let previous = flushes.range(..newest).next_back().copied().unwrap_or(0);
            if oldest <= previous + 1 {
                previous
            } else {
                newest
            }
        }
        _ => newest,
    }
}

/// After a catalog object was quarantined: which series lost their entry. Catalog
/// entries are written again by every flush that touches a series and by the periodic
/// full rewrite, so usually none did. To know, this reads the index of every block
/// (only after such damage): a series id with data but no entry lost it. Its data stays
/// in the blocks, unreachable by selectors; new series never get its id.
fn report_lost_series(
    storage: &dyn Storage,
    manifest: &Manifest,
    catalog: &mut Catalog,
    lost: &[String],
) -> Result<(), StoreError> {
    let mut orphans: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
    let mut top = 0u32;
    for key in manifest.keys() {
        let Ok(Ok(block)) = check_block(storage, &key) else {
            continue; // a damaged block is found and quarantined when read
        };
        for entry in block.entries() {
            top = top.max(entry.series.0 + 1);
            if catalog.get(entry.series).is_none() {
                let leaves = orphans
                    .entry(entry.series.0)
                    .or_insert((i64::MAX, i64::MIN));
                *leaves = (leaves.0.min(entry.position), leaves.1.max(entry.position));
            }
        }
    }
    catalog.reserve_ids(top);
    if orphans.is_empty() {
        tracing::warn!(objects = ?lost, "quarantined catalog objects; every series with data is still named by another catalog object: nothing is lost");
    } else {
        tracing::error!(objects = ?lost, series = ?orphans, "quarantined catalog objects; these series ids have data (first and last leaf or block index) but lost their catalog entry: their data cannot be queried until the entry is restored");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushed_is_rebuilt_from_names_and_wal_segments() {
        let set = |s: &[u64]| s.iter().copied().collect::<BTreeSet<u64>>();
        // Every flush finished and its WAL segments are gone.
        assert_eq!(rebuild_flushed(&set(&[1, 2, 3]), &[4]), 3);
        assert_eq!(rebuild_flushed(&set(&[1, 2, 3]), &[]), 3);
        // Flush 3 read segment 3 only, which is still there: its runs are redundant.
        assert_eq!(rebuild_flushed(&set(&[1, 2, 3]), &[3, 4]), 2);
        // Flush 3 read segments 2 and 3; segment 2 is gone, so flush 3 had finished.
        assert_eq!(rebuild_flushed(&set(&[1, 3]), &[3, 4]), 3);
        assert_eq!(rebuild_flushed(&set(&[1, 3]), &[2, 3, 4]), 1);
        // Nothing flushed yet.
        assert_eq!(rebuild_flushed(&set(&[]), &[1]), 0);
        assert_eq!(rebuild_flushed(&set(&[1]), &[1, 2]), 0);
    }
}
