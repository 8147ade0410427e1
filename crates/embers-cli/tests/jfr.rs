//! JFR ingest with real recordings: a Java program (`tests/java/Work.java`) compiled by
//! `javac` and recorded by the JDK's flight recorder, uploaded to the real server the way
//! pyroscope-java's `PyroscopeExporter` uploads (multipart `jfr` and `labels` parts,
//! each gzipped at level 1, `format=jfr`), then checked against what the JDK's own `jfr`
//! tool reads from the same file.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use prost::Message;
use support::{enc, get, now, post, status_kib, ServerHandle};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn java_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java")
}

/// `Work.java` compiled once per test binary.
fn classes() -> &'static Path {
    static CLASSES: OnceLock<tempfile::TempDir> = OnceLock::new();
    CLASSES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let status = Command::new("javac")
                .arg("-d")
                .arg(dir.path())
                .arg(java_dir().join("Work.java"))
                .status()
                .expect("javac runs (scripts/install-test-deps.sh installs default-jdk-headless)");
            assert!(status.success(), "javac failed");
            dir
        })
        .path()
}

/// Runs `Work` with `args` under the flight recorder; the recording's path.
fn record(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(format!("{name}.jfr"));
    let output = Command::new("java")
        .arg(format!(
            "-XX:StartFlightRecording=filename={},settings={}",
            out.display(),
            java_dir().join("profile.jfc").display()
        ))
        .arg("-cp")
        .arg(classes())
        .arg("Work")
        .args(args)
        .output()
        .expect("java runs");
    assert!(output.status.success(), "{output:?}");
    assert!(out.exists(), "no recording: {output:?}");
    out
}

/// The events of one type with a stack as the JDK's `jfr print --json` reads them (a
/// JVM-internal thread's events can have an empty stack; no flame graph shows those).
fn jfr_events(recording: &Path, event: &str) -> Vec<serde_json::Value> {
    let output = Command::new("jfr")
        .args(["print", "--json", "--events", event])
        .arg(recording)
        .output()
        .expect("jfr runs");
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    json["recording"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["type"] == event
                && e["values"]["stackTrace"]["frames"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
        })
        .cloned()
        .collect()
}

/// Whether an event's stack has the method `Class.method`.
fn has_method(event: &serde_json::Value, class: &str, method: &str) -> bool {
    event["values"]["stackTrace"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["method"]["type"]["name"] == class && f["method"]["name"] == method)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The request pyroscope-java's `PyroscopeExporter` sends: OkHttp's multipart form with
/// a `jfr` part (filename `jfr`) and, when there are labels, a `labels` part (filename
/// `labels`, `application/x-protobuf`), each gzipped at level 1.
fn upload(
    server: &ServerHandle,
    app: &str,
    recording: &[u8],
    labels: Option<&[u8]>,
) -> (u16, String) {
    let boundary = "3f1e9c4a-5b7d-4e2f-9a61-0c8d2b7e4f13";
    let mut body = Vec::new();
    let mut part = |name: &str, content_type: Option<&str>, bytes: &[u8]| {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n"
        )
        .unwrap();
        if let Some(t) = content_type {
            write!(body, "Content-Type: {t}\r\n").unwrap();
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&gzip(bytes));
        body.extend_from_slice(b"\r\n");
    };
    part("jfr", None, recording);
    if let Some(labels) = labels {
        part("labels", Some("application/x-protobuf"), labels);
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    let t = now();
    let url = server.url(&format!(
        "/ingest?name={}&units=samples&aggregationType=sum&from={}&until={t}&spyName=javaspy&sampleRate=100&format=jfr",
        enc(&format!("{app}{{env=ci}}")),
        t - 10,
    ));
    post(
        &url,
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
    )
}

/// The sum of the stacks that pass through `frame` (a `Class.method` prefix of a frame).
fn through(stacks: &BTreeMap<String, u64>, frame: &str) -> u64 {
    stacks
        .iter()
        .filter(|(s, _)| s.split(';').any(|f| f == frame))
        .map(|(_, v)| v)
        .sum()
}

/// Folded stacks of a query, summed by text: frames keep their line numbers, and the
/// folded text shows names only, so one text can come on several lines.
fn query(server: &ServerHandle, profile_type: &str, selector: &str) -> BTreeMap<String, u64> {
    let until = now() + 3600;
    let url = server.url(&format!(
        "/render?query={}&from=now-1h&until={until}&format=collapsed",
        enc(&format!("{profile_type}{{{selector}}}"))
    ));
    let (status, body) = get(&url);
    assert_eq!(status, 200, "{body}");
    let mut stacks = BTreeMap::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        let (stack, v) = line.rsplit_once(' ').unwrap();
        *stacks.entry(stack.to_owned()).or_insert(0) += v.parse::<u64>().unwrap();
    }
    stacks
}

