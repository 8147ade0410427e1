//! The ingest entry point (`decode_legacy`, `decode_push`) over every format it accepts:
//! hostile bodies must decode or fail cleanly, and whatever decodes must be within the
//! budget (node counts, values).
#![no_main]

use embers_formats::ingest::{Legacy, LegacyUpload, PushUpload};
use embers_formats::pprof::LabelledTrees;
use embers_formats::{decode_legacy, decode_push, IngestBudget};
use libfuzzer_sys::fuzz_target;

const LEGACY: [(&str, &str); 7] = [
    ("", "text/plain"),
    ("lines", ""),
    ("trie", "binary/octet-stream+trie"),
    ("", "binary/octet-stream+tree"),
    ("pprof", "application/octet-stream"),
    ("", "multipart/form-data; boundary=B0UNDARY"),
    ("", "multipart/form-data; boundary=\"a-boundary-of-exactly-seventy-characters-aaaaaaaaaaaaaaaaaaaaaaaaaaaa\""),
];

fn budget() -> IngestBudget {
    let mut b = IngestBudget::default();
    b.max_decoded_bytes = 1 << 20;
    b.max_nodes = 1 << 14;
    b.max_samples = 1 << 14;
    b.max_locations = 1 << 14;
    b.max_stack_frames = 1 << 16;
    b.max_stack_depth = 256;
    b
}

fn check(trees: &[LabelledTrees], budget: &IngestBudget) {
    let nodes: usize = trees.iter().flat_map(|t| &t.trees).map(|(_, t)| t.node_count()).sum();
    assert!(nodes <= budget.max_nodes, "{nodes} nodes");
    let total: u64 = trees.iter().flat_map(|t| &t.trees).map(|(_, t)| t.total()).sum();
    assert!(total <= budget.max_total_value);
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let budget = budget();
    let pick = usize::from(pick);
    if let Some(&(format, content_type)) = LEGACY.get(pick % 10) {
        let upload = LegacyUpload { body, content_type, format, scale: (pick >= 128).then_some(1e7) };
        match decode_legacy(&upload, &budget) {
            Ok(Legacy::Stacks(tree)) => {
                assert!(tree.node_count() <= budget.max_nodes);
                assert!(tree.total() <= budget.max_total_value);
            }
            Ok(Legacy::Pprof(trees)) => check(&trees, &budget),
            Ok(Legacy::PprofForm(form)) => check(&form.profiles, &budget),
            Ok(_) | Err(_) => {}
        }
    } else {
        let content_type = if pick % 10 == 7 { "application/proto" } else { "application/json" };
        if let Ok(pushed) = decode_push(&PushUpload { body, content_type }, &budget) {
            assert!(pushed.ids.len() <= budget.max_request_ids);
            for series in &pushed.series {
                assert!(series.labels.len() <= budget.max_labels_per_series);
                for p in &series.profiles {
                    check(p, &budget);
                }
            }
        }
    }
});
