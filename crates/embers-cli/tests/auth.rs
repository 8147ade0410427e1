//! Tokens and scopes with the real `embers server --auth-file`: the 401/403 matrix over
//! every kind of route in its own error shape, Bearer and Basic, SHA-256 entries from
//! `embers token new`, `X-Scope-OrgID` that cannot cross tenants, reload on change and
//! on SIGHUP (a broken file keeps the old tokens), a bad file refused at start, and the
//! real clients (pyroscope-io, @pyroscope/nodejs, `embers agent`, `embers query`)
//! landing with their credentials or saying why they were refused.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{agent, enc, now, repo, ServerHandle};

const INGEST_A: &str = "embers_test_ingest_only_team_a";
const READ_A: &str = "embers_test_read_only_team_a_0";
const BOTH_B: &str = "embers_test_ingest_read_team_b";
const ADMIN: &str = "embers_test_admin_default_0000";
const UNKNOWN: &str = "embers_test_nobody_knows_this0";

/// The auth file the tests start from; `extra` is appended.
fn auth_toml(extra: &str) -> String {
    format!(
        "[[tokens]]\nname = \"ingest-a\"\ntoken = \"{INGEST_A}\"\ntenant = \"team-a\"\nscopes = [\"ingest\"]\n\n\
         [[tokens]]\nname = \"read-a\"\ntoken = \"{READ_A}\"\ntenant = \"team-a\"\nscopes = [\"read\"]\n\n\
         [[tokens]]\nname = \"both-b\"\ntoken = \"{BOTH_B}\"\ntenant = \"team-b\"\nscopes = [\"ingest\", \"read\"]\n\n\
         [[tokens]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nscopes = [\"admin\"]\n{extra}"
    )
}

/// Replaces the file at once (write and rename), so the watcher never reads half of it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    file: PathBuf,
    server: ServerHandle,
}

fn start(extra_toml: &str, flags: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    write_atomically(&file, &auth_toml(extra_toml));
    let mut args = vec!["--auth-file", file.to_str().unwrap()];
    args.extend_from_slice(flags);
    let server = ServerHandle::start(&dir.path().join("data"), &args);
    Setup {
        _dir: dir,
        file,
        server,
    }
}

/// An answer: status, headers (lower-case names, in order) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn call(
    server: &ServerHandle,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> Answer {
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(server.url(path));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = if method == "GET" {
        agent().run(builder.body(()).unwrap())
    } else {
        builder = builder.header("content-type", content_type);
        agent().run(builder.body(body.to_vec()).unwrap())
    };
    let mut response = response.unwrap();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_string().unwrap(),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// GET with a token (or none).
fn get_as(server: &ServerHandle, path: &str, token: Option<&str>) -> Answer {
    match token {
        Some(t) => call(
            server,
            "GET",
            path,
            &[("authorization", &bearer(t))],
            "",
            b"",
        ),
        None => call(server, "GET", path, &[], "", b""),
    }
}

/// Polls until `check` holds, at most `limit` (a deadline, not a timing assertion).
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A counter or gauge of `/metrics` (read with the admin token).
fn metric(server: &ServerHandle, line_start: &str) -> u64 {
    let answer = get_as(server, "/metrics", Some(ADMIN));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
        .body
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics:\n{}", answer.body))
}

/// How a route answers refusals.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Plain,
    Connect,
    OtlpJson,
}

struct Route {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: &'static [u8],
    /// The token without the route's scope (`None`: any valid token will do).
    lacking: Option<&'static str>,
    /// A token with it.
    having: &'static str,
    /// The status with that token: 200, or the handler's own refusal of the body (which
    /// shows the request got past the access check).
    ok: u16,
    shape: Shape,
}

