//! Storage backends: whole-object put/get/list/delete, local or (later) remote.
//! [`FaultyStorage`] (`storage/faulty.rs`) wraps any of them and breaks puts on a schedule.

mod faulty;

pub use faulty::{Fault, FaultyStorage, Injected, Schedule};

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No object at that key.
    #[error("no object {0:?}")]
    NotFound(String),
    /// The key is not a relative path of plain components.
    #[error("invalid object key {0:?}: use relative paths of plain names, no `..`")]
    InvalidKey(String),
    /// The backend failed.
    #[error("storage I/O on {key:?}: {source}")]
    Io {
        /// The object concerned.
        key: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A place to keep immutable objects by key (`/`-separated relative paths).
///
/// `put` is atomic and durable when it returns: a reader sees the whole object or none of
/// it, also after a crash. There is no append and no partial update, so the same code
/// runs on a local directory or an object store.
pub trait Storage: Send + Sync + Debug {
    /// Stores `bytes` under `key`, replacing what was there.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// The object under `key`.
    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    /// Keys starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Removes `key`; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
}

fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.to_owned()))
    }
}

/// Objects as files under a directory. `put` writes a temporary file, fsyncs it, renames
/// it into place and fsyncs the directory, so a crash leaves the old object or the new one.
#[derive(Debug, Clone)]
pub struct FileStorage {
    root: PathBuf,
}

impl FileStorage {
    /// Storage rooted at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| StorageError::Io {
            key: root.display().to_string(),
            source,
        })?;
        Ok(FileStorage { root })
    }

    /// The directory objects live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether listing `prefix` descends into the subdirectory `dir`: only when keys
    /// under it can start with `prefix`, and never into another store's directory (one
    /// with its own lock file, such as a tenant's under `tenants/<id>/`), whose objects
    /// are not this store's to recover, check or quarantine.
    fn walks_into(&self, dir: &Path, prefix: &str) -> bool {
        let Ok(rel) = dir.strip_prefix(&self.root) else {
            return false;
        };
        let rel = format!("{}/", rel.to_string_lossy().replace('\\', "/"));
        (rel.starts_with(prefix) || prefix.starts_with(&rel))
            && !dir.join(crate::lock::LOCK_FILE).exists()
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(key: &str) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        key: key.to_owned(),
        source,
    }
}

/// Leftovers of interrupted puts carry this marker and are never listed, by any backend.
const TMP_MARKER: &str = ".tmp-";

impl Storage for FileStorage {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(key))?;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            "{name}{TMP_MARKER}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io(key))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        std::fs::read(self.path(key)?).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound(key.to_owned()),
            _ => StorageError::Io {
                key: key.to_owned(),
                source: e,
            },
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut todo = vec![self.root.clone()];
        while let Some(dir) = todo.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(prefix)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io(prefix))?;
                let path = entry.path();
                if entry.file_type().map_err(io(prefix))?.is_dir() {
                    if self.walks_into(&path, prefix) {
                        todo.push(path);
                    }
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel.to_string_lossy().replace('\\', "/");
                if key.starts_with(prefix) && !key.contains(TMP_MARKER) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        match std::fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(key)(e)),
            _ => Ok(()),
        }
    }
}

/// Objects in memory, for tests and for a server run without a data directory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    objects: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStorage {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave a half-made map: every operation
        // is a single map call. Recover the guard rather than poisoning every later call.
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.objects().insert(key.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        check_key(key)?;
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| StorageError::NotFound(key.to_owned()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .objects()
            .keys()
            .filter(|k| k.starts_with(prefix) && !k.contains(TMP_MARKER))
            .cloned()
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.objects().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &dyn Storage) {
        s.put("a/1", b"one").unwrap();
        s.put("a/2", b"two").unwrap();
        s.put("b/1", b"three").unwrap();
        s.put("a/1", b"uno").unwrap();
        assert_eq!(s.get("a/1").unwrap(), b"uno");
        assert_eq!(s.list("a/").unwrap(), vec!["a/1", "a/2"]);
        assert_eq!(s.list("").unwrap().len(), 3);
        s.delete("a/1").unwrap();
        s.delete("a/1").unwrap();
        assert!(matches!(s.get("a/1"), Err(StorageError::NotFound(_))));
        for bad in ["", "/abs", "a/../b", "a//b", "./a"] {
            assert!(
                matches!(s.put(bad, b""), Err(StorageError::InvalidKey(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn memory_backend() {
        exercise(&MemoryStorage::default());
    }

    #[test]
    fn file_backend() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&FileStorage::open(dir.path().join("data")).unwrap());
    }

    #[test]
    fn file_backend_ignores_interrupted_puts() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::open(dir.path()).unwrap();
        s.put("x/1", b"whole").unwrap();
        std::fs::write(
            dir.path().join("x").join(format!("2{TMP_MARKER}9-9")),
            b"torn",
        )
        .unwrap();
        assert_eq!(s.list("x/").unwrap(), vec!["x/1"]);
    }
}
