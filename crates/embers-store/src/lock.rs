//! One process at a time per data directory.
//!
//! A running server and `embers fsck --repair` must never work on the same directory:
//! repair moves objects the server may be reading, and two stores appending to one WAL
//! would interleave records. [`Store::open_dir`](crate::Store::open_dir) and the fsck
//! take an exclusive advisory lock (`flock`) on `<dir>/embers.lock` and keep it while they
//! run; the kernel releases it when the process exits, also after a crash or SIGKILL, so
//! there is no stale lock file to clean up.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::error::StoreError;

/// The lock file's name inside a data directory.
pub const LOCK_FILE: &str = "embers.lock";

/// Held while a process works on a data directory; released on drop (or exit).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock of `dir` (created if missing), or fails at once with
    /// [`StoreError::Locked`] if another process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let io = |source| {
            StoreError::Storage(crate::StorageError::Io {
                key: LOCK_FILE.into(),
                source,
            })
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock { _file: file, path }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StoreError::Locked(path)),
            Err(e) => Err(io(e.into())),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(StoreError::Locked(_))
        ));
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
