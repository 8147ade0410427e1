//! Ad-hoc profile files (`adhocprofiles.v1` uploads) must decode or fail cleanly within
//! the budget, whatever their content sniffs as (pprof, JFR, speedscope JSON, folded):
//! no panic, no allocation past what the bytes pay for, totals within the bound.
#![no_main]

use embers_formats::ingest::adhoc::decode_file;
use embers_formats::IngestBudget;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut budget = IngestBudget::default();
    budget.max_decoded_bytes = 4 << 20;
    budget.max_nodes = 1 << 16;
    budget.max_stack_frames = 1 << 20;
    if let Ok(file) = decode_file("fuzz", data, &budget) {
        assert!(!file.profiles.is_empty());
        for p in file.profiles {
            assert!(p.tree.total() <= budget.max_total_value);
        }
    }
});
