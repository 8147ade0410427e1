//! The dictionary stays bounded under code churn with retention, and survives damage.
//!
//! Every simulated deploy renames the handler functions, as code churn does in
//! production; time is driven through the API (`time` of puts and `compact(now)`), never
//! by sleeping.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use embers_profile::{Frame, Labels, StackTree};
use embers_store::MIN_DICTIONARY_GROWTH as MIN_GROWTH;
use embers_store::{
    Config, DictionaryStats, FaultyStorage, MemoryStorage, Put, Selector, SeriesKey, Storage,
    Store, LOST_FRAME,
};

const T0: i64 = 1_700_000_000;
const RETENTION: i64 = 3600;
const DEPLOY_EVERY: i64 = 1200;
const HANDLERS: i64 = 64;
/// New paths each deploy makes: a handler and a helper under it per handler.
const PATHS_PER_DEPLOY: usize = 2 * HANDLERS as usize;
/// The span of the coarsest aggregate an eleven-hour run builds (10^3 leaves).
const LEVEL_3_SECONDS: i64 = 10_000;

fn key(service: &str) -> SeriesKey {
    SeriesKey {
        profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        labels: Labels::from_pairs([("service_name", service), ("__name__", "process_cpu")]),
    }
}

/// A profile at `t`: stable frames, plus handlers named for the deploy running at `t`.
fn tree(t: i64, salt: i64) -> StackTree {
    // Names come back after 16 deploys, long after their paths were collected.
    let deploy = (t - T0).div_euclid(DEPLOY_EVERY) % 16;
    let (main, serve) = (Frame::named("main"), Frame::named("serve"));
    let mut tree = StackTree::new();
    tree.add_frames([&main, &Frame::named("gc")], 3);
    for j in 0..6 {
        let k = ((t / 10) * 7 + j * 11 + salt).rem_euclid(HANDLERS);
        let handler = Frame::at(
            format!("handler_{k}_v{deploy}"),
            "app/views.py",
            Some(k as u32),
        );
        let helper = Frame::named(format!("helper_{k}_v{deploy}"));
        tree.add_frames([&main, &serve, &handler], 1 + (k as u64 % 5));
        tree.add_frames([&main, &serve, &handler, &helper], 2);
    }
    tree
}

fn config() -> Config {
    Config {
        retention: Some(Duration::from_secs(RETENTION as u64)),
        ..Config::default()
    }
}

/// A store under churn, and every put it was given.
struct Sim {
    storage: Arc<dyn Storage>,
    wal: tempfile::TempDir,
    store: Arc<Store>,
    puts: Vec<Put>,
    now: i64,
}

