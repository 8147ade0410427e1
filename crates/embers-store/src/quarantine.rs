//! Quarantine: what the store cannot use is moved aside and reported, never deleted.
//!
//! An object that fails its envelope or decode, or whose name the store does not
//! understand, goes to `quarantine/<unix seconds>/<original key>` (copied, then the
//! original deleted, through the [`Storage`] trait, so it works on any backend). One
//! loud log line says what and why, `Stats::quarantined` counts it, and
//! [`Store::quarantined`] lists it (also what earlier starts moved). A person can
//! inspect the bytes, and put an object back by moving it to its original key.
//!
//! A quarantined *run* held the only copy of its leaves (unless an aggregate above
//! still covers them), so queries over those leaves carry a warning
//! ([`Store::damage_warnings`]). A quarantined aggregate loses nothing: the planner
//! descends to the finer blocks below it and compaction builds it again.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use crate::block::BlockReader;
use crate::envelope::{FORMAT_VERSION, OLDEST_SUPPORTED};
use crate::error::StoreError;
use crate::manifest::parse_run;
use crate::segment::{leaves_for, LEAF_SECONDS};
use crate::storage::{Storage, StorageError};
use crate::store::{lock, unix_now, Stats, Store};

/// Where quarantined objects go.
pub const QUARANTINE_PREFIX: &str = "quarantine/";
/// Beside each quarantined object, a text object saying why (read back at start-up).
const REASON_SUFFIX: &str = ".reason";
/// First line of the reason when the object's data is still held by other objects.
const HELD: &str = "data held elsewhere: yes";
const NOT_HELD: &str = "data held elsewhere: no";

/// An object moved to quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quarantined {
    /// Its original key.
    pub key: String,
    /// Where it is now.
    pub moved_to: String,
    /// Why it was moved.
    pub reason: String,
    /// Whether its data is still held by other objects (a combined run whose originals
    /// are kept), so nothing is missing.
    pub held_elsewhere: bool,
}

impl Quarantined {
    /// For a run object, the leaves (inclusive) whose data it held: data there may be
    /// missing from queries. `None` for other objects: an aggregate is rebuilt from finer
    /// blocks, and what a lost catalog object cost is logged at start-up.
    pub fn lost_leaves(&self) -> Option<(i64, i64)> {
        parse_run(&self.key)
            .filter(|_| !self.held_elsewhere)
            .map(|run| (run.first, run.last))
    }
}

/// What this store moved aside, and what earlier starts had.
#[derive(Debug)]
pub(crate) struct Quarantine {
    stamp: i64,
    moved: Mutex<Vec<Quarantined>>,
}

impl Quarantine {
    /// Lists what earlier starts quarantined.
    pub(crate) fn load(storage: &dyn Storage) -> Result<Quarantine, StorageError> {
        let mut earlier = Vec::new();
        for moved_to in storage.list(QUARANTINE_PREFIX)? {
            if moved_to.ends_with(REASON_SUFFIX) {
                continue;
            }
            let Some((_, key)) = moved_to
                .strip_prefix(QUARANTINE_PREFIX)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let why = storage
                .get(&format!("{moved_to}{REASON_SUFFIX}"))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let (held, reason) = why.split_once('\n').unwrap_or(("", why.as_str()));
            earlier.push(Quarantined {
                key: key.to_owned(),
                reason: format!("found by an earlier start: {}", reason.trim_end()),
                held_elsewhere: held == HELD,
                moved_to,
            });
        }
        Ok(Quarantine {
            stamp: unix_now(),
            moved: Mutex::new(earlier),
        })
    }

