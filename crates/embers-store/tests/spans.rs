//! Span profiles in the store: the samples of chosen spans over a range, exactly, through
//! the WAL, a restart, a flush, an unfinished flush, damage and retention; any number of
//! spans keeps one series.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{
    Config, Fault, FaultyStorage, MemoryStorage, Put, Schedule, Selector, SeriesKey, Storage,
    Store, StoreError,
};

const T0: i64 = 1_700_000_000;

fn tree(frames: &[&str], value: u64) -> StackTree {
    let mut t = StackTree::new();
    let frames: Vec<Frame> = frames.iter().map(|f| Frame::named(*f)).collect();
    t.add_frames(frames.iter(), value);
    t
}

fn key() -> SeriesKey {
    SeriesKey {
        profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        labels: Labels::from_pairs([("service_name", "app"), ("__name__", "process_cpu")]),
    }
}

/// One put at `time` with span `2i` running `checkout` (value 3) and span `2i + 1`
/// running `search` (value 5), and 7 samples in no span.
fn put(time: i64, i: u64) -> Put {
    let checkout = tree(&["main", "handle", "checkout"], 3);
    let search = tree(&["main", "handle", "search"], 5);
    let mut all = tree(&["main", "idle"], 7);
    all.merge(&checkout);
    all.merge(&search);
    Put {
        key: key(),
        time,
        tree: all,
        spans: vec![(2 * i, checkout), (2 * i + 1, search)],
        ..Default::default()
    }
}

fn all() -> Vec<embers_store::Matcher> {
    r#"{service_name="app"}"#.parse::<Selector>().unwrap().matchers
}

/// `(function, total)` of the leaves of a tree, sorted.
fn leaves(tree: &StackTree) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = tree
        .functions(embers_profile::SortBy::SelfValue)
        .into_iter()
        .filter(|f| f.self_value > 0)
        .map(|f| (f.frame.function.clone(), f.self_value))
        .collect();
    out.sort();
    out
}

fn open(storage: Arc<dyn Storage>, wal: &std::path::Path, config: Config) -> Store {
    Store::open(storage, wal.into(), config).unwrap()
}

/// Asserts what the spans of puts `0..n` (at `T0 + 10 i`) answer.
fn check(store: &Store, n: u64) {
    let even: Vec<u64> = (0..n).map(|i| 2 * i).collect();
    let odd: Vec<u64> = (0..n).map(|i| 2 * i + 1).collect();
    let until = T0 + 10 * n as i64;
    let got = store.merge_spans(&all(), T0, until, &even).unwrap();
    assert_eq!(leaves(&got), vec![("checkout".into(), 3 * n)]);
    let got = store.merge_spans(&all(), T0, until, &odd).unwrap();
    assert_eq!(leaves(&got), vec![("search".into(), 5 * n)]);
    // One span of each kind, in the leaf of its put only.
    let got = store.merge_spans(&all(), T0, until, &[0, 3]).unwrap();
    assert_eq!(
        leaves(&got),
        vec![("checkout".into(), 3), ("search".into(), 5)]
    );
    // Out of range, or another service: nothing.
    let got = store.merge_spans(&all(), T0 + 10, until, &[0]).unwrap();
    assert_eq!(got.total(), 0);
    let other = r#"{service_name="other"}"#.parse::<Selector>().unwrap().matchers;
    assert_eq!(
        store.merge_spans(&other, T0, until, &even).unwrap().total(),
        0
    );
    // The series' tree has every sample.
    assert_eq!(store.merge(&all(), T0, until).unwrap().total(), 15 * n);
}

