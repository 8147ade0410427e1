//! The store end to end: what is ingested over a range is what a query over that range
//! returns, exactly, through flushes, compaction, restarts, crashes and retention.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{
    Config, FaultyStorage, MemoryStorage, Put, Selector, SeriesKey, Store, StoreError,
};

/// 2023-11-14 22:13:20 UTC, on a 10^5-leaf boundary so ranges cross every level.
const T0: i64 = 1_700_000_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(service: &str, region: &str) -> SeriesKey {
    SeriesKey {
        profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        labels: Labels::from_pairs([
            ("service_name", service),
            ("region", region),
            ("__name__", "process_cpu"),
        ]),
    }
}

fn random_tree(rng: &mut Rng) -> StackTree {
    let names = [
        "main", "serve", "handle", "foo", "bar", "baz", "json", "sql", "gc",
    ];
    let mut t = StackTree::new();
    for _ in 0..1 + rng.below(6) {
        let depth = 1 + rng.below(6) as usize;
        let frames: Vec<Frame> = (0..depth)
            .map(|_| {
                Frame::at(
                    names[rng.below(9) as usize],
                    "app.py",
                    Some(rng.below(3) as u32 + 1),
                )
            })
            .collect();
        t.add_frames(frames.iter(), 1 + rng.below(50));
    }
    t
}

/// Ingested puts, kept to compute what queries must return.
#[derive(Default)]
struct Truth(Vec<Put>);

impl Truth {
    fn total(&self, matches: impl Fn(&SeriesKey) -> bool, from: i64, until: i64) -> u64 {
        // The store's resolution is the 10 s leaf: a put counts if its leaf overlaps.
        let (first, end) = embers_store::leaves_for(from, until);
        self.0
            .iter()
            .filter(|p| matches(&p.key) && (first..end).contains(&embers_store::leaf_of(p.time)))
            .map(|p| p.tree.total())
            .sum()
    }

    fn tree(&self, matches: impl Fn(&SeriesKey) -> bool, from: i64, until: i64) -> StackTree {
        let (first, end) = embers_store::leaves_for(from, until);
        let mut out = StackTree::new();
        for p in self
            .0
            .iter()
            .filter(|p| matches(&p.key) && (first..end).contains(&embers_store::leaf_of(p.time)))
        {
            out.merge(&p.tree);
        }
        out
    }
}

fn ingest_hours(store: &Store, truth: &mut Truth, rng: &mut Rng, start: i64, seconds: i64) {
    for t in (start..start + seconds).step_by(10) {
        let mut puts = Vec::new();
        for (service, region) in [
            ("ride", "us-east-1"),
            ("ride", "eu-west-1"),
            ("shop", "us-east-1"),
        ] {
            if rng.below(10) < 8 {
                puts.push(Put {
                    key: key(service, region),
                    time: t + rng.below(10) as i64,
                    tree: random_tree(rng),
                    ..Default::default()
                });
            }
        }
        truth.0.extend(puts.iter().cloned());
        store.ingest(puts).unwrap();
    }
}

fn selector(s: &str) -> Vec<embers_store::Matcher> {
    s.parse::<Selector>().unwrap().matchers
}

fn check_ranges(store: &Store, truth: &Truth, rng: &mut Rng, span: i64) {
    type Matches = Box<dyn Fn(&SeriesKey) -> bool>;
    let queries: [(&str, Matches); 3] = [
        (
            r#"{service_name="ride"}"#,
            Box::new(|k: &SeriesKey| k.labels.get("service_name") == Some("ride")),
        ),
        (
            r#"{region=~"us-.*"}"#,
            Box::new(|k: &SeriesKey| k.labels.get("region") == Some("us-east-1")),
        ),
        (
            r#"{service_name="ride", region!="eu-west-1"}"#,
            Box::new(|k: &SeriesKey| k == &key("ride", "us-east-1")),
        ),
    ];
    for i in 0..40 {
        let (from, until) = if i == 0 {
            (T0 - 100, T0 + span + 100)
        } else {
            let a = T0 + rng.below(span as u64) as i64;
            (a, a + 1 + rng.below((T0 + span - a) as u64) as i64)
        };
        for (sel, matches) in &queries {
            let got = store.merge(&selector(sel), from, until).unwrap();
            let want = truth.tree(matches, from, until);
            assert_eq!(
                got.total(),
                truth.total(matches, from, until),
                "{sel} over {from}..{until}"
            );
            assert_eq!(
                got.to_sorted_stacks(),
                want.to_sorted_stacks(),
                "{sel} over {from}..{until}"
            );
        }
    }
}

