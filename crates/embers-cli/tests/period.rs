//! The pprof export says the sampling period the profiles were taken at, as the stored
//! profiles said it: a real Go program's CPU profile (`tests/go_lines/main.go`, built here
//! with Debian's golang, 100 Hz: 10 ms) ingested, exported with `/render?format=pprof`
//! and read back by `go tool pprof -raw`, before and after the server is killed (the WAL
//! has it) and after a clean restart (the catalog has it). A legacy upload's `sampleRate`
//! is a period too.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::path::Path;

use support::{enc, go_in as go, go_lines_profile, now, post, run, ServerHandle};

const CPU: &str = r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="goperiod"}"#;
const SAMPLES: &str = r#"process_cpu:samples:count:cpu:nanoseconds{service_name="goperiod"}"#;

/// `PeriodType:` and `Period:` as `go tool pprof -raw` prints a profile's header.
fn period_lines(dir: &Path, file: &Path) -> (String, String) {
    let raw = run(
        go(dir, &["tool", "pprof", "-raw"]).arg(file),
        "go tool pprof",
    );
    let line = |name: &str| {
        raw.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in go tool pprof -raw:\n{raw}"))
            .trim()
            .to_owned()
    };
    (line("PeriodType:"), line("Period:"))
}

/// Exports `query` as pprof and reads its period back with `go tool pprof`.
fn exported_period(server: &ServerHandle, dir: &Path, query: &str, t: u64) -> (String, String) {
    let url = server.url(&format!(
        "/render?query={}&from={}&until={}&format=pprof",
        enc(query),
        t - 600,
        t + 60
    ));
    let mut r = support::agent().get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    let bytes = r.body_mut().read_to_vec().unwrap();
    let file = dir.join("export.pprof");
    std::fs::write(&file, bytes).unwrap();
    period_lines(dir, &file)
}

#[test]
fn pprof_export_says_the_ingested_period_also_after_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let profile = go_lines_profile(dir, "cpu.pprof");
    // What Go itself wrote: 100 Hz.
    let go_says = period_lines(dir, &profile);
    assert_eq!(go_says, ("cpu nanoseconds".into(), "10000000".into()));

    let data = tempfile::tempdir().unwrap();
    let mut server = ServerHandle::start(data.path(), &[]);
    let t = now();
    let (status, body) = post(
        &server.url(&format!(
            "/ingest?name=goperiod&from={t}&until={}&format=pprof",
            t + 10
        )),
        "application/octet-stream",
        &std::fs::read(&profile).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    // A legacy folded upload at 250 Hz: its samples are 4 ms.
    let (status, body) = post(
        &server.url(&format!(
            "/ingest?name=legacyperiod.cpu&from={t}&sampleRate=250&format=folded"
        )),
        "text/plain",
        b"main;work 7\n",
    );
    assert_eq!(status, 200, "{body}");
    let legacy = "legacyperiod.cpu";
    let check = |server: &ServerHandle, when: &str| {
        for query in [CPU, SAMPLES] {
            assert_eq!(
                exported_period(server, dir, query, t),
                go_says,
                "{query} {when}"
            );
        }
        assert_eq!(
            exported_period(server, dir, legacy, t),
            ("cpu nanoseconds".into(), "4000000".into()),
            "{legacy} {when}"
        );
    };
    check(&server, "as ingested");

    // Killed before any flush: the WAL brings the period back.
    server.kill();
    let mut server = ServerHandle::start(data.path(), &[]);
    check(&server, "after a kill (WAL replay)");

    // A clean stop flushes: the catalog keeps it.
    server.stop();
    let server = ServerHandle::start(data.path(), &[]);
    check(&server, "after a clean restart (catalog)");
}
