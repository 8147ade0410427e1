//! `Authorization` header values are read before anything else checks a request: any
//! bytes must give a token, "malformed" or nothing, without panicking, and a token is
//! never empty nor longer than the header.
#![no_main]

use embers_server::auth::credentials::{from_value, Presented};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Presented::Token(token) = from_value(data) {
        assert!(!token.is_empty());
        assert!(token.len() <= data.len());
    }
});