#[test]
fn span_profiles_survive_a_restart_and_a_flush_and_keep_one_series() {
    let wal = tempfile::tempdir().unwrap();
    let memory = MemoryStorage::default();
    let store = open(Arc::new(memory.clone()), wal.path(), Config::default());
    let n = 50;
    for i in 0..n {
        store.ingest(vec![put(T0 + 10 * i as i64, i)]).unwrap();
    }
    assert_eq!(store.counts().0, 1, "spans are not series");
    check(&store, n);
    // A crash before any flush: the WAL replays the spans.
    drop(store);
    let store = open(Arc::new(memory.clone()), wal.path(), Config::default());
    check(&store, n);
    store.flush().unwrap();
    assert_eq!(store.span_objects(), 1, "one span object per run of leaves");
    assert_eq!(store.head_pairs(), 0);
    check(&store, n);
    drop(store);
    let store = open(Arc::new(memory.clone()), wal.path(), Config::default());
    check(&store, n);
    assert_eq!(memory.list("spans/").unwrap().len(), 1);
}

#[test]
fn an_unfinished_flush_leaves_no_span_counted_twice() {
    let wal = tempfile::tempdir().unwrap();
    let memory = MemoryStorage::default();
    // Every put of `meta/flushed` fails: the flush writes runs and span objects, then
    // stops before it is done.
    let faulty = Arc::new(FaultyStorage::with(
        memory.clone(),
        Fault::NoSpace,
        Schedule::Prefix {
            prefix: "meta/flushed".into(),
            after: 0,
        },
        0,
    ));
    let store = open(faulty, wal.path(), Config::default());
    for i in 0..3 {
        store.ingest(vec![put(T0 + 10 * i as i64, i)]).unwrap();
    }
    assert!(store.flush().is_err());
    assert_eq!(memory.list("spans/").unwrap().len(), 1);
    drop(store);
    let store = open(Arc::new(memory.clone()), wal.path(), Config::default());
    assert_eq!(
        store.span_objects(),
        0,
        "removed: the WAL replays its spans"
    );
    check(&store, 3);
}