impl Sim {
    fn new(storage: Arc<dyn Storage>) -> Sim {
        let wal = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(Arc::clone(&storage), wal.path().into(), config()).unwrap());
        Sim {
            storage,
            wal,
            store,
            puts: Vec::new(),
            now: T0,
        }
    }

    /// Ingests `seconds` of profiles from two services, flushing every minute and
    /// compacting (retention, and collection when due) every five.
    fn run(&mut self, seconds: i64) {
        let end = self.now + seconds;
        while self.now < end {
            let puts: Vec<Put> = [("api", 0), ("worker", 5)]
                .into_iter()
                .map(|(service, salt)| Put {
                    key: key(service),
                    time: self.now,
                    tree: tree(self.now, salt),
                    ..Default::default()
                })
                .collect();
            self.puts.extend(puts.iter().cloned());
            self.store.ingest(puts).unwrap();
            self.now += 10;
            if self.now % 60 == 0 {
                self.store.flush().unwrap();
            }
            if self.now % 300 == 0 {
                self.store.compact(self.now).unwrap();
            }
        }
    }

    /// [`Sim::run`], returning the largest dictionary (by paths) and `symbols/` size seen
    /// after each simulated ten minutes.
    fn run_sampled(&mut self, seconds: i64) -> (DictionaryStats, usize) {
        let mut most = self.stats();
        let mut disk = 0;
        for _ in 0..seconds / 600 {
            self.run(600);
            let now = self.stats();
            most = if now.paths > most.paths { now } else { most };
            disk = disk.max(symbols_bytes(self.storage.as_ref()));
        }
        (most, disk)
    }

    fn reopen(&mut self) {
        let wal = self.wal.path().to_owned();
        self.store = Arc::new(Store::open(Arc::clone(&self.storage), wal, config()).unwrap());
    }

    /// Queries of retained data equal the puts they cover, exactly.
    fn check(&self) {
        let retained = self.now - RETENTION + 300;
        for service in ["api", "worker"] {
            let matchers = Selector::parse(&format!(r#"{{service_name="{service}"}}"#))
                .unwrap()
                .matchers;
            for (from, until) in [
                (retained, self.now),
                (retained + 610, self.now - 1200),
                (self.now - 60, self.now),
            ] {
                let mut want = StackTree::new();
                for p in &self.puts {
                    if p.key.labels.get("service_name") == Some(service)
                        && p.time >= from
                        && p.time < until
                    {
                        want.merge(&p.tree);
                    }
                }
                let got = self.store.merge(&matchers, from, until).unwrap();
                assert_eq!(
                    got.to_sorted_stacks(),
                    want.to_sorted_stacks(),
                    "{service} {from}..{until}"
                );
            }
        }
    }

    fn stats(&self) -> DictionaryStats {
        self.store.dictionary_stats()
    }
}

fn symbols_bytes(storage: &dyn Storage) -> usize {
    storage
        .list("symbols/")
        .unwrap()
        .iter()
        .map(|k| storage.get(k).unwrap().len())
        .sum()
}

#[test]
fn churn_under_retention_keeps_the_dictionary_bounded_and_it_empties_when_data_expires() {
    let memory = MemoryStorage::default();
    let mut sim = Sim::new(Arc::new(memory.clone()));
    // The baseline: one retention period of data, three deploys.
    sim.run(RETENTION);
    let baseline = sim.stats();
    let baseline_disk = symbols_bytes(&memory);
    sim.check();
    // Twelve more hours, 36 more deploys: the dictionary holds the paths of retained
    // data and of aggregates straddling the cut-off (level-3 blocks here), plus the
    // growth a collection waits for; never the paths of every deploy.
    let live_deploys = (RETENTION + LEVEL_3_SECONDS) / DEPLOY_EVERY + 2;
    let bound = (live_deploys as usize * PATHS_PER_DEPLOY + 4) * 5 / 4 + MIN_GROWTH;
    let per_path = |s: &DictionaryStats| s.heap_bytes / s.paths;
    let disk_per_path = baseline_disk / baseline.paths;
    for _ in 0..12 {
        let (most, disk) = sim.run_sampled(RETENTION);
        sim.check();
        assert!(most.paths <= bound, "{most:?} over the bound {bound}");
        assert!(per_path(&most) <= 2 * per_path(&baseline), "{most:?}");
        assert!(
            disk <= 2 * bound * disk_per_path,
            "symbols/ holds {disk} bytes"
        );
    }
    let churned = sim.stats();
    assert!(
        churned.paths_ever > 2 * bound,
        "the churn made only {} paths",
        churned.paths_ever
    );

    // A collection right now changes no answer.
    let report = sim.store.collect_dictionary().unwrap();
    assert!(report.paths.1 <= report.paths.0 && report.unreadable.is_empty());
    sim.check();

    // Stop ingesting: once everything expired, compaction alone gives it all back.
    sim.store.flush().unwrap();
    let end = sim.now;
    for now in (end..end + 40 * 3600).step_by(1800) {
        sim.store.compact(now).unwrap();
    }
    let after = sim.stats();
    assert_eq!((after.paths, after.frames), (1, 0), "{after:?}");
    assert!(after.heap_bytes < baseline.heap_bytes / 4, "{after:?}");
    assert!(
        symbols_bytes(&memory) < 64,
        "symbols/ holds {} bytes",
        symbols_bytes(&memory)
    );
    // Reopened, it is as small, and new ids do not reuse old ones.
    sim.reopen();
    assert_eq!(sim.stats().paths, 1);
    assert!(sim.stats().paths_ever >= churned.paths_ever);
}

#[test]
fn reopening_after_a_collection_answers_exactly() {
    let memory = MemoryStorage::default();
    let mut sim = Sim::new(Arc::new(memory.clone()));
    sim.run(3 * RETENTION + 70);
    sim.store.collect_dictionary().unwrap();
    sim.run(130); // some after the collection: segments and an unflushed head
    let before = sim.stats();
    sim.reopen(); // no close: the head comes back from the WAL
    assert_eq!(sim.stats().paths, before.paths);
    sim.check();
    sim.run(RETENTION);
    sim.check();
}

#[test]
fn a_crash_at_any_point_of_a_collection_reopens_exactly() {
    let memory = MemoryStorage::default();
    let faulty = Arc::new(FaultyStorage::new(memory.clone(), usize::MAX));
    let mut sim = Sim::new(faulty.clone());
    sim.run(2 * RETENTION + 50);
    let old: Vec<(String, Vec<u8>)> = memory
        .list("symbols/")
        .unwrap()
        .into_iter()
        .map(|k| {
            let v = memory.get(&k).unwrap();
            (k, v)
        })
        .collect();
    assert!(old.len() > 1);

    // The compacted object cannot be written: nothing is deleted, the error surfaces.
    faulty.allow_puts(0);
    assert!(sim.store.collect_dictionary().is_err());
    assert_eq!(memory.list("symbols/").unwrap().len(), old.len());
    faulty.allow_puts(usize::MAX);
    sim.reopen();
    sim.check();

    // Written, and the crash comes before the old objects are deleted.
    let report = sim.store.collect_dictionary().unwrap();
    assert!(report.bytes_written > 0);
    for (k, v) in &old {
        memory.put(k, v).unwrap();
    }
    sim.reopen();
    sim.check();
    let left = memory.list("symbols/").unwrap();
    assert_eq!(
        left.len(),
        1,
        "superseded objects are removed on open: {left:?}"
    );
    sim.run(RETENTION);
    sim.check();
}

#[test]
fn ingest_queries_and_flushes_stay_exact_while_collections_run() {
    let mut sim = Sim::new(Arc::new(MemoryStorage::default()));
    sim.run(RETENTION);
    let store = Arc::clone(&sim.store);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let report = store.collect_dictionary().unwrap();
                assert!(report.unreadable.is_empty());
                std::thread::yield_now();
            }
        });
        for _ in 0..12 {
            sim.run(600);
            sim.check();
        }
        stop.store(true, Ordering::Relaxed);
    });
    sim.check();
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn put_at(store: &Store, time: i64, stack: &[&str], value: u64) {
    let mut tree = StackTree::new();
    let frames: Vec<Frame> = stack.iter().map(|n| Frame::named(*n)).collect();
    tree.add_frames(frames.iter(), value);
    store
        .ingest(vec![Put {
            key: key("api"),
            time,
            tree,
            ..Default::default()
        }])
        .unwrap();
    store.flush().unwrap();
}

