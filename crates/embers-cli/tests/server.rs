//! `embers server` end to end: every ingest format, bad input, the query APIs. The real
//! published clients are in `clients.rs`; SIGKILL at random points is in `crash.rs`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::Write;

use embers_profile::{Frame, Labels, Profile, ProfileMeta, ValueType};
use prost::Message;
use support::{collapsed, enc, get, now, post, try_post, ServerHandle};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A CPU profile (nanoseconds, 100 Hz): main;foo 75 samples, main;bar 25, bar's samples
/// tagged `vehicle=car` as pprof sample labels.
fn cpu_pprof() -> Vec<u8> {
    let mut p = Profile::new(ProfileMeta {
        sample_type: ValueType::new("cpu", "nanoseconds"),
        period_type: Some(ValueType::new("cpu", "nanoseconds")),
        period: 10_000_000,
        ..ProfileMeta::default()
    });
    let (main, foo, bar) = (
        Frame::at("main", "app.py", Some(3)),
        Frame::at("foo", "app.py", Some(10)),
        Frame::at("bar", "app.py", Some(20)),
    );
    p.add_frames([&main, &foo], Labels::new(), 750_000_000);
    p.add_frames(
        [&main, &bar],
        Labels::from_pairs([("vehicle", "car")]),
        250_000_000,
    );
    let mut out = Vec::new();
    embers_formats::pprof::encode(&p, &mut out).unwrap();
    out
}

fn node(out: &mut Vec<u8>, name: &str, value: u8, children: u8) {
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value);
    out.push(children);
}

fn ingest(
    server: &ServerHandle,
    name: &str,
    extra: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let url = server.url(&format!(
        "/ingest?name={}&from={}&sampleRate=100{extra}",
        enc(name),
        now()
    ));
    post(&url, content_type, body)
}

fn total(stacks: &BTreeMap<String, u64>) -> u64 {
    stacks.values().sum()
}

