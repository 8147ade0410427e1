//! Damage to each kind of object: the store still opens, the damaged object is moved to
//! quarantine (never deleted), everything else answers exactly what was ingested, and
//! `fsck` reports the same objects.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::copy_dir;

use std::collections::BTreeSet;
use std::path::Path;

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{fsck, Config, Put, Selector, SeriesKey, Store, QUARANTINE_PREFIX};

const T0: i64 = 1_700_000_000;
/// Puts at `T0 + 10 i` for `i` below this; the last one stays in the WAL.
const PUTS: i64 = 321;

fn put(service: &str, i: i64) -> Put {
    let mut tree = StackTree::new();
    let main = Frame::named("main");
    let f = Frame::at(format!("work_{}", i % 5), "app.py", Some(i as u32 % 9));
    tree.add_frames([&main, &f], 10 + (i % 7) as u64);
    tree.add_frames([&main], 1 + (i % 3) as u64);
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

/// A data directory with plain runs, combined runs, aggregates of every level, 32
/// catalogs, a dictionary, `meta/flushed` and an unflushed WAL record.
fn build(dir: &Path) {
    let store = Store::open_dir(dir, Config::default()).unwrap();
    // One flush per 100 s of both services.
    let flush_batches = |batches: std::ops::Range<i64>| {
        for batch in batches {
            let puts = (batch * 10..batch * 10 + 10)
                .flat_map(|i| [put("api", i), put("worker", i)])
                .collect();
            store.ingest(puts).unwrap();
            store.flush().unwrap();
        }
    };
    flush_batches(0..30);
    store.compact(T0 + 20_000).unwrap();
    flush_batches(30..32);
    store
        .ingest(vec![put("api", PUTS - 1), put("worker", PUTS - 1)])
        .unwrap();
}

/// What was ingested in the 10 s leaves covering `[from, until)`, less the puts in `lost`.
fn expected(service: &str, from: i64, until: i64, lost: &BTreeSet<i64>) -> StackTree {
    let (from, until) = (
        from - from.rem_euclid(10),
        until + (10 - until.rem_euclid(10)) % 10,
    );
    let mut t = StackTree::new();
    for i in 0..PUTS {
        let p = put(service, i);
        if p.time >= from && p.time < until && !lost.contains(&i) {
            t.merge(&p.tree);
        }
    }
    t
}

fn matchers(service: &str) -> Vec<embers_store::Matcher> {
    Selector::parse(&format!(r#"{{service_name="{service}"}}"#))
        .unwrap()
        .matchers
}

/// Every range answers what was ingested, less the puts in `lost`.
fn answers_exactly(store: &Store, ranges: &[(i64, i64)], lost: &BTreeSet<i64>) {
    for service in ["api", "worker"] {
        for &(from, until) in ranges {
            let got = store.merge(&matchers(service), from, until).unwrap();
            let want = expected(service, from, until, lost);
            assert!(
                got.to_sorted_stacks() == want.to_sorted_stacks(),
                "{service} {from}..{until}: total {} instead of {}",
                got.total(),
                want.total()
            );
            let (_, totals) = store.totals(&matchers(service), from, until, 100).unwrap();
            let total: u64 = totals.values().flatten().sum();
            assert_eq!(total, expected(service, from, until, lost).total());
        }
    }
}

/// Ranges across every kind of object: whole blocks, edges, the newest runs, the WAL.
const RANGES: [(i64, i64); 7] = [
    (T0, T0 + 3300),
    (T0, T0 + 1000),
    (T0 + 95, T0 + 1234),
    (T0 + 1000, T0 + 3000),
    (T0 + 2990, T0 + 3210),
    (T0 + 3100, T0 + 3200),
    (T0 + 3200, T0 + 3210),
];

/// Object keys under `prefix` (files below `dir/prefix`), sorted.
fn keys(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.join(prefix)];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn flip(dir: &Path, key: &str) {
    let path = dir.join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(dir: &Path, key: &str) {
    let path = dir.join(key);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() * 2 / 3]).unwrap();
}

/// Keys `fsck` finds damaged.
fn fsck_damaged(dir: &Path) -> BTreeSet<String> {
    let report = fsck(dir, false).unwrap();
    report
        .kinds
        .values()
        .flat_map(|k| k.damaged.iter().map(|d| d.key.clone()))
        .collect()
}

/// The original keys now under `quarantine/`, with their bytes equal to `originals`.
fn quarantined(dir: &Path) -> BTreeSet<String> {
    keys(dir, QUARANTINE_PREFIX.trim_end_matches('/'))
        .into_iter()
        .filter(|k| !k.ends_with(".reason"))
        .map(|k| k.splitn(3, '/').nth(2).unwrap().to_owned())
        .collect()
}

struct Case {
    dir: tempfile::TempDir,
    /// Bytes of the objects before damage, to show quarantine kept what it moved.
    before: Vec<(String, Vec<u8>)>,
}

fn case(golden: &Path, damage: impl FnOnce(&Path) -> Vec<String>) -> Case {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(golden, dir.path());
    let damaged = damage(dir.path());
    let before = damaged
        .into_iter()
        .filter_map(|k| std::fs::read(dir.path().join(&k)).ok().map(|b| (k, b)))
        .collect();
    Case { dir, before }
}

impl Case {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every object moved aside is in quarantine byte for byte, and gone from its place.
    fn kept_in_quarantine(&self) {
        let moved = keys(self.path(), "quarantine");
        for (key, bytes) in &self.before {
            let q = moved
                .iter()
                .find(|m| m.ends_with(&format!("/{key}")))
                .unwrap_or_else(|| panic!("{key} is not in quarantine: {moved:?}"));
            assert_eq!(&std::fs::read(self.path().join(q)).unwrap(), bytes);
            assert!(!self.path().join(key).exists(), "{key} still in place");
        }
    }
}

/// The directory after one more start, which deleted the runs compaction combined
/// (they outlive their combined run by a minute, or until a start).
/// A copy of `golden` with one byte of `key` flipped.
fn flipped(golden: &Path, key: &str) -> Case {
    case(golden, |d| {
        flip(d, key);
        vec![key.to_owned()]
    })
}

fn golden() -> tempfile::TempDir {
    let dir = golden_with_originals();
    drop(Store::open_dir(dir.path(), Config::default()).unwrap());
    dir
}

/// The directory as a crash left it: originals of combined runs still there.
fn golden_with_originals() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    dir
}

fn first(dir: &Path, prefix: &str, pred: impl Fn(&str) -> bool) -> String {
    keys(dir, prefix)
        .into_iter()
        .find(|k| pred(k))
        .unwrap_or_else(|| panic!("no object under {prefix}"))
}

#[test]
fn an_intact_directory_is_clean() {
    let g = golden();
    let report = fsck(g.path(), false).unwrap();
    assert_eq!(report.damaged(), 0, "{report}");
    for kind in [
        "catalog",
        "dictionary",
        "run",
        "combined run",
        "aggregate",
        "meta/flushed",
        "wal",
    ] {
        assert!(report.kinds[kind].checked > 0, "{kind}: {report}");
    }
    let store = Store::open_dir(g.path(), Config::default()).unwrap();
    answers_exactly(&store, &RANGES, &BTreeSet::new());
    assert!(store.quarantined().is_empty());
}

#[test]
fn a_damaged_run_loses_its_leaves_only_and_says_so() {
    let g = golden();
    // The newest plain run: leaves of puts 310..320, covered by no aggregate.
    let run = first(g.path(), "l0", |k| {
        k.matches('-').count() == 2 && k.contains("-000170000310-")
    });
    let c = case(g.path(), |d| {
        truncate(d, &run);
        vec![run.clone()]
    });
    assert_eq!(fsck_damaged(c.path()), BTreeSet::from([run.clone()]));
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    let lost: BTreeSet<i64> = (310..320).collect();
    answers_exactly(&store, &RANGES, &lost);
    c.kept_in_quarantine();
    assert_eq!(
        store
            .stats
            .damaged_reads
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let warnings = store.damage_warnings(T0 + 3000, T0 + 3300);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&run), "{warnings:?}");
    assert!(store.damage_warnings(T0, T0 + 3000).is_empty());
    drop(store);
    // After a restart the loss is still reported, from the quarantine's contents.
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    assert_eq!(store.damage_warnings(T0 + 3100, T0 + 3110).len(), 1);
    answers_exactly(&store, &RANGES, &lost);
}

