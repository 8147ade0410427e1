//! Untrusted request parts of the server's ingest and query APIs: legacy trie and tree
//! bodies, multipart uploads and selectors must decode or fail cleanly, never panic.
#![no_main]

use embers_server::{multipart, trie};
use embers_store::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = trie::decode_trie(data) {
        let _ = tree.total();
    }
    if let Ok(tree) = trie::decode_tree(data) {
        let _ = tree.total();
    }
    if let Ok(parts) = multipart::parts(data, "B0UNDARY") {
        for (name, bytes) in parts {
            assert!(bytes.len() <= data.len(), "{name}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(selector) = Selector::parse(text) {
            // What we print must parse back to the same selector.
            let again = Selector::parse(&selector.to_string()).expect("printed selectors parse");
            assert_eq!(again, selector);
        }
    }
});