#[test]
fn every_ingest_format_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let ns = 10_000_000; // one sample at 100 Hz, in nanoseconds

    assert_eq!(
        ingest(
            &server,
            "folded.cpu{region=eu}",
            "",
            "text/plain",
            b"main;foo 3\nmain;bar 1\n"
        )
        .0,
        200
    );
    assert_eq!(
        ingest(
            &server,
            "lines.cpu",
            "&format=lines",
            "text/plain",
            b"main;foo\nmain;foo\nmain;foo\nmain;bar\n"
        )
        .0,
        200
    );
    let mut trie = Vec::new();
    node(&mut trie, "", 0, 1);
    node(&mut trie, "main;", 0, 2);
    node(&mut trie, "foo", 3, 0);
    node(&mut trie, "bar", 1, 0);
    assert_eq!(
        ingest(
            &server,
            "trie.cpu",
            "&format=trie",
            "binary/octet-stream+trie",
            &trie
        )
        .0,
        200
    );
    let mut tree = Vec::new();
    node(&mut tree, "", 0, 1);
    node(&mut tree, "main", 0, 2);
    node(&mut tree, "foo", 3, 0);
    node(&mut tree, "bar", 1, 0);
    assert_eq!(
        ingest(
            &server,
            "tree.cpu",
            "&format=tree",
            "binary/octet-stream+tree",
            &tree
        )
        .0,
        200
    );
    for name in ["folded", "lines", "trie", "tree"] {
        let stacks = collapsed(&server, &format!("{name}.cpu"), "now-1h");
        assert_eq!(
            stacks.get("main;foo"),
            Some(&(3 * ns)),
            "{name}: {stacks:?}"
        );
        assert_eq!(stacks.get("main;bar"), Some(&ns), "{name}");
    }
    assert_eq!(
        total(&collapsed(&server, r#"folded.cpu{region="eu"}"#, "now-1h")),
        4 * ns
    );
    assert!(collapsed(&server, r#"folded.cpu{region="us"}"#, "now-1h").is_empty());

    // pprof: gzipped raw, plain raw, multipart; sample labels become series labels.
    let pprof = cpu_pprof();
    let raw = embers_formats::pprof::decode_proto(&pprof, &Default::default())
        .unwrap()
        .encode_to_vec();
    assert_eq!(
        ingest(
            &server,
            "pprof-gz",
            "&format=pprof&spyName=pyspy",
            "application/octet-stream",
            &pprof
        )
        .0,
        200
    );
    assert_eq!(
        ingest(
            &server,
            "pprof-raw",
            "&format=pprof",
            "application/octet-stream",
            &raw
        )
        .0,
        200
    );
    let mut multipart = b"--B0UNDARY\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    multipart.extend_from_slice(&pprof);
    multipart.extend_from_slice(b"\r\n--B0UNDARY\r\nContent-Disposition: form-data; name=\"sample_type_config\"\r\n\r\n{\"cpu\":{\"units\":\"nanoseconds\"}}\r\n--B0UNDARY--\r\n");
    assert_eq!(
        ingest(
            &server,
            "pprof-multipart",
            "",
            "multipart/form-data; boundary=B0UNDARY",
            &multipart
        )
        .0,
        200
    );
    for app in ["pprof-gz", "pprof-raw", "pprof-multipart"] {
        let all = collapsed(&server, &format!("{app}.cpu"), "now-1h");
        assert_eq!(total(&all), 100 * ns, "{app}: {all:?}");
        let car = collapsed(&server, &format!(r#"{app}.cpu{{vehicle="car"}}"#), "now-1h");
        assert_eq!(total(&car), 25 * ns, "{app}");
        let grafana = collapsed(
            &server,
            &format!(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{{service_name="{app}"}}"#),
            "now-1h",
        );
        assert_eq!(total(&grafana), 100 * ns, "{app}");
    }

    // Connect Push, protobuf (gzip-encoded body) and JSON.
    let request = embers_server::wire::PushRequest {
        series: vec![embers_server::wire::RawProfileSeries {
            labels: vec![
                embers_server::wire::LabelPair {
                    name: "__name__".into(),
                    value: "process_cpu".into(),
                },
                embers_server::wire::LabelPair {
                    name: "service_name".into(),
                    value: "pushed".into(),
                },
                embers_server::wire::LabelPair {
                    name: "region".into(),
                    value: "us-east-1".into(),
                },
                embers_server::wire::LabelPair {
                    name: "__delta__".into(),
                    value: "false".into(),
                },
            ],
            samples: vec![embers_server::wire::RawSample {
                raw_profile: pprof.clone(),
                id: "7c9e6679".into(),
            }],
            annotations: vec![],
        }],
    };
    let r = support::agent()
        .post(&server.url("/push.v1.PusherService/Push"))
        .header("content-type", "application/proto")
        .header("content-encoding", "gzip")
        .send(&gzip(&request.encode_to_vec()))
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    use base64::Engine;
    let json = serde_json::json!({"series": [{"labels": [{"name": "service_name", "value": "pushed-json"}, {"name": "__name__", "value": "process_cpu"}],
        "samples": [{"ID": "1", "rawProfile": base64::engine::general_purpose::STANDARD.encode(&pprof)}]}]});
    let (status, body) = post(
        &server.url("/push.v1.PusherService/Push"),
        "application/json",
        json.to_string().as_bytes(),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_eq!(
        total(&collapsed(
            &server,
            r#"pushed.cpu{region="us-east-1"}"#,
            "now-1h"
        )),
        100 * ns
    );
    assert_eq!(
        total(&collapsed(&server, "pushed-json.cpu", "now-1h")),
        100 * ns
    );
    let labels = get(&server.url(&format!("/labels?query={}", enc("pushed.cpu")))).1;
    assert!(
        !labels.contains("__delta__"),
        "internal labels are dropped: {labels}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(
        dir.path(),
        &[
            "--max-body-bytes",
            "1000000",
            "--max-decoded-bytes",
            "4000000",
        ],
    );
    assert_eq!(
        ingest(&server, "keep.cpu", "", "text/plain", b"main;foo 3\n").0,
        200
    );

    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1_000_000);
    let (status, body) = ingest(
        &server,
        "bomb.cpu",
        "&format=pprof",
        "application/octet-stream",
        &bomb,
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("gzip bomb"), "{body}");
    // Over --max-body-bytes: the server answers 413 as soon as it knows, and closes. A
    // client still writing the rest of the 2 MB then sees a broken pipe or a reset instead
    // of the answer (it happened on a busy CI machine); either way the body is refused.
    let big = server.url(&format!("/ingest?name=big.cpu&from={}", now()));
    match try_post(&big, "text/plain", &vec![b'a'; 2_000_000]) {
        Ok((status, body)) => assert_eq!(status, 413, "{body}"),
        Err(kind) => assert!(
            matches!(
                kind,
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{kind:?}"
        ),
    }
    let (status, body) = ingest(
        &server,
        "bad.cpu",
        "&format=pprof",
        "application/octet-stream",
        b"\x0a\xff\xff\xff garbage",
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = ingest(
        &server,
        "bad.cpu",
        "",
        "text/plain",
        b"main;foo notanumber\n",
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("line 1"), "{body}");
    let (status, body) = ingest(&server, "bad.cpu{9lives=x}", "", "text/plain", b"main 1\n");
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&server.url("/ingest?from=now"), "text/plain", b"main 1\n");
    assert_eq!(status, 400, "{body}");
    let (status, body) = ingest(
        &server,
        "bad.cpu",
        "&format=trie",
        "binary/octet-stream+trie",
        b"\x05ab",
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = post(
        &server.url("/push.v1.PusherService/Push"),
        "application/json",
        b"{\"series\": 3}",
    );
    assert_eq!(status, 400);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "invalid_argument", "{body}");
    let (status, body) = get(&server.url("/render?query=app%7Bregion%3D%22x%22&from=now-1h"));
    assert_eq!(status, 400);
    assert!(body.contains("position"), "{body}");
    let (status, body) = get(&server.url("/render?query=app.cpu&from=yesterday"));
    assert_eq!(status, 400, "{body}");

    // Everything accepted before is still there, and the server still serves.
    assert_eq!(
        collapsed(&server, "keep.cpu", "now-1h").get("main;foo"),
        Some(&30_000_000)
    );
    assert!(collapsed(&server, "big.cpu", "now-1h").is_empty());
    assert_eq!(get(&server.url("/healthz")).0, 200);
    let metrics = get(&server.url("/metrics")).1;
    assert!(
        metrics.contains("embers_ingest_errors_total 7"),
        "{metrics}"
    );
}

#[test]
fn query_api_selectors_labels_diff_and_querier() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerHandle::start(dir.path(), &[]);
    for (region, vehicle, foo) in [
        ("us-east-1", "car", 3),
        ("us-west-1", "bike", 5),
        ("eu-west-1", "car", 7),
    ] {
        let name = format!("ride.cpu{{region={region},vehicle={vehicle}}}");
        let body = format!("main;foo {foo}\nmain;bar 1\n");
        assert_eq!(
            ingest(&server, &name, "", "text/plain", body.as_bytes()).0,
            200
        );
    }
    let ns = 10_000_000;
    let t = |q: &str| total(&collapsed(&server, q, "now-1h")) / ns;
    assert_eq!(t(r#"ride.cpu{vehicle="car"}"#), 12);
    assert_eq!(t(r#"ride.cpu{vehicle!="car"}"#), 6);
    assert_eq!(t(r#"ride.cpu{region=~"us-.*"}"#), 10);
    assert_eq!(t(r#"ride.cpu{region!~"us-.*", vehicle="car"}"#), 8);

    let (_, values) = get(&server.url(&format!(
        "/label-values?label=region&query={}",
        enc("ride.cpu")
    )));
    assert_eq!(values, r#"["eu-west-1","us-east-1","us-west-1"]"#);
    let (_, names) = get(&server.url("/labels?query=ride.cpu"));
    assert!(names.contains("\"vehicle\""), "{names}");

    // The flamebearer JSON.
    let (status, body) = get(&server.url(&format!(
        "/pyroscope/render?query={}&from=now-1h&until=now",
        enc(r#"ride.cpu{vehicle="car"}"#)
    )));
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["flamebearer"]["numTicks"], 12 * ns);
    assert_eq!(v["flamebearer"]["names"][0], "total");
    assert_eq!(
        v["flamebearer"]["levels"][0],
        serde_json::json!([0, 12 * ns, 0, 0])
    );
    let timeline: u64 = v["timeline"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(timeline, 12 * ns);
    assert_eq!(v["timeline"]["durationDelta"], 10);

    // Diff: left car, right bike.
    let url = format!(
        "/render-diff?leftQuery={}&rightQuery={}&from=now-1h&until=now",
        enc(r#"ride.cpu{vehicle="car"}"#),
        enc(r#"ride.cpu{vehicle="bike"}"#)
    );
    let v: serde_json::Value = serde_json::from_str(&get(&server.url(&url)).1).unwrap();
    assert_eq!(
        (v["leftTicks"].as_u64(), v["rightTicks"].as_u64()),
        (Some(12 * ns), Some(6 * ns))
    );
    assert_eq!(
        v["flamebearer"]["levels"][0],
        serde_json::json!([0, 12 * ns, 0, 0, 6 * ns, 0, 0])
    );

    // Connect QuerierService, JSON and protobuf.
    let (start, end) = ((now() - 3600) * 1000, (now() + 60) * 1000);
    let call = |method: &str, body| support::querier(&server, method, body);
    let types = call(
        "ProfileTypes",
        serde_json::json!({"start": start.to_string(), "end": end.to_string()}),
    );
    assert_eq!(
        types["profileTypes"][0]["ID"],
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
    );
    let names = call(
        "LabelNames",
        serde_json::json!({"matchers": ["{service_name=\"ride\"}"], "start": start, "end": end}),
    );
    assert!(names["names"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("region")));
    let values = call(
        "LabelValues",
        serde_json::json!({"name": "vehicle", "matchers": [], "start": start, "end": end}),
    );
    assert_eq!(values["names"], serde_json::json!(["bike", "car"]));
    let series = call(
        "Series",
        serde_json::json!({"matchers": ["{vehicle=\"car\"}"], "labelNames": ["region"], "start": start, "end": end}),
    );
    assert_eq!(series["labelsSet"].as_array().unwrap().len(), 2);
    let select = serde_json::json!({"profileTypeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "labelSelector": "{service_name=\"ride\"}", "start": start.to_string(), "end": end.to_string()});
    let merged = call("SelectMergeStacktraces", select.clone());
    assert_eq!(merged["flamegraph"]["total"], (18 * ns).to_string());
    let mut grouped = select.clone();
    grouped["groupBy"] = serde_json::json!(["vehicle"]);
    grouped["step"] = serde_json::json!(10.0);
    let ts = call("SelectSeries", grouped);
    let sums: BTreeMap<String, f64> = ts["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["labels"][0]["value"].as_str().unwrap().to_owned(),
                s["points"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["value"].as_f64().unwrap())
                    .sum(),
            )
        })
        .collect();
    assert_eq!(
        sums,
        BTreeMap::from([
            ("bike".to_owned(), 6.0 * ns as f64),
            ("car".to_owned(), 12.0 * ns as f64)
        ])
    );
    let mut right = select.clone();
    right["labelSelector"] = serde_json::json!("{vehicle=\"bike\"}");
    let diff = call("Diff", serde_json::json!({"left": select, "right": right}));
    assert_eq!(diff["flamegraph"]["leftTicks"], (18 * ns).to_string());
    assert_eq!(diff["flamegraph"]["rightTicks"], (6 * ns).to_string());
    let request = embers_server::grafana_proto::querier::v1::SelectMergeStacktracesRequest {
        profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        label_selector: "{region=\"us-west-1\"}".into(),
        start: start as i64,
        end: end as i64,
        max_nodes: Some(100),
        ..Default::default()
    };
    let reply: embers_server::grafana_proto::querier::v1::SelectMergeStacktracesResponse =
        support::connect_proto(
            &server,
            "/querier.v1.QuerierService/SelectMergeStacktraces",
            &request,
            false,
        );
    assert_eq!(reply.flamegraph.unwrap().total, 6 * ns as i64);

    // `embers query` writes any format; data survives a clean restart.
    server.stop();
    let server = ServerHandle::start(dir.path(), &[]);
    let out = dir.path().join("car.folded");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_embers"))
        .args([
            "query",
            r#"ride.cpu{vehicle="car"}"#,
            "--from",
            "now-1h",
            "--server",
            &server.url(""),
            "-o",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("main;bar {}\nmain;foo {}\n", 2 * ns, 10 * ns)
    );
}