fn routes() -> Vec<Route> {
    const FOLDED: &[u8] = b"main;work 1\n";
    let t = now();
    let ingest = |path: String, content_type, body, shape| Route {
        method: "POST",
        path,
        content_type,
        body,
        lacking: Some(READ_A),
        having: INGEST_A,
        ok: if matches!(shape, Shape::OtlpJson) {
            422
        } else {
            200
        },
        shape,
    };
    let read = |method, path: &str, body, shape, lacking, having| Route {
        method,
        path: path.to_owned(),
        content_type: "application/json",
        body,
        lacking,
        having,
        ok: 200,
        shape,
    };
    let query = |path: &str| read("GET", path, b"", Shape::Plain, Some(INGEST_A), READ_A);
    let connect = |path: &str| read("POST", path, b"{}", Shape::Connect, Some(INGEST_A), READ_A);
    vec![
        ingest(
            format!("/ingest?name=m.cpu&from={t}"),
            "text/plain",
            FOLDED,
            Shape::Plain,
        ),
        ingest(
            format!("/pyroscope/ingest?name=m.cpu&from={t}"),
            "text/plain",
            FOLDED,
            Shape::Plain,
        ),
        ingest(
            "/push.v1.PusherService/Push".into(),
            "application/json",
            b"{\"series\":[]}",
            Shape::Connect,
        ),
        ingest(
            "/v1development/profiles".into(),
            "application/json",
            b"{}",
            Shape::OtlpJson,
        ),
        query("/render?query=m.cpu&from=now-1h"),
        query("/labels"),
        query("/apps"),
        connect("/querier.v1.QuerierService/LabelNames"),
        connect("/settings.v1.SettingsService/Get"),
        read("GET", "/metrics", b"", Shape::Plain, Some(READ_A), ADMIN),
        read("GET", "/auth/whoami", b"", Shape::Plain, None, INGEST_A),
    ]
}

fn send(server: &ServerHandle, r: &Route, authorization: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    call(server, r.method, &r.path, &headers, r.content_type, r.body)
}

fn assert_shape(r: &Route, a: &Answer, status: u16, connect_code: &str, grpc_code: u64) {
    assert_eq!(a.status, status, "{} {}: {}", r.method, r.path, a.body);
    for token in [INGEST_A, READ_A, BOTH_B, ADMIN, UNKNOWN] {
        assert!(
            !a.body.contains(token),
            "the body echoes a token: {}",
            a.body
        );
    }
    match r.shape {
        Shape::Plain => assert!(!a.body.trim().is_empty()),
        Shape::Connect => {
            let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
            assert_eq!(v["code"], connect_code, "{}: {}", r.path, a.body);
        }
        Shape::OtlpJson => {
            let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
            assert_eq!(v["code"], grpc_code, "{}: {}", r.path, a.body);
        }
    }
    if status == 401 {
        assert_eq!(
            a.header("www-authenticate"),
            ["Bearer realm=\"embers\"", "Basic realm=\"embers\""],
            "{}",
            r.path
        );
    }
}

