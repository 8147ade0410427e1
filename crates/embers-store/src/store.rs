//! The store: its settings, shared state and counters. The work is split by concern:
//! recovery on open (`recover.rs`), ingest and group commit (`ingest.rs`), flush
//! (`flush.rs`), the WAL record codec (`record.rs`); reads are in `query.rs`, compaction
//! and retention in `compact.rs`.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use embers_profile::StackTree;

use crate::cache::{SharedCache, StoreCache};
use crate::dict::{self, Dictionary};
use crate::error::StoreError;
use crate::head::Head;
use crate::ingest::Staging;
use crate::manifest::Manifest;
use crate::seen::Seen;
use crate::series::{Catalog, SeriesId, SeriesInfo, SeriesKey};
use crate::spans::SpanIndex;
use crate::storage::Storage;
use crate::wal::Segment;

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
    /// A cache shared with other stores (a server's tenants), used instead of one of
    /// `cache_bytes` of the store's own.
    pub shared_cache: Option<SharedCache>,
    /// How long a request ID is remembered after its write was accepted: a retry with
    /// the same ID within this window is acknowledged without storing twice.
    pub dedup_window: Duration,
    /// Most request IDs remembered at once; past it the oldest are forgotten first (a retry
    /// of a forgotten one is stored again). Bounds memory and the ID record that opens each
    /// WAL segment, however many IDs clients send.
    pub max_request_ids: usize,
    /// Most series the whole store may have (across services): a flood of service names
    /// cannot grow the catalog without bound. Past it a write is refused with
    /// [`StoreError::Limit`].
    pub max_series: usize,
    /// How refusals name the series limits, so the operator of a server with tenants
    /// reads whose store refused and which setting to raise.
    pub limit_names: LimitNames,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retention: None,
            flush_interval: Duration::from_secs(10),
            compaction_delay: Duration::from_secs(30),
            max_series_per_service: 10_000,
            cache_bytes: 256 << 20,
            shared_cache: None,
            dedup_window: Duration::from_secs(6 * 3600),
            max_request_ids: 100_000,
            max_series: 1_000_000,
            limit_names: LimitNames::default(),
        }
    }
}

/// Names for the series limits in [`StoreError::Limit`] messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitNames {
    /// Whose store this is (`tenant "team-a"`), or `None` for a store of its own.
    pub owner: Option<String>,
    /// The setting of [`Config::max_series`] (`max_series in [tenants.team-a]`).
    pub max_series: String,
    /// The setting of [`Config::max_series_per_service`].
    pub max_series_per_service: String,
}

impl Default for LimitNames {
    fn default() -> Self {
        LimitNames {
            owner: None,
            max_series: "max_series".into(),
            max_series_per_service: "max_series_per_service".into(),
        }
    }
}

impl LimitNames {
    /// Names `owner`'s limits, set by the settings `max_series` and
    /// `max_series_per_service`.
    pub fn new(owner: String, max_series: String, max_series_per_service: String) -> Self {
        LimitNames {
            owner: Some(owner),
            max_series,
            max_series_per_service,
        }
    }
}

/// One tree to store: what series, when, and the samples.
///
/// Build it with `..Default::default()` for the fields you do not set: more may come.
#[derive(Debug, Clone, Default)]
pub struct Put {
    /// The series it belongs to.
    pub key: SeriesKey,
    /// Unix seconds of the start of the profile; the tree is stored in that 10 s leaf.
    pub time: i64,
    /// The samples.
    pub tree: StackTree,
    /// The samples of `tree` that ran in tracing spans, by 64-bit span ID (see
    /// `Store::merge_spans`). Each span's tree must be part of `tree`: `tree` holds every
    /// sample, these say which belong to which span. Span IDs are not series labels, so
    /// any number of spans keeps one series.
    pub spans: Vec<(u64, StackTree)>,
    /// The profile's sampling period, in the unit of its profile type's period (pprof
    /// `period`: 10,000,000 ns for Go's 100 Hz CPU profile); 0 when unknown. The series
    /// keeps the last known one so a pprof export can say it again (see `Store::period`).
    pub period: i64,
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
    /// Objects moved to quarantine (damaged or unknown), at start-up or by a read.
    pub quarantined: AtomicU64,
    /// Blocks found damaged by a read (then quarantined; the read answered from the rest).
    pub damaged_reads: AtomicU64,
    /// Reads answered with a warning that data in their range may be missing.
    pub degraded_reads: AtomicU64,
    /// WAL writes or fsyncs that failed (their requests were refused, nothing kept).
    pub write_errors: AtomicU64,
    /// Flushes that failed (retried by the next one; the WAL keeps the data meanwhile).
    pub flush_errors: AtomicU64,
    /// Request IDs forgotten before their dedup window ended, to stay under
    /// [`Config::max_request_ids`].
    pub forgotten_request_ids: AtomicU64,
}