fn open(storage: &MemoryStorage, wal: &std::path::Path) -> Store {
    Store::open(Arc::new(storage.clone()), wal.into(), Config::default()).unwrap()
}

#[test]
fn round_trip_is_exact_across_flushes_levels_and_restarts() {
    let wal = tempfile::tempdir().unwrap();
    let storage = MemoryStorage::default();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut truth = Truth::default();
    let span = 6 * 3600;
    {
        let store = open(&storage, wal.path());
        // Head only, then flushed runs, then aggregates at every level that is complete.
        ingest_hours(&store, &mut truth, &mut rng, T0, 1800);
        check_ranges(&store, &truth, &mut rng, 1800);
        store.flush().unwrap();
        // Flushed every 100 s, as a server would (more often, even): many small runs.
        for start in (T0 + 1800..T0 + span).step_by(100) {
            ingest_hours(&store, &mut truth, &mut rng, start, 100);
            store.flush().unwrap();
        }
        check_ranges(&store, &truth, &mut rng, span);
        store.flush().unwrap();
        let (_, runs_before, _) = store.counts();
        let report = store.compact(T0 + span + 3600).unwrap();
        assert!(report.aggregates > 200, "{report:?}");
        // Small runs of every ended 1,000 s block became one object each; the originals
        // are still on storage (deleted a minute later), so the restart below also checks
        // that recovery does not count them twice.
        assert!(report.combined >= 20, "{report:?}");
        assert!(store.counts().1 < runs_before, "{runs_before} runs before");
        check_ranges(&store, &truth, &mut rng, span);
        // Left unflushed: the next open replays it from the WAL.
        ingest_hours(&store, &mut truth, &mut rng, T0 + span, 600);
    }
    let store = open(&storage, wal.path());
    check_ranges(&store, &truth, &mut rng, span + 600);
    // Timelines agree with the trees.
    let (first, totals) = store
        .totals(&selector(r#"{service_name="shop"}"#), T0, T0 + span, 100)
        .unwrap();
    assert_eq!(first, embers_store::leaf_of(T0));
    let series_totals: Vec<u64> = totals.values().next().unwrap().clone();
    assert_eq!(series_totals.len(), (span as usize).div_ceil(1000));
    for (i, total) in series_totals.iter().enumerate() {
        let from = T0 + i as i64 * 1000;
        let until = (from + 1000).min(T0 + span);
        let want = truth.total(
            |k| k.labels.get("service_name") == Some("shop"),
            from,
            until,
        );
        assert_eq!(*total, want, "step {i}");
    }
}

#[test]
fn late_data_counts_once_aggregates_exist() {
    let wal = tempfile::tempdir().unwrap();
    let storage = MemoryStorage::default();
    let store = open(&storage, wal.path());
    let mut rng = Rng(7);
    let mut truth = Truth::default();
    ingest_hours(&store, &mut truth, &mut rng, T0, 3600);
    store.flush().unwrap();
    store.compact(T0 + 7200).unwrap();
    // An agent that was cut off sends a window from the middle of the compacted hour.
    ingest_hours(&store, &mut truth, &mut rng, T0 + 1230, 20);
    check_ranges(&store, &truth, &mut rng, 3600);
    store.flush().unwrap();
    check_ranges(&store, &truth, &mut rng, 3600);
    // The 100 s and 1,000 s blocks around it are stale; the 10,000 s one is not complete.
    assert_eq!(
        store.compact(T0 + 7200).unwrap().aggregates,
        2,
        "stale aggregates rebuilt"
    );
    check_ranges(&store, &truth, &mut rng, 3600);
}

#[test]
fn failed_flushes_lose_nothing_and_recovery_counts_once() {
    let wal = tempfile::tempdir().unwrap();
    let memory = MemoryStorage::default();
    let mut rng = Rng(42);
    let mut truth = Truth::default();
    for allowed in 0..4 {
        let faulty = Arc::new(FaultyStorage::new(memory.clone(), allowed));
        let store = Store::open(faulty.clone(), wal.path().into(), Config::default()).unwrap();
        ingest_hours(&store, &mut truth, &mut rng, T0 + allowed as i64 * 600, 600);
        // The flush dies part-way (catalog, run objects, commit marker: each may fail).
        assert!(matches!(store.flush(), Err(StoreError::Unavailable(_))));
        check_ranges(&store, &truth, &mut rng, 2400);
        // "Crash": drop without closing, reopen on what storage and WAL hold.
    }
    let store = open(&memory, wal.path());
    check_ranges(&store, &truth, &mut rng, 2400);
    store.flush().unwrap();
    let store = open(&memory, wal.path());
    check_ranges(&store, &truth, &mut rng, 2400);
}

#[test]
fn a_failed_flush_is_retried_by_the_next() {
    let wal = tempfile::tempdir().unwrap();
    let memory = MemoryStorage::default();
    let faulty = Arc::new(FaultyStorage::new(memory.clone(), 1));
    let store = Store::open(faulty.clone(), wal.path().into(), Config::default()).unwrap();
    let mut rng = Rng(5);
    let mut truth = Truth::default();
    ingest_hours(&store, &mut truth, &mut rng, T0, 300);
    assert!(store.flush().is_err());
    ingest_hours(&store, &mut truth, &mut rng, T0 + 300, 300);
    faulty.allow_puts(usize::MAX);
    store.flush().unwrap();
    check_ranges(&store, &truth, &mut rng, 600);
    drop(store);
    let store = open(&memory, wal.path());
    check_ranges(&store, &truth, &mut rng, 600);
}

#[test]
fn retention_deletes_old_objects() {
    let wal = tempfile::tempdir().unwrap();
    let storage = MemoryStorage::default();
    let config = Config {
        retention: Some(Duration::from_secs(3600)),
        ..Config::default()
    };
    let store = Store::open(Arc::new(storage.clone()), wal.path().into(), config).unwrap();
    let mut rng = Rng(11);
    let mut truth = Truth::default();
    for hour in 0..4 {
        ingest_hours(&store, &mut truth, &mut rng, T0 + hour * 3600, 3600);
        store.flush().unwrap();
    }
    store.compact(T0 + 4 * 3600).unwrap();
    let objects = |prefix: &str| embers_store::Storage::list(&storage, prefix).unwrap().len();
    let before = objects("l0/") + objects("agg/");
    let end = T0 + 4 * 3600;
    let report = store.compact(end + 600).unwrap();
    assert!(report.deleted > 0);
    assert!(objects("l0/") + objects("agg/") < before);
    let all = selector(r#"{service_name=~".+"}"#);
    let kept_from = end + 600 - 3600;
    assert_eq!(
        store.merge(&all, T0, kept_from - 10).unwrap().total(),
        0,
        "expired data is gone"
    );
    let want = truth.total(|_| true, kept_from, end);
    assert_eq!(store.merge(&all, T0, end).unwrap().total(), want);
}

#[test]
fn series_limit_refuses_the_whole_request() {
    let wal = tempfile::tempdir().unwrap();
    let config = Config {
        max_series_per_service: 2,
        ..Config::default()
    };
    let store = Store::open(
        Arc::new(MemoryStorage::default()),
        wal.path().into(),
        config,
    )
    .unwrap();
    let tree = random_tree(&mut Rng(3));
    store
        .ingest(vec![Put {
            key: key("a", "1"),
            time: T0,
            tree: tree.clone(),
            ..Default::default()
        }])
        .unwrap();
    let err = store
        .ingest(vec![
            Put {
                key: key("a", "2"),
                time: T0,
                tree: tree.clone(),
                ..Default::default()
            },
            Put {
                key: key("a", "3"),
                time: T0,
                tree: tree.clone(),
                ..Default::default()
            },
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::Limit(_)), "{err}");
    assert_eq!(
        store
            .series(&selector(r#"{service_name="a"}"#), T0, T0 + 10)
            .len(),
        1
    );
    store
        .ingest(vec![Put {
            key: key("b", "1"),
            time: T0,
            tree,
            ..Default::default()
        }])
        .unwrap();
}

#[test]
fn ingest_and_queries_run_concurrently() {
    let wal = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&MemoryStorage::default(), wal.path()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut rng = Rng(100 + w);
                let mut total = 0;
                for i in 0..300 {
                    let tree = random_tree(&mut rng);
                    total += tree.total();
                    store
                        .ingest(vec![Put {
                            key: key("c", &w.to_string()),
                            time: T0 + i,
                            tree,
                            ..Default::default()
                        }])
                        .unwrap();
                    if i % 100 == 0 {
                        store.flush().unwrap();
                    }
                }
                total
            })
        })
        .collect();
    let reader = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for _ in 0..50 {
                store
                    .merge(&selector(r#"{service_name="c"}"#), T0, T0 + 300)
                    .unwrap();
                store.compact(T0 + 10_000).unwrap();
            }
        })
    };
    let total: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    reader.join().unwrap();
    assert_eq!(
        store
            .merge(&selector(r#"{service_name="c"}"#), T0, T0 + 300)
            .unwrap()
            .total(),
        total
    );
    let syncs = store
        .stats
        .wal_syncs
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(syncs <= 1200 + 20, "one fsync per group at most: {syncs}");
}

#[test]
fn a_retried_write_is_stored_once_across_flushes_and_restarts() {
    use embers_store::Ingested;
    let storage = MemoryStorage::default();
    let wal = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let tree = random_tree(&mut rng);
    let put = || {
        vec![Put {
            key: key("app", "eu"),
            time: T0,
            tree: tree.clone(),
            ..Default::default()
        }]
    };
    let ids = |id: &str| vec![id.to_owned()];
    let total = |store: &Store| store.merge(&selector("{}"), T0, T0 + 10).unwrap().total();
    let store = open(&storage, wal.path());
    assert_eq!(
        store.ingest_once(&ids("w1"), put()).unwrap(),
        Ingested::Stored
    );
    assert_eq!(
        store.ingest_once(&ids("w1"), put()).unwrap(),
        Ingested::Duplicate
    );
    drop(store);
    // From the WAL record.
    let store = open(&storage, wal.path());
    assert_eq!(
        store.ingest_once(&ids("w1"), put()).unwrap(),
        Ingested::Duplicate
    );
    store.flush().unwrap();
    drop(store);
    // From the record that opens the WAL segment after the flush.
    let store = open(&storage, wal.path());
    assert_eq!(
        store.ingest_once(&ids("w1"), put()).unwrap(),
        Ingested::Duplicate
    );
    assert_eq!(
        store.ingest_once(&ids("w2"), put()).unwrap(),
        Ingested::Stored
    );
    store.flush().unwrap();
    drop(store);
    let store = open(&storage, wal.path());
    assert_eq!(total(&store), 2 * tree.total());
    for id in ["w1", "w2"] {
        assert_eq!(
            store.ingest_once(&ids(id), put()).unwrap(),
            Ingested::Duplicate
        );
    }
}
