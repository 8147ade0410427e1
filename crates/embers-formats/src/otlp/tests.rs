//! The decoder against hand-built exports: Grafana's mapping, exact values, and refusals.

use prost::Message;

use super::proto::opentelemetry::proto::common::v1::{any_value, AnyValue, KeyValue};
use super::proto::opentelemetry::proto::profiles::v1development as pb;
use super::*;

const STRINGS: [&str; 12] = [
    "",
    "samples",
    "count",
    "cpu",
    "nanoseconds",
    "main",
    "work",
    "service.name",
    "svc-b",
    "thread.name",
    "t1",
    "libc.so",
];

fn string(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.to_owned())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
        ..KeyValue::default()
    }
}

/// Two samples of main;work (3 values, then 2 timestamps), one of main alone in
/// service `svc-b` (by sample attribute) with a link and a thread name.
fn request(resource: Vec<KeyValue>) -> ExportProfilesServiceRequest {
    let loc = |function_index, mapping_index| pb::Location {
        mapping_index,
        lines: vec![pb::Line {
            function_index,
            line: 4,
            column: 0,
        }],
        ..pb::Location::default()
    };
    let attr = |key_strindex, value| pb::KeyValueAndUnit {
        key_strindex,
        value: string(value),
        unit_strindex: 0,
    };
    let sample = |stack_index, values: Vec<i64>| pb::Sample {
        stack_index,
        values,
        ..pb::Sample::default()
    };
    let profile = pb::Profile {
        sample_type: Some(pb::ValueType {
            type_strindex: 1,
            unit_strindex: 2,
        }),
        period_type: Some(pb::ValueType {
            type_strindex: 3,
            unit_strindex: 4,
        }),
        period: 1000,
        time_unix_nano: 1_700_000_000_000_000_000,
        samples: vec![
            sample(1, vec![1, 2]),
            pb::Sample {
                timestamps_unix_nano: vec![1, 2],
                ..sample(1, vec![])
            },
            pb::Sample {
                attribute_indices: vec![1, 2],
                link_index: 1,
                ..sample(2, vec![5])
            },
        ],
        ..pb::Profile::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![pb::ResourceProfiles {
            resource: Some(super::proto::opentelemetry::proto::resource::v1::Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_profiles: vec![pb::ScopeProfiles {
                profiles: vec![profile],
                ..pb::ScopeProfiles::default()
            }],
            ..pb::ResourceProfiles::default()
        }],
        dictionary: Some(pb::ProfilesDictionary {
            string_table: STRINGS.iter().map(|s| (*s).to_owned()).collect(),
            mapping_table: vec![
                pb::Mapping::default(),
                pb::Mapping {
                    filename_strindex: 11,
                    ..pb::Mapping::default()
                },
            ],
            function_table: vec![
                pb::Function::default(),
                pb::Function {
                    name_strindex: 5,
                    ..pb::Function::default()
                },
                pb::Function {
                    name_strindex: 6,
                    ..pb::Function::default()
                },
            ],
            location_table: vec![pb::Location::default(), loc(1, 0), loc(2, 1)],
            stack_table: vec![
                pb::Stack::default(),
                pb::Stack {
                    location_indices: vec![2, 1],
                },
                pb::Stack {
                    location_indices: vec![1],
                },
            ],
            attribute_table: vec![
                pb::KeyValueAndUnit::default(),
                attr(7, "svc-b"),
                attr(9, "t1"),
            ],
            link_table: vec![
                pb::Link::default(),
                pb::Link {
                    trace_id: vec![0xab; 16],
                    span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                },
            ],
        }),
    }
}

fn decode(request: &ExportProfilesServiceRequest, budget: &IngestBudget) -> OtlpExport {
    let body = request.encode_to_vec();
    let protobuf = decode_export(
        &OtlpUpload {
            body: &body,
            encoding: Encoding::Protobuf,
        },
        budget,
    )
    .unwrap();
    let json = serde_json::to_vec(request).unwrap();
    let from_json = decode_export(
        &OtlpUpload {
            body: &json,
            encoding: Encoding::Json,
        },
        budget,
    )
    .unwrap();
    assert_eq!(format!("{protobuf:?}"), format!("{from_json:?}"));
    protobuf
}

/// The error decoding `request` (protobuf) within `budget`.
fn refused(request: &ExportProfilesServiceRequest, budget: &IngestBudget) -> FormatError {
    let body = request.encode_to_vec();
    let upload = OtlpUpload {
        body: &body,
        encoding: Encoding::Protobuf,
    };
    decode_export(&upload, budget).unwrap_err()
}

#[test]
fn services_labels_values_and_links_follow_grafana() {
    let resource = vec![
        kv("service.name", string("svc-a")),
        kv("host.name", string("h")),
        kv(
            "process.pid",
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(7)),
            }),
        ),
    ];
    let export = decode(&request(resource), &IngestBudget::default());
    assert_eq!(export.rejected_profiles, 0);
    let [a, b] = &export.series[..] else {
        panic!("two services: {:?}", export.series);
    };
    assert_eq!(a.labels.get("service_name"), Some("svc-a"));
    assert_eq!(a.labels.get("host.name"), Some("h"));
    assert_eq!(
        a.labels.get("process.pid"),
        None,
        "only strings become labels"
    );
    assert_eq!(a.labels.get("service.name"), None);
    assert_eq!(b.labels.get("service_name"), Some("svc-b"));
    assert_eq!(
        (a.name.as_str(), b.name.as_str()),
        ("process_cpu", "process_cpu")
    );
    let meta = &a.profile.meta;
    assert_eq!(
        (
            meta.sample_type.kind.as_str(),
            meta.sample_type.unit.as_str()
        ),
        ("cpu", "nanoseconds")
    );
    assert_eq!(meta.time_nanos, 1_700_000_000_000_000_000);
    // (1 + 2) values and 2 timestamps, 1000 ns each; frames root first, module kept.
    let [(labels, tree)] = &a.profile.trees[..] else {
        panic!("one label set");
    };
    assert!(labels.is_empty());
    let stacks = tree.to_sorted_stacks();
    assert_eq!(stacks.len(), 1);
    let (frames, value) = &stacks[0];
    assert_eq!(*value, 5000);
    let names: Vec<_> = frames.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(names, ["main", "work"]);
    assert_eq!(frames[1].module.as_deref(), Some("libc.so"));
    let [(labels, tree)] = &b.profile.trees[..] else {
        panic!("one label set");
    };
    assert_eq!(tree.total(), 5000);
    assert_eq!(labels.get("thread.name"), Some("t1"));
    assert_eq!(labels.get("span_id"), Some("0102030405060708"));
    assert_eq!(
        labels.get("trace_id"),
        Some("abababababababababababababababab")
    );
    assert_eq!(labels.get("service.name"), None);
}

