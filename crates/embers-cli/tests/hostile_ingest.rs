//! Hostile ingest against the real `embers server`: one test per class of request that
//! used to take the server down or poison it. Each must get a bounded 4xx answer that
//! names the bound, the server's peak memory must stay under [`CEILING_KIB`], and the
//! server must keep serving others (a normal upload and a query succeed after).
//!
//! The ceiling: an idle debug-build server holds ~18 MiB; the largest working set the
//! default budget allows a request here is its 64 MiB of decompressed bytes plus their
//! protobuf decoding (strings are copied: up to 64 MiB more). 192 MiB is that with room
//! for the allocator and the store; the peaks measured are 18 to 85 MiB, while the old
//! decoders grew by gigabytes on the same bodies.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::Write;

use embers_formats::pprof::proto;
use embers_formats::wire;
use prost::Message;
use support::{collapsed, enc, get, now, post, status_kib, ServerHandle};

const CEILING_KIB: u64 = 192 << 10;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn ingest(server: &ServerHandle, name: &str, extra: &str, body: &[u8]) -> (u16, String) {
    let url = server.url(&format!("/ingest?name={}&from={}{extra}", enc(name), now()));
    post(&url, "application/octet-stream", body)
}

fn push(server: &ServerHandle, request: &wire::PushRequest) -> (u16, String) {
    post(
        &server.url("/push.v1.PusherService/Push"),
        "application/proto",
        &request.encode_to_vec(),
    )
}

/// A server with the default budget, and a way to check it is still well.
struct Victim {
    server: ServerHandle,
    _dir: tempfile::TempDir,
}

impl Victim {
    fn start() -> Victim {
        let dir = tempfile::tempdir().unwrap();
        let server = ServerHandle::start(dir.path(), &[]);
        Victim { server, _dir: dir }
    }

    /// The hostile request was refused with `status` and a message naming `setting`.
    fn refused(&self, (status, body): (u16, String), setting: &str) {
        assert_eq!(status, 413, "{body}");
        assert!(body.contains(setting), "{body}");
    }

    /// Peak memory under the ceiling, and a normal upload and query still work.
    fn still_serves(&self) {
        let peak = status_kib(self.server.pid(), "VmHWM").expect("the server runs");
        eprintln!("server peak after the hostile requests: {} MiB", peak >> 10);
        assert!(
            peak < CEILING_KIB,
            "server peak {peak} KiB over {CEILING_KIB} KiB"
        );
        let (status, body) = ingest(&self.server, "bystander.cpu", "", b"main;work 3\n");
        assert_eq!(status, 200, "{body}");
        let stacks = collapsed(&self.server, "bystander.cpu", "now-1h");
        assert!(stacks.contains_key("main;work"), "{stacks:?}");
    }
}

/// A pprof of `samples` samples (values 1) over `locations` locations, one function
/// each; `stack(i)` gives sample i's location ids (1-based, leaf first).
fn pprof(locations: u64, samples: u64, stack: impl Fn(u64) -> Vec<u64>) -> Vec<u8> {
    let mut p = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        string_table: vec!["".into(), "samples".into(), "count".into(), "f".into()],
        ..proto::Profile::default()
    };
    for id in 1..=locations {
        p.function.push(proto::Function {
            id,
            name: 3,
            ..proto::Function::default()
        });
        p.location.push(proto::Location {
            id,
            line: vec![proto::Line {
                function_id: id,
                line: id as i64,
                column: 0,
            }],
            ..proto::Location::default()
        });
    }
    for i in 0..samples {
        p.sample.push(proto::Sample {
            location_id: stack(i),
            value: vec![1],
            label: Vec::new(),
        });
    }
    gzip(&p.encode_to_vec())
}

#[test]
fn a_pprof_of_very_many_locations_is_refused_before_it_is_decoded() {
    let v = Victim::start();
    let body = pprof(600_000, 1, |_| vec![1]);
    v.refused(
        ingest(&v.server, "many.alloc_objects", "&format=pprof", &body),
        "max_locations",
    );
    v.still_serves();
}

