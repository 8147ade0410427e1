//! Format compatibility: a data directory written by format version 1 (objects, the
//! dictionary, aggregates and an unflushed WAL record) must open and answer queries with
//! this build. Regenerate with `EMBERS_REGENERATE_GOLDEN=1 cargo test -p embers-store
//! --test compat` only when adding a new version's directory, never to paper over a change.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::copy_dir;

use std::path::{Path, PathBuf};

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{
    Config, Put, Selector, SeriesKey, Store, StoreError, FORMAT_VERSION, OLDEST_SUPPORTED,
};

const T0: i64 = 1_700_000_000;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1-store")
}

/// The puts of the golden directory: 2 services × 200 leaves, then one more put.
fn puts() -> Vec<Put> {
    let mut out = Vec::new();
    for i in 0..=200i64 {
        for (service, weight) in [("api", 3u64), ("worker", 5)] {
            let mut tree = StackTree::new();
            let main = Frame::at("main", "app.py", Some(1));
            let f = Frame::at(
                format!("handler_{}", i % 7),
                "app/views.py",
                Some(10 + (i % 7) as u32),
            );
            tree.add_frames([&main, &f], 10_000_000 * (weight + (i % 3) as u64));
            tree.add_frames([&main], 10_000_000);
            out.push(Put {
                key: SeriesKey {
                    profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
                    labels: Labels::from_pairs([
                        ("service_name", service),
                        ("__name__", "process_cpu"),
                    ]),
                },
                time: T0 + 10 * i,
                tree,
            });
        }
    }
    out
}

fn expected(service: &str, from: i64, until: i64) -> StackTree {
    let mut t = StackTree::new();
    for p in puts() {
        if p.key.labels.get("service_name") == Some(service) && p.time >= from && p.time < until {
            t.merge(&p.tree);
        }
    }
    t
}

#[test]
fn version_1_directory_opens_and_answers() {
    if std::env::var_os("EMBERS_REGENERATE_GOLDEN").is_some() {
        let dir = golden();
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open_dir(&dir, Config::default()).unwrap();
        let mut all = puts();
        let last = all.pop().unwrap();
        for chunk in all.chunks(40) {
            store.ingest(chunk.to_vec()).unwrap();
            store.flush().unwrap();
        }
        store.compact(T0 + 20_000).unwrap();
        store.ingest(vec![last]).unwrap(); // stays in the WAL
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden(), dir.path());
    let store = Store::open_dir(dir.path(), Config::default()).unwrap();
    let (series, runs, aggregates) = store.counts();
    assert_eq!(series, 2);
    assert!(
        runs > 0 && aggregates > 0,
        "the golden data has runs and aggregates"
    );
    for service in ["api", "worker"] {
        let matchers = Selector::parse(&format!(r#"{{service_name="{service}"}}"#))
            .unwrap()
            .matchers;
        for (from, until) in [
            (T0, T0 + 2020),
            (T0 + 95, T0 + 1234),
            (T0 + 2000, T0 + 2010),
        ] {
            let got = store.merge(&matchers, from, until).unwrap();
            let want = expected(
                service,
                from - from.rem_euclid(10),
                until + (10 - until.rem_euclid(10)) % 10,
            );
            assert_eq!(
                got.to_sorted_stacks(),
                want.to_sorted_stacks(),
                "{service} {from}..{until}"
            );
        }
    }
}

/// Rewrites the envelope version of object `key` in `dir`, keeping the checksum right
/// (so the object is intact, only of another version) unless `fix_crc` is false.
fn set_version(dir: &Path, key: &str, version: u16, fix_crc: bool) {
    let path = dir.join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..10].copy_from_slice(&version.to_le_bytes());
    if fix_crc {
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn first_catalog(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("series"))
        .unwrap()
        .map(|e| format!("series/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    names.sort();
    names.swap_remove(0)
}

/// An intact object of a version outside `OLDEST_SUPPORTED..=FORMAT_VERSION` is refused
/// by name and version (not set aside as damage, not "any error").
#[test]
fn a_format_version_out_of_range_is_refused_by_name() {
    let outside = [
        OLDEST_SUPPORTED.checked_sub(1),
        Some(FORMAT_VERSION + 1),
        Some(u16::MAX),
    ];
    for version in outside.into_iter().flatten() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&golden(), dir.path());
        let key = first_catalog(dir.path());
        set_version(dir.path(), &key, version, true);
        let err = Store::open_dir(dir.path(), Config::default()).unwrap_err();
        match &err {
            StoreError::UnsupportedVersion {
                key: k,
                found,
                oldest,
                newest,
            } => {
                assert_eq!(
                    (k, *found, *oldest, *newest),
                    (&key, version, OLDEST_SUPPORTED, FORMAT_VERSION)
                );
            }
            other => panic!("version {version}: expected UnsupportedVersion, got {other}"),
        }
        assert!(err.to_string().contains("use a newer Embers"), "{err}");
        assert!(dir.path().join(&key).exists(), "refused, not moved aside");
    }
}

/// A damaged version field fails the checksum: that is damage, quarantined, and the
/// store opens on the rest.
#[test]
fn a_damaged_version_field_is_damage_not_a_version() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden(), dir.path());
    let key = first_catalog(dir.path());
    set_version(dir.path(), &key, FORMAT_VERSION + 1, false);
    let store = Store::open_dir(dir.path(), Config::default()).unwrap();
    assert_eq!(store.quarantined().len(), 1);
    assert_eq!(store.quarantined()[0].key, key);
}
