//! A real Go program (`tests/go/`, standard library only, built here with the machine's
//! `go`) profiles itself with `runtime/pprof` and uploads CPU, heap, mutex, block and
//! goroutine profiles to `embers server` exactly as `pyroscope-go` does. Every upload is
//! accepted, each type is stored under Grafana's profile type id, and every total equals
//! what `go tool pprof` reads from the same file. `go tool pprof` also reads Embers' own
//! pprof export, with names unchanged.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{collapsed, enc, get, now, post, querier, ServerHandle};

/// `go` with a private GOPATH and build cache, no network and no module flags.
fn go(tmp: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.env("GOPATH", tmp.join("gopath"))
        .env("GOCACHE", tmp.join("gocache"))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GO111MODULE", "on")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    cmd
}

fn build_client(tmp: &Path) -> PathBuf {
    let exe = tmp.join("goclient");
    let out = go(tmp)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go"))
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .output()
        .expect("`go` runs (scripts/install-test-deps.sh installs golang-go)");
    assert!(out.status.success(), "go build: {out:?}");
    exe
}

/// The total `go tool pprof -top` reports for one sample type of a profile (`base`:
/// subtracted first, as `-base` does), in the sample type's own unit.
fn pprof_total(tmp: &Path, file: &Path, sample_index: &str, base: Option<&Path>) -> u64 {
    let mut cmd = go(tmp);
    cmd.args(["tool", "pprof", "-top", "-nodecount=1"])
        .arg(format!("-sample_index={sample_index}"));
    // Units as stored (no scaling to ms or MB), so the total is an exact integer.
    if sample_index.ends_with("space") {
        cmd.arg("-unit=B");
    } else if matches!(sample_index, "cpu" | "delay") {
        cmd.arg("-unit=ns");
    }
    if let Some(base) = base {
        cmd.arg("-base").arg(base);
    }
    let out = cmd.arg(file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "go tool pprof: {out:?}");
    // "Showing nodes accounting for X, Y% of Z total"
    let line = text
        .lines()
        .find(|l| l.starts_with("Showing nodes accounting for"))
        .unwrap_or_else(|| panic!("no total in {text}"));
    let total = line.rsplit(" of ").next().unwrap();
    let digits: String = total.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("total in {line:?}"))
}

fn total_of(server: &ServerHandle, query: &str) -> u64 {
    collapsed(server, query, "now-1h").values().sum()
}

