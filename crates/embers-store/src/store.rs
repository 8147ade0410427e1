//! The store: ingest into the WAL and the head, flush the head into run objects, recover
//! after a crash. Reads are in `query.rs`, compaction and retention in `compact.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use embers_profile::StackTree;

use crate::block::BlockWriter;
use crate::cache::BlockCache;
use crate::dict::{self, Dictionary};
use crate::envelope::{self, Kind};
use crate::error::StoreError;
use crate::head::Head;
use crate::manifest::{parse_aggregate, parse_run, run_key, Manifest, Run};
use crate::seen::{self, Seen};
use crate::segment::leaf_of;
use crate::series::{
    decode_entries, decode_key, encode_entries, encode_key, unzigzag, zigzag, Catalog, SeriesId,
    SeriesInfo, SeriesKey, SERVICE_NAME,
};
use crate::storage::{FileStorage, Storage, StorageError};
use crate::varint::{put_uvarint, Reader};
use crate::wal::{self, Segment};

/// Store settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Drop data older than this (None keeps everything).
    pub retention: Option<Duration>,
    /// How often the maintenance thread flushes the head into run objects.
    pub flush_interval: Duration,
    /// How long after a block ends its aggregate is built; data arriving later still
    /// counts (it makes the aggregate stale until rebuilt), this only saves rebuilds.
    pub compaction_delay: Duration,
    /// Most series one `service_name` may have (protects against label explosions).
    pub max_series_per_service: usize,
    /// Bytes of decoded blocks kept in memory for queries.
    pub cache_bytes: usize,
    /// How long a request ID is remembered after its write was accepted: a retry with
    /// the same ID within this window is acknowledged without storing twice.
    pub dedup_window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retention: None,
            flush_interval: Duration::from_secs(10),
            compaction_delay: Duration::from_secs(30),
            max_series_per_service: 10_000,
            cache_bytes: 256 << 20,
            dedup_window: Duration::from_secs(6 * 3600),
        }
    }
}

/// One tree to store: what series, when, and the samples.
#[derive(Debug, Clone)]
pub struct Put {
    /// The series it belongs to.
    pub key: SeriesKey,
    /// Unix seconds of the start of the profile; the tree is stored in that 10 s leaf.
    pub time: i64,
    /// The samples.
    pub tree: StackTree,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Trees ingested.
    pub puts: AtomicU64,
    /// WAL group commits (fsyncs).
    pub wal_syncs: AtomicU64,
    /// Bytes appended to the WAL.
    pub wal_bytes: AtomicU64,
    /// Flushes completed.
    pub flushes: AtomicU64,
    /// Aggregates written.
    pub compactions: AtomicU64,
    /// Objects deleted by retention.
    pub expired_objects: AtomicU64,
    /// Writes acknowledged as retries of one already stored (same request ID).
    pub duplicates: AtomicU64,
}

/// A flush whose objects are being (or failed to be) written; queries still see it.
#[derive(Debug)]
pub(crate) struct PendingFlush {
    pub seq: u64,
    pub head: Head,
    pub catalog: Vec<(SeriesId, SeriesInfo)>,
    /// Dictionary entries the head's pairs use that no flush has persisted yet.
    symbols: dict::Segment,
}

#[derive(Debug)]
pub(crate) struct State {
    pub catalog: Catalog,
    pub head: Head,
    pub pending: Option<Arc<PendingFlush>>,
    pub manifest: Manifest,
    /// Framed WAL records not written yet, and how many records were ever staged.
    pub wal_buf: Vec<u8>,
    pub staged: u64,
    pub catalog_objects: Vec<String>,
    /// Superseded objects to delete once no query can still be reading them.
    pub graveyard: Vec<(std::time::Instant, String)>,
    /// Leaves before this are expired.
    pub first_kept: i64,
    /// Request IDs of accepted writes, for deduplicating retries.
    pub seen: Seen,
}

/// What [`Store::ingest_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// The puts were stored.
    Stored,
    /// A write with one of these IDs was accepted before: nothing was stored again.
    Duplicate,
}

#[derive(Debug)]
pub(crate) struct WalWriter {
    segment: Segment,
    synced: u64,
    failed: bool,
}

/// An embedded profile store. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Store {
    pub(crate) storage: Arc<dyn Storage>,
    wal_dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) state: Mutex<State>,
    wal: Mutex<WalWriter>,
    flush_lock: Mutex<()>,
    pub(crate) compact_lock: Mutex<()>,
    pub(crate) cache: BlockCache,
    pub(crate) dict: RwLock<Dictionary>,
    /// Counters for metrics.
    pub stats: Stats,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