#[test]
fn every_route_refuses_missing_unknown_and_unscoped_tokens_in_its_own_shape() {
    let s = start("", &[]);
    let server = &s.server;
    let routes = routes();
    for r in &routes {
        let a = send(server, r, None);
        assert_shape(r, &a, 401, "unauthenticated", 16);
        assert!(a.body.contains("needs a token"), "{}", a.body);
        let a = send(server, r, Some(&bearer(UNKNOWN)));
        assert_shape(r, &a, 401, "unauthenticated", 16);
        let a = send(server, r, Some("Digest username=\"x\""));
        assert_shape(r, &a, 401, "unauthenticated", 16);
        if let Some(lacking) = r.lacking {
            let a = send(server, r, Some(&bearer(lacking)));
            assert_shape(r, &a, 403, "permission_denied", 7);
            assert!(a.body.contains("scope"), "{}", a.body);
        }
        let a = send(server, r, Some(&bearer(r.having)));
        assert_eq!(a.status, r.ok, "{} {}: {}", r.method, r.path, a.body);
    }
    // Open without a token: health, readiness and the UI that asks for one.
    for path in ["/healthz", "/ready", "/"] {
        assert_eq!(get_as(server, path, None).status, 200, "{path}");
    }
    // Every refusal above was counted by its reason, and logged without the token.
    let n = routes.len() as u64;
    let failures = |reason: &str| {
        metric(
            server,
            &format!("embers_auth_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(failures("missing"), n);
    assert_eq!(failures("unknown"), n);
    assert_eq!(failures("malformed"), n);
    assert_eq!(failures("scope"), n - 1);
    assert_eq!(failures("tenant"), 0);
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("reason=\"scope\"") && log.contains("token=\"read-a\""),
        "{log}"
    );
    assert!(log.contains("peer=127.0.0.1:"), "{log}");
    // The test's file gives tokens in the clear with mode 0644: the server says so.
    assert!(log.contains("holds tokens in the clear"), "{log}");
    for token in [INGEST_A, READ_A, ADMIN, UNKNOWN] {
        assert!(!log.contains(token), "the log holds a token:\n{log}");
    }
}

#[test]
fn bearer_and_basic_carry_the_token_and_whoami_names_its_tenant_and_scopes() {
    let s = start("", &[]);
    let server = &s.server;
    for authorization in [
        bearer(BOTH_B),
        format!("bearer {BOTH_B}"),
        basic("grafana", BOTH_B),
        basic(BOTH_B, ""),
    ] {
        let a = call(
            server,
            "GET",
            "/auth/whoami",
            &[("authorization", &authorization)],
            "",
            b"",
        );
        assert_eq!(a.status, 200, "{authorization}: {}", a.body);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"tenant": "team-b", "scopes": ["ingest", "read"], "auth": true})
        );
    }
    // A wrong password with the right user name is refused.
    let a = call(
        server,
        "GET",
        "/auth/whoami",
        &[("authorization", &basic(BOTH_B, "x"))],
        "",
        b"",
    );
    assert_eq!(a.status, 401);
}

#[test]
fn x_scope_orgid_cannot_cross_tenants() {
    let s = start("", &[]);
    let server = &s.server;
    let with = |token: &str, org: &str, path: &str| {
        call(
            server,
            "GET",
            path,
            &[("authorization", &bearer(token)), ("x-scope-orgid", org)],
            "",
            b"",
        )
    };
    let a = with(READ_A, "team-b", "/labels");
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body.contains("team-a") && !a.body.contains(READ_A),
        "{}",
        a.body
    );
    assert_eq!(with(READ_A, "anonymous", "/apps").status, 403);
    assert_eq!(with(READ_A, "team-a", "/labels").status, 200);
    // Writes too, in Connect's shape.
    let a = call(
        server,
        "POST",
        "/push.v1.PusherService/Push",
        &[
            ("authorization", &bearer(BOTH_B)),
            ("x-scope-orgid", "team-a"),
        ],
        "application/json",
        b"{\"series\":[]}",
    );
    assert_eq!(a.status, 403, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["code"], "permission_denied");
    let whoami = with(BOTH_B, "team-b", "/auth/whoami");
    assert!(
        whoami.body.contains("\"tenant\":\"team-b\""),
        "{}",
        whoami.body
    );
    assert_eq!(
        metric(server, "embers_auth_failures_total{reason=\"tenant\"}"),
        3
    );
}

