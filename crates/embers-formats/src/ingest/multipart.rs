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
    Ok(all_parts(body, boundary)?
        .into_iter()
        .map(|p| (p.name, p.body))
        .collect())
}

/// The non-empty *file* parts of `body` (those with a `filename`), as `(name, bytes)`:
/// what Grafana Pyroscope's form reader counts (`pkg/og/util/form`); a field without a
/// filename, or an empty file, is absent.
pub fn file_parts<'a>(
    body: &'a [u8],
    boundary: &str,
) -> Result<Vec<(String, &'a [u8])>, FormatError> {
    Ok(all_parts(body, boundary)?
        .into_iter()
        .filter(|p| p.is_file && !p.body.is_empty())
        .map(|p| (p.name, p.body))
        .collect())
}

/// One part: its name, whether it is a file, its bytes.
struct Part<'a> {
    name: String,
    is_file: bool,
    body: &'a [u8],
}

fn all_parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, FormatError> {
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
        let disposition = || {
            headers
                .lines()
                .filter(|l| {
                    l.get(..20)
                        .is_some_and(|h| h.eq_ignore_ascii_case("content-disposition:"))
                })
                .flat_map(|l| l.split(';'))
                .map(str::trim)
        };
        let name = disposition()
            .find_map(|p| {
                p.strip_prefix("name=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .ok_or_else(|| bad("a part without a name"))?;
        let is_file =
            disposition().any(|p| p.starts_with("filename=") || p.starts_with("filename*="));
        let start = headers_end + 4;
        let next = delimiters
            .find(&body[start..])
            .map(|i| i + start)
            .ok_or_else(|| bad("multipart body is not terminated"))?;
        let end = next
            .checked_sub(2)
            .filter(|&e| e >= start && &body[e..next] == b"\r\n")
            .ok_or_else(|| bad("malformed part (no CRLF before the boundary)"))?;
        out.push(Part {
            name,
            is_file,
            body: &body[start..end],
        });
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
        // Only the file part counts as a form file.
        let files = file_parts(body, "XYZ").unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "profile");
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