const FLUSHED_KEY: &str = "meta/flushed";

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
        for key in storage.list("l0/")? {
            match parse_run(&key) {
                Some(run) if run.seq <= flushed => manifest.add_run(run),
                // From a flush that did not finish: its data is still in the WAL.
                _ => storage.delete(&key)?,
            }
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

    /// Stores `puts` durably: when this returns `Ok`, they survive a crash. All or none of
    /// them are accepted.
    pub fn ingest(&self, puts: Vec<Put>) -> Result<(), StoreError> {
        self.ingest_once(&[], puts).map(|_| ())
    }

    /// [`Store::ingest`] for a write its client names with `ids` (say, one per profile
    /// window): if a write naming any of them was accepted within the dedup window, this
    /// one is a retry, and returns [`Ingested::Duplicate`] once that write is durable.
    pub fn ingest_once(&self, ids: &[String], puts: Vec<Put>) -> Result<Ingested, StoreError> {
        if puts.is_empty() {
            return Ok(Ingested::Stored);
        }
        if let Some(bad) = puts.iter().find(|p| p.time < 0) {
            return Err(StoreError::Invalid(format!(
                "time {} is before 1970",
                bad.time
            )));
        }
        let ticket = {
            let mut st = lock(&self.state);
            if ids.iter().any(|id| st.seen.contains(id)) {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                // The first write may still be on its way to disk: wait for it.
                let staged = st.staged;
                drop(st);
                return self.commit(staged).map(|()| Ingested::Duplicate);
            }
            self.check_limits(&st, &puts)?;
            // Paths are interned under the state lock so that WAL records log new
            // dictionary entries in the order ids were given: replay gives the same ids.
            let mut dict = self.dict.write().unwrap_or_else(PoisonError::into_inner);
            let before = dict.len();
            let mut logged = Vec::with_capacity(puts.len());
            for put in puts {
                let leaf = leaf_of(put.time);
                let pairs = dict.intern_tree(&put.tree);
                st.catalog.touch(&put.key, leaf);
                logged.push((put.key, put.time, pairs));
                self.stats.puts.fetch_add(1, Ordering::Relaxed);
            }
            let now = unix_now();
            for id in ids {
                st.seen.remember(id, now);
            }
            let record = encode_record(
                &dict.segment(before, dict.len()),
                &logged,
                ids.iter().map(|id| (id.as_str(), now)),
            );
            drop(dict);
            for (key, time, pairs) in logged {
                let leaf = leaf_of(time);
                let id = st.catalog.id(&key).expect("touched above");
                st.head.add(leaf, id, pairs);
            }
            wal::frame(&record, &mut st.wal_buf);
            st.staged += 1;
            st.staged
        };
        self.commit(ticket).map(|()| Ingested::Stored)
    }

    fn check_limits(&self, st: &State, puts: &[Put]) -> Result<(), StoreError> {
        let mut new_per_service: std::collections::HashMap<&str, BTreeSet<&SeriesKey>> =
            Default::default();
        for put in puts {
            if st.catalog.id(&put.key).is_none() {
                let service = put.key.labels.get(SERVICE_NAME).unwrap_or("");
                new_per_service.entry(service).or_default().insert(&put.key);
            }
        }
        for (service, new) in new_per_service {
            let have = st.catalog.count_for_service(service);
            if have + new.len() > self.config.max_series_per_service {
                return Err(StoreError::Limit(format!(
                    "service {service:?} would have more than {} series; drop high-cardinality labels",
                    self.config.max_series_per_service
                )));
            }
        }
        Ok(())
    }

    /// Group commit: the first caller to find its record unsynced writes and fsyncs every
    /// staged record; the others find theirs already synced.
    fn commit(&self, ticket: u64) -> Result<(), StoreError> {
        let mut w = lock(&self.wal);
        if w.failed {
            return Err(StoreError::Failed);
        }
        if w.synced >= ticket {
            return Ok(());
        }
        let (buf, upto) = {
            let mut st = lock(&self.state);
            (std::mem::take(&mut st.wal_buf), st.staged)
        };
        self.write_wal(&mut w, &buf, upto)
    }

    fn write_wal(&self, w: &mut WalWriter, buf: &[u8], upto: u64) -> Result<(), StoreError> {
        match w.segment.write_durably(buf) {
            Ok(()) => {
                w.synced = upto;
                self.stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .wal_bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                w.failed = true;
                Err(StoreError::Wal(e))
            }
        }
    }

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
            if w.failed {
                return Err(StoreError::Failed);
            }
            let mut st = lock(&self.state);
            if st.head.is_empty() {
                return Ok(0);
            }
            let buf = std::mem::take(&mut st.wal_buf);
            let upto = st.staged;
            self.write_wal(&mut w, &buf, upto)?;
            let mut next =
                Segment::create(&self.wal_dir, w.segment.seq + 1).map_err(StoreError::Wal)?;
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
                next.write_durably(&framed).map_err(StoreError::Wal)?;
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
            .put(&catalog_key, &envelope::seal(Kind::Catalog, &payload, true))?;
        if !pending.symbols.is_empty() {
            let key = format!("symbols/{seq:020}.sym");
            self.storage.put(
                &key,
                &envelope::seal(Kind::Symbols, &pending.symbols.encode(), true),
            )?;
        }
        self.dict
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .mark_persisted(&pending.symbols);
        let mut runs = Vec::new();
        for (first, last, bytes) in &runs_bytes {
            let key = run_key(seq, *first, *last);
            self.storage.put(&key, bytes)?;
            runs.push(Run {
                key,
                seq,
                first: *first,
                last: *last,
                combined_from: None,
            });
        }

        self.storage.put(
            FLUSHED_KEY,
            &envelope::seal(Kind::Catalog, &seq.to_le_bytes(), false),
        )?;
        {
            let mut st = lock(&self.state);
            for run in runs {
                st.manifest.add_run(run);
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

    /// Flushes what is left; call before exiting (the WAL would also recover it).
    pub fn close(&self) -> Result<(), StoreError> {
        self.flush().map(|_| ())
    }

    /// How often the maintenance loop should flush.
    pub fn flush_interval(&self) -> Duration {
        self.config.flush_interval
    }

    /// Distinct call paths in the dictionary.
    pub fn dictionary_paths(&self) -> usize {
        self.dict
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .paths()
    }

    /// `(path, value)` pairs held in memory, not flushed yet.
    pub fn head_pairs(&self) -> usize {
        lock(&self.state).head.pairs()
    }

    /// Number of series, run objects and aggregate objects.
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = lock(&self.state);
        let (runs, aggs) = st.manifest.counts();
        (st.catalog.len(), runs, aggs)
    }
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

/// A logged put: series, Unix seconds, sorted path pairs.
type Logged = (SeriesKey, i64, crate::head::Pairs);

/// WAL record: the dictionary entries this ingest created (length-prefixed segment), then
/// n puts, each: series key, time (zigzag), pair count, pairs (path-id delta, value); then,
/// if the write had any, its request IDs ([`seen::encode`]).
fn encode_record<'a>(
    new_entries: &dict::Segment,
    puts: &[Logged],
    ids: impl ExactSizeIterator<Item = (&'a str, i64)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let segment = new_entries.encode();
    put_uvarint(&mut out, segment.len() as u64);
    out.extend_from_slice(&segment);
    put_uvarint(&mut out, puts.len() as u64);
    for (key, time, pairs) in puts {
        encode_key(key, &mut out);
        put_uvarint(&mut out, zigzag(*time));
        put_uvarint(&mut out, pairs.len() as u64);
        let mut previous = 0;
        for &(path, value) in pairs {
            put_uvarint(&mut out, u64::from(path - previous));
            put_uvarint(&mut out, value);
            previous = path;
        }
    }
    if ids.len() > 0 {
        seen::encode(ids, &mut out);
    }
    out
}

type Record = (dict::Segment, Vec<Logged>, Vec<(String, i64)>);

fn decode_record(bytes: &[u8]) -> Result<Record, crate::varint::Corrupt> {
    let mut r = Reader::new(bytes);
    let len = r.len(bytes.len(), "dictionary entries longer than the record")?;
    let segment = dict::Segment::decode(r.bytes(len)?)?;
    let n = r.len(bytes.len(), "too many puts")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let key = decode_key(&mut r)?;
        let time = unzigzag(r.uvarint()?);
        let count = r.len(bytes.len(), "too many pairs")?;
        let mut pairs = Vec::with_capacity(count);
        let mut path = 0u32;
        for _ in 0..count {
            let delta =
                u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("path id out of range"))?;
            path = path
                .checked_add(delta)
                .ok_or_else(|| r.corrupt("path id out of range"))?;
            pairs.push((path, r.uvarint()?));
        }
        out.push((key, time, pairs));
    }
    let ids = if r.remaining() > 0 {
        seen::decode(&mut r, bytes.len())?
    } else {
        Vec::new()
    };
    Ok((segment, out, ids))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
