//! JFR recordings from the network must decode or fail cleanly, within the budget:
//! no panic, no allocation past what the bytes pay for, no endless loop. The first
//! byte says whether the rest carries a `LabelsSnapshot` (its length in the next two
//! bytes) before the recording.
#![no_main]

use embers_formats::jfr::{decode, JfrOptions};
use embers_formats::IngestBudget;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut budget = IngestBudget::default();
    budget.max_decoded_bytes = 4 << 20;
    budget.max_nodes = 1 << 16;
    budget.max_stack_frames = 1 << 20;
    let (labels, recording) = match data {
        [1, a, b, rest @ ..] => {
            let n = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
            (Some(&rest[..n]), &rest[n..])
        }
        [_, rest @ ..] => (None, rest),
        [] => return,
    };
    if let Ok(groups) = decode(recording, labels, &JfrOptions::default(), &budget) {
        for group in groups {
            for profile in group.profiles {
                for (_, tree) in profile.trees {
                    assert!(tree.total() <= budget.max_total_value);
                }
            }
        }
    }
});
