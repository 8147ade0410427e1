//! The cross-site policy reads untrusted header text (Host, Origin, Sec-Fetch-Site and,
//! when trusted, X-Forwarded-*): any bytes must be judged without a panic, and a
//! state-changing request naming a foreign origin must never pass.
#![no_main]

use embers_server::origin::{Policy, Verdict};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 6] = [
    "host",
    "origin",
    "sec-fetch-site",
    "x-forwarded-host",
    "x-forwarded-proto",
    "access-control-request-method",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let policy = Policy::new(
        &["https://ui.example".to_owned()],
        &["profiles.example".to_owned()][..usize::from(flags & 2 != 0)],
        flags & 1 != 0,
    )
    .expect("a valid policy");
    // Fields separated by '\n', in NAMES order; a field that is no header value is left out.
    let mut headers = HeaderMap::new();
    for (name, value) in NAMES.iter().zip(rest.split(|&b| b == b'\n')) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let method = match flags >> 6 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::OPTIONS,
        _ => Method::DELETE,
    };
    let uri = Uri::from_static("/ingest");
    let verdict = policy.judge(&method, &uri, &headers);
    if method == Method::POST && flags & 1 == 0 {
        // Untrusted proxy headers: an Origin passes only if it is the Host's or allowed.
        if let (Verdict::Pass { .. }, Some(origin)) = (&verdict, headers.get("origin")) {
            let origin = origin.to_str().expect("a passing Origin is text").to_ascii_lowercase();
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
            let name = host.split(':').next().unwrap_or("").to_ascii_lowercase();
            assert!(
                origin.starts_with("https://ui.example") || (!name.is_empty() && origin.contains(&name)),
                "{origin} passed for host {host}"
            );
        }
    }
});
