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
