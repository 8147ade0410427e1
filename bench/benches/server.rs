//! Server benchmarks for BENCHMARKS.md, each next to its baseline in the same run:
//!
//! - ingest: per-profile cost of the push path (decode, build series trees, WAL append
//!   with group commit) vs the bare gunzip + protobuf decode of the same bytes, and
//!   profiles/s through the store and over HTTP with concurrent clients;
//! - query: merged tree for 1 h, 1 day, 7 days and 30 days of 10 s data of one app, vs a
//!   naive merge of every 10 s leaf;
//! - storage: bytes on disk per stored profile vs the compressed bytes the client sent.
//!
//! `cargo bench -p embers-bench --bench server [-- ingest|query|storage]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use embers_bench::{client_pprof, median_time, on_cpu_ns, push_request, synthetic_profile, Rng};
use embers_formats::ReadLimits;
use embers_profile::{Labels, StackTree};
use embers_server::{pprof_puts, IngestBudget};
use embers_store::{Config, Put, Selector, Store};

fn base_labels() -> Labels {
    Labels::from_pairs([("service_name", "bench-app"), ("region", "us-east-1")])
}

fn ingest() {
    let limits = IngestBudget::default();
    let bodies: Vec<Vec<u8>> = (0..64).map(client_pprof).collect();
    let body = &bodies[0];
    let stacks = embers_formats::pprof::decode(body, &ReadLimits::default())
        .expect("decodes")
        .samples()
        .len();
    println!(
        "ingest: one profile = {} bytes gzipped pprof, {stacks} distinct stacks",
        body.len()
    );

    let floor = median_time(50, || {
        let p = embers_formats::pprof::decode_proto(body, &ReadLimits::default()).expect("decodes");
        std::hint::black_box(p);
    });
    let build = median_time(50, || {
        let puts = pprof_puts(
            body,
            &base_labels(),
            Some("process_cpu"),
            1_700_000_000,
            &limits,
        )
        .expect("valid");
        std::hint::black_box(puts);
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_dir(dir.path(), Config::default()).expect("store");
    let mut t = 1_700_000_000;
    let full = median_time(200, || {
        t += 10;
        let puts =
            pprof_puts(body, &base_labels(), Some("process_cpu"), t, &limits).expect("valid");
        store.ingest(puts).expect("ingest");
    });
    println!(
        "  floor (gunzip + protobuf decode)            {:>8.1} µs",
        floor.as_secs_f64() * 1e6
    );
    println!(
        "  decode + series trees                      {:>8.1} µs  = {:.2}× floor",
        build.as_secs_f64() * 1e6,
        ratio(build, floor)
    );
    println!(
        "  + store ingest (WAL, fsync, one client)    {:>8.1} µs  = {:.2}× floor",
        full.as_secs_f64() * 1e6,
        ratio(full, floor)
    );

    // Throughput with concurrent writers: group commit shares each fsync.
    for threads in [1, 4, 16] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open_dir(dir.path(), Config::default()).expect("store"));
        let per_thread = 2000 / threads;
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let store = Arc::clone(&store);
                let bodies = bodies.clone();
                std::thread::spawn(move || {
                    let limits = IngestBudget::default();
                    for i in 0..per_thread {
                        let labels = Labels::from_pairs([
                            ("service_name", format!("app-{w}")),
                            ("region", "us-east-1".into()),
                        ]);
                        let puts = pprof_puts(
                            &bodies[i % bodies.len()],
                            &labels,
                            Some("process_cpu"),
                            1_700_000_000 + 10 * i as i64,
                            &limits,
                        )
                        .expect("valid");
                        store.ingest(puts).expect("ingest");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("writer");
        }
        let secs = start.elapsed().as_secs_f64();
        let n = (per_thread * threads) as f64;
        println!(
            "  store, {threads:>2} writers: {:>7.0} profiles/s, {:>9.0} samples/s",
            n / secs,
            n * stacks as f64 / secs
        );
    }
    http_ingest(&bodies, stacks);
}

/// Profiles/s through a real server over HTTP (Connect Push), 8 concurrent clients.
fn http_ingest(bodies: &[Vec<u8>], stacks: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = embers_server::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        ..embers_server::ServerConfig::default()
    };
    let server = runtime
        .block_on(embers_server::Server::start(config))
        .expect("server");
    let url = format!("http://{}/push.v1.PusherService/Push", server.address());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run_until(async {
        let _ = rx.await;
    }));
    let requests: Vec<Vec<u8>> = bodies.iter().map(|b| push_request(b, "http-app")).collect();
    let clients = 8;
    let per_client = 250;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let url = url.clone();
            let requests = requests.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                for i in 0..per_client {
                    let r = agent
                        .post(&url)
                        .header("content-type", "application/proto")
                        .send(&requests[(i + c) % requests.len()][..])
                        .expect("push");
                    assert_eq!(r.status().as_u16(), 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client");
    }
    let secs = start.elapsed().as_secs_f64();
    let n = (clients * per_client) as f64;
    println!("  HTTP Push, {clients} clients:  {:>7.0} profiles/s, {:>9.0} samples/s (server and clients share the 2 cores)", n / secs, n * stacks as f64 / secs);
    let _ = tx.send(());
    runtime
        .block_on(serving)
        .expect("join")
        .expect("server stops cleanly");
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// One app, 10 s leaves over 30 days; each leaf a tree drawn from a fixed population of
/// stacks (as a steady service looks), compacted like the server does.
fn query() {
    let days = 30;
    let leaves = days * 8640;
    let population = synthetic_profile(2000, 600, 11).tree();
    let mut stacks: Vec<(Vec<embers_profile::Frame>, u64)> = Vec::new();
    population.for_each_stack(|s, v| {
        stacks.push((
            s.iter()
                .map(|id| population.symbols().get(*id).clone())
                .collect(),
            v,
        ))
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_dir(
        dir.path(),
        Config {
            cache_bytes: 1 << 30,
            ..Config::default()
        },
    )
    .expect("store");
    let t0: i64 = 1_700_000_000 - 1_700_000_000 % 86_400;
    let key = embers_store::SeriesKey {
        profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        labels: Labels::from_pairs([("service_name", "q-app"), ("__name__", "process_cpu")]),
    };
    let mut rng = Rng::new(3);
    let start = Instant::now();
    let mut batch = Vec::new();
    for leaf in 0..leaves {
        let mut tree = StackTree::new();
        for _ in 0..150 {
            let (s, v) = &stacks[rng.range(0, stacks.len() as u64) as usize];
            tree.add_frames(s.iter(), *v);
        }
        batch.push(Put {
            key: key.clone(),
            time: t0 + leaf as i64 * 10,
            tree,
            ..Default::default()
        });
        if batch.len() == 360 {
            store.ingest(std::mem::take(&mut batch)).expect("ingest");
            store.flush().expect("flush");
        }
        if leaf % 86_400 == 86_399 {
            eprintln!(
                "  loaded {} days in {:.0} s",
                (leaf + 1) / 8640,
                start.elapsed().as_secs_f64()
            );
        }
    }
    store.ingest(batch).expect("ingest");
    store.flush().expect("flush");
    let loaded = start.elapsed();
    let start = Instant::now();
    let report = store
        .compact(t0 + leaves as i64 * 10 + 3600)
        .expect("compact");
    println!("query: {days} days = {leaves} leaves of ~150 stacks loaded in {:.0} s, compacted into {} aggregates in {:.0} s", loaded.as_secs_f64(), report.aggregates, start.elapsed().as_secs_f64());
    let matchers = Selector::parse(r#"{service_name="q-app"}"#)
        .expect("selector")
        .matchers;
    let end = t0 + leaves as i64 * 10 - 1234; // not aligned: edges need finer blocks
    for (label, secs) in [
        ("1 hour", 3600),
        ("1 day", 86_400),
        ("7 days", 7 * 86_400),
        ("30 days", days as i64 * 86_400 - 3600),
    ] {
        let from = end - secs;
        let fresh = Store::open_dir(dir.path(), Config::default()).expect("reopen");
        let cold_start = Instant::now();
        let tree = fresh.merge(&matchers, from, end).expect("query");
        let cold = cold_start.elapsed();
        drop(fresh);
        let warm = median_time(5, || {
            std::hint::black_box(store.merge(&matchers, from, end).expect("query"));
        });
        let naive = median_time(1, || {
            std::hint::black_box(
                store
                    .merge_with_max_level(&matchers, from, end, 0)
                    .expect("query"),
            );
        });
        println!(
            "  {label:>8}: {:>7.1} ms warm, {:>7.1} ms cold (new process cache) | naive every-leaf merge {:>9.1} ms = {:>6.1}× | {} nodes",
            warm.as_secs_f64() * 1e3,
            cold.as_secs_f64() * 1e3,
            naive.as_secs_f64() * 1e3,
            ratio(naive, warm),
            tree.node_count()
        );
    }
}

/// Steady state: one app pushing a 10 s profile for 6 hours; bytes on disk per profile
/// after flushes and compaction, vs the gzipped pprof bytes received.
fn storage() {
    let limits = IngestBudget::default();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_dir(dir.path(), Config::default()).expect("store");
    let n = 6 * 360;
    let mut sent = 0usize;
    let t0 = 1_700_000_000 - 1_700_000_000 % 86_400;
    for i in 0..n {
        let body = client_pprof(i as u64);
        sent += body.len();
        store
            .ingest(
                pprof_puts(
                    &body,
                    &base_labels(),
                    Some("process_cpu"),
                    t0 + 10 * i as i64,
                    &limits,
                )
                .expect("valid"),
            )
            .expect("ingest");
        store.flush().expect("flush"); // the server flushes every 10 s: one run per profile
    }
    store.flush().expect("flush");
    store.compact(t0 + 10 * n as i64 + 3600).expect("compact");
    // Combined runs' originals are deleted a minute later; reopening (recovery) deletes
    // them at once, which is the steady state.
    drop(store);
    let store = Store::open_dir(dir.path(), Config::default()).expect("reopen");
    let (series, runs_objects, aggregate_objects) = store.counts();
    drop(store);
    let size = |sub: &str| -> (u64, u64) {
        let p = dir.path().join(sub);
        (walk(&p), allocated(&p))
    };
    let (runs, aggs) = (size("l0"), size("agg"));
    let other = [size("series"), size("symbols"), size("meta"), size("wal")];
    let other = (
        other.iter().map(|x| x.0).sum::<u64>(),
        other.iter().map(|x| x.1).sum::<u64>(),
    );
    let total = runs.0 + aggs.0 + other.0;
    let total_allocated = runs.1 + aggs.1 + other.1;
    let per = |x: u64| x as f64 / n as f64;
    println!(
        "storage: {n} profiles of one app ({series} series), flushed after each, {:.0} bytes sent per profile (gzipped pprof)",
        sent as f64 / n as f64
    );
    println!(
        "  on disk per profile: {:.0} bytes = {:.1} % of sent (runs {:.0} in {runs_objects} objects, aggregates {:.0} in {aggregate_objects}, catalog+dictionary+WAL {:.0})",
        per(total),
        total as f64 / sent as f64 * 100.0,
        per(runs.0),
        per(aggs.0),
        per(other.0)
    );
    println!(
        "  allocated by the file system (du): {:.0} bytes per profile = {:.1} % of sent",
        per(total_allocated),
        total_allocated as f64 / sent as f64 * 100.0
    );
}

fn walk(path: &std::path::Path) -> u64 {
    walk_with(path, &|m| m.len())
}

/// Bytes the file system allocated (whole blocks), as `du` counts.
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walk_with(path, &|m| m.blocks() * 512)
}

fn walk_with(path: &std::path::Path, size: &dyn Fn(&std::fs::Metadata) -> u64) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                walk_with(&e.path(), size)
            } else {
                size(&m)
            }
        })
        .sum()
}

