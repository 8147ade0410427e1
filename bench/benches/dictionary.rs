//! Dictionary size under code churn, with and without collection, for BENCHMARKS.md.
//!
//! Three services push a profile every minute for sixteen simulated days under a two-day
//! retention; each service deploys twice a day, and each deploy renames a fifth of its
//! functions (new call paths every day, as production code churn makes). The same
//! workload runs twice in this process: compaction with dictionary collection (the
//! default) and without (the dictionary only grows, as before collection existed).
//! Memory is the process's allocated bytes (a counting global allocator, one thread), the
//! dictionary's own estimate, and `symbols/` bytes on disk.
//!
//! `TMPDIR=/dev/shm cargo bench -p embers-bench --bench dictionary` (on disk, the WAL's
//! fsync per ingest dominates the run time, not what is measured)

// Counting the process's allocated bytes takes a global allocator, which is an unsafe
// trait; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use embers_bench::Rng;
use embers_profile::{Frame, Labels, StackTree};
use embers_store::{Config, FileStorage, Put, SeriesKey, Storage, Store};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` holds for `System.alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `realloc` itself.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const T0: i64 = 1_700_000_000;
const DAY: i64 = 86_400;
const DAYS: i64 = 16;
const RETENTION_DAYS: i64 = 2;
const FUNCTIONS: usize = 1_000;
const TEMPLATES: usize = 400;
const STACKS_PER_PROFILE: usize = 60;

/// The function at `slot` of `service` during `deploy`: a fifth of the slots get a new
/// name every deploy.
fn function(service: usize, slot: usize, deploy: i64) -> Frame {
    if slot.is_multiple_of(5) {
        Frame::at(
            format!("svc{service}::handlers::fn_{slot}_build{deploy}"),
            format!("src/handlers/mod_{}.rs", slot % 37),
            Some(slot as u32),
        )
    } else {
        Frame::at(
            format!("svc{service}::lib::fn_{slot}"),
            format!("src/lib/mod_{}.rs", slot % 53),
            Some(slot as u32),
        )
    }
}

/// Stack templates of a service: fixed slot sequences (the code's call structure).
fn templates(service: usize) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(service as u64 + 1);
    (0..TEMPLATES)
        .map(|_| {
            let depth = rng.range(6, 18) as usize;
            (0..depth)
                .map(|_| rng.range(0, FUNCTIONS as u64) as usize)
                .collect()
        })
        .collect()
}

struct Day {
    paths: usize,
    paths_ever: usize,
    dict_bytes: usize,
    allocated: usize,
    symbols_bytes: u64,
}

fn symbols_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("symbols"))
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn run(collect: bool) -> (Vec<Day>, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage: Arc<dyn Storage> = Arc::new(FileStorage::open(dir.path()).expect("storage"));
    let config = Config {
        retention: Some(Duration::from_secs((RETENTION_DAYS * DAY) as u64)),
        cache_bytes: 1 << 20,
        ..Config::default()
    };
    let store = Store::open(storage, dir.path().join("wal"), config).expect("opens");
    let templates: Vec<Vec<Vec<usize>>> = (0..3).map(templates).collect();
    let keys: Vec<SeriesKey> = (0..3)
        .map(|s| SeriesKey {
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
            labels: Labels::from_pairs([("service_name", format!("svc{s}").as_str())]),
        })
        .collect();
    let mut rng = Rng::new(7);
    let mut days = Vec::new();
    let mut gc_time = Duration::ZERO;
    let mut t = T0;
    for _ in 0..DAYS {
        let end = t + DAY;
        while t < end {
            let deploy = (t - T0) / (DAY / 2);
            let puts = (0..3)
                .map(|s| {
                    let mut tree = StackTree::new();
                    for _ in 0..STACKS_PER_PROFILE {
                        let template = &templates[s][rng.range(0, TEMPLATES as u64) as usize];
                        let frames: Vec<Frame> = template
                            .iter()
                            .map(|&slot| function(s, slot, deploy))
                            .collect();
                        tree.add_frames(frames.iter(), rng.range(1, 20) * 10_000_000);
                    }
                    Put {
                        key: keys[s].clone(),
                        time: t,
                        tree,
                        ..Default::default()
                    }
                })
                .collect();
            store.ingest(puts).expect("ingest");
            t += 60;
            if (t - T0) % 600 == 0 {
                store.flush().expect("flush");
            }
            if (t - T0) % 3600 == 0 {
                let started = Instant::now();
                if collect {
                    store.compact(t).expect("compact");
                } else {
                    store.compact_keeping_dictionary(t).expect("compact");
                }
                gc_time += started.elapsed();
            }
        }
        let stats = store.dictionary_stats();
        eprintln!(
            "collect={collect}: day {} done, {} paths",
            days.len() + 1,
            stats.paths
        );
        days.push(Day {
            paths: stats.paths,
            paths_ever: stats.paths_ever,
            dict_bytes: stats.heap_bytes,
            allocated: ALLOCATED.load(Ordering::Relaxed),
            symbols_bytes: symbols_bytes(dir.path()),
        });
    }
    (days, gc_time)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() {
    let idle = ALLOCATED.load(Ordering::Relaxed);
    let (with, with_time) = run(true);
    let (without, without_time) = run(false);
    println!("dictionary under churn: 3 services, a profile a minute, 2 deploys/day renaming 1/5 of the functions, retention {RETENTION_DAYS} d");
    println!("| day | paths with / without collection (ids ever given) | dictionary estimate MiB with / without | allocated MiB with / without | symbols/ KiB with / without |");
    println!("|---|---|---|---|---|");
    for (i, (w, o)) in with.iter().zip(&without).enumerate() {
        println!(
            "| {} | {} / {} ({}) | {:.1} / {:.1} | {:.1} / {:.1} | {} / {} |",
            i + 1,
            w.paths,
            o.paths,
            o.paths_ever,
            mib(w.dict_bytes),
            mib(o.dict_bytes),
            mib(w.allocated.saturating_sub(idle)),
            mib(o.allocated.saturating_sub(idle)),
            w.symbols_bytes / 1024,
            o.symbols_bytes / 1024,
        );
    }
    let (w, o) = (with.last().expect("days"), without.last().expect("days"));
    println!(
        "day {DAYS}: paths {:.2}x, dictionary bytes {:.2}x, symbols/ {:.2}x of the run without collection; compaction time {:.1} s with, {:.1} s without",
        w.paths as f64 / o.paths as f64,
        w.dict_bytes as f64 / o.dict_bytes as f64,
        w.symbols_bytes as f64 / o.symbols_bytes as f64,
        with_time.as_secs_f64(),
        without_time.as_secs_f64(),
    );
}