#[test]
fn cpu_shares_match_what_the_jdk_reads_from_the_same_recording() {
    let dir = tempfile::tempdir().unwrap();
    let recording = record(dir.path(), "cpu", &["cpu", "4"]);
    let events = jfr_events(&recording, "jdk.ExecutionSample");
    assert!(events.len() > 50, "too few samples: {}", events.len());
    let alpha = events
        .iter()
        .filter(|e| has_method(e, "Work", "alpha"))
        .count();
    let beta = events
        .iter()
        .filter(|e| has_method(e, "Work", "beta"))
        .count();

    let server = ServerHandle::start(&dir.path().join("data"), &[]);
    let (status, body) = upload(&server, "jfrcpu", &std::fs::read(&recording).unwrap(), None);
    assert_eq!(status, 200, "{body}");
    let stacks = query(&server, CPU, "service_name=\"jfrcpu\",env=\"ci\"");
    let total: u64 = stacks.values().sum();
    // 100 Hz: each sample is 10 ms of CPU, and every sample with a stack is kept.
    assert_eq!(total, events.len() as u64 * 10_000_000, "{stacks:?}");
    let share = |n: u64| 100.0 * n as f64 / total as f64;
    let jdk_share = |n: usize| 100.0 * n as f64 / events.len() as f64;
    let (ours_alpha, ours_beta) = (
        share(through(&stacks, "Work.alpha")),
        share(through(&stacks, "Work.beta")),
    );
    eprintln!(
        "alpha {ours_alpha:.2}% (jfr {:.2}%), beta {ours_beta:.2}% (jfr {:.2}%)",
        jdk_share(alpha),
        jdk_share(beta)
    );
    assert!((ours_alpha - jdk_share(alpha)).abs() <= 0.5);
    assert!((ours_beta - jdk_share(beta)).abs() <= 0.5);
    // The program spins 3 ms in alpha for each 1 ms in beta.
    assert!(ours_alpha > 2.0 * ours_beta, "{stacks:?}");
    // Frames are named as Grafana names them: the class as the JVM writes it.
    assert!(
        stacks
            .keys()
            .any(|s| s.starts_with("Work.main;Work.alpha;Work.spin")),
        "{stacks:?}"
    );
}

