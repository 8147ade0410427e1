//! Format compatibility: a data directory written by each format version (objects, the
//! dictionary, aggregates and an unflushed WAL record) must open and answer queries with
//! this build, exactly. `tests/data/v1-store` was written by format version 1 and is never
//! regenerated; version 1 dictionaries are migrated on open (checked below).
//! `tests/data/v2-store` is written by the generator in this file: run
//! `EMBERS_REGENERATE_GOLDEN=1 cargo test -p embers-store --test compat` only when
//! `FORMAT_VERSION` is bumped (it writes `v<FORMAT_VERSION>-store`), never to paper over
//! a change.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::copy_dir;

use std::path::{Path, PathBuf};

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{
    Config, Put, Selector, SeriesKey, Store, StoreError, FORMAT_VERSION, OLDEST_SUPPORTED,
};

const T0: i64 = 1_700_000_000;

fn golden(version: u16) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/v{version}-store"))
}

/// The puts of a golden directory: 2 services × 200 leaves, then one more put. From
/// version 2 on, a frame that changes every 80 leaves adds paths to later flushes (the
/// dictionary then has a compacted object and segments after it).
fn puts(version: u16) -> Vec<Put> {
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
            if version >= 2 {
                let late = Frame::named(format!("release_{}", i / 80));
                tree.add_frames([&main, &late], 20_000_000);
            }
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
                ..Default::default()
            });
        }
    }
    out
}

fn expected(version: u16, service: &str, from: i64, until: i64) -> StackTree {
    let mut t = StackTree::new();
    for p in puts(version) {
        if p.key.labels.get("service_name") == Some(service) && p.time >= from && p.time < until {
            t.merge(&p.tree);
        }
    }
    t
}

/// Writes `v<FORMAT_VERSION>-store`: flushes of 40 puts, a dictionary collection after
/// the fifth, compaction, and the last put left in the WAL.
fn generate() {
    let dir = golden(FORMAT_VERSION);
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open_dir(&dir, Config::default()).unwrap();
    let mut all = puts(FORMAT_VERSION);
    let last = all.pop().unwrap();
    for (i, chunk) in all.chunks(40).enumerate() {
        store.ingest(chunk.to_vec()).unwrap();
        store.flush().unwrap();
        if i == 4 {
            store.collect_dictionary().unwrap();
        }
    }
    store.compact(T0 + 20_000).unwrap();
    store.ingest(vec![last]).unwrap(); // stays in the WAL
    drop(store);
    // The lock is the running process's, not part of the data.
    std::fs::remove_file(dir.join("embers.lock")).unwrap();
}

/// Opens a copy of the golden directory of `version` and checks every answer exactly.
fn open_and_check(version: u16, dir: &Path) -> Store {
    let store = Store::open_dir(dir, Config::default()).unwrap();
    assert_eq!(
        store.counts(),
        (2, 3, 25),
        "series, combined and plain runs, aggregates"
    );
    assert_eq!(store.dictionary_stats().damaged_objects, 0);
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
                version,
                service,
                from - from.rem_euclid(10),
                until + (10 - until.rem_euclid(10)) % 10,
            );
            assert_eq!(
                got.to_sorted_stacks(),
                want.to_sorted_stacks(),
                "v{version} {service} {from}..{until}"
            );
        }
    }
    store
}

fn symbols(dir: &Path) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = std::fs::read_dir(dir.join("symbols"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            let version = u16::from_le_bytes([bytes[8], bytes[9]]);
            (e.file_name().into_string().unwrap(), version)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn version_1_directory_opens_answers_and_its_dictionary_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden(1), dir.path());
    assert_eq!(
        symbols(dir.path()),
        vec![("00000000000000000001.sym".to_owned(), 1)]
    );
    let store = open_and_check(1, dir.path());
    // The version 1 segment became one version 2 compacted object, named with the ids'
    // ends; blocks and catalogs are read as they are.
    assert_eq!(
        symbols(dir.path()),
        vec![(
            "00000000000000000001-full-0000000008-0000000009.sym".to_owned(),
            2
        )]
    );
    drop(store);
    open_and_check(1, dir.path());
}

#[test]
fn version_2_directory_opens_and_answers() {
    if std::env::var_os("EMBERS_REGENERATE_GOLDEN").is_some() {
        generate();
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden(2), dir.path());
    let before = symbols(dir.path());
    assert!(before.iter().all(|(_, v)| *v == 2), "{before:?}");
    assert!(
        before[0].0.contains("-full-") && before.len() > 1,
        "{before:?}"
    );
    let store = open_and_check(2, dir.path());
    assert_eq!(symbols(dir.path()), before, "nothing to migrate");
    drop(store);
    open_and_check(2, dir.path());
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
        copy_dir(&golden(1), dir.path());
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
    copy_dir(&golden(1), dir.path());
    let key = first_catalog(dir.path());
    set_version(dir.path(), &key, FORMAT_VERSION + 1, false);
    let store = Store::open_dir(dir.path(), Config::default()).unwrap();
    assert_eq!(store.quarantined().len(), 1);
    assert_eq!(store.quarantined()[0].key, key);
}