/// What the ingest budget costs: the entry point (`decode_legacy`, wire counts checked
/// before decoding, every bound spent) vs the same decoder with no budget
/// (`pprof::decode_trees` with read limits only). The two alternate, pass by pass, and
/// each is timed in CPU time of this thread, so load on the machine falls on both alike.
fn budget() {
    use embers_formats::ingest::{decode_legacy, LegacyUpload};
    let bodies: Vec<Vec<u8>> = (0..16).map(client_pprof).collect();
    let budget = IngestBudget::default();
    let without = || {
        for body in &bodies {
            let trees =
                embers_formats::pprof::decode_trees(body, &ReadLimits::default()).expect("decodes");
            std::hint::black_box(trees);
        }
    };
    let with = || {
        for body in &bodies {
            let upload = LegacyUpload {
                body,
                format: "pprof",
                ..LegacyUpload::default()
            };
            std::hint::black_box(decode_legacy(&upload, &budget).expect("decodes"));
        }
    };
    let timed = |f: &dyn Fn()| {
        let start = on_cpu_ns();
        f();
        on_cpu_ns() - start
    };
    without();
    with();
    let rounds = 400;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(timed(&without));
        b.push(timed(&with));
    }
    a.sort_unstable();
    b.sort_unstable();
    let per = |ns: u64| ns as f64 / 1e3 / bodies.len() as f64;
    let cost = |with: u64, without: u64| (with as f64 / without as f64 - 1.0) * 100.0;
    println!("budget: decode of one client profile, CPU time over {rounds} alternating passes");
    println!("                                                median      fastest");
    println!(
        "  without the budget (pprof::decode_trees)      {:>7.1} µs  {:>7.1} µs",
        per(a[rounds / 2]),
        per(a[0])
    );
    println!(
        "  with it (ingest::decode_legacy, IngestBudget) {:>7.1} µs  {:>7.1} µs",
        per(b[rounds / 2]),
        per(b[0])
    );
    println!(
        "  cost of the budget                            {:>+7.1} %   {:>+7.1} %",
        cost(b[rounds / 2], a[rounds / 2]),
        cost(b[0], a[0])
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if run("ingest") {
        ingest();
    }
    if run("budget") {
        budget();
    }
    if which.iter().any(|w| w == "decode-loop") {
        // For profilers (`perf record`): the ingest decode path alone, in a loop.
        let body = client_pprof(1);
        let limits = IngestBudget::default();
        for _ in 0..3000 {
            std::hint::black_box(
                pprof_puts(
                    &body,
                    &base_labels(),
                    Some("process_cpu"),
                    1_700_000_000,
                    &limits,
                )
                .expect("valid"),
            );
        }
    }
    if run("storage") {
        storage();
    }
    if run("query") {
        query();
    }
}
