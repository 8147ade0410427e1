//! Codec throughput on a 100k-stack profile (issue "Foundation", Measure):
//! folded parse and pprof decode→tree in MB/s, each next to a baseline in the same run:
//! a bare line split for folded, and the bare gunzip + protobuf decode (the floor any
//! pprof reader pays) for pprof.
//!
//! Run: `cargo bench -p embers-bench --bench codecs`

use std::hint::black_box;

use embers_bench::{mb_per_s, median_time, synthetic_profile};
use embers_formats::{Format, ReadLimits, WriteOptions};

fn main() {
    let profile = synthetic_profile(100_000, 20_000, 42);
    let mut folded = Vec::new();
    embers_formats::write(
        &profile,
        Format::Folded,
        &WriteOptions::default(),
        &mut folded,
    )
    .expect("folded encodes");
    let limits = ReadLimits::default();
    println!(
        "profile: {} distinct stacks, {} frames",
        profile.samples().len(),
        profile.symbols.len()
    );

    // Baseline: the least any folded reader must do, split lines at the last space and
    // parse the count.
    let split = median_time(5, || {
        let text = std::str::from_utf8(&folded).expect("utf-8");
        let sum: u64 = text
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(_, c)| c.parse::<u64>().unwrap_or(0))
            .sum();
        black_box(sum);
    });
    let parse = median_time(5, || {
        black_box(embers_formats::folded::parse(&folded, &limits).expect("parses"));
    });
    let parse_tree = median_time(5, || {
        let p = embers_formats::folded::parse(&folded, &limits).expect("parses");
        black_box(p.tree());
    });
    println!(
        "folded: {:.1} MB input; line split {:.0} MB/s; parse {:.0} MB/s ({:.1}x the split); \
         parse→tree {:.0} MB/s",
        folded.len() as f64 / 1e6,
        mb_per_s(folded.len(), split),
        mb_per_s(folded.len(), parse),
        parse.as_secs_f64() / split.as_secs_f64(),
        mb_per_s(folded.len(), parse_tree),
    );

    let mut pprof = Vec::new();
    embers_formats::write(
        &profile,
        Format::Pprof,
        &WriteOptions::default(),
        &mut pprof,
    )
    .expect("pprof encodes");
    let floor = median_time(5, || {
        black_box(embers_formats::pprof::decode_proto(&pprof, &limits).expect("decodes"));
    });
    let decode = median_time(5, || {
        black_box(embers_formats::pprof::decode(&pprof, &limits).expect("decodes"));
    });
    let decode_tree = median_time(5, || {
        let p = embers_formats::pprof::decode(&pprof, &limits).expect("decodes");
        black_box(p.tree());
    });
    println!(
        "pprof: {:.1} MB gzipped; gunzip+protobuf floor {:.0} MB/s; decode→profile {:.0} MB/s \
         ({:.2}x the floor); decode→tree {:.0} MB/s ({:.2}x the floor)",
        pprof.len() as f64 / 1e6,
        mb_per_s(pprof.len(), floor),
        mb_per_s(pprof.len(), decode),
        decode.as_secs_f64() / floor.as_secs_f64(),
        mb_per_s(pprof.len(), decode_tree),
        decode_tree.as_secs_f64() / floor.as_secs_f64(),
    );
}
