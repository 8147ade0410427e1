//! Just enough `multipart/form-data` for the legacy pprof upload: named parts of a body
//! already in memory. The boundary search is `memchr::memmem` (linear in the body
//! whatever the boundary), and a boundary is at most 70 bytes, as RFC 2046 says.

use memchr::memmem;

use crate::FormatError;

const NAME: &str = "multipart";

/// RFC 2046 §5.1.1: boundaries are 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

/// The boundary of a `multipart/form-data; boundary=…` content type.
pub fn boundary(content_type: &str) -> Option<&str> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"'))
    })
}

fn bad(message: &str) -> FormatError {
    FormatError::malformed(NAME, message)
}

/// The parts of `body` as `(name, bytes)`.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<(String, &'a [u8])>, FormatError> {
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return Err(bad("the boundary must be 1 to 70 characters"));
    }
    let delimiter = format!("--{boundary}");
    let delimiters = memmem::Finder::new(delimiter.as_bytes());
    let blank_line = memmem::Finder::new(b"\r\n\r\n");
    let d = delimiter.len();
    let mut out = Vec::new();
    let mut at = delimiters
        .find(body)
        .ok_or_else(|| bad("multipart body has no boundary"))?;
    loop {
        at += d;
        if body[at..].starts_with(b"--") {
            return Ok(out);
        }
        let headers_end = blank_line
            .find(&body[at..])
            .map(|i| i + at)
            .ok_or_else(|| bad("a part without headers"))?;
        let headers = std::str::from_utf8(&body[at..headers_end])
            .map_err(|_| bad("part headers are not UTF-8"))?;
        let name = headers
            .lines()
            .filter(|l| {
                l.get(..20)
                    .is_some_and(|h| h.eq_ignore_ascii_case("content-disposition:"))
            })
            .flat_map(|l| l.split(';'))
            .find_map(|p| {
                p.trim()
                    .strip_prefix("name=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .ok_or_else(|| bad("a part without a name"))?;
        let start = headers_end + 4;
        let next = delimiters
            .find(&body[start..])
            .map(|i| i + start)
            .ok_or_else(|| bad("multipart body is not terminated"))?;
        let end = next
            .checked_sub(2)
            .filter(|&e| e >= start && &body[e..next] == b"\r\n")
            .ok_or_else(|| bad("malformed part (no CRLF before the boundary)"))?;
        out.push((name, &body[start..end]));
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parts() {
        let body = b"--XYZ\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n\x01\x02\r\n\x03\r\n--XYZ\r\nContent-Disposition: form-data; name=\"sample_type_config\"\r\n\r\n{}\r\n--XYZ--\r\n";
        assert_eq!(boundary("multipart/form-data; boundary=XYZ"), Some("XYZ"));
        let p = parts(body, "XYZ").unwrap();
        assert_eq!(p[0], ("profile".to_string(), &b"\x01\x02\r\n\x03"[..]));
        assert_eq!(p[1], ("sample_type_config".to_string(), &b"{}"[..]));
        assert!(parts(&body[..40], "XYZ").is_err());
    }

    #[test]
    fn pathological_boundaries_are_refused_or_linear() {
        let long = "a".repeat(71);
        assert!(parts(b"--", &long).is_err());
        // A body of near-misses of a 70-byte boundary: a naive search compares ~70 bytes
        // at each of the million positions; memmem does not, and there is no part.
        let b = "a".repeat(69) + "b";
        let body = "--".to_string() + &"a".repeat(1 << 20);
        assert!(parts(body.as_bytes(), &b).is_err());
    }
}
