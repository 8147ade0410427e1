//! OTLP profiles exports (`decode_export`), protobuf or JSON: hostile bodies must decode
//! or fail cleanly, and whatever decodes must be within the budget (nodes, values,
//! labels). The first byte picks the encoding: even protobuf, odd JSON.
#![no_main]

use embers_formats::otlp::{decode_export, Encoding, OtlpUpload};
use embers_formats::IngestBudget;
use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let encoding = if pick % 2 == 0 { Encoding::Protobuf } else { Encoding::Json };
    let budget = budget();
    let Ok(export) = decode_export(&OtlpUpload { body, encoding }, &budget) else {
        return;
    };
    let (mut nodes, mut total) = (0usize, 0u64);
    for series in &export.series {
        assert!(series.labels.len() <= budget.max_labels_per_series);
        for (labels, tree) in &series.profile.trees {
            assert!(labels.len() <= budget.max_labels_per_series);
            nodes += tree.node_count();
            total += tree.total();
        }
    }
    assert!(nodes <= budget.max_nodes, "{nodes} nodes");
    assert!(total <= budget.max_total_value, "total {total}");
    let _ = export.response();
});
