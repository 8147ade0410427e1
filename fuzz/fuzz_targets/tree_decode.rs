//! Stored tree bytes (a corrupt or hostile file) must decode or fail cleanly within the
//! limits, and what decodes must re-encode to bytes that decode to the same stacks.
#![no_main]

use embers_store::{decode_tree, encode_tree, TreeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = TreeLimits { max_frames: 1 << 12, max_nodes: 1 << 16, max_depth: 256, max_str: 1 << 12 };
    if let Ok((tree, _)) = decode_tree(data, &limits) {
        let mut out = Vec::new();
        encode_tree(&tree, &mut out);
        let (again, used) = decode_tree(&out, &TreeLimits::default()).expect("our output decodes");
        assert_eq!(used, out.len());
        assert_eq!(again.to_sorted_stacks(), tree.to_sorted_stacks());
    }
});
