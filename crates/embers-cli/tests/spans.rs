//! Span profiles end to end: the unmodified `pyroscope-otel` client (PyPI) with the
//! OpenTelemetry SDK and `pyroscope-io` pushes a program with two kinds of root spans
//! (`checkout` spans run `checkout_work`, `search` spans `search_work`) to a real
//! `embers server`. Span labels never become series, however many spans there are, and
//! `SelectMergeSpanProfile` for one kind's span IDs (the `pyroscope.profile.id` the
//! program's span exporter recorded) returns that kind's function only, over Connect
//! JSON (both field spellings) and protobuf, before and after a restart.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use embers_formats::pprof::proto;
use embers_server::grafana_proto::querier::v1 as querier;
use embers_server::wire;
use prost::Message;
use serde_json::{json, Value};
use support::{now, repo, ServerHandle};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Runs the example program for `app` with `per_kind` spans of each kind; returns the
/// span IDs it recorded, `(checkout, search)`.
fn run_program(server: &ServerHandle, app: &str, per_kind: usize) -> (Vec<String>, Vec<String>) {
    let ids = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("python3")
        .arg(repo().join("examples/clients/pyroscope_otel_spans.py"))
        .arg(server.url(""))
        .arg(app)
        .arg(per_kind.to_string())
        .arg(ids.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "client failed: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    let text = std::fs::read_to_string(ids.path()).unwrap();
    let (mut checkout, mut search) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let (kind, id) = line.split_once(' ').unwrap();
        assert_eq!(id.len(), 16, "a span ID is 16 hex digits: {line}");
        match kind {
            "checkout" => checkout.push(id.to_owned()),
            "search" => search.push(id.to_owned()),
            other => panic!("unexpected span {other}"),
        }
    }
    assert_eq!((checkout.len(), search.len()), (per_kind, per_kind));
    (checkout, search)
}

fn range() -> (u64, u64) {
    ((now() - 3600) * 1000, (now() + 3600) * 1000)
}

/// The label sets of `app`'s series.
fn series(server: &ServerHandle, app: &str) -> Vec<Value> {
    let (start, end) = range();
    let reply = support::querier(
        server,
        "Series",
        json!({"matchers": [format!("{{service_name=\"{app}\"}}")], "start": start, "end": end}),
    );
    reply["labelsSet"].as_array().cloned().unwrap_or_default()
}

/// Names and total of a flame graph in JSON.
fn names_and_total(reply: &Value) -> (BTreeSet<String>, u64) {
    let fg = &reply["flamegraph"];
    let names = fg["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    // proto3 JSON leaves a zero total out, as Grafana's protojson does.
    let total = fg["total"].as_str().map_or(0, |t| t.parse().unwrap());
    (names, total)
}

fn has(names: &BTreeSet<String>, function: &str) -> bool {
    names.iter().any(|n| n.contains(function))
}

/// `SelectMergeSpanProfile` in JSON with Connect's camelCase names.
fn span_profile_json(server: &ServerHandle, app: &str, ids: &[String]) -> (BTreeSet<String>, u64) {
    let (start, end) = range();
    names_and_total(&support::querier(
        server,
        "SelectMergeSpanProfile",
        json!({
            "profileTypeID": CPU,
            "labelSelector": format!("{{service_name=\"{app}\"}}"),
            "spanSelector": ids,
            "start": start.to_string(),
            "end": end.to_string(),
            "maxNodes": 1024,
        }),
    ))
}

/// `SelectMergeSpanProfile` in protobuf.
fn span_profile_proto(server: &ServerHandle, app: &str, ids: &[String]) -> (BTreeSet<String>, u64) {
    let (start, end) = range();
    let request = querier::SelectMergeSpanProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: format!("{{service_name=\"{app}\"}}"),
        span_selector: ids.to_vec(),
        start: start as i64,
        end: end as i64,
        max_nodes: Some(1024),
        format: 1,
    };
    let reply: querier::SelectMergeSpanProfileResponse = support::connect_proto(
        server,
        "/querier.v1.QuerierService/SelectMergeSpanProfile",
        &request,
        false,
    );
    let fg = reply.flamegraph.unwrap();
    (fg.names.into_iter().collect(), fg.total as u64)
}

