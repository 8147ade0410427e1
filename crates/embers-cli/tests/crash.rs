//! Crash matrix out of process: the real `embers server` (flushing and compacting every
//! second, ten minutes of retention) is killed with SIGKILL at seeded random points while
//! writers push, and restarted on the same data directory, several times. Writes carry
//! timestamps over the whole retention window and a little beyond, so kills land in
//! ingest, flush, the combining of runs, aggregate building and retention alike.
//!
//! Every request is a distinct stack (`crash;req_N`, value N + 1). At the end:
//! - every acknowledged request not yet expired is there exactly once;
//! - a request whose answer was lost with the server (a transport error) is there at
//!   most once; one refused with a status is not there;
//! - nothing is there twice, nothing appears that was never sent.
//!
//! The seed is printed; rerun with `EMBERS_CRASH_SEED=<seed>`. The in-process matrix with
//! torn, failed and ambiguous object writes is `crates/embers-store/tests/crash.rs`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{enc, get, now, ServerHandle};

const RETENTION: u64 = 600;
const ROUNDS: u64 = 6;
const WRITERS: u64 = 2;

/// What one writer saw: request number → its timestamp, by outcome.
#[derive(Default)]
struct Outcomes {
    acked: BTreeMap<u64, u64>,
    refused: BTreeMap<u64, u64>,
    unknown: BTreeMap<u64, u64>,
}

/// Posts distinct stacks until `stop` or the server is gone.
fn writer(base: &str, first: u64, seed: u64, stop: &AtomicBool, acks: &AtomicU64) -> Outcomes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Outcomes::default();
    let agent = support::agent();
    let mut n = first;
    while !stop.load(Ordering::SeqCst) {
        // Up to 100 s past the retention, so some writes expire while the test runs.
        let t = now() - rng.u64(40..RETENTION + 100);
        let url = format!(
            "{base}/ingest?name=crash.cpu&from={t}&until={}&sampleRate=1000000000",
            t + 10
        );
        let body = format!("crash;req_{n} {}\n", n + 1);
        match agent
            .post(&url)
            .header("content-type", "text/plain")
            .send(body.as_bytes())
        {
            Ok(r) if r.status().as_u16() == 200 => {
                out.acked.insert(n, t);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => {
                out.refused.insert(n, t);
            }
            Err(_) => {
                out.unknown.insert(n, t);
                break;
            }
        }
        n += 1;
    }
    out
}

#[test]
fn acknowledged_writes_survive_sigkill_in_ingest_flush_compaction_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("EMBERS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now);
    eprintln!("EMBERS_CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let retention = format!("{RETENTION}s");
    let flags = ["--flush-interval", "1", "--retention", &retention];
    let mut all = Outcomes::default();
    for round in 0..ROUNDS {
        let mut server = ServerHandle::start(dir.path(), &flags);
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        // Killed after a seeded number of acknowledged writes: an event, not a clock.
        let kill_after = rng.u64(20..4000);
        let seeds: Vec<u64> = (0..WRITERS).map(|_| rng.u64(..)).collect();
        let base = server.url("");
        let outcomes = std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (base, stop, acks) = (base.as_str(), &stop, &acks);
                    let first = round * 10_000_000 + w * 1_000_000;
                    let seed = seeds[w as usize];
                    s.spawn(move || writer(base, first, seed, stop, acks))
                })
                .collect();
            while acks.load(Ordering::SeqCst) < kill_after
                && writers.iter().any(|w| !w.is_finished())
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            server.kill();
            stop.store(true, Ordering::SeqCst);
            writers
                .into_iter()
                .map(|w| w.join().unwrap())
                .collect::<Vec<_>>()
        });
        for o in outcomes {
            all.acked.extend(o.acked);
            all.refused.extend(o.refused);
            all.unknown.extend(o.unknown);
        }
        eprintln!(
            "round {round}: killed after {kill_after} acknowledged writes; {} so far",
            all.acked.len()
        );
    }
    assert!(
        all.acked.len() > 100,
        "the writers got through: {}",
        all.acked.len()
    );

    let server = ServerHandle::start(dir.path(), &flags);
    // Two maintenance passes after the restart (a flush counts only with something to
    // write, hence the markers): the first one's retention has been applied since.
    let marker = server.url(&format!("/ingest?name=marker.cpu&from={}", now()));
    let flushes = || {
        let (_, body) = get(&server.url("/metrics"));
        body.lines()
            .find_map(|l| {
                l.strip_prefix("embers_store_flushes_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    while flushes() < 2 {
        let (status, body) = support::post(&marker, "text/plain", b"marker 1\n");
        assert_eq!(status, 200, "marker push: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let checked_at = now();
    // Written at or after this is surely not expired yet (a leaf and a minute of margin).
    let kept = checked_at - RETENTION + 60;
    let from = all
        .acked
        .values()
        .chain(all.unknown.values())
        .min()
        .copied()
        .unwrap();
    let (status, body) = get(&server.url(&format!(
        "/render?query={}&from={from}&until={}&format=collapsed",
        enc("crash.cpu"),
        checked_at + 60
    )));
    assert_eq!(status, 200, "{body}");
    let stored: BTreeMap<u64, u64> = body
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (stack, v) = l.rsplit_once(' ').unwrap();
            let n = stack.strip_prefix("crash;req_").unwrap().parse().unwrap();
            (n, v.parse().unwrap())
        })
        .collect();
    let mut problems = Vec::new();
    for (n, t) in &all.acked {
        match stored.get(n) {
            Some(v) if *v == n + 1 => {}
            Some(v) => problems.push(format!("acknowledged {n} counted {}×", v / (n + 1))),
            None if *t >= kept => problems.push(format!("acknowledged {n} (t={t}) lost")),
            None => {}
        }
    }
    for (n, v) in &stored {
        if *v != n + 1 {
            problems.push(format!("{n} counted {}×", v / (n + 1)));
        }
        if all.refused.contains_key(n) {
            problems.push(format!("refused {n} stored"));
        } else if !all.acked.contains_key(n) && !all.unknown.contains_key(n) {
            problems.push(format!("{n} never sent"));
        }
    }
    // Retention ran: what was past it by a minute when the server last compacted is gone.
    let gone = checked_at - RETENTION - 60;
    let past: Vec<_> = all.acked.iter().filter(|(_, t)| **t < gone).collect();
    assert!(
        !past.is_empty(),
        "seed {seed}: no write old enough to test retention"
    );
    let still = past.iter().filter(|(n, _)| stored.contains_key(n)).count();
    if still > 0 {
        problems.push(format!(
            "{still} of {} writes past retention still answered",
            past.len()
        ));
    }
    let expired = all.acked.values().filter(|t| **t < kept).count();
    eprintln!(
        "{} acknowledged ({expired} near or past retention), {} unknown, {} refused, {} stored",
        all.acked.len(),
        all.unknown.len(),
        all.refused.len(),
        stored.len()
    );
    problems.truncate(20);
    assert!(problems.is_empty(), "seed {seed}:\n{}", problems.join("\n"));
}