fn stacks_at(store: &Store, time: i64) -> Vec<(Vec<String>, u64)> {
    let matchers = Selector::parse(r#"{service_name="api"}"#).unwrap().matchers;
    store
        .merge(&matchers, time, time + 10)
        .unwrap()
        .to_sorted_stacks()
        .into_iter()
        .map(|(frames, v)| (frames.into_iter().map(|f| f.function).collect(), v))
        .collect()
}

fn stack(names: &[&str], value: u64) -> Vec<(Vec<String>, u64)> {
    vec![(names.iter().map(|n| (*n).to_owned()).collect(), value)]
}

/// Four flushes, each adding one `symbols/` object: a, b (a new path under main), c
/// (new frames only), d (a path under a's); then a byte of object `damaged` flipped and
/// the store reopened, which must quarantine that object.
fn open_damaged(dir: &Path, damaged: usize) -> Store {
    let objects = four_segments(dir);
    flip_byte(&objects[damaged]);
    let store = Store::open_dir(dir, Config::default()).unwrap();
    assert_eq!(store.dictionary_stats().damaged_objects, 1);
    let name = objects[damaged].file_name().unwrap().to_string_lossy();
    let moved = store.quarantined();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].key, format!("symbols/{name}"));
    assert!(dir.join(&moved[0].moved_to).exists());
    assert!(!objects[damaged].exists());
    store
}

