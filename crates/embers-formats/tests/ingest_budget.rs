//! The ingest entry point keeps every bound of its budget, for every format: property
//! tests over random bodies and budgets, and one test per pprof and Push bound.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::Write;

use embers_formats::ingest::{
    decode_legacy, decode_push, Bound, IngestBudget, Legacy, LegacyUpload, PushUpload,
};
use embers_formats::pprof::proto;
use embers_formats::{wire, FormatError};
use embers_profile::{Frame, Labels, Profile, ProfileMeta, StackTree};
use proptest::prelude::*;
use prost::Message;

fn bound_of(e: &FormatError) -> Option<Bound> {
    match e {
        FormatError::OverBudget { bound, .. } => Some(*bound),
        _ => None,
    }
}

fn depth(tree: &StackTree) -> usize {
    let mut deepest = 0;
    tree.for_each_stack(|stack, _| deepest = deepest.max(stack.len()));
    deepest
}

/// Whatever a budget accepts is within it.
fn within(tree: &StackTree, budget: &IngestBudget) {
    assert!(tree.node_count() <= budget.max_nodes);
    assert!(depth(tree) <= budget.max_stack_depth);
    assert!(tree.total() <= budget.max_total_value);
}

fn small_budget() -> impl Strategy<Value = IngestBudget> {
    (1..40usize, 1..12usize, 1..200usize, 1..2000u64, 1..20usize).prop_map(
        |(nodes, depth, samples, total, frame)| {
            let mut b = IngestBudget::default();
            b.max_nodes = nodes;
            b.max_stack_depth = depth;
            b.max_samples = samples;
            b.max_total_value = total;
            b.max_frame_length = frame;
            b
        },
    )
}

fn stack() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-e]{1,6}", 1..16)
}