#[test]
fn otlp_grpc_answers_unauthenticated_and_permission_denied() {
    let s = start("", &[]);
    let script = repo().join("crates/embers-cli/tests/auth/grpc_export.py");
    let export = |token: Option<&str>| -> serde_json::Value {
        let out = Command::new("python3")
            .arg(&script)
            .arg(&s.server.address)
            .args(token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "grpc_export.py failed (scripts/install-test-deps.sh installs grpcio): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let none = export(None);
    assert_eq!(none["code"], "UNAUTHENTICATED", "{none}");
    assert!(
        none["details"].as_str().unwrap().contains("needs a token"),
        "{none}"
    );
    let read = export(Some(READ_A));
    assert_eq!(read["code"], "PERMISSION_DENIED", "{read}");
    // With the scope the empty export gets past the check to the decoder, which wants a
    // dictionary.
    let ingest = export(Some(INGEST_A));
    assert_eq!(ingest["code"], "INVALID_ARGUMENT", "{ingest}");
}

#[test]
fn sha256_entries_from_token_new_work_and_the_file_holds_no_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_embers"))
        .args([
            "token", "new", "--tenant", "team-c", "--scope", "read", "--scope", "admin", "--name",
            "cli",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().next().unwrap().to_owned();
    assert!(
        token.starts_with("embers_") && token.len() >= 7 + 64,
        "{token}"
    );
    let block = &stdout[stdout.find("[[tokens]]").unwrap()..];
    assert!(
        !block.contains(&token) && block.contains("token_sha256 = \""),
        "{block}"
    );
    let s = start(&format!("\n{block}"), &[]);
    let a = get_as(&s.server, "/auth/whoami", Some(&token));
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("\"tenant\":\"team-c\""), "{}", a.body);
    assert!(a.body.contains("[\"read\",\"admin\"]"), "{}", a.body);
    assert_eq!(get_as(&s.server, "/metrics", Some(&token)).status, 200);
    // A second token is another secret.
    let again = Command::new(env!("CARGO_BIN_EXE_embers"))
        .args(["token", "new", "--scope", "read"])
        .output()
        .unwrap();
    let again = String::from_utf8(again.stdout).unwrap();
    assert_ne!(again.lines().next().unwrap(), token);
    assert!(again.contains("tenant = \"anonymous\""), "{again}");
}

#[test]
fn metrics_open_serves_metrics_without_a_token_but_nothing_else() {
    let s = start("", &["--metrics-open"]);
    assert_eq!(get_as(&s.server, "/metrics", None).status, 200);
    assert_eq!(get_as(&s.server, "/labels", None).status, 401);
}

#[test]
fn a_bad_auth_file_stops_the_server_from_starting_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let cases = [
        (String::new(), "no [[tokens]]"),
        (
            format!("[[tokens]]\ntoken = \"{READ_A}\"\nscopes = [\"read\"]\ntennant = \"a\"\n"),
            "unknown field `tennant`",
        ),
        (
            format!(
                "[[tokens]]\ntoken = \"{READ_A}\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\n",
                "0".repeat(64)
            ),
            "not both",
        ),
        (
            "[[tokens]]\ntoken_sha256 = \"not-hex\"\nscopes = [\"read\"]\n".into(),
            "64 hexadecimal digits",
        ),
        (
            format!(
                "{}[[tokens]]\ntoken = \"{READ_A}\"\nscopes = [\"admin\"]\n",
                auth_toml("")
            ),
            "the same token as entry 2",
        ),
        (
            format!("[[tokens]]\ntoken = \"{READ_A}\"\nscopes = [\"read\"]\ntenant = \"../etc\"\n"),
            "tenant",
        ),
    ];
    for (text, expect) in cases {
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_embers"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--auth-file")
            .arg(&file)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {text:?}");
        assert!(stderr.contains(expect), "{expect:?} not in:\n{stderr}");
        assert!(
            !stderr.contains(READ_A),
            "the message echoes a token:\n{stderr}"
        );
    }
    // EMBERS_AUTH_FILE is read as --auth-file.
    std::fs::write(&file, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_embers"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("EMBERS_AUTH_FILE", &file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[tokens]]"));
}

