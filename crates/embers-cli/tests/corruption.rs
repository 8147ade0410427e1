//! A damaged data directory with the real `embers` binary: `embers fsck` reports the
//! damage (non-zero exit), the server starts anyway, logs what it quarantined, serves
//! the rest and warns where data is missing; `embers fsck --repair` then leaves a
//! directory that `embers fsck` calls clean.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{agent, enc, get, now, post, ServerHandle};

fn fsck(dir: &Path, repair: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_embers"));
    cmd.args(["fsck", "--data-dir"]).arg(dir);
    if repair {
        cmd.arg("--repair");
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Object keys under `dir/prefix`.
fn objects(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.join(prefix)];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if !p.to_string_lossy().contains(".tmp-") {
                // Skips an object still being written (FileStorage's temporary file
                // before its rename): it is no object yet, and vanishes under us.
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Waits (polling the directory) until a run object holding `leaf` is written.
fn run_of(dir: &Path, leaf: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = objects(dir, "l0");
        if let Some(run) = runs.iter().find(|k| k.contains(&format!("-{leaf:012}-"))) {
            return run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no run for leaf {leaf}: {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn flip(dir: &Path, key: &str) {
    let path = dir.join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn ingest(server: &ServerHandle, at: u64, body: &str) {
    let url = server.url(&format!(
        "/ingest?name={}&from={at}&until={}&format=folded",
        enc("app.cpu"),
        at + 10
    ));
    let (status, reply) = post(&url, "text/plain", body.as_bytes());
    assert_eq!(status, 200, "{reply}");
}

/// Status, `Embers-Warning` headers and body of a GET.
fn get_warned(url: &str) -> (u16, Vec<String>, String) {
    let mut r = agent().get(url).call().unwrap();
    let warnings = r
        .headers()
        .get_all("embers-warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (
        r.status().as_u16(),
        warnings,
        r.body_mut().read_to_string().unwrap(),
    )
}

/// The warnings and the stacks (without values) of a query.
fn collapsed(server: &ServerHandle, from: u64, until: u64) -> (Vec<String>, Vec<String>) {
    let url = server.url(&format!(
        "/render?query={}&from={from}&until={until}&format=collapsed",
        enc("app.cpu")
    ));
    let (status, warnings, body) = get_warned(&url);
    assert_eq!(status, 200, "{body}");
    let stacks = body
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned());
    (warnings, stacks.collect())
}

#[test]
fn damaged_objects_are_reported_quarantined_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = ((now() - 7200) / 10 * 10, (now() - 3600) / 10 * 10);
    let mut server = ServerHandle::start(d, &["--flush-interval", "1"]);
    ingest(&server, a, "main;alpha 100\n");
    let run_a = run_of(d, a / 10);
    ingest(&server, b, "main;beta 50\n");
    run_of(d, b / 10);

    // Refused while the server holds the directory.
    let busy = fsck(d, true);
    assert!(!busy.status.success());
    assert!(
        text(&busy).contains("in use by another process"),
        "{}",
        text(&busy)
    );
    server.stop();

    // Damage: the run holding `a`, every aggregate above it, and the flush marker.
    flip(d, &run_a);
    // The pass that flushed `a` compacted right after; `b`'s flush came later.
    let aggregates = objects(d, "agg");
    assert!(!aggregates.is_empty(), "aggregates above `a` were built");
    for agg in &aggregates {
        flip(d, agg);
    }
    flip(d, "meta/flushed");
    let report = fsck(d, false);
    assert!(!report.status.success(), "{}", text(&report));
    let out = text(&report);
    for key in aggregates
        .iter()
        .chain([&run_a, &"meta/flushed".to_owned()])
    {
        assert!(
            out.contains(&format!("DAMAGED {key}")),
            "{key} not reported:\n{out}"
        );
    }

    // The server starts, says what it moved aside, and serves everything else.
    let server = ServerHandle::start(d, &["--flush-interval", "1"]);
    let (warnings, body) = collapsed(&server, b, b + 10);
    assert_eq!(body, ["main;beta"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let (warnings, body) = collapsed(&server, a - 100, b + 100);
    assert_eq!(body, ["main;beta"], "alpha's only copy was damaged");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&run_a), "{warnings:?}");
    let (status, warnings, json) = get_warned(&server.url(&format!(
        "/render?query={}&from={}&until={}",
        enc("app.cpu"),
        a,
        a + 10
    )));
    assert_eq!((status, warnings.len()), (200, 1), "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["warnings"][0].as_str().unwrap().contains(&run_a),
        "{json}"
    );
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("QUARANTINED"), "{log}");
    assert!(log.contains("meta/flushed"), "{log}");
    assert!(log.contains(&run_a), "{log}");
    let (_, metrics) = get(&server.url("/metrics"));
    let quarantined: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("embers_store_quarantined_objects_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(quarantined >= 2, "{metrics}");
    assert!(
        metrics.contains("embers_store_degraded_reads_total"),
        "{metrics}"
    );
    let mut server = server;
    server.stop();

    // Nothing was deleted: what the server moved aside is under quarantine/.
    let moved = objects(d, "quarantine");
    assert!(moved.iter().any(|k| k.ends_with(&run_a)), "{moved:?}");
    assert!(
        moved.iter().any(|k| k.ends_with("/meta/flushed")),
        "{moved:?}"
    );

    let repair = fsck(d, true);
    assert!(repair.status.success(), "{}", text(&repair));
    let clean = fsck(d, false);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(text(&clean).contains("clean"), "{}", text(&clean));
}
