//! The store's error type.

use crate::block::BlockError;
use crate::storage::StorageError;
use crate::varint::Corrupt;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing objects failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The write-ahead log could not be written or read.
    #[error("write-ahead log: {0}")]
    Wal(#[source] std::io::Error),
    /// A stored object is damaged.
    #[error("damaged object {key}: {source}")]
    Damaged {
        /// The object.
        key: String,
        /// What was wrong.
        source: BlockError,
    },
    /// A stored catalog object is damaged.
    #[error("damaged catalog object {key}: {source}")]
    DamagedCatalog {
        /// The object.
        key: String,
        /// What was wrong.
        source: Corrupt,
    },
    /// A write would pass a configured limit (too many series for one service…).
    #[error("limit reached: {0}")]
    Limit(String),
    /// The input cannot be stored (a time before 1970, …).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The store cannot persist right now (a full disk, a read-only or failing file
    /// system, a failing object store): the write was neither acknowledged nor made
    /// visible. The store retries by itself; the same write can be sent again later.
    #[error("cannot persist now, retry later: {0}")]
    Unavailable(String),
}