#[test]
fn an_allocation_recording_gives_the_memory_types_with_the_jdk_totals() {
    let dir = tempfile::tempdir().unwrap();
    let recording = record(dir.path(), "alloc", &["alloc"]);
    let server = ServerHandle::start(&dir.path().join("data"), &[]);
    let (status, body) = upload(
        &server,
        "jfralloc",
        &std::fs::read(&recording).unwrap(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    for (event, field, objects, bytes) in [
        (
            "jdk.ObjectAllocationInNewTLAB",
            "tlabSize",
            "memory:alloc_in_new_tlab_objects:count:space:bytes",
            "memory:alloc_in_new_tlab_bytes:bytes:space:bytes",
        ),
        (
            "jdk.ObjectAllocationOutsideTLAB",
            "allocationSize",
            "memory:alloc_outside_tlab_objects:count:space:bytes",
            "memory:alloc_outside_tlab_bytes:bytes:space:bytes",
        ),
        (
            "jdk.ObjectAllocationSample",
            "weight",
            "memory:alloc_sample_objects:count:space:bytes",
            "memory:alloc_sample_bytes:bytes:space:bytes",
        ),
    ] {
        let events = jfr_events(&recording, event);
        assert!(!events.is_empty(), "no {event} in the recording");
        let sum: u64 = events
            .iter()
            .map(|e| e["values"][field].as_u64().unwrap())
            .sum();
        let selector = "service_name=\"jfralloc\"";
        let count: u64 = query(&server, objects, selector).values().sum();
        let total: u64 = query(&server, bytes, selector).values().sum();
        assert_eq!(count, events.len() as u64, "{event} count");
        assert_eq!(total, sum, "{event} {field}");
    }
    // The 4 MiB arrays are allocated outside TLABs, in bigArrays.
    let outside = query(
        &server,
        "memory:alloc_outside_tlab_bytes:bytes:space:bytes",
        "service_name=\"jfralloc\"",
    );
    assert!(
        through(&outside, "Work.bigArrays") >= 40 << 22,
        "{outside:?}"
    );
}

#[test]
fn wall_clock_samples_count_their_samples_at_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let recording = record(dir.path(), "wall", &["wall"]);
    let events = jfr_events(&recording, "profiler.WallClockSample");
    assert_eq!(events.len(), 10);
    let server = ServerHandle::start(&dir.path().join("data"), &[]);
    let (status, body) = upload(
        &server,
        "jfrwall",
        &std::fs::read(&recording).unwrap(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let stacks = query(
        &server,
        "wall:wall:nanoseconds:wall:nanoseconds",
        "service_name=\"jfrwall\"",
    );
    // Ten events of three samples, 10 ms each at sampleRate=100.
    assert_eq!(
        through(&stacks, "Work.sleeper"),
        10 * 3 * 10_000_000,
        "{stacks:?}"
    );
    assert_eq!(
        stacks.values().sum::<u64>(),
        10 * 3 * 10_000_000,
        "{stacks:?}"
    );
}

/// Nanoseconds of a `jfr print --json` duration (`PT0.050099735S`).
fn nanos(duration: &serde_json::Value) -> u64 {
    let s = duration.as_str().unwrap();
    let seconds = s.strip_prefix("PT").unwrap().strip_suffix('S').unwrap();
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let fraction = format!("{fraction:0<9}");
    whole.parse::<u64>().unwrap() * 1_000_000_000 + fraction.parse::<u64>().unwrap()
}

#[test]
fn monitor_and_park_events_give_mutex_and_block_with_the_jdk_durations() {
    let dir = tempfile::tempdir().unwrap();
    let recording = record(dir.path(), "locks", &["locks"]);
    let server = ServerHandle::start(&dir.path().join("data"), &[]);
    let (status, body) = upload(
        &server,
        "jfrlocks",
        &std::fs::read(&recording).unwrap(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    for (event, family, method) in [
        ("jdk.JavaMonitorEnter", "mutex", "Work.contender"),
        ("jdk.ThreadPark", "block", "Work.parker"),
    ] {
        let events = jfr_events(&recording, event);
        let delay: u64 = events.iter().map(|e| nanos(&e["values"]["duration"])).sum();
        let selector = "service_name=\"jfrlocks\"";
        let count = query(
            &server,
            &format!("{family}:contentions:count:{family}:count"),
            selector,
        );
        let total = query(
            &server,
            &format!("{family}:delay:nanoseconds:{family}:count"),
            selector,
        );
        assert_eq!(count.values().sum::<u64>(), events.len() as u64, "{event}");
        assert_eq!(total.values().sum::<u64>(), delay, "{event}");
        // Five waits of 50 ms (monitor) or 30 ms (park) from the method that waits.
        assert_eq!(through(&count, method), 5, "{count:?}");
    }
}

#[test]
fn a_labels_part_splits_samples_by_context() {
    let dir = tempfile::tempdir().unwrap();
    let recording = record(dir.path(), "labels", &["labels"]);
    // What pyroscope-java's ScopedContext writes for two contexts: ids into `strings`.
    let mut snapshot = embers_formats::jfr::LabelsSnapshot::default();
    snapshot.strings.insert(10, "endpoint".to_owned());
    for (context, value) in [(1, "checkout"), (2, "search")] {
        snapshot.strings.insert(10 + context, value.to_owned());
        let labels = [(10, 10 + context)].into();
        snapshot
            .contexts
            .insert(context, embers_formats::jfr::Context { labels });
    }
    let server = ServerHandle::start(&dir.path().join("data"), &[]);
    let (status, body) = upload(
        &server,
        "jfrlabels",
        &std::fs::read(&recording).unwrap(),
        Some(&snapshot.encode_to_vec()),
    );
    assert_eq!(status, 200, "{body}");
    let objects = "memory:alloc_in_new_tlab_objects:count:space:bytes";
    let bytes = "memory:alloc_in_new_tlab_bytes:bytes:space:bytes";
    for (endpoint, method, n) in [
        ("checkout", "Work.checkout", 30),
        ("search", "Work.search", 70),
    ] {
        let selector = format!("service_name=\"jfrlabels\",endpoint=\"{endpoint}\"");
        let stacks = query(&server, objects, &selector);
        assert_eq!(stacks.values().sum::<u64>(), n, "{stacks:?}");
        assert_eq!(through(&stacks, method), n, "{stacks:?}");
        let stacks = query(&server, bytes, &selector);
        assert_eq!(stacks.values().sum::<u64>(), n * 1000, "{stacks:?}");
    }
}

/// A hostile request and the status and words the answer must have.
fn refused(
    server: &ServerHandle,
    app: &str,
    body: &[u8],
    content_type: &str,
    status: u16,
    words: &str,
) {
    let url = server.url(&format!(
        "/ingest?name={app}&from={}&spyName=javaspy&sampleRate=100&format=jfr",
        now()
    ));
    let (got, message) = post(&url, content_type, body);
    assert_eq!(got, status, "{message}");
    assert!(message.contains(words), "{words:?} not in {message}");
}

#[test]
fn hostile_recordings_get_a_clear_4xx_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let recording = std::fs::read(record(dir.path(), "cpu", &["cpu", "1"])).unwrap();
    let config = dir.path().join("embers.toml");
    std::fs::write(
        &config,
        "[ingest]\nmax_stack_depth = 2\nmax_decoded_bytes = 8388608\n",
    )
    .unwrap();
    let server = ServerHandle::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let raw = "application/octet-stream";
    // Truncated: half a recording.
    refused(
        &server,
        "t",
        &recording[..recording.len() / 2],
        raw,
        422,
        "truncated recording",
    );
    // Not JFR at all.
    refused(&server, "t", b"hello", raw, 422, "not a JFR recording");
    // A count far past the bytes: the metadata's string count set to 2^31 - 1.
    let mut huge = recording.clone();
    let metadata = usize::try_from(i64::from_be_bytes(huge[24..32].try_into().unwrap())).unwrap();
    let mut at = metadata;
    for _ in 0..5 {
        // size, type, start, duration, id: compressed integers.
        while huge[at] & 0x80 != 0 {
            at += 1;
        }
        at += 1;
    }
    let mut end = at;
    while huge[end] & 0x80 != 0 {
        end += 1;
    }
    // Same length overall, so the chunk header still holds.
    let added = 5 - (end + 1 - at);
    huge.splice(at..=end, [0xff, 0xff, 0xff, 0xff, 0x07]);
    huge.truncate(huge.len() - added);
    refused(&server, "t", &huge, raw, 422, "more than");
    // Stacks deeper than the budget (main;alpha;spin is 3 deep): 413 naming the setting.
    refused(&server, "t", &recording, raw, 413, "max_stack_depth");
    // A gzip bomb in the `jfr` part.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    let boundary = "b0und";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"jfr\"; filename=\"jfr\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bomb);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let multipart = format!("multipart/form-data; boundary={boundary}");
    refused(&server, "t", &body, &multipart, 413, "max_decoded_bytes");
    // A multipart upload without its `jfr` part says which part is missing.
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile\"\r\n\r\nxyz\r\n--{boundary}--\r\n"
    );
    refused(
        &server,
        "t",
        body.as_bytes(),
        &multipart,
        422,
        "no `jfr` part",
    );
    // None of it cost the server much memory, and it still takes a good upload.
    let peak = status_kib(server.pid(), "VmHWM").expect("the server runs");
    assert!(peak < 192 << 10, "server peak {peak} KiB");
    let (status, body) = post(
        &server.url(&format!("/ingest?name=alive&from={}&format=folded", now())),
        "text/plain",
        b"a;b 1\n",
    );
    assert_eq!(status, 200, "{body}");
}