    /// Moves `key` aside; `Ok(false)` if it was gone already (another reader moved it).
    pub(crate) fn isolate(
        &self,
        storage: &dyn Storage,
        stats: &Stats,
        key: &str,
        reason: &str,
        held_elsewhere: bool,
    ) -> Result<bool, StorageError> {
        let bytes = match storage.get(key) {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let moved_to = format!("{QUARANTINE_PREFIX}{}/{key}", self.stamp);
        storage.put(&moved_to, &bytes)?;
        let held = if held_elsewhere { HELD } else { NOT_HELD };
        storage.put(
            &format!("{moved_to}{REASON_SUFFIX}"),
            format!("{held}\n{reason}\n").as_bytes(),
        )?;
        storage.delete(key)?;
        tracing::error!(
            object = key,
            reason,
            moved_to = moved_to.as_str(),
            "QUARANTINED a stored object the store cannot use (moved aside, not deleted)"
        );
        stats.quarantined.fetch_add(1, Ordering::Relaxed);
        lock(&self.moved).push(Quarantined {
            key: key.to_owned(),
            moved_to,
            reason: reason.to_owned(),
            held_elsewhere,
        });
        Ok(true)
    }

    /// Records an object that is unusable but could not be (or need not be) moved.
    fn note(&self, key: &str, moved_to: &str, reason: &str) {
        lock(&self.moved).push(Quarantined {
            key: key.to_owned(),
            moved_to: moved_to.to_owned(),
            reason: reason.to_owned(),
            held_elsewhere: false,
        });
    }

    pub(crate) fn all(&self) -> Vec<Quarantined> {
        lock(&self.moved).clone()
    }
}

/// Refuses an intact object of a format version this build does not read: that is not
/// damage (a newer Embers wrote it), and setting it aside would hide data from the build
/// that can read it. Damage that happens to hit the version field fails the checksum.
/// (Envelope layout: magic 8 bytes, version u16 LE, …, CRC-32 of the rest last.)
pub(crate) fn refuse_other_version(key: &str, bytes: &[u8]) -> Result<(), StoreError> {
    if bytes.len() < 16 {
        return Ok(());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let found = u16::from_le_bytes([bytes[8], bytes[9]]);
    if (OLDEST_SUPPORTED..=FORMAT_VERSION).contains(&found)
        || crc32fast::hash(body).to_le_bytes() != crc
    {
        return Ok(());
    }
    Err(StoreError::UnsupportedVersion {
        key: key.to_owned(),
        found,
        oldest: OLDEST_SUPPORTED,
        newest: FORMAT_VERSION,
    })
}

impl Store {
    /// Objects in quarantine: moved by this process or found from earlier starts.
    pub fn quarantined(&self) -> Vec<Quarantined> {
        self.quarantine.all()
    }

    /// Why the answer for Unix seconds `[from, until)` may be incomplete: one message per
    /// quarantined run whose leaves overlap the range. Empty when nothing is missing.
    /// Call it after the read (a read may quarantine what it found damaged).
    pub fn damage_warnings(&self, from: i64, until: i64) -> Vec<String> {
        self.damage_warnings_for(&[(from, until)])
    }

    /// [`Store::damage_warnings`] for a read of several ranges (a diff's two sides): each
    /// quarantined run is named once, and the read counts once as degraded.
    pub fn damage_warnings_for(&self, ranges: &[(i64, i64)]) -> Vec<String> {
        let leaves: Vec<(i64, i64)> = ranges.iter().map(|&(f, u)| leaves_for(f, u)).collect();
        let out: Vec<String> = self
            .quarantine
            .all()
            .into_iter()
            .filter_map(|q| {
                let (a, b) = q.lost_leaves()?;
                leaves
                    .iter()
                    .any(|&(first, end)| a < end && b >= first)
                    .then(|| {
                        format!(
                            "data in Unix seconds {}..{} may be missing: object {} is damaged ({}) and was moved to {}",
                            a * LEAF_SECONDS,
                            (b + 1) * LEAF_SECONDS,
                            q.key,
                            q.reason,
                            q.moved_to
                        )
                    })
            })
            .collect();
        if !out.is_empty() {
            self.stats.degraded_reads.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    /// Reads and opens the block under `key`, bypassing the cache. `None` if it is gone
    /// (deleted since a plan was made) or damaged: a damaged block is quarantined and
    /// forgotten by the planner, so callers answer from the rest.
    pub(crate) fn open_block(&self, key: &str) -> Result<Option<BlockReader>, StoreError> {
        let bytes = match self.storage.get(key) {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound(_)) => {
                if lock(&self.state).manifest.forget(key) {
                    // Not superseded or expired (those leave the manifest first): it
                    // vanished from under the store. Forgetting it lets reads re-plan.
                    self.stats.damaged_reads.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        object = key,
                        "a stored object is missing; reads answer without it"
                    );
                    self.quarantine
                        .note(key, "(missing)", "missing from storage");
                }
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        refuse_other_version(key, &bytes)?;
        match BlockReader::open(&bytes) {
            Ok(block) => Ok(Some(block)),
            Err(e) => {
                self.quarantine_damaged(key, &e.to_string());
                Ok(None)
            }
        }
    }

    /// Moves a block found damaged while reading to quarantine and out of the plan.
    pub(crate) fn quarantine_damaged(&self, key: &str, reason: &str) {
        self.stats.damaged_reads.fetch_add(1, Ordering::Relaxed);
        lock(&self.state).manifest.forget(key);
        self.cache.remove(key);
        if let Err(e) =
            self.quarantine
                .isolate(self.storage.as_ref(), &self.stats, key, reason, false)
        {
            // The planner no longer reads it; the next start finds it again.
            tracing::error!(object = key, reason, error = %e, "a damaged object could not be moved to quarantine");
            self.quarantine
                .note(key, &format!("(not moved: {e})"), reason);
        }
    }
}