fn four_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let store = Store::open_dir(dir, Config::default()).unwrap();
    put_at(&store, T0, &["main", "a"], 3);
    put_at(&store, T0 + 10, &["main", "b", "b2"], 5);
    put_at(&store, T0 + 20, &["other", "c"], 7);
    put_at(&store, T0 + 30, &["main", "a", "d"], 11);
    drop(store);
    let mut objects: Vec<_> = std::fs::read_dir(dir.join("symbols"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    objects.sort();
    assert_eq!(objects.len(), 4);
    objects
}

#[test]
fn a_flipped_byte_in_symbols_is_quarantined_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_damaged(dir.path(), 1);
    assert_eq!(stacks_at(&store, T0), stack(&["main", "a"], 3));
    assert_eq!(stacks_at(&store, T0 + 10), stack(&[LOST_FRAME], 5));
    // The ids after the lost object still load.
    assert_eq!(stacks_at(&store, T0 + 20), stack(&["other", "c"], 7));
    assert_eq!(stacks_at(&store, T0 + 30), stack(&["main", "a", "d"], 11));
    // New paths get new ids; the lost ones stay lost rather than turn into others.
    put_at(&store, T0 + 40, &["main", "b", "e"], 13);
    assert_eq!(stacks_at(&store, T0 + 40), stack(&["main", "b", "e"], 13));
    assert_eq!(stacks_at(&store, T0 + 10), stack(&[LOST_FRAME], 5));
    drop(store);
    let store = Store::open_dir(dir.path(), Config::default()).unwrap();
    assert_eq!(store.dictionary_stats().damaged_objects, 0);
    assert_eq!(stacks_at(&store, T0 + 10), stack(&[LOST_FRAME], 5));
    assert_eq!(stacks_at(&store, T0 + 40), stack(&["main", "b", "e"], 13));
}

#[test]
fn ids_of_a_damaged_newest_symbols_object_are_never_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_damaged(dir.path(), 3);
    put_at(&store, T0 + 40, &["main", "a", "e"], 13);
    assert_eq!(stacks_at(&store, T0 + 40), stack(&["main", "a", "e"], 13));
    assert_eq!(stacks_at(&store, T0 + 30), stack(&[LOST_FRAME], 11));
    assert_eq!(stacks_at(&store, T0 + 20), stack(&["other", "c"], 7));
}

#[test]
fn a_damaged_block_does_not_stop_collection() {
    let memory = MemoryStorage::default();
    let mut sim = Sim::new(Arc::new(memory.clone()));
    sim.run(2 * RETENTION + 130);
    let run = memory.list("l0/").unwrap().pop().unwrap();
    let mut bytes = memory.get(&run).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    memory.put(&run, &bytes).unwrap();
    assert!(memory.list("symbols/").unwrap().len() > 1);
    let report = sim.store.collect_dictionary().unwrap();
    assert_eq!(report.unreadable, vec![run]);
    assert!(report.bytes_written > 0, "{report:?}");
    assert_eq!(memory.list("symbols/").unwrap().len(), 1);
}
