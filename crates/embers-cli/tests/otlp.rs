//! OTLP profiles against a real `embers server`: exports built by the published
//! `opentelemetry-proto` Python package (`tests/otlp/export.py`) sent over OTLP/HTTP
//! (protobuf, gzip, JSON) and OTLP/gRPC (`grpcio`, plain and gzip) land under their
//! `service.name` with exact values; hostile bodies get clear 4xx answers or gRPC
//! statuses, and the server keeps serving. `scripts/install-test-deps.sh` installs the
//! Python packages.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use embers_formats::otlp::proto::opentelemetry::proto as otlp;
use otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use otlp::profiles::v1development as pb;
use prost::Message;
use support::{agent, collapsed, enc, get, repo, status_kib, ServerHandle};

/// Runs `tests/otlp/export.py MODE URL ARG [--reject-one]`; its JSON answer.
fn export(server: &ServerHandle, mode: &str, arg: &str, extra: &[&str]) -> serde_json::Value {
    let script = repo().join("crates/embers-cli/tests/otlp/export.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([mode, &server.url(""), arg])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export.py {mode} failed (run scripts/install-test-deps.sh for opentelemetry-proto \
         and grpcio): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stacks(server: &ServerHandle, query: &str) -> BTreeMap<String, u64> {
    collapsed(server, query, "now-1h")
}

fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(s, v)| (s.to_owned(), v)).collect()
}

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const MAIN: &str = "main";