#[test]
fn a_damaged_aggregate_is_answered_from_finer_blocks() {
    let g = golden();
    let agg = first(g.path(), "agg", |k| k.starts_with("agg/2/"));
    let c = flipped(g.path(), &agg);
    assert_eq!(fsck_damaged(c.path()), BTreeSet::from([agg.clone()]));
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    answers_exactly(&store, &RANGES, &BTreeSet::new());
    c.kept_in_quarantine();
    assert!(
        store.damage_warnings(T0, T0 + 3300).is_empty(),
        "nothing was lost"
    );
    // Compaction builds it again from the blocks below it.
    store.compact(T0 + 20_000).unwrap();
    answers_exactly(&store, &RANGES, &BTreeSet::new());
}

#[test]
fn a_damaged_combined_run_is_quarantined_and_aggregates_still_answer() {
    let g = golden();
    let combined = first(g.path(), "l0", |k| k.matches('-').count() == 3);
    let c = flipped(g.path(), &combined);
    assert_eq!(fsck_damaged(c.path()), BTreeSet::from([combined.clone()]));
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    // Whole blocks come from aggregates, untouched.
    answers_exactly(
        &store,
        &[(T0, T0 + 1000), (T0 + 100, T0 + 300)],
        &BTreeSet::new(),
    );
    // A single leaf needs the run: it is quarantined, that leaf is missing and said so.
    let leaf = (T0 + 150, T0 + 160);
    answers_exactly(&store, &[leaf], &BTreeSet::from([15]));
    assert_eq!(store.damage_warnings(leaf.0, leaf.1).len(), 1);
    c.kept_in_quarantine();
}