#[test]
fn a_damaged_span_object_is_quarantined_and_the_rest_answers() {
    let wal = tempfile::tempdir().unwrap();
    let memory = MemoryStorage::default();
    let store = open(Arc::new(memory.clone()), wal.path(), Config::default());
    store.ingest(vec![put(T0, 0)]).unwrap();
    store.flush().unwrap();
    store.ingest(vec![put(T0 + 100, 1)]).unwrap();
    store.flush().unwrap();
    let keys = memory.list("spans/").unwrap();
    assert_eq!(keys.len(), 2);
    let mut bytes = memory.get(&keys[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    memory.put(&keys[0], &bytes).unwrap();
    let got = store
        .merge_spans(&all(), T0, T0 + 200, &[0, 1, 2, 3])
        .unwrap();
    // The damaged object held spans 0 and 1; spans 2 and 3 answer.
    assert_eq!(
        leaves(&got),
        vec![("checkout".into(), 3), ("search".into(), 5)]
    );
    assert_eq!(store.quarantined().len(), 1);
    assert_eq!(memory.list("spans/").unwrap().len(), 1);
    // The trees were never in it.
    assert_eq!(store.merge(&all(), T0, T0 + 200).unwrap().total(), 30);
}

#[test]
fn retention_drops_span_objects_with_their_leaves() {
    let wal = tempfile::tempdir().unwrap();
    let memory = MemoryStorage::default();
    let config = Config {
        retention: Some(Duration::from_secs(3600)),
        ..Config::default()
    };
    let store = open(Arc::new(memory.clone()), wal.path(), config);
    store.ingest(vec![put(T0, 0)]).unwrap();
    store.flush().unwrap();
    store.ingest(vec![put(T0 + 3000, 1)]).unwrap();
    store.flush().unwrap();
    // And one still in the head.
    store.ingest(vec![put(T0 + 20, 2)]).unwrap();
    assert_eq!(memory.list("spans/").unwrap().len(), 2);
    store.compact(T0 + 3600 + 100).unwrap();
    assert_eq!(memory.list("spans/").unwrap().len(), 1);
    assert_eq!(store.span_objects(), 1);
    let got = store
        .merge_spans(&all(), T0, T0 + 4000, &[0, 1, 2, 3, 4, 5])
        .unwrap();
    assert_eq!(
        leaves(&got),
        vec![("checkout".into(), 3), ("search".into(), 5)]
    );
}

#[test]
fn spans_must_be_part_of_their_tree() {
    let wal = tempfile::tempdir().unwrap();
    let store = open(
        Arc::new(MemoryStorage::default()),
        wal.path(),
        Config::default(),
    );
    let mut bad = put(T0, 0);
    bad.spans.push((9, tree(&["main", "elsewhere"], 1)));
    let err = store.ingest(vec![bad]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(m) if m.contains("0000000000000009")));
    let mut bad = put(T0, 0);
    bad.spans.push((9, tree(&["main", "idle"], 8)));
    assert!(store.ingest(vec![bad]).is_err(), "more than the tree has");
    assert_eq!(store.head_pairs(), 0);
}

/// The crash matrix for span data: every fault kind at every object put of two flushes,
/// crashing (the store dropped unclosed) right after the faulted flush or after carrying
/// on (more writes, the next flushes); then a reopen: every acknowledged span exactly
/// once.
#[test]
fn span_data_is_exact_after_a_fault_at_any_put_and_a_crash() {
    for fault in Fault::ALL {
        for at in 0..8 {
            for carry_on in [false, true] {
                let wal = tempfile::tempdir().unwrap();
                let memory = MemoryStorage::default();
                let faulty = Arc::new(FaultyStorage::with(
                    memory.clone(),
                    fault,
                    Schedule::At(at),
                    at as u64,
                ));
                let store = open(faulty.clone(), wal.path(), Config::default());
                for i in 0..3 {
                    store.ingest(vec![put(T0 + 10 * i as i64, i)]).unwrap();
                }
                let _ = store.flush();
                let mut n = 3;
                if carry_on {
                    for i in 3..5 {
                        store.ingest(vec![put(T0 + 10 * i as i64, i)]).unwrap();
                    }
                    n = 5;
                    let _ = store.flush();
                    let _ = store.flush(); // a retry of a failed one
                }
                drop(store);
                let store = open(Arc::new(memory.clone()), wal.path(), Config::default());
                let context = format!("{fault:?} at put {at}, carrying on: {carry_on}");
                let even: Vec<u64> = (0..n).map(|i| 2 * i).collect();
                let got = store.merge_spans(&all(), T0, T0 + 50, &even).unwrap();
                assert_eq!(leaves(&got), vec![("checkout".into(), 3 * n)], "{context}");
                let total = store.merge(&all(), T0, T0 + 50).unwrap().total();
                assert_eq!(total, 15 * n, "{context}");
            }
        }
    }
}

#[test]
fn fsck_reads_span_objects_and_a_restart_quarantines_nothing_intact() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_dir(dir.path(), Config::default()).unwrap();
        store.ingest(vec![put(T0, 0)]).unwrap();
        store.flush().unwrap();
        store.ingest(vec![put(T0 + 100, 1)]).unwrap();
        store.close().unwrap();
    }
    let report = embers_store::fsck(dir.path(), false).unwrap();
    assert_eq!(report.damaged(), 0, "{report}");
    assert_eq!(report.kinds["spans"].checked, 2);
    let store = Store::open_dir(dir.path(), Config::default()).unwrap();
    assert!(store.quarantined().is_empty());
    let got = store
        .merge_spans(&all(), T0, T0 + 200, &[0, 1, 2, 3])
        .unwrap();
    assert_eq!(
        leaves(&got),
        vec![("checkout".into(), 6), ("search".into(), 10)]
    );
    drop(store);
    let objects: Vec<_> = std::fs::read_dir(dir.path().join("spans"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut bytes = std::fs::read(&objects[0]).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 1;
    std::fs::write(&objects[0], bytes).unwrap();
    let report = embers_store::fsck(dir.path(), false).unwrap();
    assert_eq!(report.kinds["spans"].damaged.len(), 1, "{report}");
}
