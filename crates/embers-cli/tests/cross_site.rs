//! Cross-site safety end to end, against the real binary without an auth file: what a
//! web page on another site can make a browser send (`text/plain`, form and Connect
//! POSTs with a foreign `Origin`) is refused and stores nothing; the same bodies from
//! the server's own origin or from non-browser clients (no `Origin`) are stored; CORS
//! headers go only to `--allowed-origins`; `--allowed-hosts` refuses rebound names.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};

use support::{agent, enc, get, now, ServerHandle};

const FOLDED: &str = "main;foo 7\nmain;bar 3\n";

/// A POST of `body` to `path` with extra headers: status, response headers (lower-case
/// names, values joined with ", "), body.
fn post_with(
    server: &ServerHandle,
    path: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut request = agent()
        .post(server.url(path))
        .header("content-type", content_type);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut r = request.send(body).unwrap();
    let mut names: Vec<String> = r.headers().keys().map(|k| k.as_str().to_owned()).collect();
    names.dedup();
    let headers = names
        .into_iter()
        .map(|k| {
            let values: Vec<&str> = r
                .headers()
                .get_all(k.as_str())
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            (k, values.join(", "))
        })
        .collect();
    (
        r.status().as_u16(),
        headers,
        r.body_mut().read_to_string().unwrap(),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Pushes `FOLDED` as service `app` in Pyroscope's `/ingest` format.
fn ingest(
    server: &ServerHandle,
    app: &str,
    content_type: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let at = now() - 60;
    let path = format!(
        "/ingest?name={}&from={at}&until={}&format=folded",
        enc(&format!("{app}.cpu")),
        at + 10
    );
    post_with(server, &path, content_type, FOLDED.as_bytes(), headers)
}

/// The services stored.
fn services(server: &ServerHandle) -> BTreeSet<String> {
    let (status, body) = get(&server.url("/label-values?label=service_name&from=now-1h"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A raw HTTP/1.1 request (for `Host` headers and `OPTIONS`, which a client library
/// decides itself): the response head, lower-cased.
fn raw(server: &ServerHandle, head: &str) -> String {
    let mut s = std::net::TcpStream::connect(&server.address).unwrap();
    s.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split("\r\n\r\n").next().unwrap().to_ascii_lowercase()
}

#[test]
fn foreign_origins_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let own = format!("http://{}", server.address);

    // What a page on another site can send without a preflight.
    for (app, content_type, headers) in [
        (
            "text",
            "text/plain",
            vec![("origin", "https://evil.example")],
        ),
        (
            "form",
            "application/x-www-form-urlencoded",
            vec![("origin", "https://evil.example")],
        ),
        (
            "multipart",
            "multipart/form-data; boundary=x",
            vec![("origin", "http://evil.example:4040")],
        ),
        ("null", "text/plain", vec![("origin", "null")]),
        // An old browser without Origin, but with fetch metadata.
        (
            "fetchmeta",
            "text/plain",
            vec![("sec-fetch-site", "cross-site")],
        ),
        // Same host, another port: another origin.
        (
            "otherport",
            "text/plain",
            vec![("origin", "http://127.0.0.1:1")],
        ),
    ] {
        let (status, headers, body) = ingest(&server, app, content_type, &headers);
        assert_eq!(status, 403, "{app}: {body}");
        assert!(body.contains("cross-site request refused"), "{app}: {body}");
        assert_eq!(header(&headers, "access-control-allow-origin"), None);
    }

    // The same bodies from the UI's own origin and from clients that are no browser.
    let (status, _, body) = ingest(&server, "own", "text/plain", &[("origin", &own)]);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = ingest(
        &server,
        "sameorigin",
        "text/plain",
        &[("sec-fetch-site", "same-origin")],
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = ingest(&server, "sdk", "text/plain", &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        services(&server),
        ["own", "sameorigin", "sdk"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let stacks = support::collapsed(
        &server,
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"sdk\"}",
        "now-1h",
    );
    // 10 samples at the default 100 Hz, in nanoseconds.
    assert_eq!(stacks.values().sum::<u64>(), 10 * 10_000_000, "{stacks:?}");

    // Connect (Pyroscope's push, the querier) answers in Connect's error shape.
    for path in [
        "/push.v1.PusherService/Push",
        "/querier.v1.QuerierService/LabelNames",
        "/adhocprofiles.v1.AdHocProfileService/Upload",
    ] {
        let (status, _, body) = post_with(
            &server,
            path,
            "application/json",
            b"{}",
            &[("origin", "https://evil.example")],
        );
        assert_eq!(status, 403, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "permission_denied", "{path}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("evil.example"),
            "{v}"
        );
    }
    // gRPC in gRPC's (Trailers-Only): status 7, PERMISSION_DENIED.
    let (status, headers, _) = post_with(
        &server,
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
        "application/grpc",
        b"",
        &[("origin", "https://evil.example")],
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "grpc-status"), Some("7"), "{headers:?}");

    // Reads are not state-changing: a foreign page may make the browser send them, and
    // without CORS headers it cannot read the answer.
    let head = raw(
        &server,
        &format!(
            "GET /apps HTTP/1.1\r\nHost: {}\r\nOrigin: https://evil.example\r\n",
            server.address
        ),
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("access-control-"), "{head}");
    // And no preflight answer for it either.
    let head = raw(
        &server,
        &format!(
            "OPTIONS /ingest HTTP/1.1\r\nHost: {}\r\nOrigin: https://evil.example\r\n\
             Access-Control-Request-Method: POST\r\n",
            server.address
        ),
    );
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(!head.contains("access-control-"), "{head}");
}

#[test]
fn allowed_origins_get_cors_and_nobody_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let ui = "https://grafana.example.com";
    let server = ServerHandle::start(
        dir.path(),
        &["--allowed-origins", &format!("{ui},http://localhost:3000")],
    );
    let preflight = |origin: &str| {
        raw(
            &server,
            &format!(
                "OPTIONS /querier.v1.QuerierService/LabelNames HTTP/1.1\r\nHost: {}\r\n\
                 Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: authorization, content-type, x-scope-orgid, connect-protocol-version\r\n",
                server.address
            ),
        )
    };
    let head = preflight(ui);
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(
        head.contains(&format!("access-control-allow-origin: {ui}")),
        "{head}"
    );
    assert!(head.contains("vary: origin"), "{head}");
    for h in [
        "authorization",
        "content-type",
        "x-scope-orgid",
        "connect-protocol-version",
        "connect-timeout-ms",
    ] {
        assert!(head.contains(h), "{h} not allowed: {head}");
    }
    assert!(
        head.contains("access-control-allow-methods: get, post"),
        "{head}"
    );
    assert!(!head.contains("access-control-allow-origin: *"), "{head}");
    assert!(!head.contains("access-control-allow-credentials"), "{head}");
    // A look-alike of an allowed origin is just another foreign one.
    for foreign in [
        "https://grafana.example.com.evil.example",
        "http://grafana.example.com",
        "null",
    ] {
        let head = preflight(foreign);
        assert!(head.starts_with("http/1.1 403"), "{foreign}: {head}");
        assert!(!head.contains("access-control-"), "{foreign}: {head}");
    }

    // The actual request: stored, and the page may read the answer.
    let (status, headers, body) = ingest(&server, "grafana", "text/plain", &[("origin", ui)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(ui));
    assert!(
        header(&headers, "vary").unwrap().contains("origin"),
        "{headers:?}"
    );
    let (status, headers, _) = ingest(
        &server,
        "devui",
        "text/plain",
        &[("origin", "http://localhost:3000")],
    );
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let (status, headers, _) = ingest(
        &server,
        "evil",
        "text/plain",
        &[("origin", "https://evil.example")],
    );
    assert_eq!(status, 403);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    assert_eq!(
        services(&server),
        ["devui", "grafana"].into_iter().map(String::from).collect()
    );
}

#[test]
fn allowed_hosts_refuse_rebound_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &["--allowed-hosts", "profiles.test"]);
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let get_as = |host: &str| raw(&server, &format!("GET /apps HTTP/1.1\r\nHost: {host}\r\n"));
    assert!(get_as(&format!("profiles.test:{port}")).starts_with("http/1.1 200"));
    assert!(get_as(&server.address).starts_with("http/1.1 200"));
    assert!(get_as(&format!("localhost:{port}")).starts_with("http/1.1 200"));
    // A page on evil.example re-pointed at the server: its Origin equals Host.
    let head = get_as(&format!("evil.example:{port}"));
    assert!(head.starts_with("http/1.1 403"), "{head}");
    let head = raw(
        &server,
        &format!(
            "POST /ingest?name=rebound.cpu&format=folded HTTP/1.1\r\nHost: evil.example:{port}\r\n\
             Origin: http://evil.example:{port}\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
        ),
    );
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(services(&server).is_empty());
}

#[test]
fn bad_allow_lists_stop_the_server_at_start() {
    for (flag, value) in [
        ("--allowed-origins", "*"),
        ("--allowed-origins", "https://ui.example/"),
        ("--allowed-hosts", "a.example:80"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_embers"))
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                flag,
                value,
                "--data-dir",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Refused while reading its settings, before listening; a server that started
        // anyway is killed at the deadline and fails the test.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{flag} {value} accepted: the server started");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(!status.success(), "{flag} {value} accepted");
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.contains(&flag[2..].replace('-', "_")), "{err}");
    }
}
