//! What grouping a query's tree by function costs (issue 12: trees grouped by function
//! name at query time, lines kept in the store), on a 100k-stack tree whose frames all
//! carry files and lines: once where every frame is its own function (nothing merges,
//! only the names change) and once where 20,000 frames are 2,000 function names (names
//! collide, so the tree is rebuilt; in this shape few siblings share a name). Baselines in the same run: building that tree from the profile's
//! stacks (the work every query already does turning the store's sums into a tree) and
//! the truncation to 8,192 nodes every `/render` applies.
//!
//! Run: `cargo bench -p embers-bench --bench granularity`

use std::hint::black_box;

use embers_bench::{median_time, synthetic_profile};
use embers_profile::{Frame, Granularity};

fn main() {
    let profile = synthetic_profile(100_000, 20_000, 42);
    let tree = profile.tree();
    println!(
        "tree: {} nodes, {} distinct frames",
        tree.node_count(),
        tree.symbols().len()
    );
    let build = median_time(5, || {
        black_box(profile.tree());
    });
    let truncate = median_time(5, || {
        black_box(tree.truncated(8192));
    });
    let group = median_time(5, || {
        black_box(tree.at_granularity(Granularity::Function));
    });
    let grouped = tree.at_granularity(Granularity::Function);
    let regroup = median_time(5, || {
        black_box(grouped.at_granularity(Granularity::Function));
    });
    // The same shape where 20,000 frames are 2,000 function names: the mapping is not
    // one to one, so grouping rebuilds the tree (few siblings actually merge here).
    let shared = tree.map_frames(|f| {
        let i: usize = f.function["handler_".len()..].parse().unwrap_or(0);
        Frame::at(
            format!("handler_{}", i % 2000),
            f.file.clone().unwrap_or_default(),
            f.line,
        )
    });
    let group_shared = median_time(5, || {
        black_box(shared.at_granularity(Granularity::Function));
    });
    let merged = shared.at_granularity(Granularity::Function);
    println!(
        "lines of shared functions: {} nodes grouped into {} in {:.1} ms ({:.2}x building the tree)",
        shared.node_count(),
        merged.node_count(),
        group_shared.as_secs_f64() * 1e3,
        group_shared.as_secs_f64() / build.as_secs_f64(),
    );
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "group by function {:.1} ms ({:.2}x building the tree, {:.2}x truncating it); \
         build {:.1} ms; truncate to 8,192 {:.1} ms; already grouped {:.3} ms",
        ms(group),
        group.as_secs_f64() / build.as_secs_f64(),
        group.as_secs_f64() / truncate.as_secs_f64(),
        ms(build),
        ms(truncate),
        ms(regroup),
    );
}
