//! `embers fsck`: check every object of a data directory, and optionally repair it.
//!
//! The check reads everything, which start-up does not (it reads catalogs and the
//! dictionary, and only the names of blocks): every envelope (magic, version, CRC), every
//! payload down to each `(path, value)` pair, the names, the dictionary's continuity,
//! the series and path ids blocks refer to, `meta/flushed` against the objects and the
//! WAL, and every WAL record. Repair does what recovery would do at the next start, but
//! for all objects at once: damaged and unknown objects go to quarantine (never deleted)
//! and a missing or damaged `meta/flushed` is rebuilt. It holds the directory's lock, so
//! it refuses to run while a server has the directory open.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use embers_profile::FxHashMap;

use crate::error::StoreError;
use crate::lock::DirLock;
use crate::manifest::{parse_aggregate, parse_run};
use crate::quarantine::{Quarantine, QUARANTINE_PREFIX};
use crate::record::decode_record;
use crate::recover::{
    catalog_seq, check_block, flushed_marker, read_catalog, read_flushed, rebuild_flushed,
    unknown_objects,
};
use crate::series::SeriesId;
use crate::storage::{FileStorage, Storage};
use crate::store::{Stats, FLUSHED_KEY};
use crate::wal;

/// One damaged object and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// The object's key (`wal/<seq>.wal` for WAL segments).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Findings for one kind of object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KindReport {
    /// Objects checked.
    pub checked: usize,
    /// Those found damaged.
    pub damaged: Vec<Finding>,
}

/// What [`fsck`] found and did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FsckReport {
    /// Per kind of object: `catalog`, `dictionary`, `run`, `combined run`, `aggregate`,
    /// `meta/flushed`, `spans`, `wal`, `unknown name`.
    pub kinds: BTreeMap<&'static str, KindReport>,
    /// Things worth knowing that are not damage (lost catalog entries, a torn WAL tail).
    pub notes: Vec<String>,
    /// What `--repair` did.
    pub repaired: Vec<String>,
    /// Damage `--repair` left in place, and why.
    pub unrepaired: Vec<String>,
}

impl FsckReport {
    /// Number of damaged objects found.
    pub fn damaged(&self) -> usize {
        self.kinds.values().map(|k| k.damaged.len()).sum()
    }

    fn kind(&mut self, kind: &'static str) -> &mut KindReport {
        self.kinds.entry(kind).or_default()
    }

    fn check<T>(&mut self, kind: &'static str, key: &str, result: Result<T, String>) -> Option<T> {
        let k = self.kind(kind);
        k.checked += 1;
        match result {
            Ok(v) => Some(v),
            Err(reason) => {
                k.damaged.push(Finding {
                    key: key.to_owned(),
                    reason,
                });
                None
            }
        }
    }
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, k) in &self.kinds {
            writeln!(
                f,
                "{kind:<14} {:>6} checked, {} damaged",
                k.checked,
                k.damaged.len()
            )?;
            for d in &k.damaged {
                writeln!(f, "  DAMAGED {}: {}", d.key, d.reason)?;
            }
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        for done in &self.repaired {
            writeln!(f, "repaired: {done}")?;
        }
        for left in &self.unrepaired {
            writeln!(f, "not repaired: {left}")?;
        }
        Ok(())
    }
}