#[test]
fn a_damaged_combined_run_keeps_the_originals_it_was_made_from() {
    let g = golden_with_originals();
    let combined = first(g.path(), "l0", |k| k.matches('-').count() == 3);
    let c = flipped(g.path(), &combined);
    let originals = keys(c.path(), "l0").len() - 1;
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    // Found at start-up (before deleting the originals it would have replaced).
    c.kept_in_quarantine();
    answers_exactly(&store, &RANGES, &BTreeSet::new());
    answers_exactly(&store, &[(T0 + 150, T0 + 160)], &BTreeSet::new());
    assert!(store.damage_warnings(T0, T0 + 3300).is_empty());
    // The originals of the damaged run stay; those of the intact ones go.
    assert_eq!(keys(c.path(), "l0").len(), originals - 20);
}

#[test]
fn a_damaged_catalog_object_is_quarantined_at_start() {
    let g = golden();
    let cat = first(g.path(), "series", |_| true);
    let c = flipped(g.path(), &cat);
    assert_eq!(fsck_damaged(c.path()), BTreeSet::from([cat.clone()]));
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    c.kept_in_quarantine();
    // Later flushes wrote both series' entries again: nothing is lost.
    answers_exactly(&store, &RANGES, &BTreeSet::new());
}

#[test]
fn a_damaged_flush_marker_is_rebuilt() {
    let g = golden();
    let c = case(g.path(), |d| {
        flip(d, "meta/flushed");
        vec!["meta/flushed".into()]
    });
    assert_eq!(
        fsck_damaged(c.path()),
        BTreeSet::from(["meta/flushed".to_owned()])
    );
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    assert!(quarantined(c.path()).contains("meta/flushed"));
    answers_exactly(&store, &RANGES, &BTreeSet::new());
    drop(store);
    assert!(
        fsck_damaged(c.path()).is_empty(),
        "meta/flushed was written again"
    );
}

/// Regression: a missing `meta/flushed` made recovery delete every run as "from a flush
/// that did not finish" (35 % of samples gone, no log line).
#[test]
fn a_missing_flush_marker_deletes_nothing() {
    let g = golden();
    let c = case(g.path(), |d| {
        std::fs::remove_file(d.join("meta/flushed")).unwrap();
        Vec::new()
    });
    let runs_before = keys(c.path(), "l0");
    assert_eq!(
        fsck_damaged(c.path()),
        BTreeSet::from(["meta/flushed".to_owned()])
    );
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    assert_eq!(keys(c.path(), "l0"), runs_before);
    answers_exactly(&store, &RANGES, &BTreeSet::new());
    drop(store);
    assert!(fsck_damaged(c.path()).is_empty());
}

#[test]
fn unknown_names_are_quarantined_not_deleted() {
    let g = golden();
    let strangers = [
        "l0/notes.blk",
        "agg/9/000000000001-1.blk",
        "series/backup.txt",
        "meta/owner",
    ];
    let c = case(g.path(), |d| {
        for k in strangers {
            std::fs::create_dir_all(d.join(k).parent().unwrap()).unwrap();
            std::fs::write(d.join(k), format!("left here by someone: {k}")).unwrap();
        }
        strangers.iter().map(|k| k.to_string()).collect()
    });
    let want: BTreeSet<String> = strangers.iter().map(|k| k.to_string()).collect();
    assert_eq!(fsck_damaged(c.path()), want);
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    c.kept_in_quarantine();
    assert_eq!(quarantined(c.path()), want);
    answers_exactly(&store, &RANGES, &BTreeSet::new());
}

#[test]
fn repair_quarantines_and_rebuilds_then_fsck_is_clean() {
    let g = golden();
    let run = first(g.path(), "l0", |k| {
        k.matches('-').count() == 2 && k.contains("-000170000310-")
    });
    let agg = first(g.path(), "agg", |k| k.starts_with("agg/1/"));
    let c = case(g.path(), |d| {
        flip(d, &run);
        flip(d, &agg);
        std::fs::remove_file(d.join("meta/flushed")).unwrap();
        vec![run.clone(), agg.clone()]
    });
    let report = fsck(c.path(), true).unwrap();
    assert_eq!(report.damaged(), 3, "{report}");
    assert_eq!(report.repaired.len(), 3, "{report}");
    c.kept_in_quarantine();
    assert!(fsck_damaged(c.path()).is_empty());
    let store = Store::open_dir(c.path(), Config::default()).unwrap();
    answers_exactly(&store, &RANGES, &(310..320).collect());
}

