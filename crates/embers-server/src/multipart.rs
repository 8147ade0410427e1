//! Just enough `multipart/form-data` for the legacy pprof upload: named parts of a body
//! already in memory (the body limit applies before this runs).

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

/// The parts of `body` as `(name, bytes)`.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<(String, &'a [u8])>, String> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut out = Vec::new();
    let mut at = find(body, d, 0).ok_or("multipart body has no boundary")?;
    loop {
        at += d.len();
        if body[at..].starts_with(b"--") {
            return Ok(out);
        }
        let headers_end = find(body, b"\r\n\r\n", at).ok_or("multipart part without headers")?;
        let headers = std::str::from_utf8(&body[at..headers_end])
            .map_err(|_| "multipart headers are not UTF-8")?;
        let name = headers
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .flat_map(|l| l.split(';'))
            .find_map(|p| {
                p.trim()
                    .strip_prefix("name=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .ok_or("multipart part without a name")?;
        let start = headers_end + 4;
        let next = find(body, d, start).ok_or("multipart body is not terminated")?;
        let end = next
            .checked_sub(2)
            .filter(|&e| e >= start && &body[e..next] == b"\r\n")
            .ok_or("malformed multipart part")?;
        out.push((name, &body[start..end]));
        at = next;
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
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
}
