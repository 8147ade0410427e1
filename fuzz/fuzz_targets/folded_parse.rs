//! Folded text from anywhere must parse or fail cleanly, and what parses must write back
//! and parse again to the same total.
#![no_main]

use embers_formats::{folded, Format, ReadLimits, WriteOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits { max_decoded_bytes: 1 << 20, ..ReadLimits::default() };
    if let Ok(profile) = folded::parse(data, &limits) {
        let mut out = Vec::new();
        embers_formats::write(&profile, Format::Folded, &WriteOptions::default(), &mut out)
            .expect("a parsed profile writes");
        let again = folded::parse(&out, &ReadLimits::default()).expect("our own output parses");
        assert_eq!(again.total(), profile.total());
    }
});
