//! JFR recordings made by the JVM, decoded as Grafana Pyroscope converts them.
//!
//! `data/jdk17-labels.jfr.gz` is OpenJDK 17's recording of `Work labels`
//! (`crates/embers-cli/tests/java/Work.java`: 30 allocation events from `checkout`, 70
//! from `search`, 1000 bytes each, with context ids 1 and 2, `checkout`'s with span id
//! 0x1234abcd and span name 13) with only
//! `jdk.ObjectAllocationInNewTLAB` and `jdk.ExecutionSample` enabled. Its folded output
//! is `data/jdk17-labels.folded` (`EMBERS_BLESS=1` rewrites it); checked against
//! `jfr print --json` of the same file: 122 allocation events of 3,134,408 TLAB bytes in
//! all, 3 execution samples (30 ms at 100 Hz).

#![allow(clippy::unwrap_used)]

use std::io::Read;

use embers_formats::jfr::{decode, Context, JfrGroup, JfrOptions, LabelsSnapshot};
use embers_formats::{FormatError, IngestBudget};

fn golden() -> Vec<u8> {
    let gz = include_bytes!("data/jdk17-labels.jfr.gz");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn labels() -> Vec<u8> {
    use prost::Message;
    LabelsSnapshot {
        contexts: [
            (
                1,
                Context {
                    labels: [(10, 11)].into(),
                },
            ),
            (
                2,
                Context {
                    labels: [(10, 12)].into(),
                },
            ),
        ]
        .into(),
        strings: [
            (10, "endpoint".to_owned()),
            (11, "checkout".to_owned()),
            (12, "search".to_owned()),
            (13, "POST /checkout".to_owned()),
        ]
        .into(),
    }
    .encode_to_vec()
}

/// One line per (family, sample type, labels, stack): `frame:line;…`.
fn folded(groups: &[JfrGroup]) -> String {
    let mut lines = Vec::new();
    for g in groups {
        for p in &g.profiles {
            for (labels, tree) in &p.trees {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for (stack, v) in tree.to_sorted_stacks() {
                    let frames: Vec<String> = stack
                        .iter()
                        .map(|f| match f.line {
                            Some(l) => format!("{}:{l}", f.function),
                            None => f.function.clone(),
                        })
                        .collect();
                    lines.push(format!(
                        "{} {} {{{}}} {} {v}",
                        g.family,
                        p.meta.sample_type.kind,
                        labels.join(","),
                        frames.join(";")
                    ));
                }
            }
        }
    }
    lines.sort();
    lines.join("\n") + "\n"
}

#[test]
fn the_golden_recording_decodes_to_its_folded_output() {
    let labels = labels();
    let groups = decode(
        &golden(),
        Some(&labels),
        &JfrOptions::default(),
        &IngestBudget::default(),
    )
    .unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/jdk17-labels.folded"
    );
    if std::env::var_os("EMBERS_BLESS").is_some() {
        std::fs::write(path, folded(&groups)).unwrap();
    }
    assert_eq!(folded(&groups), std::fs::read_to_string(path).unwrap());
}

#[test]
fn a_scan_reads_every_event_jfr_summary_counts() {
    // `jfr summary`: 122 allocation events, 3 execution samples, 9 checkpoints, 1
    // metadata event.
    let events = embers_formats::jfr::scan(&golden(), &IngestBudget::default()).unwrap();
    assert_eq!(events, 135);
}

#[test]
fn chunks_one_after_the_other_add_up() {
    let one = golden();
    let two = [one.clone(), one.clone()].concat();
    let budget = IngestBudget::default();
    let total = |bytes: &[u8]| -> u64 {
        decode(bytes, None, &JfrOptions::default(), &budget)
            .unwrap()
            .iter()
            .flat_map(|g| &g.profiles)
            .flat_map(|p| &p.trees)
            .map(|(_, t)| t.total())
            .sum()
    };
    assert!(total(&one) > 0);
    assert_eq!(total(&two), 2 * total(&one));
}

#[test]
fn every_prefix_of_a_recording_fails_cleanly() {
    let bytes = golden();
    let budget = IngestBudget::default();
    for end in (0..bytes.len()).step_by(97) {
        let err = decode(&bytes[..end], None, &JfrOptions::default(), &budget).unwrap_err();
        assert!(matches!(err, FormatError::Malformed { .. }), "{err}");
    }
}

#[test]
fn bounds_of_the_budget_are_named() {
    let bytes = golden();
    type Set = fn(&mut IngestBudget);
    let bounds: [(Set, &str); 5] = [
        (|b| b.max_stack_depth = 2, "max_stack_depth"),
        (|b| b.max_samples = 10, "max_samples"),
        (|b| b.max_locations = 100, "max_locations"),
        (|b| b.max_nodes = 2, "max_nodes"),
        (|b| b.max_frame_length = 8, "max_frame_length"),
    ];
    for (set, setting) in bounds {
        let mut budget = IngestBudget::default();
        set(&mut budget);
        let err = decode(&bytes, None, &JfrOptions::default(), &budget).unwrap_err();
        assert!(err.to_string().contains(setting), "{setting}: {err}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any recording with a few bytes changed decodes or fails with a typed error:
    /// never a panic, never an error other than malformed or over a bound.
    #[test]
    fn damaged_recordings_fail_cleanly(
        changes in proptest::collection::vec((0usize..119_311, proptest::num::u8::ANY), 1..8)
    ) {
        let mut bytes = golden();
        for (at, byte) in changes {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        let mut budget = IngestBudget::default();
        budget.max_nodes = 1 << 16;
        match decode(&bytes, None, &JfrOptions::default(), &budget) {
            Ok(_) | Err(FormatError::Malformed { .. } | FormatError::OverBudget { .. }) => {}
            Err(other) => proptest::prop_assert!(false, "unexpected error {other}"),
        }
    }
}
