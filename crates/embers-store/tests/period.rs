//! The sampling period of a series (pprof `period`) survives what the data survives: a
//! crash before a flush (WAL replay), a flush and reopen (catalog), a rewrite of the
//! catalog; a later profile of unknown period keeps it, a later known one replaces it;
//! stores written before periods were kept open with periods unknown (0).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::sync::Arc;

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{Config, MemoryStorage, Put, Selector, SeriesKey, Storage, Store};

const T0: i64 = 1_700_000_000;
const GO_CPU: i64 = 10_000_000;

fn key(service: &str) -> SeriesKey {
    SeriesKey {
        profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        labels: Labels::from_pairs([("service_name", service)]),
    }
}

fn put(service: &str, time: i64, period: i64) -> Put {
    let mut tree = StackTree::new();
    tree.add_frames([&Frame::named("main"), &Frame::named(service)], 3);
    let mut spans_tree = StackTree::new();
    spans_tree.add_frames([&Frame::named("main"), &Frame::named(service)], 1);
    Put {
        key: key(service),
        time,
        tree,
        // Spans for one service, so records carry periods with and without spans.
        spans: if service == "java" {
            vec![(7, spans_tree)]
        } else {
            Vec::new()
        },
        period,
    }
}

fn period(store: &Store, selector: &str) -> i64 {
    let matchers = Selector::parse(selector).unwrap().matchers;
    store.period(&matchers, T0 - 3600, T0 + 3600)
}

fn open(storage: &Arc<MemoryStorage>, wal: &Path) -> Store {
    Store::open(storage.clone(), wal.to_owned(), Config::default()).unwrap()
}

#[test]
fn period_survives_wal_replay_flush_and_reopen() {
    let wal = tempfile::tempdir().unwrap();
    let storage = Arc::new(MemoryStorage::default());
    {
        let store = open(&storage, wal.path());
        store
            .ingest(vec![put("go", T0, GO_CPU), put("legacy", T0, 0)])
            .unwrap();
        store.ingest(vec![put("java", T0, 2 * GO_CPU)]).unwrap();
        assert_eq!(period(&store, r#"{service_name="go"}"#), GO_CPU);
        assert_eq!(period(&store, r#"{service_name="legacy"}"#), 0);
        // A merge of series with differing periods says the largest (Go's profile.Merge).
        assert_eq!(period(&store, r#"{service_name=~"go|legacy"}"#), GO_CPU);
        assert_eq!(period(&store, r#"{service_name=~".+"}"#), 2 * GO_CPU);
        // Dropped without a flush: only the WAL has it.
    }
    {
        let store = open(&storage, wal.path());
        assert_eq!(
            period(&store, r#"{service_name="go"}"#),
            GO_CPU,
            "WAL replay"
        );
        assert_eq!(period(&store, r#"{service_name="java"}"#), 2 * GO_CPU);
        assert_eq!(period(&store, r#"{service_name="legacy"}"#), 0);
        store.flush().unwrap();
        // A later profile of unknown period keeps the known one.
        store.ingest(vec![put("go", T0 + 20, 0)]).unwrap();
        store.close().unwrap();
    }
    {
        let store = open(&storage, wal.path());
        assert_eq!(period(&store, r#"{service_name="go"}"#), GO_CPU, "catalog");
        assert_eq!(period(&store, r#"{service_name="java"}"#), 2 * GO_CPU);
        // A later known period replaces it, in memory and after many flushes (the
        // catalog is rewritten whole past 64 objects).
        for i in 0..70 {
            store
                .ingest(vec![put("go", T0 + 30 + i, GO_CPU / 2)])
                .unwrap();
            store.flush().unwrap();
        }
        assert_eq!(period(&store, r#"{service_name="go"}"#), GO_CPU / 2);
        store.close().unwrap();
    }
    let catalogs = storage.list("series/").unwrap();
    assert!(
        catalogs.iter().any(|k| k.ends_with("-full.cat")),
        "{catalogs:?}"
    );
    let store = open(&storage, wal.path());
    assert_eq!(period(&store, r#"{service_name="go"}"#), GO_CPU / 2);
    assert_eq!(period(&store, r#"{service_name="java"}"#), 2 * GO_CPU);
    assert_eq!(period(&store, r#"{service_name="legacy"}"#), 0);
    // Outside the series' data, nothing is selected: no period.
    let matchers = Selector::parse(r#"{service_name="go"}"#).unwrap().matchers;
    assert_eq!(store.period(&matchers, T0 + 7200, T0 + 7300), 0);
}

#[test]
fn stores_written_before_periods_open_with_periods_unknown() {
    for version in [1, 2] {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(format!("v{version}-store"));
        let dir = tempfile::tempdir().unwrap();
        common::copy_dir(&golden, dir.path());
        let store = Store::open_dir(dir.path(), Config::default()).unwrap();
        let all = Selector::parse(r#"{service_name=~".+"}"#).unwrap().matchers;
        assert!(!store.series(&all, T0 - 3600, T0 + 7200).is_empty());
        assert_eq!(store.period(&all, T0 - 3600, T0 + 7200), 0, "v{version}");
        // And they learn one from new data, kept over a reopen.
        let series = store.series(&all, T0, T0 + 10);
        let (_, key) = series.first().unwrap().clone();
        let matchers: Vec<_> = key
            .labels
            .iter()
            .map(|(k, v)| embers_store::Matcher::new(k, embers_store::MatchOp::Eq, v).unwrap())
            .collect();
        let mut tree = StackTree::new();
        tree.add_frames([&Frame::named("new")], 1);
        store
            .ingest(vec![Put {
                key: key.clone(),
                time: T0,
                tree,
                period: GO_CPU,
                ..Default::default()
            }])
            .unwrap();
        store.close().unwrap();
        drop(store);
        let store = Store::open_dir(dir.path(), Config::default()).unwrap();
        assert_eq!(store.period(&matchers, T0, T0 + 10), GO_CPU, "v{version}");
    }
}