#[test]
fn the_file_reloads_on_change_and_on_sighup_and_a_broken_one_keeps_the_old_tokens() {
    const NEW: &str = "embers_test_added_while_running";
    let s = start("", &[]);
    let server = &s.server;
    let status = |token: &str| get_as(server, "/auth/whoami", Some(token)).status;
    assert_eq!(status(NEW), 401);

    // A new token works once the watcher has seen the change.
    let added =
        format!("\n[[tokens]]\ntoken = \"{NEW}\"\ntenant = \"team-n\"\nscopes = [\"read\"]\n");
    write_atomically(&s.file, &auth_toml(&added));
    wait_until(Duration::from_secs(60), "the added token", || {
        status(NEW) == 200
    });
    assert_eq!(metric(server, "embers_auth_reloads_total"), 1);

    // A broken file is refused: the old tokens stay, the failure is counted and logged.
    write_atomically(
        &s.file,
        &format!(
            "{}\n[[tokens]]\ntoken = \"short\"\nscopes = [\"read\"]\n",
            auth_toml(&added)
        ),
    );
    wait_until(Duration::from_secs(60), "the refused reload", || {
        metric(server, "embers_auth_reload_failures_total") == 1
    });
    assert_eq!(status(NEW), 200);
    assert_eq!(status(READ_A), 200);
    assert_eq!(metric(server, "embers_auth_tokens"), 5);
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("auth file not reloaded") && log.contains("shorter than 16"),
        "{log}"
    );

    // Removing a token takes it away.
    write_atomically(&s.file, &auth_toml(""));
    wait_until(Duration::from_secs(60), "the removed token", || {
        status(NEW) == 401
    });
    assert_eq!(metric(server, "embers_auth_reloads_total"), 2);

    // SIGHUP reloads even an unchanged file (the watcher alone would not), and the
    // server lives on.
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    wait_until(Duration::from_secs(60), "the SIGHUP reload", || {
        metric(server, "embers_auth_reloads_total") == 3
    });
    assert!(server.log.lock().unwrap().contains("SIGHUP"));
    assert_eq!(status(READ_A), 200);
}

/// Whether the query API of `token`'s tenant lists `app` (a query, so with a read token).
fn app_listed(server: &ServerHandle, token: &str, app: &str) -> bool {
    let a = get_as(server, "/apps", Some(token));
    assert_eq!(a.status, 200, "{}", a.body);
    a.body.contains(&format!("\"name\":\"{app}\""))
}

