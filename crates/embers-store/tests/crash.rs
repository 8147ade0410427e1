//! Crash matrix: a seeded workload of ingest, flush, compaction and retention runs over a
//! [`FaultyStorage`] that injects one kind of fault at one put index (every index of the
//! run, every kind), then the store "crashes" (is dropped without `close`, WAL directory
//! and stored objects left as they are) and is reopened on what the storage holds.
//!
//! After reopening, against a model the test keeps of every acknowledged write:
//! - every acknowledged put is there exactly once (totals per series and 10 s leaf);
//! - nothing that was not expired is missing, and expired leaves hold at most what was
//!   written;
//! - nothing refused appears, and a retried write is counted once;
//! - the same holds after compaction and retention run again, and after another flush
//!   and reopen.
//!
//! One test per fault kind; a failing case prints its fault, put index, key and mode.
//! Rerun one case with `EMBERS_CRASH_CASE=<fault>:<index>:<mode>` (for example
//! `EMBERS_CRASH_CASE=Torn:17:at-fault cargo test -p embers-store --test crash torn`);
//! choose the random-fault seeds with `EMBERS_CRASH_SEEDS=16` or `EMBERS_CRASH_SEEDS=0..200`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use embers_profile::{Frame, Labels, StackTree};
use embers_store::{
    leaf_of, Config, Fault, FaultyStorage, Ingested, MemoryStorage, Put, Schedule, Selector,
    SeriesKey, Storage, Store,
};

/// On a 10^5-leaf boundary, so blocks of every level start here.
const T0: i64 = 1_700_000_000;
/// Simulated seconds per round of the workload.
const ROUND: i64 = 100;
const ROUNDS: i64 = 18;
/// Short enough that the first 1,000 s block expires during the run.
const RETENTION: i64 = 1000;
const SERVICES: [&str; 3] = ["ride", "shop", "pay"];

fn config() -> Config {
    Config {
        retention: Some(Duration::from_secs(RETENTION as u64)),
        compaction_delay: Duration::ZERO,
        ..Config::default()
    }
}

fn key(service: &str) -> SeriesKey {
    SeriesKey {
        profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        labels: Labels::from_pairs([("service_name", service), ("__name__", "process_cpu")]),
    }
}

fn tree(rng: &mut fastrand::Rng) -> StackTree {
    let names = ["main", "serve", "handle", "json", "sql", "gc"];
    let mut t = StackTree::new();
    for _ in 0..rng.usize(1..4) {
        let frames: Vec<Frame> = (0..rng.usize(1..5))
            .map(|_| Frame::named(names[rng.usize(..names.len())]))
            .collect();
        t.add_frames(frames.iter(), rng.u64(1..100));
    }
    t
}

/// What the store must hold: acknowledged totals per (service, leaf).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Model {
    acked: BTreeMap<(String, i64), u64>,
    /// The latest `now` compaction was asked to apply retention for.
    retention_now: Option<i64>,
    /// Simulated time at the end of the run.
    end: i64,
}

