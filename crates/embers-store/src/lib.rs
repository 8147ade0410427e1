//! The embedded profile store.
//!
//! Profiles arrive as call trees of a *series* (a profile type plus labels such as
//! `service_name` and `region`). [`Store::ingest`] appends them to a write-ahead log with
//! group commit and keeps them in memory (the head); a flush writes the head as immutable
//! *run* objects of 10 s leaves; compaction builds the segment tree's aggregates (100 s,
//! 1,000 s, … blocks), so a query over any range merges O(log n) trees. A catalog with an
//! inverted label index finds series for selectors such as
//! `{service_name="ride", region=~"us-.*"}`. `docs/storage-format.md` has the byte layout.
//!
//! Everything the store persists goes through the [`Storage`] trait: whole immutable
//! objects that are put, read, listed and deleted, which is what both a local directory
//! and an object store (S3 and the like) can do well. Three backends implement it:
//! [`FileStorage`] for the data directory, [`MemoryStorage`] for tests, and
//! [`FaultyStorage`], which wraps another backend and fails or tears writes on demand so
//! crash consistency can be tested.
//!
//! ```
//! use embers_profile::{Frame, Labels, StackTree};
//! use embers_store::{Config, MemoryStorage, Put, Selector, SeriesKey, Store};
//! use std::sync::Arc;
//!
//! let wal = tempfile::tempdir().unwrap();
//! let store = Store::open(Arc::new(MemoryStorage::default()), wal.path().into(), Config::default()).unwrap();
//! let mut tree = StackTree::new();
//! tree.add_frames([&Frame::named("main"), &Frame::named("foo")], 75);
//! tree.add_frames([&Frame::named("main"), &Frame::named("bar")], 25);
//! let key = SeriesKey {
//!     profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
//!     labels: Labels::from_pairs([("service_name", "app"), ("region", "eu")]),
//! };
//! store.ingest(vec![Put { key, time: 1_700_000_000, tree, ..Default::default() }]).unwrap();
//! store.flush().unwrap();
//!
//! let selector: Selector = r#"{service_name="app", region=~"eu|us"}"#.parse().unwrap();
//! let merged = store.merge(&selector.matchers, 1_700_000_000, 1_700_000_010).unwrap();
//! assert_eq!(merged.total(), 100);
//! ```

mod adhoc;
mod block;
mod cache;
mod compact;
mod dict;
mod dict_gc;
mod envelope;
mod error;
mod flush;
mod fsck;
mod head;
mod ingest;
mod lock;
mod manifest;
mod quarantine;
mod query;
mod record;
mod recover;
mod seen;
mod segment;
mod selector;
mod series;
mod span_read;
mod spans;
mod storage;
mod store;
mod symbols;
mod tree_codec;
mod varint;
mod wal;

pub use adhoc::{clean_name, AdHocEntry, AdHocError, AdHocLimits, AdHocProfiles, AdHocUpload};
pub use block::{BlockError, BlockReader, BlockWriter};
pub use cache::SharedCache;
pub use compact::CompactReport;
pub use dict::{Segment as DictionarySegment, LOST as LOST_FRAME};
pub use dict_gc::{DictionaryGc, DictionaryStats, MIN_GROWTH as MIN_DICTIONARY_GROWTH};
pub use envelope::{EnvelopeError, FORMAT_VERSION, OLDEST_SUPPORTED};
pub use error::StoreError;
pub use fsck::{fsck, Finding, FsckReport, KindReport};
pub use lock::{DirLock, LOCK_FILE};
pub use quarantine::{Quarantined, QUARANTINE_PREFIX};
pub use segment::{leaf_of, leaves_for, plan, Block, FANOUT, LEAF_SECONDS, TOP_LEVEL};
pub use selector::{MatchOp, Matcher, Selector, SelectorError};
pub use series::{SeriesId, SeriesKey, NAME, PROFILE_TYPE, SERVICE_NAME};
pub use spans::read_span_object;
pub use storage::{
    Fault, FaultyStorage, FileStorage, Injected, MemoryStorage, Schedule, Storage, StorageError,
};
pub use store::{Config, Ingested, LimitNames, Put, Stats, Store};
pub use tree_codec::{decode_tree, encode_tree, TreeLimits};
pub use varint::Corrupt;