proptest! {
    #[test]
    fn text_formats_stay_within_any_budget(
        stacks in prop::collection::vec((stack(), 0..300u64), 0..30),
        budget in small_budget(),
        lines in any::<bool>(),
    ) {
        let body: String = stacks
            .iter()
            .map(|(s, v)| if lines { format!("{}\n", s.join(";")) } else { format!("{} {v}\n", s.join(";")) })
            .collect();
        let format = if lines { "lines" } else { "folded" };
        let upload = LegacyUpload { body: body.as_bytes(), format, ..LegacyUpload::default() };
        match decode_legacy(&upload, &budget) {
            Ok(Legacy::Stacks(tree)) => within(&tree, &budget),
            Ok(_) => panic!("text decodes to stacks"),
            Err(e) => prop_assert!(bound_of(&e).is_some(), "{e}"),
        }
        // With the default budget the same body always decodes, to the same total.
        let upload = LegacyUpload { body: body.as_bytes(), format, ..LegacyUpload::default() };
        let Ok(Legacy::Stacks(tree)) = decode_legacy(&upload, &IngestBudget::default()) else {
            panic!("small bodies fit the default budget");
        };
        let expected: u64 = stacks.iter().map(|(_, v)| if lines { 1 } else { *v }).sum();
        prop_assert_eq!(tree.total(), expected);
    }

    #[test]
    fn pprof_stays_within_any_budget(
        stacks in prop::collection::vec((stack(), 1..300u64), 1..30),
        budget in small_budget(),
    ) {
        let mut p = Profile::new(ProfileMeta::sampled_at(100));
        for (s, v) in &stacks {
            let frames: Vec<Frame> = s.iter().map(Frame::named).collect();
            p.add_frames(&frames, Labels::new(), *v);
        }
        let mut body = Vec::new();
        embers_formats::pprof::encode(&p, &mut body).unwrap();
        let upload = LegacyUpload { body: &body, format: "pprof", ..LegacyUpload::default() };
        match decode_legacy(&upload, &budget) {
            Ok(Legacy::Pprof(types)) => {
                let nodes: usize = types.iter().flat_map(|t| &t.trees).map(|(_, t)| t.node_count()).sum();
                prop_assert!(nodes <= budget.max_nodes);
                for (_, tree) in types.iter().flat_map(|t| &t.trees) {
                    within(tree, &budget);
                }
            }
            Ok(_) => panic!("pprof decodes to pprof trees"),
            Err(e) => prop_assert!(bound_of(&e).is_some(), "{e}"),
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A pprof of `locations` locations and one sample per stack of `stacks`.
fn pprof(locations: u64, stacks: &[Vec<u64>], labels: usize) -> Vec<u8> {
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
    for (i, stack) in stacks.iter().enumerate() {
        let label = (0..labels)
            .map(|l| {
                p.string_table.push(format!("v{}", i * labels + l));
                proto::Label {
                    key: 3,
                    str: p.string_table.len() as i64 - 1,
                    ..proto::Label::default()
                }
            })
            .collect();
        p.sample.push(proto::Sample {
            location_id: stack.clone(),
            value: vec![1],
            label,
        });
    }
    p.encode_to_vec()
}

fn legacy_pprof(body: &[u8], budget: &IngestBudget) -> Result<Legacy, FormatError> {
    let upload = LegacyUpload {
        body,
        format: "pprof",
        ..LegacyUpload::default()
    };
    decode_legacy(&upload, budget)
}

#[test]
fn pprof_bounds_each_name_their_bound() {
    let mut budget = IngestBudget::default();
    budget.max_locations = 100;
    budget.max_samples = 10;
    budget.max_stack_depth = 5;
    budget.max_nodes = 12;
    let e = |body: Vec<u8>| bound_of(&legacy_pprof(&body, &budget).unwrap_err());
    assert_eq!(e(pprof(60, &[vec![1]], 0)), Some(Bound::Locations));
    assert_eq!(e(pprof(3, &vec![vec![1]; 11], 0)), Some(Bound::Samples));
    assert_eq!(
        e(pprof(9, &[(1..=6).collect()], 0)),
        Some(Bound::StackDepth)
    );
    let distinct: Vec<Vec<u64>> = (1..=5).map(|i| vec![6, 7, i]).collect();
    assert_eq!(e(pprof(9, &distinct, 0)), Some(Bound::Nodes));
    assert!(legacy_pprof(&pprof(9, &distinct[..2], 0), &budget).is_ok());
}

#[test]
fn many_label_sets_cannot_copy_a_large_symbol_table_each() {
    // 3,000 locations, and 1,000 samples each with its own label value: a tree per
    // label set, each small, so none gets a copy of the whole table.
    let stacks: Vec<Vec<u64>> = (0..1000).map(|i| vec![1 + i % 3000]).collect();
    let body = pprof(3000, &stacks, 1);
    let Legacy::Pprof(types) = legacy_pprof(&body, &IngestBudget::default()).unwrap() else {
        panic!("pprof");
    };
    let symbols: usize = types[0].trees.iter().map(|(_, t)| t.symbols().len()).sum();
    assert_eq!(types[0].trees.len(), 1000);
    assert_eq!(symbols, 1000, "each tree holds only the frames it uses");
}

#[test]
fn numeric_labels_are_never_sample_labels() {
    // Go's heap profiles label every sample with its allocation size (`bytes`, a
    // Label.num): as a series label it would make one series per size.
    let mut p = proto::Profile::decode(&pprof(3, &[vec![1], vec![2]], 1)[..]).unwrap();
    p.string_table.push("bytes".into());
    let bytes = p.string_table.len() as i64 - 1;
    for (i, s) in p.sample.iter_mut().enumerate() {
        s.label.push(proto::Label {
            key: bytes,
            num: 1024 * (i as i64 + 1),
            ..proto::Label::default()
        });
    }
    // Both samples share the string label: one label set, without `bytes`.
    let v0 = p.sample[0].label[0].str;
    p.sample[1].label[0].str = v0;
    let Legacy::Pprof(types) = legacy_pprof(&p.encode_to_vec(), &IngestBudget::default()).unwrap()
    else {
        panic!("pprof");
    };
    assert_eq!(types[0].trees.len(), 1);
    let (labels, tree) = &types[0].trees[0];
    assert_eq!(labels.iter().collect::<Vec<_>>(), vec![("f", "v0")]);
    assert_eq!(tree.total(), 2);
}

#[test]
fn a_push_spends_one_budget_over_all_its_samples() {
    let sample = gzip(&pprof(3, &[vec![1, 2, 3]], 0));
    let inflated = pprof(3, &[vec![1, 2, 3]], 0).len();
    let request = |samples: usize, id: &str| wire::PushRequest {
        series: vec![wire::RawProfileSeries {
            labels: vec![wire::LabelPair {
                name: "service_name".into(),
                value: "app".into(),
            }],
            samples: (0..samples)
                .map(|i| wire::RawSample {
                    raw_profile: sample.clone(),
                    id: format!("{id}{i}"),
                })
                .collect(),
            annotations: Vec::new(),
        }],
    };
    let mut budget = IngestBudget::default();
    let body = request(4, "").encode_to_vec();
    budget.max_decoded_bytes = body.len() + 4 * inflated;
    let push = |body: &[u8], budget: &IngestBudget| {
        decode_push(
            &PushUpload {
                body,
                content_type: "application/proto",
            },
            budget,
        )
    };
    let pushed = push(&body, &budget).unwrap();
    assert_eq!(pushed.series[0].profiles.len(), 4);
    assert_eq!(pushed.ids.len(), 4);
    budget.max_decoded_bytes -= 1;
    let e = push(&body, &budget).unwrap_err();
    assert_eq!(bound_of(&e), Some(Bound::DecodedBytes), "{e}");

    let budget = IngestBudget::default();
    let long = "x".repeat(budget.max_request_id_length + 1);
    let e = push(&request(1, &long).encode_to_vec(), &budget).unwrap_err();
    assert_eq!(bound_of(&e), Some(Bound::RequestIdLength), "{e}");
    let e = push(
        &request(budget.max_request_ids + 1, "id-").encode_to_vec(),
        &budget,
    )
    .unwrap_err();
    assert_eq!(bound_of(&e), Some(Bound::RequestIds), "{e}");
}

#[test]
fn json_pushes_are_counted_before_they_are_parsed() {
    let mut budget = IngestBudget::default();
    budget.max_samples = 100;
    let body = format!(
        "{{\"series\":[{{\"samples\":[{}]}}]}}",
        vec!["{}"; 200].join(",")
    );
    let e = decode_push(
        &PushUpload {
            body: body.as_bytes(),
            content_type: "application/json",
        },
        &budget,
    )
    .unwrap_err();
    assert_eq!(bound_of(&e), Some(Bound::Samples), "{e}");
}

/// pyroscope-go's multipart form: file parts named `profile`, `prev_profile`,
/// `sample_type_config`.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(b"--B0UNDARY\r\nContent-Disposition: form-data; ");
        body.extend_from_slice(format!("name=\"{name}\"").as_bytes());
        if let Some(f) = filename {
            body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--B0UNDARY--\r\n");
    body
}

fn legacy_form(body: &[u8], budget: &IngestBudget) -> Result<Legacy, FormatError> {
    let upload = LegacyUpload {
        body,
        content_type: "multipart/form-data; boundary=B0UNDARY",
        ..LegacyUpload::default()
    };
    decode_legacy(&upload, budget)
}

#[test]
fn a_prev_profile_spends_the_same_budget() {
    let profile = gzip(&pprof(3, &vec![vec![1, 2]; 6], 0));
    let mut budget = IngestBudget::default();
    budget.max_samples = 10;
    let one = form(&[("profile", Some("profile.pprof"), &profile)]);
    assert!(legacy_form(&one, &budget).is_ok());
    let both = form(&[
        ("profile", Some("profile.pprof"), &profile),
        ("prev_profile", Some("profile.pprof"), &profile),
    ]);
    let e = legacy_form(&both, &budget).unwrap_err();
    assert_eq!(bound_of(&e), Some(Bound::Samples), "{e}");
}

#[test]
fn form_parts_count_only_as_files_and_a_bad_config_is_malformed() {
    let profile = gzip(&pprof(3, &[vec![1, 2]], 0));
    let budget = IngestBudget::default();
    // A `profile` field without a filename is no file: an empty upload, as in Grafana.
    let field = form(&[("profile", None, &profile)]);
    let Legacy::PprofForm(empty) = legacy_form(&field, &budget).unwrap() else {
        panic!("a form");
    };
    assert!(empty.profiles.is_empty());
    let bad = form(&[
        ("profile", Some("profile.pprof"), &profile),
        (
            "sample_type_config",
            Some("sample_type_config.json"),
            b"{\"samples\":",
        ),
    ]);
    let e = legacy_form(&bad, &budget).unwrap_err();
    assert!(matches!(e, FormatError::Malformed { .. }), "{e}");
    let good = form(&[
        ("profile", Some("profile.pprof"), &profile),
        (
            "sample_type_config",
            Some("sample_type_config.json"),
            br#"{"samples":{"display-name":"block_count","units":"lock_samples"}}"#,
        ),
    ]);
    let Legacy::PprofForm(decoded) = legacy_form(&good, &budget).unwrap() else {
        panic!("a form");
    };
    assert!(decoded.configured);
    assert_eq!(decoded.sample_types["samples"].display_name, "block_count");
    assert_eq!(decoded.profiles[0].trees[0].1.total(), 1);
}

/// A pprof of `alloc_objects` (cumulative by default) with these stacks.
fn alloc_pprof(stacks: &std::collections::BTreeMap<Vec<String>, u64>) -> Vec<u8> {
    let mut p = Profile::new(ProfileMeta {
        sample_type: embers_profile::ValueType::new("alloc_objects", "count"),
        ..ProfileMeta::default()
    });
    for (s, v) in stacks {
        let frames: Vec<Frame> = s.iter().map(Frame::named).collect();
        p.add_frames(&frames, Labels::new(), *v);
    }
    let mut body = Vec::new();
    embers_formats::pprof::encode(&p, &mut body).unwrap();
    body
}

proptest! {
    /// profile − prev_profile, per stack, never below 0, within any budget.
    #[test]
    fn prev_profile_deltas_are_exact_per_stack(
        now in prop::collection::btree_map(stack(), 1..300u64, 1..20),
        before in prop::collection::btree_map(stack(), 1..300u64, 0..20),
        budget in small_budget(),
    ) {
        let (current, prev) = (alloc_pprof(&now), alloc_pprof(&before));
        let body = form(&[
            ("profile", Some("profile.pprof"), &current),
            ("prev_profile", Some("profile.pprof"), &prev),
        ]);
        let expected: u64 = now
            .iter()
            .map(|(s, v)| v.saturating_sub(before.get(s).copied().unwrap_or(0)))
            .sum();
        match legacy_form(&body, &budget) {
            Ok(Legacy::PprofForm(f)) => {
                for (_, tree) in f.profiles.iter().flat_map(|t| &t.trees) {
                    within(tree, &budget);
                }
            }
            Ok(_) => panic!("a form"),
            Err(e) => prop_assert!(bound_of(&e).is_some(), "{e}"),
        }
        let Ok(Legacy::PprofForm(f)) = legacy_form(&body, &IngestBudget::default()) else {
            panic!("small forms fit the default budget");
        };
        let total: u64 = f.profiles.iter().flat_map(|t| &t.trees).map(|(_, t)| t.total()).sum();
        prop_assert_eq!(total, expected);
        for (_, tree) in f.profiles.iter().flat_map(|t| &t.trees) {
            for (frames, v) in tree.to_sorted_stacks() {
                let key: Vec<String> = frames.iter().map(|f| f.function.clone()).collect();
                let want = now[&key].saturating_sub(before.get(&key).copied().unwrap_or(0));
                prop_assert_eq!(v, want, "{:?}", key);
            }
        }
    }
}