#[test]
fn a_pprof_of_very_many_distinct_stacks_is_refused() {
    let v = Victim::start();
    // 3,000 samples, each a distinct stack 400 frames deep: 1.2 million call paths.
    let body = pprof(4000, 3000, |i| {
        (0..400).map(|d| 1 + (i * 7 + d * 13) % 4000).collect()
    });
    v.refused(
        ingest(&v.server, "stacks.alloc_objects", "&format=pprof", &body),
        "max_nodes",
    );
    v.still_serves();
}

#[test]
fn deep_stacks_are_refused_in_every_format_and_the_service_stays_queryable() {
    let v = Victim::start();
    // Deeper than the store's dictionary walk allows (65,536 frames).
    let deep = vec!["f"; 70_000].join(";");
    v.refused(
        ingest(&v.server, "deep.cpu", "&format=lines", deep.as_bytes()),
        "max_stack_depth",
    );
    v.refused(
        ingest(&v.server, "deep.cpu", "", format!("{deep} 1").as_bytes()),
        "max_stack_depth",
    );
    // A tree body: a chain of 5,000 nested nodes named "f".
    let mut tree = vec![0, 0, 1];
    for i in 0..5000 {
        tree.extend_from_slice(&[1, b'f', 1, u8::from(i < 4999)]);
    }
    v.refused(
        ingest(&v.server, "deep.cpu", "&format=tree", &tree),
        "max_stack_depth",
    );
    v.refused(
        ingest(&v.server, "deep.cpu", "&format=trie", &tree),
        "max_stack_depth",
    );
    // The service answers queries (it used to answer 500 "path cycle" forever).
    let url = v.server.url(&format!(
        "/render?query={}&from=now-1h&until={}&format=collapsed",
        enc("deep.cpu"),
        now() + 3600
    ));
    let (status, body) = get(&url);
    assert_eq!(status, 200, "{body}");
    v.still_serves();
}

#[test]
fn values_that_would_wrap_are_refused_and_totals_stay_intact() {
    let v = Victim::start();
    let first = 1_u64 << 52;
    let (status, body) = ingest(
        &v.server,
        "victim.alloc_objects",
        "",
        format!("main;a {first}\n").as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    // Added to the first, this wraps a u64 around to 0.
    let second = u64::MAX - first + 1;
    v.refused(
        ingest(
            &v.server,
            "victim.alloc_objects",
            "",
            format!("main;a {second}\n").as_bytes(),
        ),
        "max_total_value",
    );
    // Two values of one request whose sum overflows.
    v.refused(
        ingest(
            &v.server,
            "victim.alloc_objects",
            "",
            format!("main;b {}\nmain;c {}\n", u64::MAX, u64::MAX).as_bytes(),
        ),
        "max_total_value",
    );
    // Legacy CPU counts are scaled to nanoseconds (× 10^7 at 100 Hz): checked after.
    v.refused(
        ingest(&v.server, "victim.cpu", "", b"main;d 1000000000000\n"),
        "max_total_value",
    );
    let stacks = collapsed(&v.server, "victim.alloc_objects", "now-1h");
    assert_eq!(stacks.get("main;a"), Some(&first), "{stacks:?}");
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    v.still_serves();
}

/// A valid pprof that inflates to about `size` bytes (a long string in its table).
fn inflating_pprof(size: usize) -> Vec<u8> {
    let p = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        string_table: vec![
            "".into(),
            "samples".into(),
            "count".into(),
            "x".repeat(size),
        ],
        ..proto::Profile::default()
    };
    gzip(&p.encode_to_vec())
}

