//! Span profiles in the store: what keeping each span's samples costs at ingest and on
//! disk, and what `merge_spans` costs by range, each beside a baseline of the same run.
//!
//! One service pushes a 10 s profile (~150 stacks) every leaf for `HOURS` hours; in the
//! "spans" store each profile's samples are spread over `SPANS` spans (as a service
//! handling that many traced requests per 10 s), in the baseline store the same trees
//! carry no spans.
//!
//! `cargo bench -p embers-bench --bench spans`

use embers_bench::{median_time, on_cpu_ns, synthetic_profile, Rng};
use embers_profile::{Frame, Labels, StackTree};
use embers_store::{Config, Put, Selector, SeriesKey, Store};

const HOURS: i64 = 6;
const SPANS: u64 = 20;

fn walk(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

fn main() {
    let leaves = HOURS * 360;
    let population = synthetic_profile(2000, 600, 11).tree();
    let mut stacks: Vec<(Vec<Frame>, u64)> = Vec::new();
    population.for_each_stack(|s, v| {
        stacks.push((
            s.iter()
                .map(|id| population.symbols().get(*id).clone())
                .collect(),
            v,
        ))
    });
    let t0: i64 = 1_700_000_000 - 1_700_000_000 % 86_400;
    let key = SeriesKey {
        profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        labels: Labels::from_pairs([("service_name", "s-app"), ("__name__", "process_cpu")]),
    };
    // The same puts for both stores: sample k of leaf l is in span l * SPANS + k % SPANS.
    let mut rng = Rng::new(5);
    let mut puts: Vec<Put> = Vec::new();
    for leaf in 0..leaves {
        let mut tree = StackTree::new();
        let mut spans: Vec<StackTree> = (0..SPANS).map(|_| StackTree::new()).collect();
        for k in 0..150 {
            let (s, v) = &stacks[rng.range(0, stacks.len() as u64) as usize];
            tree.add_frames(s.iter(), *v);
            spans[(k % SPANS) as usize].add_frames(s.iter(), *v);
        }
        puts.push(Put {
            key: key.clone(),
            time: t0 + leaf * 10,
            tree,
            spans: spans
                .into_iter()
                .enumerate()
                .map(|(i, t)| (leaf as u64 * SPANS + i as u64 + 1, t))
                .collect(),
            ..Put::default()
        });
    }
    // Both stores are loaded batch by batch in turn, each timed in this thread's CPU time,
    // so load on the machine falls on both alike.
    let open = || {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_dir(dir.path(), Config::default()).expect("store");
        (dir, store)
    };
    let (plain_dir, plain) = open();
    let (dir, store) = open();
    let (mut plain_ns, mut span_ns) = (0u64, 0u64);
    for chunk in puts.chunks(360) {
        for (target, with_spans, ns) in
            [(&plain, false, &mut plain_ns), (&store, true, &mut span_ns)]
        {
            // Built before the clock starts: only the store's work is timed.
            let batch: Vec<Put> = chunk
                .iter()
                .map(|p| Put {
                    key: p.key.clone(),
                    time: p.time,
                    tree: p.tree.clone(),
                    spans: if with_spans {
                        p.spans.clone()
                    } else {
                        Vec::new()
                    },
                    ..Put::default()
                })
                .collect();
            let start = on_cpu_ns();
            // One put per request, as clients push.
            for put in batch {
                target.ingest(vec![put]).expect("ingest");
            }
            target.flush().expect("flush");
            *ns += on_cpu_ns() - start;
        }
    }
    let nodes =
        |f: &dyn Fn(&Put) -> usize| puts.iter().map(f).sum::<usize>() as f64 / leaves as f64;
    println!(
        "call-tree nodes per put: {:.0} in the tree, {:.0} in its spans' trees",
        nodes(&|p| p.tree.node_count()),
        nodes(&|p| p.spans.iter().map(|(_, t)| t.node_count()).sum())
    );
    let per_put = |ns: u64| ns as f64 / 1e3 / leaves as f64;
    println!(
        "ingest + flush, {leaves} puts of ~150 stacks, CPU time: {:.0} µs/put with {SPANS} spans each, {:.0} µs/put without = {:.2}×",
        per_put(span_ns),
        per_put(plain_ns),
        span_ns as f64 / plain_ns as f64
    );
    let runs = walk(&dir.path().join("l0"));
    let span_bytes = walk(&dir.path().join("spans"));
    println!(
        "on disk: spans/ {:.1} KiB per put ({:.0} B per span) beside l0/ {:.1} KiB per put = {:.2}× the runs (baseline store l0/: {:.1} KiB per put)",
        span_bytes as f64 / 1024.0 / leaves as f64,
        span_bytes as f64 / (leaves as f64 * SPANS as f64),
        runs as f64 / 1024.0 / leaves as f64,
        span_bytes as f64 / runs as f64,
        walk(&plain_dir.path().join("l0")) as f64 / 1024.0 / leaves as f64
    );
    let matchers = Selector::parse(r#"{service_name="s-app"}"#)
        .expect("selector")
        .matchers;
    let end = t0 + leaves * 10;
    // Ten spans of the last leaf, asked over ranges of growing length.
    let ids: Vec<u64> = (0..10)
        .map(|i| (leaves as u64 - 1) * SPANS + i + 1)
        .collect();
    for (label, secs) in [
        ("1 minute", 60),
        ("1 hour", 3600),
        ("6 hours", HOURS * 3600),
    ] {
        let from = end - secs;
        let spans = median_time(5, || {
            std::hint::black_box(
                store
                    .merge_spans(&matchers, from, end, &ids)
                    .expect("spans"),
            );
        });
        let merge = median_time(5, || {
            std::hint::black_box(store.merge(&matchers, from, end).expect("merge"));
        });
        println!(
            "  merge_spans of 10 spans over {label:>8}: {:>7.2} ms | merge of the whole range {:>7.2} ms",
            spans.as_secs_f64() * 1e3,
            merge.as_secs_f64() * 1e3
        );
    }
}
