//! Opening a store: load the catalog, dictionary and object names, and replay the WAL.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::block::BlockReader;
use crate::cache::BlockCache;
use crate::dict::{self, Dictionary};
use crate::envelope::{self, Kind};
use crate::error::StoreError;
use crate::head::Head;
use crate::manifest::{parse_aggregate, parse_run, Manifest, Run};
use crate::record::decode_record;
use crate::seen::Seen;
use crate::segment::leaf_of;
use crate::series::{decode_entries, Catalog};
use crate::storage::{FileStorage, Storage, StorageError};
use crate::store::{Config, State, Stats, Store, WalWriter, FLUSHED_KEY};
use crate::wal::{self, Segment};

impl Store {
    /// Opens (or creates) a store in `dir`: objects under it, the WAL in `dir/wal`.
    pub fn open_dir(dir: impl AsRef<Path>, config: Config) -> Result<Store, StoreError> {
        let dir = dir.as_ref();
        let storage = Arc::new(FileStorage::open(dir)?);
        Store::open(storage, dir.join("wal"), config)
    }

    /// Opens a store on `storage` with its WAL in `wal_dir`, recovering what a crash left:
    /// objects of an unfinished flush are removed and the WAL is replayed.
    pub fn open(
        storage: Arc<dyn Storage>,
        wal_dir: PathBuf,
        config: Config,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&wal_dir).map_err(StoreError::Wal)?;
        let mut catalog = Catalog::default();
        let catalog_objects = storage.list("series/")?;
        for key in &catalog_objects {
            let payload =
                envelope::open(Kind::Catalog, &storage.get(key)?, 1 << 30).map_err(|e| {
                    StoreError::Damaged {
                        key: key.clone(),
                        source: e.into(),
                    }
                })?;
            let entries =
                decode_entries(&payload).map_err(|source| StoreError::DamagedCatalog {
                    key: key.clone(),
                    source,
                })?;
            for (id, info) in entries {
                catalog.load(id, info);
            }
        }
        let mut dict = Dictionary::default();
        for key in storage.list("symbols/")? {
            let payload =
                envelope::open(Kind::Symbols, &storage.get(&key)?, 1 << 31).map_err(|e| {
                    StoreError::Damaged {
                        key: key.clone(),
                        source: e.into(),
                    }
                })?;
            let segment =
                dict::Segment::decode(&payload).map_err(|source| StoreError::DamagedCatalog {
                    key: key.clone(),
                    source,
                })?;
            dict.load(segment)
                .map_err(|what| StoreError::DamagedCatalog {
                    key: key.clone(),
                    source: crate::varint::Corrupt { offset: 0, what },
                })?;
        }
        let flushed = read_flushed(storage.as_ref())?;
        let mut manifest = Manifest::default();
        let mut runs = Vec::new();
        for key in storage.list("l0/")? {
            match parse_run(&key) {
                Some(run) if run.seq <= flushed => runs.push(run),
                // From a flush that did not finish: its data is still in the WAL.
                _ => storage.delete(&key)?,
            }
        }
        for run in damaged_combined_runs(storage.as_ref(), &runs) {
            tracing::warn!(
                key = %run.key,
                "ignored a damaged combined run (a combining cut short); the runs it was made from stay"
            );
            runs.retain(|r| r.key != run.key);
        }
        for run in runs {
            manifest.add_run(run);
        }
        for key in manifest.drop_combined_originals() {
            storage.delete(&key)?;
        }
        for key in storage.list("agg/")? {
            match parse_aggregate(&key) {
                Some((block, agg)) => {
                    if let Some(old) = manifest.add_aggregate(block, agg) {
                        storage.delete(&old.key)?;
                    }
                }
                None => storage.delete(&key)?,
            }
        }
        let mut head = Head::default();
        let mut seen = Seen::default();
        let mut last_seq = flushed;
        for seq in wal::segments(&wal_dir).map_err(StoreError::Wal)? {
            last_seq = last_seq.max(seq);
            if seq <= flushed {
                wal::remove(&wal_dir, seq).map_err(StoreError::Wal)?;
                continue;
            }
            let replay = wal::read(&wal_dir, seq).map_err(StoreError::Wal)?;
            if replay.dropped_bytes > 0 {
                tracing::warn!(
                    segment = seq,
                    bytes = replay.dropped_bytes,
                    "ignored the bytes after the last intact WAL record (a write torn by a crash)"
                );
            }
            for record in replay.records {
                let damaged = |what: String| {
                    StoreError::Wal(std::io::Error::other(format!("WAL segment {seq}: {what}")))
                };
                let (segment, puts, ids) =
                    decode_record(&record).map_err(|e| damaged(e.to_string()))?;
                for (id, at) in ids {
                    seen.remember(&id, at);
                }
                dict.apply_logged(segment)
                    .map_err(|e| damaged(e.to_owned()))?;
                for (key, time, pairs) in puts {
                    let leaf = leaf_of(time);
                    let id = catalog.touch(&key, leaf);
                    head.add(leaf, id, pairs);
                }
            }
        }
        let segment = Segment::create(&wal_dir, last_seq + 1).map_err(StoreError::Wal)?;
        let cache = BlockCache::new(config.cache_bytes);
        Ok(Store {
            storage,
            wal_dir,
            state: Mutex::new(State {
                catalog,
                head,
                pending: None,
                manifest,
                wal_buf: Vec::new(),
                staged: 0,
                catalog_objects,
                graveyard: Vec::new(),
                first_kept: i64::MIN,
                seen,
            }),
            wal: Mutex::new(WalWriter {
                segment,
                synced: 0,
                failed: false,
            }),
            flush_lock: Mutex::new(()),
            compact_lock: Mutex::new(()),
            cache,
            dict: RwLock::new(dict),
            config,
            stats: Stats::default(),
        })
    }
}

/// Combined runs whose originals are still there (a crash within the minute before they
/// are deleted) and which do not open: the combining was cut short, as a torn write on
/// a backend without atomic rename leaves it. Dropping the originals for them would lose
/// data; the originals are whole, and the next compaction combines them again.
fn damaged_combined_runs(storage: &dyn Storage, runs: &[Run]) -> Vec<Run> {
    runs.iter()
        .filter(|c| c.combined_from.is_some() && runs.iter().any(|r| r.is_within(c)))
        .filter(|c| {
            storage
                .get(&c.key)
                .map_or(true, |bytes| BlockReader::open(&bytes).is_err())
        })
        .cloned()
        .collect()
}

fn read_flushed(storage: &dyn Storage) -> Result<u64, StoreError> {
    match storage.get(FLUSHED_KEY) {
        Ok(bytes) => {
            let payload =
                envelope::open(Kind::Catalog, &bytes, 64).map_err(|e| StoreError::Damaged {
                    key: FLUSHED_KEY.into(),
                    source: e.into(),
                })?;
            let raw: [u8; 8] = payload
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Damaged {
                    key: FLUSHED_KEY.into(),
                    source: crate::varint::Corrupt {
                        offset: 0,
                        what: "expected 8 bytes",
                    }
                    .into(),
                })?;
            Ok(u64::from_le_bytes(raw))
        }
        Err(StorageError::NotFound(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}