fn inflating_push(samples: usize, sample: &[u8]) -> wire::PushRequest {
    series(
        vec![("service_name".into(), "inflating".into())],
        (0..samples)
            .map(|_| wire::RawSample {
                raw_profile: sample.to_vec(),
                id: String::new(),
            })
            .collect(),
    )
}

#[test]
fn a_push_whose_samples_together_inflate_past_the_budget_is_refused() {
    let v = Victim::start();
    // Each sample inflates to 20 MiB, well under the 64 MiB of a request: one alone is
    // accepted. Eight of them would be 160 MiB, which a per-sample bound let through.
    let sample = inflating_pprof(20 << 20);
    let (status, body) = push(&v.server, &inflating_push(1, &sample));
    assert_eq!(status, 200, "{body}");
    v.refused(
        push(&v.server, &inflating_push(8, &sample)),
        "max_decoded_bytes",
    );
    v.still_serves();
}

#[test]
fn a_gzip_bomb_is_refused() {
    let v = Victim::start();
    // 256 MiB of zeros, about 256 KiB gzipped.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..256 {
        gz.write_all(&[0u8; 1 << 20]).unwrap();
    }
    let bomb = gz.finish().unwrap();
    v.refused(
        ingest(&v.server, "bomb.cpu", "&format=pprof", &bomb),
        "max_decoded_bytes",
    );
    v.still_serves();
}

#[test]
fn multipart_bodies_with_pathological_boundaries_are_refused() {
    let v = Victim::start();
    let url = v.server.url(&format!("/ingest?name=mp.cpu&from={}", now()));
    // 10 MiB of near-misses of a 70-byte boundary: linear with memmem.
    let boundary = "a".repeat(69) + "b";
    let body = "a".repeat(10 << 20);
    let (status, text) = post(
        &url,
        &format!("multipart/form-data; boundary={boundary}"),
        body.as_bytes(),
    );
    assert_eq!(status, 422, "{text}");
    let long = "a".repeat(4000);
    let (status, text) = post(
        &url,
        &format!("multipart/form-data; boundary={long}"),
        body.as_bytes(),
    );
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("70"), "{text}");
    v.still_serves();
}

fn series(labels: Vec<(String, String)>, samples: Vec<wire::RawSample>) -> wire::PushRequest {
    wire::PushRequest {
        series: vec![wire::RawProfileSeries {
            labels: labels
                .into_iter()
                .map(|(name, value)| wire::LabelPair { name, value })
                .collect(),
            samples,
            annotations: Vec::new(),
        }],
    }
}

fn service() -> Vec<(String, String)> {
    vec![("service_name".into(), "ids".into())]
}

#[test]
fn over_long_and_too_many_request_ids_are_refused() {
    let v = Victim::start();
    let sample = |id: String| wire::RawSample {
        raw_profile: Vec::new(),
        id,
    };
    v.refused(
        push(
            &v.server,
            &series(service(), vec![sample("x".repeat(100_000))]),
        ),
        "max_request_id_length",
    );
    let many = (0..5000).map(|i| sample(format!("id-{i}"))).collect();
    v.refused(push(&v.server, &series(service(), many)), "max_request_ids");
    v.still_serves();
}

#[test]
fn too_many_and_too_long_labels_are_refused() {
    let v = Victim::start();
    let mut labels = service();
    labels.extend((0..100).map(|i| (format!("l{i}"), "v".to_owned())));
    v.refused(
        push(&v.server, &series(labels, Vec::new())),
        "max_labels_per_series",
    );
    let mut labels = service();
    labels.push(("long".into(), "v".repeat(100_000)));
    v.refused(
        push(&v.server, &series(labels, Vec::new())),
        "max_label_length",
    );
    let tags: Vec<String> = (0..100).map(|i| format!("t{i}=v")).collect();
    v.refused(
        ingest(
            &v.server,
            &format!("tags.cpu{{{}}}", tags.join(",")),
            "",
            b"main 1\n",
        ),
        "max_labels_per_series",
    );
    v.still_serves();
}