impl Model {
    fn cutoff(&self) -> i64 {
        self.retention_now
            .map_or(i64::MIN, |now| leaf_of(now - RETENTION))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Crash as soon as an operation failed with an injected fault, as if the process
    /// died in the middle of that write.
    AtFault,
    /// Handle the error as the server does (carry on, the next flush retries) and crash
    /// at the end of the run.
    AtEnd,
}

/// Runs the workload until the end or, with [`Mode::AtFault`], the first injected fault.
fn workload(store: &Store, faulty: &FaultyStorage<MemoryStorage>, mode: Mode, seed: u64) -> Model {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut model = Model::default();
    let faulted = || !faulty.injected().is_empty();
    for round in 0..ROUNDS {
        let now = T0 + (round + 1) * ROUND;
        model.end = now;
        for (i, service) in SERVICES.iter().enumerate() {
            let mut time = now - ROUND + rng.i64(0..ROUND);
            if rng.u8(0..5) == 0 {
                // Late data from an agent that was cut off, sometimes from a compacted
                // block, sometimes already expired.
                time -= rng.i64(ROUND..12 * ROUND);
            }
            let tree = tree(&mut rng);
            let total = tree.total();
            let id = vec![format!("{round}-{i}")];
            let put = vec![Put {
                key: key(service),
                time,
                tree,
                ..Default::default()
            }];
            match store.ingest_once(&id, put.clone()) {
                Ok(Ingested::Stored) => {
                    *model
                        .acked
                        .entry((service.to_string(), leaf_of(time)))
                        .or_default() += total;
                }
                Ok(Ingested::Duplicate) => panic!("request {id:?} was never sent before"),
                Err(_) => {}
            }
            // Some clients retry what was acknowledged (a lost answer): stored once.
            if rng.u8(0..8) == 0 {
                assert!(matches!(
                    store.ingest_once(&id, put),
                    Ok(Ingested::Duplicate) | Err(_)
                ));
            }
        }
        let flushed = store.flush();
        if mode == Mode::AtFault && flushed.is_err() && faulted() {
            return model;
        }
        if round % 3 == 2 {
            model.retention_now = Some(now);
            let compacted = store.compact(now);
            if mode == Mode::AtFault && compacted.is_err() && faulted() {
                return model;
            }
        }
    }
    model
}

/// What the store answers, per (service, leaf), over the whole run.
fn observed(store: &Store, end: i64) -> Result<BTreeMap<(String, i64), u64>, String> {
    let all = "{}".parse::<Selector>().unwrap().matchers;
    let from = T0 - 20 * ROUND;
    let names: BTreeMap<_, _> = store
        .series(&all, from, end + ROUND)
        .into_iter()
        .map(|(id, key)| (id, key.labels.get("service_name").unwrap_or("").to_owned()))
        .collect();
    let (first, totals) = store
        .totals(&all, from, end + ROUND, 1)
        .map_err(|e| format!("totals: {e}"))?;
    let mut out = BTreeMap::new();
    for (id, values) in totals {
        let name = names.get(&id).cloned().unwrap_or_else(|| format!("{id:?}"));
        for (i, v) in values.into_iter().enumerate() {
            if v > 0 {
                out.insert((name.clone(), first + i as i64), v);
            }
        }
    }
    Ok(out)
}

/// Compares the store with the model; `expired_gone`: retention has run since reopening,
/// so expired leaves must be empty.
fn check(store: &Store, model: &Model, expired_gone: bool) -> Result<(), String> {
    let got = observed(store, model.end)?;
    let cutoff = model.cutoff();
    let mut problems = Vec::new();
    for (k, &want) in &model.acked {
        let have = got.get(k).copied().unwrap_or(0);
        let ok = if k.1 >= cutoff {
            have == want
        } else if expired_gone {
            have == 0
        } else {
            have <= want
        };
        if !ok {
            problems.push(format!(
                "{} leaf {}: {have}, want {want}",
                k.0,
                k.1 - leaf_of(T0)
            ));
        }
    }
    for (k, have) in &got {
        if !model.acked.contains_key(k) {
            problems.push(format!(
                "{} leaf {}: {have} never acknowledged",
                k.0,
                k.1 - leaf_of(T0)
            ));
        }
    }
    // Whole-range merges go through aggregates, which totals per leaf never read.
    let kept_from = T0.max(cutoff.saturating_mul(10));
    for service in SERVICES {
        let sel = format!("{{service_name=\"{service}\"}}")
            .parse::<Selector>()
            .unwrap()
            .matchers;
        let merged = store
            .merge(&sel, kept_from, model.end + ROUND)
            .map_err(|e| format!("merge {service}: {e}"))?
            .total();
        let want: u64 = model
            .acked
            .iter()
            .filter(|(k, _)| k.0 == service && k.1 >= leaf_of(kept_from))
            .map(|(_, v)| v)
            .sum();
        if merged != want {
            problems.push(format!(
                "{service} merged from the cutoff: {merged}, want {want}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(6);
        Err(problems.join("; "))
    }
}

/// One case: run with `schedule`, crash, reopen, check; then compact, flush, reopen,
/// check again. `Err` says what went wrong.
fn case(fault: Fault, schedule: Schedule, mode: Mode, seed: u64) -> Result<usize, String> {
    let wal = tempfile::tempdir().unwrap();
    let memory = MemoryStorage::default();
    let faulty = Arc::new(FaultyStorage::with(memory.clone(), fault, schedule, seed));
    let model = {
        let store = Store::open(faulty.clone(), wal.path().into(), config()).unwrap();
        workload(&store, &faulty, mode, 0x5eed)
        // Crash: dropped without close; nothing more reaches storage or the WAL.
    };
    let injected = faulty.injected();
    let what = match injected.as_slice() {
        [] => "no fault".to_owned(),
        [i, rest @ ..] => format!(
            "{:?} at put {} ({}){}",
            i.fault,
            i.index,
            i.key,
            if rest.is_empty() {
                String::new()
            } else {
                format!(" and {} more", rest.len())
            }
        ),
    };
    let fail = |stage: &str, e: String| format!("{what}, {mode:?}: {stage}: {e}");
    let reopen = || Store::open(Arc::new(memory.clone()), wal.path().into(), config());
    let store = reopen().map_err(|e| fail("reopen", e.to_string()))?;
    check(&store, &model, false).map_err(|e| fail("after reopen", e))?;
    if let Some(now) = model.retention_now {
        store
            .compact(now)
            .map_err(|e| fail("compact after reopen", e.to_string()))?;
        check(&store, &model, true).map_err(|e| fail("after compaction", e))?;
    }
    store
        .flush()
        .map_err(|e| fail("flush after reopen", e.to_string()))?;
    drop(store);
    let store = reopen().map_err(|e| fail("second reopen", e.to_string()))?;
    check(&store, &model, false).map_err(|e| fail("after second reopen", e))?;
    Ok(faulty.puts())
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::AtFault => "at-fault",
        Mode::AtEnd => "at-end",
    }
}

/// Injects `fault` at every put index of the workload, crashing at once; and at every
/// third index, carrying on as the server would and crashing at the end.
fn matrix(fault: Fault) {
    // The run without faults: how many puts there are to fault.
    let puts = case(fault, Schedule::Never, Mode::AtEnd, 0).unwrap();
    assert!(puts > 50, "{puts} puts");
    // EMBERS_CRASH_CASE=Torn:17:at-fault runs one case.
    let only = std::env::var("EMBERS_CRASH_CASE").ok();
    let mut failures = Vec::new();
    let mut cases = 0;
    for mode in [Mode::AtFault, Mode::AtEnd] {
        for index in 0..puts {
            let name = format!("{fault:?}:{index}:{}", mode_name(mode));
            let skip = match &only {
                Some(only) => *only != name,
                None => mode == Mode::AtEnd && index % 3 != 0,
            };
            if skip {
                continue;
            }
            cases += 1;
            let seed = index as u64 * 31 + fault as u64;
            if let Err(e) = case(fault, Schedule::At(index), mode, seed) {
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} crash cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn no_space_at_any_put_loses_and_invents_nothing() {
    matrix(Fault::NoSpace);
}

#[test]
fn a_torn_object_at_any_put_loses_and_invents_nothing() {
    matrix(Fault::Torn);
}

#[test]
fn a_failed_rename_at_any_put_loses_and_invents_nothing() {
    matrix(Fault::FailedRename);
}

#[test]
fn an_ambiguous_failure_at_any_put_loses_and_invents_nothing() {
    matrix(Fault::Ambiguous);
}

/// The seeds of the random-fault test: `0..24`, or `EMBERS_CRASH_SEEDS` as `a..b` or one
/// seed (for example `EMBERS_CRASH_SEEDS=16` or `EMBERS_CRASH_SEEDS=100..400`).
fn random_seeds() -> std::ops::Range<u64> {
    let Ok(spec) = std::env::var("EMBERS_CRASH_SEEDS") else {
        return 0..24;
    };
    let bad = || panic!("EMBERS_CRASH_SEEDS={spec:?}: expected a..b or one seed");
    match spec.split_once("..") {
        Some((a, b)) => a.parse().unwrap_or_else(|_| bad())..b.parse().unwrap_or_else(|_| bad()),
        None => {
            let seed: u64 = spec.parse().unwrap_or_else(|_| bad());
            seed..seed + 1
        }
    }
}

#[test]
fn random_faults_of_every_kind_lose_and_invent_nothing() {
    let mut failures = Vec::new();
    for seed in random_seeds() {
        let fault = Fault::ALL[seed as usize % Fault::ALL.len()];
        let schedule = Schedule::Random { seed, percent: 4 };
        if let Err(e) = case(fault, schedule, Mode::AtEnd, seed) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A block combined twice (late data after its first combination) leaves, after a crash,
/// the originals, the first combined run and the second one holding both. Recovery used
/// to delete the first combined run as an original of the second and then read it back
/// to delete its own originals: the store did not open ("no object").
#[test]
fn a_block_combined_twice_reopens_after_a_crash_and_counts_once() {
    let wal = tempfile::tempdir().unwrap();
    let memory = MemoryStorage::default();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut model = Model::default();
    let put = |store: &Store, model: &mut Model, rng: &mut fastrand::Rng, time: i64| {
        let tree = tree(rng);
        *model
            .acked
            .entry(("ride".to_owned(), leaf_of(time)))
            .or_default() += tree.total();
        store
            .ingest(vec![Put {
                key: key("ride"),
                time,
                tree,
                ..Default::default()
            }])
            .unwrap();
        store.flush().unwrap();
    };
    {
        let store = Store::open(Arc::new(memory.clone()), wal.path().into(), config()).unwrap();
        // Leaves 11 and 50 of the first 1,000 s block, combined once the block ended.
        put(&store, &mut model, &mut rng, T0 + 110);
        put(&store, &mut model, &mut rng, T0 + 500);
        store.compact(T0 + 1100).unwrap();
        // Late data for the same block: combined again, with the first combined run.
        put(&store, &mut model, &mut rng, T0 + 300);
        store.compact(T0 + 1200).unwrap();
        model.end = T0 + 1200;
        // Crash: the originals outlive their combined runs by a minute.
    }
    let combined = memory
        .list("l0/")
        .unwrap()
        .into_iter()
        .filter(|k| k.matches('-').count() == 3)
        .count();
    assert_eq!(combined, 2, "the block was combined twice");
    let store = Store::open(Arc::new(memory.clone()), wal.path().into(), config()).unwrap();
    check(&store, &model, false).unwrap();
    assert_eq!(
        memory.list("l0/").unwrap().len(),
        1,
        "only the newest run is left"
    );
}
