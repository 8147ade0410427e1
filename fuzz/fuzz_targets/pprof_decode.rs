//! pprof bytes from the network must decode or fail cleanly, within the limits, and what
//! decodes must encode and decode again to the same total.
#![no_main]

use embers_formats::{pprof, ReadLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits { max_decoded_bytes: 4 << 20, ..ReadLimits::default() };
    if let Ok(profiles) = pprof::decode_all(data, &limits) {
        for profile in profiles {
            let mut out = Vec::new();
            pprof::encode(&profile, &mut out).expect("a decoded profile encodes");
            let again = pprof::decode(&out, &ReadLimits::default()).expect("our output decodes");
            assert_eq!(again.total(), profile.total());
        }
    }
});
