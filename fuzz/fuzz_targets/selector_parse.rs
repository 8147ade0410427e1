//! Selectors of the query APIs must parse or fail cleanly, and what we print must parse
//! back to the same selector.
#![no_main]

use embers_store::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(selector) = Selector::parse(text) {
            let again = Selector::parse(&selector.to_string()).expect("printed selectors parse");
            assert_eq!(again, selector);
        }
    }
});
