//! A backend that breaks puts the ways real storage does, so crash consistency is tested
//! against the failures recovery has to survive, not only against clean errors.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Storage, StorageError, TMP_MARKER};

/// What an injected fault does to one put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Nothing is stored and the put fails, as on a full disk (`ENOSPC`): the key keeps
    /// what it held before.
    NoSpace,
    /// A prefix of the bytes (possibly empty, never all of them) is stored under the key
    /// and the put fails: what a backend without atomic rename, or a crash in the middle
    /// of the write, leaves. Readers must notice by the envelope's checksum.
    Torn,
    /// The bytes are written to a temporary object, the rename into place fails: the
    /// temporary stays behind (never listed, like `FileStorage`'s leftovers), the key
    /// keeps what it held before, and the put fails.
    FailedRename,
    /// The object is stored whole but the put reports an error, as when a connection
    /// drops after the write landed: the caller cannot tell which happened.
    Ambiguous,
}

impl Fault {
    /// Every kind, for test matrices.
    pub const ALL: [Fault; 4] = [
        Fault::NoSpace,
        Fault::Torn,
        Fault::FailedRename,
        Fault::Ambiguous,
    ];
}

/// Which puts get the fault. Puts are counted from 0 in the order they reach the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schedule {
    /// No put is faulted.
    Never,
    /// The first `n` puts succeed, every later one is faulted (a disk that filled up).
    After(usize),
    /// Only the put with this index is faulted (one failure at one point of a run).
    At(usize),
    /// Puts of keys starting with `prefix` are faulted once `after` of them succeeded.
    Prefix {
        /// Key prefix, such as `"l0/"` or `"agg/"`.
        prefix: String,
        /// Matching puts let through first.
        after: usize,
    },
    /// Each put is faulted with probability `percent / 100`, drawn from an RNG seeded
    /// with `seed`, so a failing run can be repeated exactly.
    Random {
        /// RNG seed.
        seed: u64,
        /// Chance of a fault per put, in percent.
        percent: u8,
    },
}

/// One fault that was injected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Injected {
    /// Index of the put (see [`Schedule`]).
    pub index: usize,
    /// The key of the put.
    pub key: String,
    /// What was done.
    pub fault: Fault,
    /// Bytes stored under the key (`Torn`: the prefix; `Ambiguous`: all; else 0).
    pub stored: usize,
    /// The temporary left behind by `FailedRename`.
    pub temporary: Option<String>,
}

#[derive(Debug)]
struct Plan {
    fault: Fault,
    schedule: Schedule,
    /// Puts seen, all keys.
    puts: usize,
    /// Puts seen that matched a `Prefix` schedule.
    matching: usize,
    rng: fastrand::Rng,
    log: Vec<Injected>,
}

impl Plan {
    /// Whether the put of `key` (the `self.puts`-th) is faulted.
    fn due(&mut self, key: &str) -> bool {
        let index = self.puts;
        self.puts += 1;
        match &self.schedule {
            Schedule::Never => false,
            Schedule::After(n) => index >= *n,
            Schedule::At(n) => index == *n,
            Schedule::Prefix { prefix, after } => {
                if !key.starts_with(prefix.as_str()) {
                    return false;
                }
                self.matching += 1;
                self.matching > *after
            }
            Schedule::Random { percent, .. } => self.rng.u8(0..100) < *percent,
        }
    }
}

/// Wraps a backend and injects [`Fault`]s into puts chosen by a [`Schedule`]. Reads,
/// lists and deletes pass through, so after a "crash" (dropping the store) the inner
/// backend holds exactly what the faults left and can be reopened.
#[derive(Debug)]
pub struct FaultyStorage<S> {
    inner: S,
    plan: Mutex<Plan>,
}

impl<S: Storage> FaultyStorage<S> {
    /// Lets `fail_after` puts through, then fails every put with [`Fault::NoSpace`].
    pub fn new(inner: S, fail_after: usize) -> Self {
        Self::with(inner, Fault::NoSpace, Schedule::After(fail_after), 0)
    }

