//! Faults the store must survive without losing or inventing acknowledged data.
//!
//! A full disk, for real: the store on a small tmpfs, filled by a filler file. A write
//! that cannot be made durable is refused (`Unavailable`) and never visible; the store
//! accepts writes again without reopening once space returns; after a reopen, every
//! acknowledged write is there exactly once, and nothing refused is. These tests mount a
//! tmpfs, which needs root (CI runs as root); where mounting is refused they say so and
//! return. Also: a damaged WAL record loses only its own write, and a failing object
//! store is reported until a flush gets through.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{Config, Put, Selector, SeriesKey, Store, StoreError};
use tmpfs::Tmpfs;

const T0: i64 = 1_700_000_000;

fn key() -> SeriesKey {
    SeriesKey {
        profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        labels: Labels::from_pairs([("service_name", "app")]),
    }
}

/// Write `i`: `main;w<i>` = 1000 + i, plus `main;w<i-1>;again` = 1 (a path write `i - 1`
/// interned: if that write was refused, its dictionary entries must be logged again),
/// plus enough unique frames that the record needs fresh pages on disk.
fn write(i: u64) -> Put {
    let mut tree = StackTree::new();
    let main = Frame::named("main");
    tree.add_frames([&main, &Frame::named(format!("w{i}"))], 1000 + i);
    if i > 0 {
        let previous = Frame::named(format!("w{}", i - 1));
        tree.add_frames([&main, &previous, &Frame::named("again")], 1);
    }
    for k in 0..200 {
        let pad = Frame::named(format!("pad-{i}-{k}-{}", "x".repeat(200)));
        tree.add_frames([&main, &pad], 1);
    }
    Put {
        key: key(),
        time: T0 + i as i64,
        tree,
        ..Default::default()
    }
}

/// What a query over everything returns, as `stack → value` (padding left out).
fn contents(store: &Store) -> BTreeMap<String, u64> {
    let selector: Selector = r#"{service_name="app"}"#.parse().unwrap();
    let tree = store.merge(&selector.matchers, T0, T0 + 3600).unwrap();
    tree.to_sorted_stacks()
        .into_iter()
        .map(|(frames, v)| {
            let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
            (names.join(";"), v)
        })
        .filter(|(stack, _)| !stack.contains("pad-"))
        .collect()
}

/// What the acknowledged writes should read as.
fn expected(acked: &[u64]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for &i in acked {
        out.insert(format!("main;w{i}"), 1000 + i);
        if i > 0 {
            *out.entry(format!("main;w{};again", i - 1)).or_insert(0) += 1;
        }
    }
    out
}

fn open(dir: &Path) -> Store {
    Store::open_dir(dir, Config::default()).unwrap()
}

#[test]
fn refused_writes_are_never_visible_and_writes_resume_without_reopening() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let data = fs.path().join("data");
    let store = open(&data);
    let mut acked = Vec::new();
    for i in 0..3 {
        store.ingest(vec![write(i)]).unwrap();
        acked.push(i);
    }
    assert_eq!(store.unwritable_reason(), None);

    let filler = fs.fill();
    for i in 3..6 {
        match store.ingest(vec![write(i)]) {
            Err(StoreError::Unavailable(why)) => assert!(!why.is_empty()),
            other => panic!("write {i} on a full disk answered {other:?}"),
        }
        assert_eq!(
            contents(&store),
            expected(&acked),
            "refused write {i} is visible"
        );
    }
    assert!(store.unwritable_reason().is_some());
    assert!(store.stats.write_errors.load(Ordering::Relaxed) >= 3);
    assert!(
        matches!(store.flush(), Err(StoreError::Unavailable(_))),
        "a flush on a full disk fails, and is retried later"
    );
    assert!(store.stats.flush_errors.load(Ordering::Relaxed) >= 1);
    assert_eq!(contents(&store), expected(&acked));

    std::fs::remove_file(filler).unwrap();
    // Write 6 uses a path only refused write 5 interned.
    for i in 6..9 {
        store.ingest(vec![write(i)]).unwrap();
        acked.push(i);
    }
    assert_eq!(store.unwritable_reason(), None, "healed without a restart");
    assert_eq!(contents(&store), expected(&acked));
    store.flush().unwrap();
    store.ingest(vec![write(9)]).unwrap();
    acked.push(9);
    assert_eq!(contents(&store), expected(&acked));

    drop(store);
    let store = open(&data);
    assert_eq!(
        contents(&store),
        expected(&acked),
        "after a reopen: every acknowledged write once, nothing refused"
    );
}

