//! The embedded profile store.
//!
//! Everything the store persists goes through the [`Storage`] trait: whole immutable
//! objects that are put, read, listed and deleted, which is what both a local directory
//! and an object store (S3 and the like) can do well. Three backends implement it:
//! [`FileStorage`] for the data directory, [`MemoryStorage`] for tests, and
//! [`FaultyStorage`], which wraps another backend and fails or tears writes on demand so
//! crash consistency can be tested.
//!
//! ```
//! use embers_store::{MemoryStorage, Storage};
//!
//! let storage = MemoryStorage::default();
//! storage.put("blocks/0001.blk", b"data").unwrap();
//! assert_eq!(storage.get("blocks/0001.blk").unwrap(), b"data");
//! assert_eq!(storage.list("blocks/").unwrap(), vec!["blocks/0001.blk".to_string()]);
//! ```

mod segment;
mod storage;
mod tree_codec;
mod varint;

pub use segment::{leaf_of, leaves_for, plan, Block, FANOUT, LEAF_SECONDS, TOP_LEVEL};
pub use storage::{FaultyStorage, FileStorage, MemoryStorage, Storage, StorageError};
pub use tree_codec::{decode_tree, encode_tree, TreeLimits};
pub use varint::Corrupt;