#[test]
fn service_name_falls_back_as_grafana_does() {
    let export = decode(
        &request(vec![kv("process.executable.name", string("python3"))]),
        &IngestBudget::default(),
    );
    assert_eq!(
        export.series[0].labels.get("service_name"),
        Some("unknown_service:python3")
    );
    assert_eq!(
        export.series[0].labels.get("process.executable.name"),
        Some("python3")
    );
}

#[test]
fn a_profile_without_sample_type_is_left_out_and_counted() {
    let mut r = request(vec![]);
    let mut extra = r.resource_profiles[0].scope_profiles[0].profiles[0].clone();
    extra.sample_type = None;
    r.resource_profiles[0].scope_profiles[0]
        .profiles
        .push(extra);
    let export = decode(&r, &IngestBudget::default());
    assert_eq!(export.series.len(), 2);
    let reply = export.response().partial_success.unwrap();
    assert_eq!(reply.rejected_profiles, 1);
    assert!(reply.error_message.contains("sample_type"));
}

#[test]
fn counts_are_refused_on_the_wire_and_indexes_checked() {
    let budget = IngestBudget {
        max_samples: 2,
        ..IngestBudget::default()
    };
    let err = refused(&request(vec![]), &budget);
    assert!(err.to_string().contains("max_samples"), "{err}");

    let mut r = request(vec![]);
    r.dictionary.as_mut().unwrap().location_table[2].mapping_index = 9;
    let err = refused(&r, &IngestBudget::default());
    assert!(err.to_string().contains("mapping index 9"), "{err}");

    let mut r = request(vec![]);
    r.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].values = vec![-1];
    let err = refused(&r, &IngestBudget::default());
    assert!(err.to_string().contains("value -1"), "{err}");
}

#[test]
fn nested_attribute_values_are_counted_and_bounded_in_depth() {
    let array = |values: Vec<AnyValue>| AnyValue {
        value: Some(any_value::Value::ArrayValue(
            super::proto::opentelemetry::proto::common::v1::ArrayValue { values },
        )),
    };
    // Many empty values in one attribute: two bytes each on the wire.
    let mut r = request(vec![]);
    r.dictionary.as_mut().unwrap().attribute_table[2].value =
        Some(array(vec![AnyValue::default(); 1000]));
    let budget = IngestBudget {
        max_locations: 500,
        ..IngestBudget::default()
    };
    let err = refused(&r, &budget);
    assert!(err.to_string().contains("max_locations"), "{err}");
    // Arrays in arrays, deeper than any real attribute.
    let deep = (0..40).fold(AnyValue::default(), |v, _| array(vec![v]));
    let r = request(vec![kv("deep", Some(deep))]);
    let err = refused(&r, &IngestBudget::default());
    assert!(err.to_string().contains("nested deeper"), "{err}");
}

#[test]
fn equal_labels_from_different_attribute_entries_are_one_tree() {
    let mut r = request(vec![]);
    let d = r.dictionary.as_mut().unwrap();
    let copy = d.attribute_table[2].clone();
    d.attribute_table.push(copy);
    let samples = &mut r.resource_profiles[0].scope_profiles[0].profiles[0].samples;
    samples[0].attribute_indices = vec![2];
    samples[1].attribute_indices = vec![3];
    let export = decode(&r, &IngestBudget::default());
    let [(labels, tree)] = &export.series[0].profile.trees[..] else {
        panic!("one label set: {:?}", export.series[0].profile.trees);
    };
    assert_eq!(labels.get("thread.name"), Some("t1"));
    assert_eq!(tree.total(), 5000);
}

#[test]
fn json_link_ids_may_be_hex_as_otlp_json_writes_them_or_base64_as_grafana_reads_them() {
    let r = request(vec![]);
    let json = serde_json::to_string(&r).unwrap();
    // pbjson wrote base64; write the same IDs in hex instead.
    let (trace_b64, span_b64) = ("q6urq6urq6urq6urq6urqw==", "AQIDBAUGBwg=");
    assert!(
        json.contains(trace_b64) && json.contains(span_b64),
        "{json}"
    );
    let hex = json
        .replace(trace_b64, "abababababababababababababababab")
        .replace(span_b64, "0102030405060708");
    for body in [json.as_bytes(), hex.as_bytes()] {
        let upload = OtlpUpload {
            body,
            encoding: Encoding::Json,
        };
        let export = decode_export(&upload, &IngestBudget::default()).unwrap();
        let (labels, _) = &export.series[1].profile.trees[0];
        assert_eq!(labels.get("span_id"), Some("0102030405060708"));
        assert_eq!(
            labels.get("trace_id"),
            Some("abababababababababababababababab")
        );
    }
}