/// Polls until `f` holds (the client's last upload may still be in flight).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pyroscope_otel_span_profiles_keep_series_flat_and_select_by_span() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerHandle::start(dir.path(), &[]);
    let (few_checkout, _) = run_program(&server, "spans-few", 10);
    let (checkout, search) = run_program(&server, "spans-many", 200);
    eventually("both programs' profiles", || {
        !series(&server, "spans-few").is_empty() && !series(&server, "spans-many").is_empty()
    });

    // Series: as many for 400 spans as for 20, none with a span label.
    let few = series(&server, "spans-few");
    let many = series(&server, "spans-many");
    assert_eq!(many.len(), few.len(), "{many:?} vs {few:?}");
    assert!(many.len() <= 2, "one series per profile type: {many:?}");
    for set in many.iter().chain(&few) {
        for label in set["labels"].as_array().unwrap() {
            let name = label["name"].as_str().unwrap();
            assert!(
                !["span_id", "span_name", "trace_id", "profile_id"].contains(&name),
                "a span label became a series label: {set}"
            );
        }
    }

    // The full profile has both kinds.
    let (start, end) = range();
    let full = support::querier(
        &server,
        "SelectMergeStacktraces",
        json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"spans-many\"}", "start": start.to_string(), "end": end.to_string(), "maxNodes": 1024}),
    );
    let (full_names, full_total) = names_and_total(&full);
    assert!(has(&full_names, "checkout_work") && has(&full_names, "search_work"));

    // One kind's spans: that kind's function only; JSON and protobuf alike.
    let (c_names, c_total) = span_profile_json(&server, "spans-many", &checkout);
    assert!(c_total > 0, "the checkout spans have samples");
    assert!(has(&c_names, "checkout_work"), "{c_names:?}");
    assert!(!has(&c_names, "search_work"), "{c_names:?}");
    let (s_names, s_total) = span_profile_proto(&server, "spans-many", &search);
    assert!(s_total > 0, "the search spans have samples");
    assert!(has(&s_names, "search_work"), "{s_names:?}");
    assert!(!has(&s_names, "checkout_work"), "{s_names:?}");
    // Spans add up exactly, and never past the full profile.
    let all: Vec<String> = checkout.iter().chain(&search).cloned().collect();
    let (_, both) = span_profile_json(&server, "spans-many", &all);
    assert_eq!(both, c_total + s_total);
    assert!(both <= full_total);
    // Another service's span IDs select nothing here, and proto field names work too.
    let (_, other) = names_and_total(&support::querier(
        &server,
        "SelectMergeSpanProfile",
        json!({
            "profile_typeID": CPU,
            "label_selector": "{service_name=\"spans-many\"}",
            "span_selector": few_checkout,
            "start": start,
            "end": end,
        }),
    ));
    assert_eq!(other, 0);

    // A malformed span ID is the client's error, in Connect's shape.
    let (status, text) = support::post(
        &server.url("/querier.v1.QuerierService/SelectMergeSpanProfile"),
        "application/json",
        json!({"profileTypeID": CPU, "spanSelector": ["nope"], "start": start, "end": end})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("invalid_argument") && text.contains("16 hex"),
        "{text}"
    );

    // Flushed by a clean stop and read back from the span objects.
    server.stop();
    let server = ServerHandle::start(dir.path(), &[]);
    assert_eq!(
        span_profile_json(&server, "spans-many", &checkout),
        (c_names, c_total)
    );
    assert!(std::fs::read_dir(dir.path().join("spans")).unwrap().count() > 0);
}

/// A Push of one CPU pprof with `spans` samples, sample `i` (value `10 (i + 1)`) in span
/// `i + 1` (labels `span_id`, `span_name`, `trace_id`), running `work_a` for even `i` and
/// `work_b` for odd.
fn push_spans(server: &ServerHandle, spans: u64) -> (u16, String) {
    let mut strings: Vec<String> = [
        "",
        "cpu",
        "nanoseconds",
        "work_a",
        "work_b",
        "span_id",
        "span_name",
        "trace_id",
        "op",
        "0123456789abcdef0123456789abcdef",
    ]
    .map(String::from)
    .to_vec();
    let mut p = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        period_type: Some(proto::ValueType { r#type: 1, unit: 2 }),
        period: 10_000_000,
        ..proto::Profile::default()
    };
    for id in 1..=2u64 {
        p.function.push(proto::Function {
            id,
            name: 2 + id as i64,
            ..proto::Function::default()
        });
        p.location.push(proto::Location {
            id,
            line: vec![proto::Line {
                function_id: id,
                line: 1,
                column: 0,
            }],
            ..proto::Location::default()
        });
    }
    let label = |key: i64, str: i64| proto::Label {
        key,
        str,
        ..proto::Label::default()
    };
    for i in 0..spans {
        strings.push(format!("{:016x}", i + 1));
        p.sample.push(proto::Sample {
            location_id: vec![1 + i % 2],
            value: vec![10 * (i as i64 + 1)],
            label: vec![label(5, strings.len() as i64 - 1), label(6, 8), label(7, 9)],
        });
    }
    p.string_table = strings;
    let request = wire::PushRequest {
        series: vec![wire::RawProfileSeries {
            labels: [("service_name", "spanny"), ("__name__", "process_cpu")]
                .map(|(name, value)| wire::LabelPair {
                    name: name.into(),
                    value: value.into(),
                })
                .to_vec(),
            samples: vec![wire::RawSample {
                raw_profile: p.encode_to_vec(),
                id: String::new(),
            }],
            annotations: Vec::new(),
        }],
    };
    support::post(
        &server.url("/push.v1.PusherService/Push"),
        "application/proto",
        &request.encode_to_vec(),
    )
}

#[test]
fn thousands_of_spans_keep_one_series_exactly_and_a_request_over_max_spans_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let n = 5_000;
    let (status, text) = push_spans(&server, n);
    assert_eq!(status, 200, "{text}");
    assert_eq!(series(&server, "spanny").len(), 1);
    // Spans 1, 3, 5 are samples 0, 2, 4: work_a, 10 + 30 + 50.
    let ids: Vec<String> = [1u64, 3, 5].iter().map(|i| format!("{i:016x}")).collect();
    let (names, total) = span_profile_json(&server, "spanny", &ids);
    assert_eq!(total, 90);
    assert!(has(&names, "work_a") && !has(&names, "work_b"), "{names:?}");
    // Every span: the whole profile, n (n + 1) / 2 × 10.
    let all: Vec<String> = (1..=n).map(|i| format!("{i:016x}")).collect();
    assert_eq!(
        span_profile_proto(&server, "spanny", &all).1,
        5 * n * (n + 1)
    );

    // Past the default max_spans (10,000): refused whole, naming the setting.
    let (status, text) = push_spans(&server, 10_001);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_spans"), "{text}");
    assert_eq!(
        span_profile_proto(&server, "spanny", &all).1,
        5 * n * (n + 1)
    );
}
