//! A server keeps each tenant's store in `<data_dir>/tenants/<id>/`, inside the default
//! tenant's data directory. The outer store must never treat the inner stores' files as
//! its own: not when listing, recovering, quarantining or checking with `fsck`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{fsck, Config, FileStorage, Put, SeriesKey, Storage, Store};

const T0: i64 = 1_700_000_000;

fn put(service: &str, i: i64) -> Put {
    let mut tree = StackTree::new();
    tree.add_frames([&Frame::named("main"), &Frame::named(service)], 7);
    Put {
        key: SeriesKey {
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
            labels: Labels::from_pairs([("service_name", service), ("__name__", "process_cpu")]),
        },
        time: T0 + 10 * i,
        tree,
        ..Default::default()
    }
}

#[test]
fn the_outer_store_never_walks_into_a_nested_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let inner_dir = root.join("tenants").join("team-a");
    {
        let outer = Store::open_dir(root, Config::default()).unwrap();
        outer.ingest(vec![put("api", 0)]).unwrap();
        outer.flush().unwrap();
        let inner = Store::open_dir(&inner_dir, Config::default()).unwrap();
        inner
            .ingest((0..5).map(|i| put("api", i)).collect())
            .unwrap();
        inner.flush().unwrap();
        // An inner object whose name the outer store would call unknown or damaged.
        std::fs::write(inner_dir.join("l0").join("not-a-run"), b"junk").unwrap();
        inner.close().unwrap();
        outer.close().unwrap();
    }
    let storage = FileStorage::open(root).unwrap();
    let keys = storage.list("").unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| !k.starts_with("tenants/")),
        "the outer listing reached the nested store: {keys:?}"
    );
    // The inner store's own listing still sees its files.
    let inner_keys = FileStorage::open(&inner_dir).unwrap().list("l0/").unwrap();
    assert!(
        inner_keys.iter().any(|k| k == "l0/not-a-run"),
        "{inner_keys:?}"
    );

    // fsck of the outer directory checks only its own objects (one flushed run) …
    let report = fsck(root, true).unwrap();
    assert_eq!(report.damaged(), 0, "{report}");
    assert_eq!(report.kinds["run"].checked, 1, "{report}");
    // … and neither it nor reopening moved anything of the inner store.
    drop(Store::open_dir(root, Config::default()).unwrap());
    assert!(inner_dir.join("l0").join("not-a-run").exists());
    assert!(!root
        .join("tenants")
        .join("team-a")
        .join("quarantine")
        .exists());
    // The inner store still recovers its own directory: its data, and its own junk
    // quarantined there.
    let inner = Store::open_dir(&inner_dir, Config::default()).unwrap();
    assert_eq!(inner.counts().0, 1);
    let moved = FileStorage::open(&inner_dir)
        .unwrap()
        .list("quarantine/")
        .unwrap();
    assert!(moved.iter().any(|k| k.contains("not-a-run")), "{moved:?}");
}

/// A put of `value` in `main;frame` for service `api` at `T0`.
fn put_frame(frame: &str, value: u64) -> Put {
    let mut tree = StackTree::new();
    tree.add_frames([&Frame::named("main"), &Frame::named(frame)], value);
    Put {
        key: SeriesKey {
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
            labels: Labels::from_pairs([("service_name", "api"), ("__name__", "process_cpu")]),
        },
        time: T0,
        tree,
        ..Default::default()
    }
}

#[test]
fn stores_sharing_a_cache_never_read_each_others_blocks() {
    // Two tenants' stores written alike have objects of the same names (`l0/…` of
    // flush 1, the same leaf): one shared cache must keep them apart.
    let dir = tempfile::tempdir().unwrap();
    let cache = embers_store::SharedCache::new(64 << 20);
    let config = Config {
        shared_cache: Some(cache.clone()),
        ..Config::default()
    };
    let a = Store::open_dir(dir.path().join("a"), config.clone()).unwrap();
    let b = Store::open_dir(dir.path().join("b"), config).unwrap();
    a.ingest(vec![put_frame("only_in_a", 3)]).unwrap();
    b.ingest(vec![put_frame("only_in_b", 5)]).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    let runs = |d: &str| {
        FileStorage::open(dir.path().join(d))
            .unwrap()
            .list("l0/")
            .unwrap()
    };
    assert_eq!(
        runs("a"),
        runs("b"),
        "the test needs colliding object names"
    );
    let all = embers_store::Selector::parse("{}").unwrap().matchers;
    for _ in 0..2 {
        let from_a = a.merge(&all, T0 - 10, T0 + 10).unwrap();
        let from_b = b.merge(&all, T0 - 10, T0 + 10).unwrap();
        assert_eq!((from_a.total(), from_b.total()), (3, 5));
    }
    assert!(
        cache.bytes() > 0,
        "the runs were read through the shared cache"
    );
}