#[test]
fn a_go_program_uploading_as_pyroscope_go_is_stored_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let exe = build_client(tmp);
    let data = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(data.path(), &[]);
    let files = tmp.join("profiles");
    std::fs::create_dir(&files).unwrap();
    let out = Command::new(&exe)
        .arg(server.url(""))
        .arg("gotest")
        .arg(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "an upload failed: {out:?}");
    for kind in ["cpu", "heap", "mutex", "block", "goroutine", "heap-delta"] {
        assert!(stdout.contains(&format!("{kind}: 200")), "{stdout}");
    }

    // Each type under Grafana's id, totals as `go tool pprof` reads the same files.
    let file = |name: &str| files.join(format!("{name}.pprof"));
    let expected = [
        (
            "cpu",
            "samples",
            "process_cpu:samples:count:cpu:nanoseconds",
        ),
        ("cpu", "cpu", "process_cpu:cpu:nanoseconds:cpu:nanoseconds"),
        (
            "heap2",
            "alloc_objects",
            "memory:alloc_objects:count:space:bytes",
        ),
        (
            "heap2",
            "alloc_space",
            "memory:alloc_space:bytes:space:bytes",
        ),
        (
            "heap2",
            "inuse_objects",
            "memory:inuse_objects:count:space:bytes",
        ),
        (
            "heap2",
            "inuse_space",
            "memory:inuse_space:bytes:space:bytes",
        ),
        (
            "mutex",
            "contentions",
            "mutex:contentions:count:contentions:count",
        ),
        (
            "mutex",
            "delay",
            "mutex:delay:nanoseconds:contentions:count",
        ),
        (
            "block",
            "contentions",
            "block:contentions:count:contentions:count",
        ),
        (
            "block",
            "delay",
            "block:delay:nanoseconds:contentions:count",
        ),
        (
            "goroutine",
            "goroutine",
            "goroutines:goroutine:count:goroutine:count",
        ),
    ];
    for (name, index, id) in expected {
        let want = pprof_total(tmp, &file(name), index, None);
        assert!(want > 0, "{name} {index}: an empty profile tests nothing");
        let query = format!(r#"{id}{{service_name="gotest"}}"#);
        assert_eq!(total_of(&server, &query), want, "{query}");
    }
    let (start, end) = ((now() - 3600) * 1000, (now() + 60) * 1000);
    let types = querier(
        &server,
        "ProfileTypes",
        serde_json::json!({"start": start.to_string(), "end": end.to_string()}),
    );
    let mut ids: Vec<&str> = types["profileTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ID"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(|e| e.2).collect();
    want.sort_unstable();
    assert_eq!(ids, want);

    // The pprof export says Go's CPU sampling period (100 Hz), as the multipart upload's
    // CPU profile did.
    let url = server.url(&format!(
        "/render?query={}&from={}&until={}&format=pprof",
        enc(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="gotest"}"#),
        now() - 3600,
        now() + 60
    ));
    let mut r = support::agent().get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let export = tmp.join("export.pprof");
    std::fs::write(&export, r.body_mut().read_to_vec().unwrap()).unwrap();
    let raw = go(tmp)
        .args(["tool", "pprof", "-raw"])
        .arg(&export)
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&raw.stdout);
    assert!(raw.lines().any(|l| l == "Period: 10000000"), "{raw}");

    // The legacy names find the same data.
    assert_eq!(
        total_of(&server, "gotest.goroutines"),
        pprof_total(tmp, &file("goroutine"), "goroutine", None)
    );
    assert_eq!(
        total_of(&server, r#"gotest.block_count{region="eu-north-1"}"#),
        pprof_total(tmp, &file("block"), "contentions", None)
    );

    // Heap samples carry `bytes` (a numeric label): never a series label, so one series
    // per heap type and tags. pyroscope-go's tags are series labels; the session id is
    // not.
    let heap =
        r#"{service_name="gotest", __profile_type__="memory:alloc_space:bytes:space:bytes"}"#;
    let series = querier(
        &server,
        "Series",
        serde_json::json!({"matchers": [heap], "start": start, "end": end}),
    );
    let sets = series["labelsSet"].as_array().unwrap();
    assert_eq!(sets.len(), 1, "{series}");
    let names: Vec<&str> = sets[0]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"bytes"), "{names:?}");
    assert!(!names.contains(&"__session_id__"), "{names:?}");
    for tag in [
        "region",
        "otel.scope.name",
        "process.runtime.name",
        "pyroscope_spy",
    ] {
        assert!(names.contains(&tag), "{tag} missing from {names:?}");
    }
    let (_, spy) = get(&server.url(&format!(
        "/label-values?label=pyroscope_spy&query={}",
        enc("gotest.cpu")
    )));
    assert_eq!(spy, r#"["gospy"]"#);

    // An older client's heap with `prev_profile`: cumulative (alloc) types are deltas,
    // exactly `go tool pprof -base`; in-use types are the profile itself.
    for index in ["alloc_objects", "alloc_space"] {
        let delta = pprof_total(tmp, &file("heap2"), index, Some(&file("heap1")));
        let whole = pprof_total(tmp, &file("heap2"), index, None);
        assert!(delta > 0 && delta < whole, "{index}: {delta} of {whole}");
        let query = format!(r#"gotest-delta.{index}"#);
        assert_eq!(total_of(&server, &query), delta, "{query}");
    }
    assert_eq!(
        total_of(&server, "gotest-delta.inuse_space"),
        pprof_total(tmp, &file("heap2"), "inuse_space", None)
    );
}

/// Names that `go tool pprof` would rewrite if Embers' export asked it to demangle them
/// (a `system_name` equal to the name): they must come back as ingested.
#[test]
fn go_tool_pprof_reads_embers_pprof_export_with_names_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(data.path(), &[]);
    let folded = "<module>;block (2 levels) in <main>;Foo<int>::bar(int) 3\n<module>;main 2\n";
    let t = now();
    let (status, body) = post(
        &server.url(&format!("/ingest?name=names.cpu&from={t}&sampleRate=100")),
        "text/plain",
        folded.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let (from, until) = (t - 600, t + 60);
    let url = server.url(&format!(
        "/render?query={}&from={from}&until={until}&format=pprof",
        enc("names.cpu")
    ));
    let mut r = support::agent().get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let pprof = r.body_mut().read_to_vec().unwrap();
    let file = tmp.path().join("names.pprof");
    std::fs::write(&file, pprof).unwrap();
    let out = go(tmp.path())
        .args(["tool", "pprof", "-top", "-unit=ns"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "go tool pprof: {out:?}");
    let functions: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(5).map(|_| l))
        .map(|l| {
            // Five numeric columns, then the name (which may hold spaces).
            let mut rest = l.trim_start();
            for _ in 0..5 {
                rest = rest.split_once(char::is_whitespace).unwrap().1.trim_start();
            }
            rest
        })
        .collect();
    let mut sorted = functions.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "<module>",
            "Foo<int>::bar(int)",
            "block (2 levels) in <main>",
            "main"
        ],
        "{text}"
    );
    // 5 samples at 100 Hz, in nanoseconds; the export's type, time and duration.
    assert!(text.contains("of 50000000ns total"), "{text}");
    assert!(text.contains("Type: cpu"), "{text}");
    assert!(text.contains("Duration: 660s"), "{text}");
}
