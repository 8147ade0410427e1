//! OTLP profiles decode throughput (issue 11, Measure): a 100k-stack CPU profile as an
//! OTLP export (one location per frame, one stack per sample, as the eBPF profiler sends
//! them), decoded into call trees by `embers_formats::otlp::decode_export`, next to the
//! bare `prost` decode of the same message (the floor any OTLP reader pays) in the same
//! run; and the same for proto3 JSON against the bare `pbjson`/`serde_json` parse.
//!
//! Run: `cargo bench -p embers-bench --bench otlp`

use std::hint::black_box;

use embers_bench::{mb_per_s, median_time, synthetic_profile};
use embers_formats::otlp::proto::opentelemetry::proto as otlp;
use embers_formats::otlp::{decode_export, Encoding, ExportProfilesServiceRequest, OtlpUpload};
use embers_formats::IngestBudget;
use otlp::profiles::v1development as pb;
use prost::Message;

/// The synthetic profile as an OTLP export: samples of 10 ms of CPU.
fn export() -> ExportProfilesServiceRequest {
    let profile = synthetic_profile(100_000, 20_000, 42);
    let mut strings = vec![String::new(), "samples".into(), "count".into()];
    strings.extend(["cpu".into(), "nanoseconds".into(), "service.name".into()]);
    let mut d = pb::ProfilesDictionary {
        location_table: vec![pb::Location::default()],
        function_table: vec![pb::Function::default()],
        stack_table: vec![pb::Stack::default()],
        ..Default::default()
    };
    // One function and one location per frame of the symbol table, in its order.
    for id in 0..profile.symbols.len() {
        let frame = profile.symbols.get(embers_profile::FrameId(id as u32));
        strings.push(frame.function.clone());
        strings.push(frame.file.clone().unwrap_or_default());
        d.function_table.push(pb::Function {
            name_strindex: strings.len() as i32 - 2,
            filename_strindex: strings.len() as i32 - 1,
            ..Default::default()
        });
        d.location_table.push(pb::Location {
            lines: vec![pb::Line {
                function_index: d.function_table.len() as i32 - 1,
                line: i64::from(frame.line.unwrap_or(0)),
                column: 0,
            }],
            ..Default::default()
        });
    }
    let mut samples = Vec::with_capacity(profile.samples().len());
    for sample in profile.samples() {
        // Leaf first; location i + 1 is frame i.
        let location_indices = sample.stack.iter().rev().map(|f| f.0 as i32 + 1).collect();
        d.stack_table.push(pb::Stack { location_indices });
        samples.push(pb::Sample {
            stack_index: d.stack_table.len() as i32 - 1,
            values: vec![sample.value as i64],
            ..Default::default()
        });
    }
    d.string_table = strings;
    let service = otlp::common::v1::KeyValue {
        key: "service.name".into(),
        value: Some(otlp::common::v1::AnyValue {
            value: Some(otlp::common::v1::any_value::Value::StringValue(
                "bench".into(),
            )),
        }),
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![pb::ResourceProfiles {
            resource: Some(otlp::resource::v1::Resource {
                attributes: vec![service],
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
                    samples,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(d),
    }
}

fn main() {
    let request = export();
    let protobuf = request.encode_to_vec();
    let json = serde_json::to_vec(&request).expect("JSON encodes");
    // Bounds well above this export (its dictionary holds ~3M entries and indices).
    let mut budget = IngestBudget::default();
    budget.max_body_bytes = 1 << 30;
    budget.max_decoded_bytes = 1 << 30;
    budget.max_samples = 1 << 24;
    budget.max_locations = 1 << 24;
    budget.max_nodes = 1 << 24;
    budget.max_stack_frames = 1 << 26;
    budget.max_total_value = u64::MAX;
    let decoded = decode_export(
        &OtlpUpload {
            body: &protobuf,
            encoding: Encoding::Protobuf,
        },
        &budget,
    )
    .expect("decodes");
    let nodes: usize = decoded
        .series
        .iter()
        .flat_map(|s| &s.profile.trees)
        .map(|(_, t)| t.node_count())
        .sum();
    println!(
        "export: {} samples, {} locations, {:.1} MB protobuf, {:.1} MB JSON; decoded to {} tree nodes",
        request.resource_profiles[0].scope_profiles[0].profiles[0].samples.len(),
        request.dictionary.as_ref().map_or(0, |d| d.location_table.len()),
        protobuf.len() as f64 / 1e6,
        json.len() as f64 / 1e6,
        nodes,
    );

    let floor = median_time(5, || {
        black_box(ExportProfilesServiceRequest::decode(&protobuf[..]).expect("decodes"));
    });
    let decode = median_time(5, || {
        let upload = OtlpUpload {
            body: &protobuf,
            encoding: Encoding::Protobuf,
        };
        black_box(decode_export(&upload, &budget).expect("decodes"));
    });
    println!(
        "otlp protobuf: bare prost decode {:.0} MB/s; decode_export→trees {:.0} MB/s ({:.2}x the floor)",
        mb_per_s(protobuf.len(), floor),
        mb_per_s(protobuf.len(), decode),
        decode.as_secs_f64() / floor.as_secs_f64(),
    );

    let floor = median_time(3, || {
        let r: ExportProfilesServiceRequest = serde_json::from_slice(&json).expect("parses");
        black_box(r);
    });
    let decode = median_time(3, || {
        let upload = OtlpUpload {
            body: &json,
            encoding: Encoding::Json,
        };
        black_box(decode_export(&upload, &budget).expect("decodes"));
    });
    println!(
        "otlp JSON: bare pbjson parse {:.0} MB/s; decode_export→trees {:.0} MB/s ({:.2}x the floor)",
        mb_per_s(json.len(), floor),
        mb_per_s(json.len(), decode),
        decode.as_secs_f64() / floor.as_secs_f64(),
    );
}