/// Checks the data directory `dir` (a server must not have it open); with `repair`,
/// quarantines damaged and unknown objects and rebuilds `meta/flushed`.
pub fn fsck(dir: &Path, repair: bool) -> Result<FsckReport, StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::Invalid(format!(
            "no data directory at {}",
            dir.display()
        )));
    }
    let _lock = DirLock::acquire(dir)?;
    let storage = FileStorage::open(dir)?;
    let mut report = FsckReport::default();
    for (key, reason) in unknown_objects(&storage)? {
        report.check::<()>("unknown name", &key, Err(reason.to_owned()));
    }
    let mut series = BTreeSet::new();
    let catalogs: Vec<String> = storage
        .list("series/")?
        .into_iter()
        .filter(|k| catalog_seq(k).is_some())
        .collect();
    for key in &catalogs {
        if let Some(entries) = report.check("catalog", key, read_catalog(&storage, key)?) {
            series.extend(entries.into_iter().map(|(id, _)| id));
        }
    }
    let paths = check_dictionary(&storage, &mut report)?;
    let runs = check_blocks(&storage, &series, paths, &mut report)?;
    check_spans(&storage, paths, &mut report)?;
    let wal_dir = dir.join("wal");
    let segments = if wal_dir.is_dir() {
        wal::segments(&wal_dir).map_err(StoreError::Wal)?
    } else {
        Vec::new()
    };
    check_wal(&wal_dir, &segments, &mut report)?;
    let flushes: BTreeSet<u64> = catalogs
        .iter()
        .filter_map(|k| catalog_seq(k))
        .chain(runs.iter().copied())
        .collect();
    let flushed = match read_flushed(&storage)? {
        Ok(Some(seq)) => Ok(seq),
        Ok(None) if flushes.is_empty() => Ok(0),
        Ok(None) => Err("missing".to_owned()),
        Err(reason) => Err(reason),
    };
    let flushed_ok = report.check("meta/flushed", FLUSHED_KEY, flushed.clone());
    let rebuilt = rebuild_flushed(&flushes, &segments);
    if let Some(flushed) = flushed_ok {
        let leftovers = runs.iter().filter(|&&s| s > flushed).count();
        if leftovers > 0 {
            report.notes.push(format!(
                "{leftovers} run(s) newer than meta/flushed = {flushed}: a flush that did not finish; the next start drops them if their WAL segments are present, keeps them otherwise"
            ));
        }
    } else {
        report.notes.push(format!(
            "meta/flushed would be rebuilt as {rebuilt} from the object names and WAL segments"
        ));
    }
    let held = Quarantine::load(&storage)?.all().len();
    if held > 0 {
        report.notes.push(format!(
            "{held} object(s) in {QUARANTINE_PREFIX} (moved aside earlier; each has a .reason beside it)"
        ));
    }
    if repair {
        self::repair(
            &storage,
            &mut report,
            flushed_ok.is_none().then_some(rebuilt),
        )?;
    }
    Ok(report)
}

/// Reads every dictionary object like start-up does (damage there loses only the paths
/// it held, see `symbols.rs`); returns the path id after the last one the intact objects
/// name (for checking the path ids blocks use).
fn check_dictionary(storage: &FileStorage, report: &mut FsckReport) -> Result<usize, StoreError> {
    let end = crate::symbols::check(storage, &mut |key, result| {
        report.check("dictionary", key, result);
    })?;
    Ok(end)
}

/// Reads every run and aggregate whole; returns the flush sequence numbers of the runs.
fn check_blocks(
    storage: &FileStorage,
    series: &BTreeSet<SeriesId>,
    paths: usize,
    report: &mut FsckReport,
) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::new();
    // Series with data but no catalog entry: where their data is.
    let mut orphans: BTreeMap<SeriesId, Vec<String>> = BTreeMap::new();
    let keys: Vec<String> = storage
        .list("l0/")?
        .into_iter()
        .chain(storage.list("agg/")?)
        .collect();
    for key in keys {
        let kind = match (parse_run(&key), parse_aggregate(&key)) {
            (Some(run), _) => {
                seqs.push(run.seq);
                if run.combined_from.is_some() {
                    "combined run"
                } else {
                    "run"
                }
            }
            (None, Some(_)) => "aggregate",
            (None, None) => continue, // reported as an unknown name
        };
        let checked = check_block(storage, &key)?.and_then(|block| {
            let mut scratch = FxHashMap::default();
            for entry in block.entries() {
                block
                    .add_into(entry, &mut scratch)
                    .map_err(|e| e.to_string())?;
                if !series.contains(&entry.series) {
                    orphans.entry(entry.series).or_default().push(key.clone());
                }
            }
            match scratch.keys().max() {
                Some(&max) if max as usize >= paths => Err(format!(
                    "refers to call path {max}, the dictionary has {paths}"
                )),
                _ => Ok(()),
            }
        });
        report.check(kind, &key, checked);
    }
    for (id, mut keys) in orphans {
        keys.dedup();
        report.notes.push(format!(
            "series id {} has data in {} object(s) (first {}) but no catalog entry: its catalog entry was lost, or it expired",
            id.0,
            keys.len(),
            keys[0]
        ));
    }
    Ok(seqs)
}