/// CPU-bound clients: one at a time so they do not starve each other.
static BUSY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn busy() -> std::sync::MutexGuard<'static, ()> {
    BUSY.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn pyroscope_io_with_basic_auth_lands_in_the_tokens_tenant_and_says_when_refused() {
    let _busy = busy();
    let s = start("", &[]);
    let script = repo().join("crates/embers-cli/tests/auth/pyroscope_basic_auth.py");
    let run = |app: &str, token: &str, tenant: &str| {
        let out = Command::new("python3")
            .arg(&script)
            .args([&s.server.url(""), app, token, "3", tenant])
            .output()
            .unwrap();
        assert!(out.status.success(), "client failed: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    run("py-auth-app", BOTH_B, "");
    wait_until(Duration::from_secs(60), "pyroscope-io's profiles", || {
        app_listed(&s.server, BOTH_B, "py-auth-app")
    });
    assert!(
        !app_listed(&s.server, READ_A, "py-auth-app"),
        "in another tenant"
    );
    // Its tenant_id matching the token's is fine too.
    run("py-auth-tenant", BOTH_B, "team-b");
    wait_until(
        Duration::from_secs(60),
        "pyroscope-io's profiles with tenant_id",
        || app_listed(&s.server, BOTH_B, "py-auth-tenant"),
    );
    let refused = run("py-auth-refused", UNKNOWN, "");
    assert!(
        refused.contains("401"),
        "the client does not say it was refused:\n{refused}"
    );
    let refused = run("py-auth-crossing", BOTH_B, "team-a");
    assert!(
        refused.contains("403"),
        "the client does not say it was refused:\n{refused}"
    );
    assert!(!app_listed(&s.server, BOTH_B, "py-auth-refused"));
    assert!(!app_listed(&s.server, BOTH_B, "py-auth-crossing"));
}

#[test]
fn pyroscope_nodejs_with_its_auth_options_lands_and_says_when_refused() {
    let _busy = busy();
    let s = start("", &[]);
    let run = |app: &str, mode: &str, token: &str| {
        let out = Command::new("node")
            .current_dir(repo().join("e2e"))
            .args([
                "pyroscope-node-auth.mjs",
                &s.server.url(""),
                app,
                "3",
                mode,
                token,
            ])
            .env("DEBUG", "pyroscope")
            .output()
            .unwrap();
        assert!(out.status.success(), "node client failed: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    run("node-basic", "basic", BOTH_B);
    run("node-bearer", "bearer", BOTH_B);
    wait_until(
        Duration::from_secs(60),
        "@pyroscope/nodejs's profiles",
        || {
            app_listed(&s.server, BOTH_B, "node-basic")
                && app_listed(&s.server, BOTH_B, "node-bearer")
        },
    );
    assert!(
        !app_listed(&s.server, READ_A, "node-basic"),
        "in another tenant"
    );
    let refused = run("node-refused", "basic", UNKNOWN);
    assert!(
        refused.contains("rejected data ingest: HTTP 401"),
        "the client does not say it was refused:\n{refused}"
    );
    assert!(!app_listed(&s.server, BOTH_B, "node-refused"));
}

#[test]
fn embers_agent_and_query_use_their_tokens_and_say_when_refused() {
    let _busy = busy();
    let s = start("", &[]);
    let foobar = repo().join("examples/foobar/foobar.py");
    let agent_run = |app: &str, credentials: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_embers"))
            .args(["agent", "--upload-interval", "1", "--app", app, "--server"])
            .arg(s.server.url(""))
            .args(credentials)
            .arg("--")
            .arg("python3")
            .arg(&foobar)
            .args(["--seconds", "3"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), log)
    };
    let (ok, log) = agent_run("agent-auth", &["--auth-token", BOTH_B]);
    assert!(ok, "agent failed:\n{log}");
    // Basic auth with the token as the password, and --tenant-id naming the token's tenant.
    let basic = format!("agent:{BOTH_B}");
    let (ok, log) = agent_run(
        "agent-basic",
        &["--basic-auth", &basic, "--tenant-id", "team-b"],
    );
    assert!(ok, "agent failed:\n{log}");
    wait_until(Duration::from_secs(60), "the agent's profiles", || {
        app_listed(&s.server, BOTH_B, "agent-auth") && app_listed(&s.server, BOTH_B, "agent-basic")
    });
    assert!(
        !app_listed(&s.server, READ_A, "agent-auth"),
        "in another tenant"
    );
    let (ok, log) = agent_run("agent-refused", &["--auth-token", READ_A]);
    assert!(
        !ok && log.contains("HTTP 403") && log.contains("check --auth-token"),
        "the agent does not say it was refused:\n{log}"
    );
    let (ok, log) = agent_run(
        "agent-crossing",
        &["--auth-token", BOTH_B, "--tenant-id", "team-a"],
    );
    assert!(
        !ok && log.contains("HTTP 403") && log.contains("tenant"),
        "{log}"
    );

    // `embers query`: the token from EMBERS_AUTH_TOKEN or --auth-token.
    let query = |env_token: Option<&str>, flags: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_embers"));
        cmd.args(["query", "agent-auth.cpu", "--format", "folded", "--server"])
            .arg(s.server.url(""))
            .args(flags)
            .env_remove("EMBERS_AUTH_TOKEN");
        if let Some(t) = env_token {
            cmd.env("EMBERS_AUTH_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = query(Some(BOTH_B), &[]);
    assert!(ok && stdout.contains("foo"), "{stdout}\n{stderr}");
    let (ok, _, stderr) = query(None, &[]);
    assert!(
        !ok && stderr.contains("401") && stderr.contains("--auth-token"),
        "{stderr}"
    );
    let (ok, _, stderr) = query(Some(BOTH_B), &["--tenant", "team-a"]);
    assert!(!ok && stderr.contains("403"), "{stderr}");
    let (ok, stdout, stderr) = query(None, &["--auth-token", BOTH_B, "--tenant", "team-b"]);
    assert!(ok && stdout.contains("foo"), "{stdout}\n{stderr}");
}

/// Folded stacks of `query` over the last hour, as `token`'s tenant sees them.
fn folded(server: &ServerHandle, token: &str, query: &str) -> String {
    let path = format!(
        "/render?query={}&from=now-1h&until={}&format=collapsed",
        enc(query),
        now() + 60
    );
    let a = get_as(server, &path, Some(token));
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

/// A Connect querier.v1 call as `token`'s tenant.
fn querier(server: &ServerHandle, token: &str, method: &str, body: serde_json::Value) -> String {
    let a = call(
        server,
        "POST",
        &format!("/querier.v1.QuerierService/{method}"),
        &[("authorization", &bearer(token))],
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(a.status, 200, "{method}: {}", a.body);
    a.body
}

#[test]
fn two_tenants_with_the_same_service_name_see_only_their_own_data() {
    const READ_DEFAULT: &str = "embers_test_read_default_0000";
    let s = start(
        &format!("\n[[tokens]]\ntoken = \"{READ_DEFAULT}\"\nscopes = [\"read\"]\n"),
        &[],
    );
    let server = &s.server;
    let push = |token: &str, name: &str, stacks: &str| {
        let path = format!("/ingest?name={}&from={}", enc(name), now() - 5);
        let a = call(
            server,
            "POST",
            &path,
            &[("authorization", &bearer(token))],
            "text/plain",
            stacks.as_bytes(),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    };
    // The same service in two tenants; the token alone says which (no X-Scope-OrgID).
    push(INGEST_A, "shared.cpu{team=alpha}", "main;alpha_work 7\n");
    push(INGEST_A, "only-a.cpu", "main;private_a 1\n");
    push(BOTH_B, "shared.cpu{team=beta}", "main;beta_work 5\n");

    assert_eq!(
        folded(server, READ_A, "shared.cpu").trim(),
        "main;alpha_work 70000000" // 7 samples at 100 Hz, in ns
    );
    assert_eq!(
        folded(server, BOTH_B, "shared.cpu").trim(),
        "main;beta_work 50000000"
    );
    assert_eq!(folded(server, READ_DEFAULT, "shared.cpu").trim(), "");

    let apps = |token| get_as(server, "/apps", Some(token)).body;
    assert!(apps(READ_A).contains("\"only-a\"") && apps(READ_A).contains("\"shared\""));
    assert!(!apps(BOTH_B).contains("only-a") && apps(BOTH_B).contains("\"shared\""));
    assert_eq!(apps(READ_DEFAULT), "[]");

    let values = |token| {
        get_as(
            server,
            &format!("/label-values?label=team&query={}", enc("shared.cpu")),
            Some(token),
        )
        .body
    };
    assert_eq!(values(READ_A), r#"["alpha"]"#);
    assert_eq!(values(BOTH_B), r#"["beta"]"#);
    let labels = get_as(server, "/labels", Some(BOTH_B)).body;
    assert!(labels.contains("team"), "{labels}");
    assert_eq!(get_as(server, "/labels", Some(READ_DEFAULT)).body, "[]");

    let end = (now() as i64 + 60) * 1000;
    let range = |mut v: serde_json::Value| {
        v["start"] = (end - 3_600_000).into();
        v["end"] = end.into();
        v
    };
    let shared = r#"{service_name="shared"}"#;
    for (token, mine, theirs) in [(READ_A, "alpha", "beta"), (BOTH_B, "beta", "alpha")] {
        let values = querier(
            server,
            token,
            "LabelValues",
            range(serde_json::json!({"name": "team", "matchers": [shared]})),
        );
        assert!(
            values.contains(mine) && !values.contains(theirs),
            "{values}"
        );
        let flame = querier(
            server,
            token,
            "SelectMergeStacktraces",
            range(
                serde_json::json!({"profileTypeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "labelSelector": shared}),
            ),
        );
        assert!(flame.contains(&format!("{mine}_work")), "{flame}");
        assert!(!flame.contains(&format!("{theirs}_work")), "{flame}");
    }

    // embers query with each token.
    for (token, mine, theirs) in [(READ_A, "alpha", "beta"), (BOTH_B, "beta", "alpha")] {
        let out = Command::new(env!("CARGO_BIN_EXE_embers"))
            .args(["query", "shared.cpu", "--format", "folded", "--server"])
            .arg(server.url(""))
            .args(["--auth-token", token])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            stdout.contains(&format!("{mine}_work")) && !stdout.contains(theirs),
            "{stdout}"
        );
    }
}