/// What `export.py` sent for `service`, read back type by type.
fn assert_service_landed(server: &ServerHandle, service: &str) {
    let work = format!("{MAIN};work_{service}");
    let idle = format!("{MAIN};idle");
    // 5 samples of 10 ms in work (3 by value, 2 by timestamps), 1 in idle.
    assert_eq!(
        stacks(server, &format!(r#"{CPU}{{service_name="{service}"}}"#)),
        expected(&[(&work, 50_000_000), (&idle, 10_000_000)]),
        "{service}: CPU"
    );
    // Sample attributes are labels; resource and scope string attributes too.
    assert_eq!(
        stacks(
            server,
            &format!(
                r#"{CPU}{{service_name="{service}",thread.name="worker",host.name="test-host",profiler.kind="test"}}"#
            )
        ),
        expected(&[(&work, 50_000_000)]),
        "{service}: thread.name"
    );
    // Every sample type is its own profile type, named as Grafana names it.
    assert_eq!(
        stacks(
            server,
            &format!(r#"process_cpu:alloc_space:bytes::{{service_name="{service}"}}"#)
        ),
        expected(&[(&work, 4096)]),
        "{service}: allocations"
    );
    assert_eq!(
        stacks(
            server,
            &format!(r#"off_cpu:events:nanoseconds::{{service_name="{service}"}}"#)
        ),
        expected(&[(&idle, 7)]),
        "{service}: off-CPU"
    );
}

#[test]
fn opentelemetry_proto_exports_land_under_their_service_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    for mode in ["protobuf", "protobuf-gzip", "json", "grpc", "grpc-gzip"] {
        // Two services in one request, and one profile per service Embers leaves out.
        let services = format!("{mode}-a,{mode}-b");
        let answer = export(&server, mode, &services, &["--reject-one"]);
        if mode.starts_with("grpc") {
            assert_eq!(answer["code"], "OK", "{mode}: {answer}");
        } else {
            assert_eq!(answer["status"], 200, "{mode}: {answer}");
        }
        let reply = match &answer["reply"] {
            serde_json::Value::String(json) => serde_json::from_str(json).unwrap(),
            other => other.clone(),
        };
        assert_eq!(
            reply["partialSuccess"]["rejectedProfiles"], "2",
            "{mode}: {answer}"
        );
        for service in services.split(',') {
            assert_service_landed(&server, service);
        }
    }
    // A sample's link is its span: span profiles answer for it, and no series is made
    // per span.
    let (start, end) = (
        (support::now() - 3600) * 1000,
        (support::now() + 3600) * 1000,
    );
    let (status, reply) = support::post(
        &server.url("/querier.v1.QuerierService/SelectMergeSpanProfile"),
        "application/json",
        serde_json::json!({
            "profileTypeID": CPU,
            "labelSelector": r#"{service_name="grpc-a"}"#,
            "spanSelector": ["08090a0b0c0d0e0f"],
            "start": start.to_string(),
            "end": end.to_string(),
        })
        .to_string()
        .as_bytes(),
    );
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let names = reply["flamegraph"]["names"].to_string();
    assert!(
        names.contains("idle") && !names.contains("work_"),
        "{reply}"
    );
    assert_eq!(reply["flamegraph"]["total"], "10000000", "{reply}");
    // Resource attributes that are not strings (process.pid) never become labels.
    let (status, labels) = get(&server.url("/labels"));
    assert_eq!(status, 200, "{labels}");
    assert!(labels.contains("host.name"), "{labels}");
    assert!(!labels.contains("process.pid"), "{labels}");
    assert!(
        !labels.contains("span_id") && !labels.contains("trace_id"),
        "{labels}"
    );
    // Without anything to leave out, the reply has no partial_success.
    let answer = export(&server, "protobuf", "clean", &[]);
    assert_eq!(answer["reply"], serde_json::json!({}), "{answer}");
    assert_service_landed(&server, "clean");
}

/// A small valid export, for hostile variations: one service, one CPU sample.
fn valid_request() -> ExportProfilesServiceRequest {
    let strings = [
        "",
        "samples",
        "count",
        "cpu",
        "nanoseconds",
        "f",
        "service.name",
        "h",
    ];
    let kv = |k: &str, v: &str| otlp::common::v1::KeyValue {
        key: k.to_owned(),
        value: Some(otlp::common::v1::AnyValue {
            value: Some(otlp::common::v1::any_value::Value::StringValue(
                v.to_owned(),
            )),
        }),
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![pb::ResourceProfiles {
            resource: Some(otlp::resource::v1::Resource {
                attributes: vec![kv("service.name", "hostile-ok")],
                ..Default::default()
            }),
            scope_profiles: vec![pb::ScopeProfiles {
                profiles: vec![pb::Profile {
                    sample_type: Some(pb::ValueType {
                        type_strindex: 1,
                        unit_strindex: 2,
                    }),
                    period_type: Some(pb::ValueType {
                        type_strindex: 3,
                        unit_strindex: 4,
                    }),
                    period: 10_000_000,
                    samples: vec![pb::Sample {
                        stack_index: 1,
                        values: vec![2],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(pb::ProfilesDictionary {
            string_table: strings.iter().map(|s| (*s).to_owned()).collect(),
            function_table: vec![
                pb::Function::default(),
                pb::Function {
                    name_strindex: 5,
                    ..Default::default()
                },
            ],
            location_table: vec![
                pb::Location::default(),
                pb::Location {
                    lines: vec![pb::Line {
                        function_index: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
            stack_table: vec![
                pb::Stack::default(),
                pb::Stack {
                    location_indices: vec![1],
                },
            ],
            ..Default::default()
        }),
    }
}

/// A change that breaks a valid request.
type Corruption = fn(&mut ExportProfilesServiceRequest);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// `google.rpc.Status` as the OTLP spec's "Failures" shape it (declared here, apart from
/// the server's, so a wrong field number on either side fails the test).
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types_any::Any>,
}

mod prost_types_any {
    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
    /// `google.rpc.RetryInfo` with its `google.protobuf.Duration` retry delay.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
    }
}

/// A decoded error body: gRPC code, message, and the `RetryInfo` delay in seconds.
#[derive(Debug, Default)]
struct Failure {
    code: i64,
    message: String,
    retry_seconds: Option<i64>,
}

fn retry_seconds(status: &Status) -> Option<i64> {
    status.details.iter().find_map(|any| {
        assert_eq!(any.type_url, "type.googleapis.com/google.rpc.RetryInfo");
        let info = prost_types_any::RetryInfo::decode(any.value.as_slice()).unwrap();
        Some(info.retry_delay?.seconds)
    })
}

/// POSTs to the OTLP/HTTP route: status and the error body decoded as `google.rpc.Status`
/// in the encoding its `Content-Type` names (panics on any other error body).
fn post_status(server: &ServerHandle, headers: &[(&str, &str)], body: &[u8]) -> (u16, Failure) {
    let mut request = agent().post(&server.url("/v1development/profiles"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut r = request.send(body).unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = r.body_mut().read_to_vec().unwrap();
    if status == 200 {
        return (status, Failure::default());
    }
    let failure = match content_type.as_str() {
        "application/x-protobuf" => {
            let s = Status::decode(bytes.as_slice()).unwrap();
            Failure {
                code: s.code.into(),
                retry_seconds: retry_seconds(&s),
                message: s.message,
            }
        }
        "application/json" => {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let retry = v["details"].as_array().and_then(|d| {
                assert_eq!(d[0]["@type"], "type.googleapis.com/google.rpc.RetryInfo");
                d[0]["retryDelay"].as_str()?.strip_suffix('s')?.parse().ok()
            });
            Failure {
                code: v["code"].as_i64().unwrap(),
                message: v["message"].as_str().unwrap().to_owned(),
                retry_seconds: retry,
            }
        }
        other => panic!(
            "HTTP {status} body is not a google.rpc.Status ({other:?}): {}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    (status, failure)
}

/// POSTs to the OTLP/HTTP route: status and the error's message.
fn post(server: &ServerHandle, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let (status, failure) = post_status(server, headers, body);
    (status, failure.message)
}

fn protobuf(server: &ServerHandle, body: &[u8]) -> (u16, String) {
    post(server, &[("content-type", "application/x-protobuf")], body)
}

/// Sends `body` as the gRPC Export message with grpcio: the status code name and details.
fn grpc_raw(server: &ServerHandle, body: &[u8]) -> (String, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let answer = export(server, "grpc-raw", file.path().to_str().unwrap(), &[]);
    (
        answer["code"].as_str().unwrap().to_owned(),
        answer["details"].as_str().unwrap_or("").to_owned(),
    )
}

/// Polls `/metrics` until the server holds at least `bytes` of in-flight ingest.
fn wait_inflight(server: &ServerHandle, bytes: u64) {
    loop {
        let metrics = get(&server.url("/metrics")).1;
        let held = metrics
            .lines()
            .find_map(|l| l.strip_prefix("embers_ingest_inflight_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if held >= bytes as f64 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_full_ingest_budget_refuses_otlp_in_its_own_error_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &["--max-inflight-ingest-bytes", "300000"]);
    // Hold most of the budget: a push promising 250 kB whose body is still on its way.
    let length = 250_000;
    let mut held = std::net::TcpStream::connect(&server.address).unwrap();
    write!(
        held,
        "POST /ingest?name=held.cpu&sampleRate=100 HTTP/1.1\r\nhost: embers\r\n\
         content-type: text/plain\r\ncontent-length: {length}\r\n\r\nmain;f 1\n"
    )
    .unwrap();
    held.flush().unwrap();
    wait_inflight(&server, length);

    // gRPC (grpcio, no Content-Length: charged max_body_bytes, so it cannot fit):
    // RESOURCE_EXHAUSTED with the message, the pushback and a RetryInfo detail.
    let answer = export(&server, "grpc-raw-trailers", "", &[]);
    assert_eq!(answer["code"], "RESOURCE_EXHAUSTED", "{answer}");
    let details = answer["details"].as_str().unwrap();
    assert!(details.contains("max_inflight_ingest_bytes"), "{answer}");
    let trailers = &answer["trailers"];
    assert_eq!(trailers["grpc-retry-pushback-ms"], "1000", "{answer}");
    let bin = hex_decode(trailers["grpc-status-details-bin"].as_str().unwrap());
    let status = Status::decode(bin.as_slice()).unwrap();
    assert_eq!(
        (status.code, retry_seconds(&status)),
        (8, Some(1)),
        "{status:?}"
    );
    assert_eq!(status.message, details);

    // OTLP/HTTP: 429 with Retry-After and a Status body in the request's encoding.
    let big = vec![b' '; 100_000];
    for content_type in ["application/x-protobuf", "application/json"] {
        let (http, failure) = post_status(&server, &[("content-type", content_type)], &big);
        assert_eq!(http, 429, "{content_type}: {failure:?}");
        assert_eq!(
            (failure.code, failure.retry_seconds),
            (8, Some(1)),
            "{failure:?}"
        );
        assert!(
            failure.message.contains("max_inflight_ingest_bytes"),
            "{failure:?}"
        );
    }
    drop(held);
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn hostile_otlp_bodies_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let valid = valid_request().encode_to_vec();

    // Malformed: truncated, no dictionary, indexes out of range → 422 naming the problem.
    let truncated = &valid[..valid.len() / 2];
    let (status, body) = protobuf(&server, truncated);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("truncated or corrupt"), "{body}");
    // The error body is a google.rpc.Status in the request's encoding.
    let protobuf_type = [("content-type", "application/x-protobuf")];
    let (_, failure) = post_status(&server, &protobuf_type, truncated);
    assert_eq!(
        (failure.code, failure.retry_seconds),
        (3, None),
        "{failure:?}"
    );
    let mut no_dictionary = valid_request();
    no_dictionary.dictionary = None;
    let (status, body) = protobuf(&server, &no_dictionary.encode_to_vec());
    assert_eq!(
        (status, body.contains("no dictionary")),
        (422, true),
        "{body}"
    );
    let corruptions: [(&str, Corruption); 5] = [
        ("stack index 99", |r| {
            r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].stack_index = 99;
        }),
        ("location index -1", |r| {
            r.dictionary.as_mut().unwrap().stack_table[1].location_indices = vec![-1];
        }),
        ("function index 7", |r| {
            r.dictionary.as_mut().unwrap().location_table[1].lines[0].function_index = 7;
        }),
        ("string index 1000", |r| {
            r.dictionary.as_mut().unwrap().function_table[1].name_strindex = 1000;
        }),
        ("link index 3", |r| {
            r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].link_index = 3;
        }),
    ];
    for (message, corrupt) in corruptions {
        let mut request = valid_request();
        corrupt(&mut request);
        let (status, body) = protobuf(&server, &request.encode_to_vec());
        assert_eq!(status, 422, "{message}: {body}");
        assert!(body.contains(message), "{message}: {body}");
    }

    // Over a bound → 413 naming the setting: huge counts, deep stacks, a gzip bomb.
    let mut many = valid_request();
    many.resource_profiles[0].scope_profiles[0].profiles[0].samples =
        vec![pb::Sample::default(); 600_000];
    let many = many.encode_to_vec();
    let (status, body) = protobuf(&server, &many);
    assert_eq!(
        (status, body.contains("max_samples")),
        (413, true),
        "{body}"
    );
    let mut deep = valid_request();
    deep.dictionary.as_mut().unwrap().stack_table[1].location_indices = vec![1; 5000];
    let (status, body) = protobuf(&server, &deep.encode_to_vec());
    assert_eq!(
        (status, body.contains("max_stack_depth")),
        (413, true),
        "{body}"
    );
    let bomb = gzip(&vec![0u8; 80 << 20]);
    let (status, body) = post(
        &server,
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        &bomb,
    );
    assert_eq!(
        (status, body.contains("max_decoded_bytes")),
        (413, true),
        "{body}"
    );

    // What the route does not speak → 415.
    for headers in [
        &[("content-type", "text/plain")][..],
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "br"),
        ],
    ] {
        let (status, body) = post(&server, headers, &valid);
        assert_eq!(status, 415, "{headers:?}: {body}");
    }
    let (status, body) = post(
        &server,
        &[("content-type", "application/json")],
        b"{\"resourceProfiles\": [",
    );
    assert_eq!(status, 422, "{body}");
    let json_type = [("content-type", "application/json")];
    let (_, failure) = post_status(&server, &json_type, b"{\"resourceProfiles\": [");
    assert_eq!(failure.code, 3, "{failure:?}");
    assert!(!failure.message.is_empty(), "{failure:?}");

    // gRPC: statuses, not HTTP errors.
    let (code, details) = grpc_raw(&server, &valid[..valid.len() / 2]);
    assert_eq!(code, "INVALID_ARGUMENT", "{details}");
    assert!(details.contains("truncated or corrupt"), "{details}");
    let (code, details) = grpc_raw(&server, &many);
    assert_eq!(code, "RESOURCE_EXHAUSTED", "{details}");
    assert!(details.contains("max_samples"), "{details}");
    let mut huge = valid_request();
    huge.dictionary
        .as_mut()
        .unwrap()
        .string_table
        .push("x".repeat(17 << 20));
    let (code, details) = grpc_raw(&server, &huge.encode_to_vec());
    assert_eq!(code, "RESOURCE_EXHAUSTED", "{details}");
    assert!(details.contains("max_body_bytes"), "{details}");

    // The server is still well: a valid export over both transports lands.
    assert_eq!(protobuf(&server, &valid).0, 200);
    assert_eq!(grpc_raw(&server, &valid).0, "OK");
    let query = format!(r#"{CPU}{{service_name="hostile-ok"}}"#);
    assert_eq!(stacks(&server, &query), expected(&[("f", 40_000_000)]));
    let (status, _) = get(&server.url(&format!("/render?query={}&from=now-1h", enc(&query))));
    assert_eq!(status, 200);
    // Refused early, not after inflating: the same ceiling as tests/hostile_ingest.rs
    // (the default budget's 64 MiB of decoded bytes and their decoding, plus room).
    let peak = status_kib(server.pid(), "VmHWM").unwrap();
    assert!(peak < 192 << 10, "peak memory {peak} KiB");
}