/// A flush whose objects are being (or failed to be) written; queries still see it.
#[derive(Debug)]
pub(crate) struct PendingFlush {
    pub seq: u64,
    pub head: Head,
    pub catalog: Vec<(SeriesId, SeriesInfo)>,
    /// Dictionary entries the head's pairs use that no flush has persisted yet.
    pub symbols: dict::Segment,
}

#[derive(Debug)]
pub(crate) struct State {
    pub catalog: Catalog,
    pub head: Head,
    pub pending: Option<Arc<PendingFlush>>,
    pub manifest: Manifest,
    /// Writes whose WAL records are not durable yet: invisible until they are.
    pub staging: Staging,
    pub catalog_objects: Vec<String>,
    /// Superseded objects to delete once no query can still be reading them.
    pub graveyard: Vec<(std::time::Instant, String)>,
    /// Leaves before this are expired.
    pub first_kept: i64,
    /// Request IDs of accepted writes, for deduplicating retries.
    pub seen: Seen,
    /// The `spans/` objects written by flushes (`spans.rs`).
    pub spans: SpanIndex,
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
    pub(crate) segment: Segment,
    /// Tickets up to this one are settled (durable, or refused).
    pub(crate) settled: u64,
    /// Dictionary entries (frames, paths) below this are in durable records or objects;
    /// the next batch logs the rest, including entries of refused records.
    pub(crate) dict_logged: (usize, usize),
    /// Why the last WAL write failed, until one succeeds.
    pub(crate) error: Option<String>,
}

impl WalWriter {
    /// The writer of a fresh `segment`, after replay gave the dictionary `dict_len`.
    pub(crate) fn new(segment: Segment, dict_len: (usize, usize)) -> WalWriter {
        WalWriter {
            segment,
            settled: 0,
            dict_logged: dict_len,
            error: None,
        }
    }
}

/// Why the store cannot persist right now, if it cannot: read by health checks without
/// waiting for an fsync in progress.
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub(crate) wal: Option<String>,
    pub(crate) flush: Option<String>,
}

/// An embedded profile store. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Store {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) wal_dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) state: Mutex<State>,
    pub(crate) wal: Mutex<WalWriter>,
    pub(crate) health: Mutex<Health>,
    pub(crate) flush_lock: Mutex<()>,
    pub(crate) compact_lock: Mutex<()>,
    pub(crate) cache: StoreCache,
    pub(crate) dict: RwLock<Dictionary>,
    /// Counters for metrics.
    pub stats: Stats,
    pub(crate) quarantine: crate::quarantine::Quarantine,
    pub(crate) dir_lock: Option<crate::lock::DirLock>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) const FLUSHED_KEY: &str = "meta/flushed";

impl Store {
    /// Flushes what is left; call before exiting (the WAL would also recover it).
    pub fn close(&self) -> Result<(), StoreError> {
        self.flush().map(|_| ())
    }

    /// Why the store cannot persist writes right now (a full disk, failing storage), or
    /// `None` when it can: `Some` from a failed WAL write or flush until a later one
    /// succeeds. Writes meanwhile fail with [`StoreError::Unavailable`]; the next write
    /// and each flush retry, so this clears by itself when the disk does.
    pub fn unwritable_reason(&self) -> Option<String> {
        let health = lock(&self.health);
        health.wal.clone().or_else(|| health.flush.clone())
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

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
