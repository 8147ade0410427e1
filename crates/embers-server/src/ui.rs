//! The web UI: static ES modules under `crates/embers-server/ui/`, compiled into the binary
//! (so a fresh `cargo build` serves the UI with no Node toolchain), gzipped once on first
//! request, served with an ETag and a Content-Security-Policy that forbids inline script:
//! names in profiles are untrusted text and the UI only ever writes them as text, the
//! policy is the second line of defence.

use std::io::Write;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every file of the UI, by its path under `ui/`.
macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../ui/", $path)))),*]
    };
}

/// The UI's files. A unit test checks this list against the directory.
pub const ASSETS: &[(&str, &[u8])] = assets![
    "index.html",
    "app.css",
    "upload.css",
    "js/api.js",
    "js/auth.js",
    "js/compare.js",
    "js/controls.js",
    "js/diff.js",
    "js/dom.js",
    "js/explore.js",
    "js/export.js",
    "js/flamegraph.js",
    "js/format.js",
    "js/graph.js",
    "js/main.js",
    "js/single.js",
    "js/state.js",
    "js/table.js",
    "js/timeline.js",
    "js/upload.js",
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    raw: &'static [u8],
    gzip: Vec<u8>,
    etag: String,
}

fn assets() -> &'static [Asset] {
    static ALL: OnceLock<Vec<Asset>> = OnceLock::new();
    ALL.get_or_init(|| {
        ASSETS
            .iter()
            .map(|&(path, raw)| {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                // Writing to a Vec cannot fail.
                let _ = gz.write_all(raw);
                let gzip = gz.finish().unwrap_or_default();
                let etag = format!("\"{:08x}-{}\"", crc32fast::hash(raw), raw.len());
                Asset {
                    path,
                    raw,
                    gzip,
                    etag,
                }
            })
            .collect()
    })
}

/// Total size of the shipped assets, raw and gzipped (for BENCHMARKS.md and a test).
pub fn asset_sizes() -> (usize, usize) {
    assets()
        .iter()
        .fold((0, 0), |(r, g), a| (r + a.raw.len(), g + a.gzip.len()))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = assets().iter().find(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "no such UI file\n").into_response();
    };
    let etag = HeaderValue::from_str(&asset.etag).unwrap_or(HeaderValue::from_static("\"\""));
    if headers.get(header::IF_NONE_MATCH) == Some(&etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut response = if gzip {
        let mut r = asset.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        asset.raw.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /`: the UI's page (its state is in the query string).
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/{*path}`: the UI's scripts and styles.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_under_ui_is_shipped() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).expect("ui dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e != "json") {
                    let rel = path.strip_prefix(&root).expect("under ui");
                    on_disk.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|(p, _)| (*p).to_owned()).collect();
        listed.sort();
        assert_eq!(
            listed, on_disk,
            "ui.rs ASSETS and crates/embers-server/ui differ"
        );
    }

    #[test]
    fn gzip_round_trips_and_sizes_add_up() {
        let (raw, gz) = asset_sizes();
        assert!(gz > 0 && gz < raw, "raw {raw} gzip {gz}");
        for a in assets() {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a.gzip[..]), &mut out)
                .expect("gunzip");
            assert_eq!(out, a.raw, "{}", a.path);
        }
    }
}