/// Reads every span object whole and checks the call paths it names.
fn check_spans(
    storage: &FileStorage,
    paths: usize,
    report: &mut FsckReport,
) -> Result<(), StoreError> {
    for key in storage.list(crate::spans::PREFIX)? {
        if crate::spans::parse_key(&key).is_none() {
            continue; // reported as an unknown name
        }
        let bytes = storage.get(&key)?;
        crate::quarantine::refuse_other_version(&key, &bytes)?;
        let mut scratch = FxHashMap::default();
        let checked = crate::spans::read_span_object(&bytes, &mut scratch)
            .map_err(|e| e.to_string())
            .and_then(|()| match scratch.keys().max() {
                Some(&max) if max as usize >= paths => Err(format!(
                    "refers to call path {max}, the dictionary has {paths}"
                )),
                _ => Ok(()),
            });
        report.check("spans", &key, checked);
    }
    Ok(())
}

/// Reads every WAL segment record by record.
fn check_wal(dir: &Path, segments: &[u64], report: &mut FsckReport) -> Result<(), StoreError> {
    for (i, &seq) in segments.iter().enumerate() {
        let key = format!("wal/{seq:020}.wal");
        let replay = wal::read(dir, seq).map_err(StoreError::Wal)?;
        let mut result = Ok(());
        for (n, record) in replay.records.iter().enumerate() {
            match decode_record(record) {
                Err(e) => {
                    result = Err(format!("record {n}: {e}"));
                    break;
                }
                Ok(r) => {
                    if let Some(e) = r.spans_damaged {
                        result = Err(format!("record {n}: its spans or periods: {e}"));
                        break;
                    }
                }
            }
        }
        for lost in &replay.lost {
            if lost.tail && i + 1 == segments.len() {
                report.notes.push(format!(
                    "{key}: {} bytes at offset {} after the last intact record (a write torn by a crash; never acknowledged)",
                    lost.bytes, lost.offset
                ));
            } else if result.is_ok() {
                result = Err(format!(
                    "{} bytes at offset {} do not hold ({} record(s) at least lost){}",
                    lost.bytes,
                    lost.offset,
                    lost.records,
                    if lost.tail {
                        ", in a segment that is not the newest"
                    } else {
                        ""
                    }
                ));
            }
        }
        report.check("wal", &key, result);
    }
    Ok(())
}

fn repair(
    storage: &FileStorage,
    report: &mut FsckReport,
    rebuilt_flushed: Option<u64>,
) -> Result<(), StoreError> {
    let quarantine = Quarantine::load(storage)?;
    let stats = Stats::default();
    let mut done = Vec::new();
    let mut left = Vec::new();
    for (kind, k) in &report.kinds {
        for d in &k.damaged {
            match *kind {
                "wal" => left.push(format!(
                    "{}: WAL segments stay in place (start-up replays every intact record)",
                    d.key
                )),
                "dictionary" => left.push(format!(
                    "{}: dictionary segments stay in place (start-up's dictionary loader decides)",
                    d.key
                )),
                "meta/flushed" if d.reason == "missing" => {}
                _ => {
                    if quarantine.isolate(storage, &stats, &d.key, &d.reason, false)? {
                        done.push(format!("moved {} to quarantine ({})", d.key, d.reason));
                    }
                }
            }
        }
    }
    if let Some(seq) = rebuilt_flushed {
        storage.put(FLUSHED_KEY, &flushed_marker(seq))?;
        done.push(format!("rebuilt meta/flushed = {seq}"));
    }
    report.repaired = done;
    report.unrepaired = left;
    Ok(())
}
