//! Stored objects (a damaged or hostile data directory): block and dictionary payloads
//! must open or fail cleanly, and what opens must decode without panicking.
#![no_main]

use embers_profile::FxHashMap;
use embers_store::{BlockReader, DictionarySegment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = BlockReader::open(data) {
        let mut acc = FxHashMap::default();
        for entry in block.entries() {
            let _ = block.add_into(entry, &mut acc);
        }
    }
    let _ = DictionarySegment::decode(data);
});
