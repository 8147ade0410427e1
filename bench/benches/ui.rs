//! Web UI figures (issue "Web UI", Measure): the flame graph's first draw after its data
//! arrives and its redraw on zoom, for a 10,000-node profile, measured in headless
//! Chromium with the Performance API (`e2e/ui-bench.mjs`), and the size of the shipped
//! assets, raw and gzipped.
//!
//! Needs Chromium and e2e/node_modules (scripts/install-test-deps.sh).
//! Run: `cargo bench -p embers-bench --bench ui`

use std::process::Command;

use embers_bench::process::{release_embers, root, Server};
use embers_bench::synthetic_profile;
use embers_formats::{Format, WriteOptions};

const NODES: usize = 10_000;

fn main() {
    let (raw, gzipped) = embers_server::ui::asset_sizes();
    println!(
        "UI assets: {} files, {:.1} KB raw, {:.1} KB gzipped (goal <= 300 KB gzipped)",
        embers_server::ui::ASSETS.len(),
        raw as f64 / 1000.0,
        gzipped as f64 / 1000.0
    );

    let embers = release_embers();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&embers, &dir.path().join("data"));
    // More distinct stacks than the graph shows: the server cuts the tree to `maxNodes`
    // (the cut weight shown as `other` nodes), as it does for any large profile.
    let profile = synthetic_profile(3_000, 20_000, 7);
    println!(
        "profile: {} nodes before the cut",
        profile.tree().node_count()
    );
    let mut folded = Vec::new();
    embers_formats::write(
        &profile,
        Format::Folded,
        &WriteOptions::default(),
        &mut folded,
    )
    .expect("folded encodes");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = now - 120;
    let ingest = format!(
        "{}/ingest?name=bench.cpu&from={at}&until={}&format=folded&sampleRate=100",
        server.url,
        at + 10
    );
    let response = ureq::post(&ingest)
        .header("content-type", "text/plain")
        .send(&folded[..])
        .expect("ingest");
    assert_eq!(response.status().as_u16(), 200);

    let page = format!(
        "{}/?app=bench&type=process_cpu%3Acpu%3Ananoseconds%3Acpu%3Ananoseconds&from={}&until={}&maxNodes={NODES}&show=graph",
        server.url,
        at - 60,
        at + 60
    );
    let out = Command::new("node")
        .arg(root().join("e2e/ui-bench.mjs"))
        .arg(&page)
        .arg("7")
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "ui-bench.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let med = |key: &str| {
        let mut v: Vec<f64> = r[key]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        v.sort_by(f64::total_cmp);
        (
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN),
            v.last().copied().unwrap_or(f64::NAN),
        )
    };
    let (zoom_med, zoom_max) = med("zoomInMs");
    let (reset_med, reset_max) = med("resetMs");
    let floor = r["floorMedianMs"].as_f64().unwrap_or(f64::NAN);
    println!("zoom in (20 nodes, levels 1-20): median {zoom_med:.1} ms, max {zoom_max:.1} ms");
    println!(
        "back to the whole graph: median {reset_med:.1} ms, max {reset_max:.1} ms; baseline \
         (one fillRect per node, one colour, no text) {floor:.1} ms: {:.2}x the baseline",
        reset_med / floor
    );
    println!(
        "flame graph of {} nodes: first draw after data {:.1} ms (median of 7, goal <= 200), \
         redraw on zoom median {:.1} ms, max {:.1} ms (goal <= 16)",
        r["nodes"],
        r["firstDrawMedianMs"].as_f64().unwrap_or(f64::NAN),
        r["redrawMedianMs"].as_f64().unwrap_or(f64::NAN),
        r["redrawMaxMs"].as_f64().unwrap_or(f64::NAN),
    );
}
