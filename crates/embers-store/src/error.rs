//! The store's error type.

use crate::block::BlockError;
use crate::storage::StorageError;

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
    /// A write would pass a configured limit (too many series for one service…).
    #[error("limit reached: {0}")]
    Limit(String),
    /// The input cannot be stored (a time before 1970, …).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// An intact object written by a format version this build cannot read (a newer
    /// Embers wrote it): not damage, so the store refuses to open rather than set it aside.
    #[error("object {key} is in format version {found}, this build reads {oldest}..={newest}: use a newer Embers")]
    UnsupportedVersion {
        /// The object.
        key: String,
        /// The version it was written in.
        found: u16,
        /// The oldest version this build reads.
        oldest: u16,
        /// The newest version this build reads.
        newest: u16,
    },
    /// Another process (a running server, `embers fsck`) holds the data directory.
    #[error(
        "the data directory is in use by another process (it holds the lock {0:?}); stop it first"
    )]
    Locked(std::path::PathBuf),
    /// The store cannot persist right now (a full disk, a read-only or failing file
    /// system, a failing object store): the write was neither acknowledged nor made
    /// visible. The store retries by itself; the same write can be sent again later.
    #[error("cannot persist now, retry later: {0}")]
    Unavailable(String),
}
