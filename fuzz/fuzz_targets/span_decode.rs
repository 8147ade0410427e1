//! Stored span objects (`spans/`, a damaged or hostile data directory): they must decode
//! or fail cleanly, never panic or allocate without bound.
#![no_main]

use embers_profile::FxHashMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut acc = FxHashMap::default();
    let _ = embers_store::read_span_object(data, &mut acc);
});