#[test]
fn fsck_refuses_a_directory_a_store_has_open() {
    let g = golden();
    let store = Store::open_dir(g.path(), Config::default()).unwrap();
    assert!(matches!(
        fsck(g.path(), true),
        Err(embers_store::StoreError::Locked(_))
    ));
    drop(store);
    fsck(g.path(), false).unwrap();
}

/// A series whose only catalog entry was in a damaged object cannot be queried any
/// more, but its id is never given to a new series (which would show its data).
#[test]
fn a_lost_catalog_entry_never_lends_its_data_to_a_new_series() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_dir(dir.path(), Config::default()).unwrap();
        store.ingest(vec![put("api", 0), put("lonely", 0)]).unwrap();
        store.flush().unwrap();
        store.ingest(vec![put("api", 1)]).unwrap();
        store.flush().unwrap();
    }
    let cat = first(dir.path(), "series", |_| true);
    flip(dir.path(), &cat);
    let store = Store::open_dir(dir.path(), Config::default()).unwrap();
    assert_eq!(quarantined(dir.path()), BTreeSet::from([cat]));
    let range = (T0, T0 + 1000);
    let got = store.merge(&matchers("api"), range.0, range.1).unwrap();
    let mut want = put("api", 0).tree;
    want.merge(&put("api", 1).tree);
    assert_eq!(got.to_sorted_stacks(), want.to_sorted_stacks());
    assert_eq!(
        store
            .merge(&matchers("lonely"), range.0, range.1)
            .unwrap()
            .total(),
        0
    );
    store.ingest(vec![put("newcomer", 50)]).unwrap();
    let got = store
        .merge(&matchers("newcomer"), range.0, range.1)
        .unwrap();
    assert_eq!(
        got.to_sorted_stacks(),
        put("newcomer", 50).tree.to_sorted_stacks()
    );
    store.flush().unwrap();
    let got = store
        .merge(&matchers("newcomer"), range.0, range.1)
        .unwrap();
    assert_eq!(
        got.to_sorted_stacks(),
        put("newcomer", 50).tree.to_sorted_stacks()
    );
}

#[test]
fn an_object_deleted_from_under_the_store_is_answered_around() {
    let g = golden();
    let store = Store::open_dir(g.path(), Config::default()).unwrap();
    let agg = first(g.path(), "agg", |k| k.starts_with("agg/2/"));
    let run = first(g.path(), "l0", |k| k.contains("-000170000310-"));
    std::fs::remove_file(g.path().join(&agg)).unwrap();
    std::fs::remove_file(g.path().join(&run)).unwrap();
    answers_exactly(&store, &RANGES, &(310..320).collect());
    let warnings = store.damage_warnings(T0 + 3100, T0 + 3200);
    assert!(
        warnings.len() == 1 && warnings[0].contains(&run),
        "{warnings:?}"
    );
}

/// The hard case for rebuilding `meta/flushed`: a flush wrote its catalog and runs and
/// crashed before the marker, and the marker of the flush before is lost too. The runs'
/// data is still in the WAL: it must count once, not twice, and nothing else may go.
#[test]
fn an_unfinished_flush_without_a_marker_counts_once() {
    use embers_store::{FaultyStorage, FileStorage};
    use std::sync::Arc;
    let g = golden();
    {
        // Of the catalog and two runs (leaf 320 from the WAL, 330..339) the second run
        // and the marker fail: a flush torn half-way (no new dictionary entries).
        let storage = FaultyStorage::new(FileStorage::open(g.path()).unwrap(), 2);
        let store =
            Store::open(Arc::new(storage), g.path().join("wal"), Config::default()).unwrap();
        let puts = (330..340)
            .flat_map(|i| [put("api", i), put("worker", i)])
            .collect();
        store.ingest(puts).unwrap();
        assert!(store.flush().is_err(), "the marker's put fails");
    }
    let runs = keys(g.path(), "l0");
    assert!(
        runs.iter().any(|k| k.contains("-000170000320-")),
        "{runs:?}"
    );
    assert!(
        !runs.iter().any(|k| k.contains("-000170000330-")),
        "{runs:?}"
    );
    std::fs::remove_file(g.path().join("meta/flushed")).unwrap();
    let store = Store::open_dir(g.path(), Config::default()).unwrap();
    let got = store.merge(&matchers("api"), T0 + 3300, T0 + 3400).unwrap();
    let mut want = put("api", 330).tree;
    for i in 331..340 {
        want.merge(&put("api", i).tree);
    }
    assert_eq!(got.to_sorted_stacks(), want.to_sorted_stacks());
    answers_exactly(&store, &RANGES, &BTreeSet::new());
}