    /// Injects `fault` into the puts `schedule` picks. `seed` drives the RNG of
    /// [`Schedule::Random`] and the length of torn prefixes.
    pub fn with(inner: S, fault: Fault, schedule: Schedule, seed: u64) -> Self {
        let seed = match &schedule {
            Schedule::Random { seed, .. } => *seed,
            _ => seed,
        };
        FaultyStorage {
            inner,
            plan: Mutex::new(Plan {
                fault,
                schedule,
                puts: 0,
                matching: 0,
                rng: fastrand::Rng::with_seed(seed),
                log: Vec::new(),
            }),
        }
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        // Every update of the plan is complete before anything can panic.
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets `n` more puts through, then faults every put again (`Schedule::After`).
    pub fn allow_puts(&self, n: usize) {
        let mut plan = self.plan();
        plan.schedule = Schedule::After(plan.puts.saturating_add(n));
    }

    /// Replaces the schedule; put indices keep counting.
    pub fn set_schedule(&self, schedule: Schedule) {
        self.plan().schedule = schedule;
    }

    /// Puts seen so far, faulted or not.
    pub fn puts(&self) -> usize {
        self.plan().puts
    }

    /// The faults injected so far, in order.
    pub fn injected(&self) -> Vec<Injected> {
        self.plan().log.clone()
    }

    /// The wrapped backend, as it is after the faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn injected_error(key: &str, fault: Fault) -> StorageError {
    // The message says the fault was injected (what a test or a log reader needs to
    // know); a full disk keeps the kind a real `ENOSPC` has.
    let message = format!("injected fault: {fault:?}");
    let source = match fault {
        Fault::NoSpace => std::io::Error::new(std::io::ErrorKind::StorageFull, message),
        _ => std::io::Error::other(message),
    };
    StorageError::Io {
        key: key.to_owned(),
        source,
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        // The plan stays locked through the inner put, so faults land in index order.
        let mut plan = self.plan();
        let index = plan.puts;
        if !plan.due(key) {
            return self.inner.put(key, bytes);
        }
        let fault = plan.fault;
        let mut record = Injected {
            index,
            key: key.to_owned(),
            fault,
            stored: 0,
            temporary: None,
        };
        match fault {
            Fault::NoSpace => {}
            Fault::Torn => {
                let cut = plan.rng.usize(0..bytes.len().max(1)).min(bytes.len());
                self.inner.put(key, &bytes[..cut])?;
                record.stored = cut;
            }
            Fault::FailedRename => {
                let temporary = format!("{key}{TMP_MARKER}faulty-{index}");
                self.inner.put(&temporary, bytes)?;
                record.temporary = Some(temporary);
            }
            Fault::Ambiguous => {
                self.inner.put(key, bytes)?;
                record.stored = bytes.len();
            }
        }
        plan.log.push(record);
        Err(injected_error(key, fault))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.inner.get(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockReader, BlockWriter};
    use crate::storage::{FileStorage, MemoryStorage};

    fn block() -> Vec<u8> {
        let mut w = BlockWriter::default();
        for i in 0..50u32 {
            w.add(
                crate::series::SeriesId(i),
                i64::from(i),
                &[(i, 7), (i + 1, 9)],
            );
        }
        w.finish(0)
    }

    #[test]
    fn no_space_stores_nothing() {
        let s = FaultyStorage::new(MemoryStorage::default(), 1);
        s.put("k/1", b"ok").unwrap();
        let err = s.put("k/1", b"new").unwrap_err();
        assert!(
            matches!(&err, StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
            "{err}"
        );
        assert!(s.put("k/2", b"lost").is_err());
        assert_eq!(s.list("k/").unwrap(), vec!["k/1"]);
        assert_eq!(s.get("k/1").unwrap(), b"ok");
        s.allow_puts(1);
        s.put("k/2", b"now").unwrap();
        assert!(s.put("k/3", b"full again").is_err());
        assert_eq!(s.inner().get("k/2").unwrap(), b"now");
        assert_eq!(s.injected().len(), 3);
    }

    #[test]
    fn torn_puts_leave_a_prefix_that_readers_reject() {
        let bytes = block();
        for seed in 0..40 {
            let s =
                FaultyStorage::with(MemoryStorage::default(), Fault::Torn, Schedule::At(0), seed);
            assert!(s.put("l0/x.blk", &bytes).is_err());
            let stored = s.get("l0/x.blk").unwrap();
            assert!(stored.len() < bytes.len(), "seed {seed}: the whole object");
            assert_eq!(
                stored[..],
                bytes[..stored.len()],
                "seed {seed}: not a prefix"
            );
            assert_eq!(s.injected()[0].stored, stored.len());
            assert!(
                BlockReader::open(&stored).is_err(),
                "seed {seed}: torn block read"
            );
        }
        // Different seeds tear at different places.
        let cuts: std::collections::HashSet<usize> = (0..40)
            .map(|seed| {
                let s = FaultyStorage::with(
                    MemoryStorage::default(),
                    Fault::Torn,
                    Schedule::At(0),
                    seed,
                );
                let _ = s.put("k", &bytes);
                s.get("k").unwrap().len()
            })
            .collect();
        assert!(cuts.len() > 10, "{cuts:?}");
    }

    #[test]
    fn a_failed_rename_leaves_an_unlisted_temporary_and_the_old_object() {
        let dir = tempfile::tempdir().unwrap();
        let s = FaultyStorage::with(
            FileStorage::open(dir.path()).unwrap(),
            Fault::FailedRename,
            Schedule::At(1),
            0,
        );
        s.put("series/1.cat", b"old").unwrap();
        assert!(s.put("series/1.cat", b"new").is_err());
        assert_eq!(s.get("series/1.cat").unwrap(), b"old");
        assert_eq!(s.list("").unwrap(), vec!["series/1.cat"]);
        let on_disk: Vec<String> = std::fs::read_dir(dir.path().join("series"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(on_disk.len(), 2, "{on_disk:?}");
        let temporary = s.injected()[0].temporary.clone().unwrap();
        assert_eq!(s.inner().get(&temporary).unwrap(), b"new");
        // The same in memory: the leftover is kept but never listed.
        let m = FaultyStorage::with(
            MemoryStorage::default(),
            Fault::FailedRename,
            Schedule::At(0),
            0,
        );
        assert!(m.put("a/b", b"x").is_err());
        assert!(matches!(m.get("a/b"), Err(StorageError::NotFound(_))));
        assert!(m.list("").unwrap().is_empty());
    }

    #[test]
    fn an_ambiguous_failure_stores_the_object() {
        let s = FaultyStorage::with(
            MemoryStorage::default(),
            Fault::Ambiguous,
            Schedule::At(0),
            0,
        );
        assert!(s.put("meta/flushed", b"whole").is_err());
        assert_eq!(s.get("meta/flushed").unwrap(), b"whole");
        s.put("meta/flushed", b"next").unwrap();
        assert_eq!(s.get("meta/flushed").unwrap(), b"next");
    }

    #[test]
    fn schedules_pick_the_puts_they_name() {
        let faulted = |schedule: Schedule, keys: &[&str]| -> Vec<usize> {
            let s = FaultyStorage::with(MemoryStorage::default(), Fault::NoSpace, schedule, 0);
            for k in keys {
                let _ = s.put(k, b"x");
            }
            assert_eq!(s.puts(), keys.len());
            s.injected().iter().map(|i| i.index).collect()
        };
        let keys = ["l0/1", "series/1", "l0/2", "agg/1", "l0/3", "meta/f"];
        assert_eq!(faulted(Schedule::Never, &keys), Vec::<usize>::new());
        assert_eq!(faulted(Schedule::After(4), &keys), vec![4, 5]);
        assert_eq!(faulted(Schedule::At(3), &keys), vec![3]);
        let l0 = |after| Schedule::Prefix {
            prefix: "l0/".into(),
            after,
        };
        assert_eq!(faulted(l0(0), &keys), vec![0, 2, 4]);
        assert_eq!(faulted(l0(1), &keys), vec![2, 4]);
        let many: Vec<String> = (0..1000).map(|i| format!("k/{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let random = |seed| Schedule::Random { seed, percent: 10 };
        let a = faulted(random(1), &many);
        assert_eq!(a, faulted(random(1), &many), "same seed, same faults");
        assert_ne!(a, faulted(random(2), &many));
        assert!((50..150).contains(&a.len()), "{}", a.len());
    }
}