#[test]
fn a_flush_heals_the_store_when_space_returns_without_any_write() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let data = fs.path().join("data");
    let store = open(&data);
    store.ingest(vec![write(0)]).unwrap();
    store.flush().unwrap();
    let filler = fs.fill();
    assert!(store.ingest(vec![write(1)]).is_err());
    assert!(store.unwritable_reason().is_some());
    // With nothing to flush, the flush probes the disk: still full, still unwritable
    // (the few bytes that fit in the slack of a file's last page do not count).
    assert!(store.flush().is_err());
    assert!(store.unwritable_reason().is_some());
    std::fs::remove_file(filler).unwrap();
    // The maintenance loop's flush retries the WAL too.
    store.flush().unwrap();
    assert_eq!(store.unwritable_reason(), None);
    assert_eq!(contents(&store), expected(&[0]));
    drop(store);
    assert_eq!(contents(&open(&data)), expected(&[0]));
}

/// Many writes while the disk fills and empties again, from several threads: the
/// refused ones are gone for good, the acknowledged ones are there once, also after
/// replaying the WAL (whose dictionary entries refused records interned must replay).
#[test]
fn every_acknowledged_write_is_present_once_after_reopen() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let data = fs.path().join("data");
    let store = std::sync::Arc::new(open(&data));
    let mut acked = Vec::new();
    let mut refused = 0;
    for round in 0..4u64 {
        let filler = (round % 2 == 1).then(|| fs.fill());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    let i = 100 * round + 10 * t;
                    (i, store.ingest(vec![write(i)]))
                })
            })
            .collect();
        for t in threads {
            match t.join().unwrap() {
                (i, Ok(())) => acked.push(i),
                (_, Err(StoreError::Unavailable(_))) => refused += 1,
                (i, Err(e)) => panic!("write {i}: {e}"),
            }
        }
        if let Some(filler) = filler {
            std::fs::remove_file(filler).unwrap();
        }
        acked.sort_unstable();
        assert_eq!(contents(&store), expected(&acked));
    }
    assert!(refused > 0, "the full rounds refused writes");
    drop(store);
    assert_eq!(contents(&open(&data)), expected(&acked));
}

/// Regression: one flipped byte in the middle of a WAL segment dropped every later
/// record. Damage each record in turn: the store opens, and at most the one write whose
/// record was hit is missing (a damaged copy of a dictionary record loses nothing).
#[test]
fn a_damaged_wal_record_loses_only_its_own_write() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let writes: Vec<u64> = (0..6).collect();
    {
        let store = Store::open(
            std::sync::Arc::new(embers_store::MemoryStorage::default()),
            wal.clone(),
            Config::default(),
        )
        .unwrap();
        for &i in &writes {
            store.ingest(vec![write(i)]).unwrap();
        }
        // Dropped without a flush: everything is in the WAL only.
    }
    let segment = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 10)
        .unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let starts: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"\xEBWAL")
        .map(|(at, _)| at)
        .collect();
    assert!(
        starts.len() > writes.len(),
        "dictionary records and put records"
    );
    let mut lost_writes = Vec::new();
    for (r, &at) in starts.iter().enumerate() {
        let copy = tempfile::tempdir().unwrap();
        let mut damaged = bytes.clone();
        damaged[at + 14] ^= 0x10;
        std::fs::write(copy.path().join(segment.file_name().unwrap()), &damaged).unwrap();
        let store = Store::open(
            std::sync::Arc::new(embers_store::MemoryStorage::default()),
            copy.path().into(),
            Config::default(),
        )
        .unwrap_or_else(|e| panic!("record {r} damaged: {e}"));
        let got = contents(&store);
        if got == expected(&writes) {
            continue;
        }
        let missing = writes
            .iter()
            .copied()
            .find(|&i| {
                let rest: Vec<u64> = writes.iter().copied().filter(|&j| j != i).collect();
                got == expected(&rest)
            })
            .unwrap_or_else(|| panic!("record {r} damaged: more than one write lost"));
        lost_writes.push(missing);
    }
    assert_eq!(lost_writes, writes, "each write's own record lost only it");
}

/// A failing object store (flushes fail) makes the store report itself unwritable while
/// writes still go to the WAL; the next flush that gets through clears it.
#[test]
fn a_failing_object_store_is_reported_until_a_flush_succeeds() {
    let wal = tempfile::tempdir().unwrap();
    let storage = std::sync::Arc::new(embers_store::FaultyStorage::new(
        embers_store::MemoryStorage::default(),
        0,
    ));
    let store = Store::open(storage.clone(), wal.path().into(), Config::default()).unwrap();
    store.ingest(vec![write(0)]).unwrap();
    assert!(matches!(store.flush(), Err(StoreError::Unavailable(_))));
    assert!(store
        .unwritable_reason()
        .unwrap()
        .contains("injected fault"));
    assert_eq!(store.stats.flush_errors.load(Ordering::Relaxed), 1);
    store.ingest(vec![write(1)]).unwrap();
    storage.allow_puts(usize::MAX);
    store.flush().unwrap();
    assert_eq!(store.unwritable_reason(), None);
    assert_eq!(contents(&store), expected(&[0, 1]));
}
