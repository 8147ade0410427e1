//! Per-tenant limits on a real `embers server` with tenants from `X-Scope-OrgID`
//! (`multitenancy = true`): a tenant over its ingest byte rate gets 429 with a
//! `Retry-After` that is enough, while another tenant keeps ingesting; bodies without a
//! length are charged as read; the unmodified `pyroscope-io` client under a rate limit;
//! series limits and retention per tenant; with an auth file, the token's tenant is the
//! one limited.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use support::{agent, answer, enc, folded_body, get, now, parse_collapsed, repo, ServerHandle};

/// One sample at 100 Hz, as the store keeps CPU time: nanoseconds.
const NS: u64 = 10_000_000;

/// Starts a server on `dir/data` with `toml` as its configuration file.
fn start(dir: &Path, toml: &str) -> ServerHandle {
    let config = dir.join("embers.toml");
    std::fs::write(&config, format!("multitenancy = true\n{toml}")).unwrap();
    ServerHandle::start(&dir.join("data"), &["--config", config.to_str().unwrap()])
}

/// A push's answer: status, `Retry-After`, body.
type Answer = (u16, Option<String>, String);

/// Pushes folded stacks for `app.cpu` at `time` as `tenant`.
fn push(server: &ServerHandle, tenant: &str, app: &str, time: u64, body: &str) -> Answer {
    push_at(server, tenant, &format!("{app}.cpu"), time, body)
}

/// What `tenant` reads of `query` over the last day (and the next hour).
fn stored(server: &ServerHandle, tenant: &str, query: &str) -> BTreeMap<String, u64> {
    render(server, tenant, query, now() - 86_400, now() + 3600)
}

/// What `tenant` reads of `query` from `from` to `until`.
fn render(
    server: &ServerHandle,
    tenant: &str,
    query: &str,
    from: u64,
    until: u64,
) -> BTreeMap<String, u64> {
    let url = server.url(&format!(
        "/render?query={}&from={from}&until={until}&format=collapsed",
        enc(query)
    ));
    let (status, _, body) = answer(
        agent()
            .get(&url)
            .header("x-scope-orgid", tenant)
            .call()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    parse_collapsed(&body)
}

/// What the stacks of `bodies` become in the store, each pushed once.
fn expected(bodies: &[&str]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for body in bodies {
        for l in body.lines() {
            *out.entry(l.rsplit_once(' ').unwrap().0.to_owned())
                .or_insert(0) += NS;
        }
    }
    out
}

/// The value of one `/metrics` sample line (0 when absent).
fn metric(server: &ServerHandle, line_start: &str) -> u64 {
    let (_, text) = get(&server.url("/metrics"));
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Sends until the server answers 429 (at most 20 tries: each admitted request drains
/// the bucket further, so a slow machine only needs more of them), each admitted one
/// answered `admitted`: the number admitted, and the refusal.
fn until_refused(admitted: u16, mut send: impl FnMut() -> Answer) -> (usize, Answer) {
    for i in 0..20 {
        let answer = send();
        if answer.0 == 429 {
            return (i, answer);
        }
        assert_eq!(answer.0, admitted, "request {i}: {}", answer.2);
    }
    panic!("20 requests over the rate and not one refused");
}

#[test]
fn a_tenant_over_its_byte_rate_gets_429_and_retry_after_while_another_keeps_ingesting() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "[limits]\ningest_bytes_per_second = 50000000\n\
         [tenants.small]\ningest_bytes_per_second = 250\ningest_burst_bytes = 2000\n",
    );
    let t = now();
    let bodies: Vec<String> = (0..60)
        .map(|i| folded_body(&format!("s{i}"), 1500))
        .collect();
    let mut next = 0;
    let mut push_small = || {
        let answer = push(&server, "small", "small-app", t, &bodies[next]);
        if answer.0 == 200 {
            next += 1;
        }
        answer
    };
    // 1500-byte pushes at 250 bytes/s from a 2000-byte bucket: the first goes through,
    // a later one is refused (at once, unless this machine stalls for seconds).
    let (admitted, (_, retry, message)) = until_refused(200, &mut push_small);
    assert!(admitted >= 1);
    assert!(
        message.contains("tenant \"small\" is over its ingest rate of 250 bytes/s")
            && message.contains("ingest_bytes_per_second in [tenants.small]"),
        "{message}"
    );
    // At most 1500 bytes missing at 250 bytes/s: 6 s, rounded up.
    let retry: u64 = retry.expect("a Retry-After").parse().unwrap();
    assert!((1..=7).contains(&retry), "Retry-After: {retry}");

    // Meanwhile another tenant pushes as much as it likes (its rate is 50 MB/s).
    let big: Vec<String> = (0..30)
        .map(|i| folded_body(&format!("b{i}"), 1500))
        .collect();
    for body in &big {
        let (status, _, message) = push(&server, "big", "big-app", t, body);
        assert_eq!(status, 200, "{message}");
    }

    // The Connect routes behind the budget (push, ad-hoc upload) refuse in Connect's
    // shape, OTLP/HTTP in its own (a `Status` with code 8, RESOURCE_EXHAUSTED), all
    // before reading the body. Zeros are no protobuf (field 0) and no JSON, so an
    // admitted one is answered `admitted`.
    for (path, content_type, admitted, code) in [
        (
            "/push.v1.PusherService/Push",
            "application/proto",
            400,
            json!("resource_exhausted"),
        ),
        (
            "/adhocprofiles.v1.AdHocProfileService/Upload",
            "application/json",
            400,
            json!("resource_exhausted"),
        ),
        ("/v1development/profiles", "application/json", 422, json!(8)),
    ] {
        let junk = vec![0u8; 1500];
        let (_, (_, retry, refusal)) = until_refused(admitted, || {
            answer(
                agent()
                    .post(&server.url(path))
                    .header("content-type", content_type)
                    .header("x-scope-orgid", "small")
                    .send(&junk[..])
                    .unwrap(),
            )
        });
        assert!(retry.is_some(), "{path}");
        let refusal: serde_json::Value = serde_json::from_str(&refusal).unwrap();
        assert_eq!(refusal["code"], code, "{path}: {refusal}");
        let message = refusal["message"].as_str().unwrap();
        assert!(
            message.contains("ingest_bytes_per_second in [tenants.small]"),
            "{path}: {message}"
        );
    }

    // After waiting what Retry-After says, the refused push goes through: the header is
    // enough (waiting longer on a slow machine only refills more).
    let (_, (_, retry, _)) = until_refused(200, &mut push_small);
    std::thread::sleep(Duration::from_secs(retry.unwrap().parse().unwrap()));
    let (status, _, message) = push_small();
    assert_eq!(status, 200, "after Retry-After: {message}");

    // Every acknowledged push is stored exactly; refused ones left nothing.
    let small: Vec<&str> = bodies[..next].iter().map(String::as_str).collect();
    assert!(stored(&server, "small", "small-app.cpu{}") == expected(&small));
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    assert!(stored(&server, "big", "big-app.cpu{}") == expected(&big));
    // Two plain 429s, two Connect ones and an OTLP one, each counted once by reason.
    assert_eq!(
        metric(&server, "embers_rejections_total{reason=\"ingest_rate\"} "),
        5
    );
    assert_eq!(
        metric(
            &server,
            "embers_http_requests_total{route=\"/ingest\",code=\"429\"} "
        ),
        2
    );
}

#[test]
fn a_body_without_content_length_is_charged_for_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "[tenants.chunky]\ningest_bytes_per_second = 100\ningest_burst_bytes = 1000\n",
    );
    let t = now();
    let body = folded_body("chunked", 50_000);
    // Sent chunked (a reader of unknown length): admitted with a non-empty bucket, then
    // charged all 50 kB as they arrive.
    let url = server.url(&format!("/ingest?name=chunky.cpu&from={t}&sampleRate=100"));
    let mut reader = body.as_bytes();
    let (status, _, message) = answer(
        agent()
            .post(&url)
            .header("content-type", "text/plain")
            .header("x-scope-orgid", "chunky")
            .send(ureq::SendBody::from_reader(&mut reader))
            .unwrap(),
    );
    assert_eq!(status, 200, "{message}");
    // 49 kB of debt at 100 bytes/s: every push for minutes is refused, even a tiny one.
    let (status, retry, message) = push(&server, "chunky", "chunky", t, "main 1\n");
    assert_eq!(status, 429, "{message}");
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!(
        retry > 400,
        "Retry-After {retry}: the chunked body was not charged"
    );
    // Tenants without a table of their own are unlimited here (no [limits] rate).
    let (status, _, message) = push(&server, "other", "other", t, &body);
    assert_eq!(status, 200, "{message}");
    assert!(stored(&server, "chunky", "chunky.cpu{}") == expected(&[&body]));
}

#[test]
fn pyroscope_io_over_its_tenant_rate_is_refused_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // `slow` may push one byte per second: after its first upload every one is refused.
    let server = start(
        dir.path(),
        "[tenants.slow]\ningest_bytes_per_second = 1\ningest_burst_bytes = 1\n",
    );
    let script = repo().join("crates/embers-cli/tests/limits/pyroscope_tenant.py");
    let run = |tenant: &str, app: &str| {
        Command::new("python3")
            .arg(&script)
            .args([&server.url(""), tenant, app, "6"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (slow, fast) = (run("slow", "slow-app"), run("fast", "fast-app"));
    let (slow, fast) = (
        slow.wait_with_output().unwrap(),
        fast.wait_with_output().unwrap(),
    );
    let stderr = String::from_utf8_lossy(&slow.stderr);
    assert!(slow.status.success(), "{stderr}");
    assert!(fast.status.success());
    let refused = metric(&server, "embers_rejections_total{reason=\"ingest_rate\"} ");
    assert!(refused >= 1, "no upload of `slow` was refused");
    // The client does not retry: it logs each refused upload with the server's message
    // ("Sending Session failed 429 {…}") and drops it; the next upload goes on schedule.
    let reported: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Sending Session failed 429"))
        .collect();
    assert_eq!(reported.len() as u64, refused, "{stderr}");
    assert!(
        reported
            .iter()
            .all(|l| l.contains("ingest_bytes_per_second in [tenants.slow]")),
        "{stderr}"
    );
    let uploads = stderr.matches("Sending Session: ").count() as u64;
    assert!(
        uploads > refused,
        "the first upload fits the burst:\n{stderr}"
    );
    // The other tenant's uploads were all accepted, and its data is there.
    let fast_stderr = String::from_utf8_lossy(&fast.stderr);
    assert!(
        !fast_stderr.contains("Sending Session failed"),
        "{fast_stderr}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(&server, "fast", "fast-app.cpu{}").is_empty() {
        assert!(Instant::now() < deadline, "nothing of `fast` arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Pushes folded stacks for `name` (`app.cpu{k=v}`) from `from` to `from + 10` as `tenant`.
fn push_at(server: &ServerHandle, tenant: &str, name: &str, from: u64, body: &str) -> Answer {
    push_with(server, ("x-scope-orgid", tenant), name, from, body)
}

/// Pushes folded stacks for `name` from `from` to `from + 10` with one more header
/// (the tenant's, or credentials).
fn push_with(
    server: &ServerHandle,
    (header, value): (&str, &str),
    name: &str,
    from: u64,
    body: &str,
) -> Answer {
    let url = server.url(&format!(
        "/ingest?name={}&from={from}&until={}&sampleRate=100",
        enc(name),
        from + 10
    ));
    answer(
        agent()
            .post(&url)
            .header("content-type", "text/plain")
            .header(header, value)
            .send(body.as_bytes())
            .unwrap(),
    )
}

#[test]
fn series_limits_are_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "[limits]\nmax_series = 100\n[tenants.full]\nmax_series_per_service = 2\n",
    );
    let t = now();
    for k in 1..=2 {
        let (status, _, message) =
            push_at(&server, "full", &format!("svc.cpu{{k={k}}}"), t, "main 1\n");
        assert_eq!(status, 200, "{message}");
    }
    // A third series of the same service is refused, naming the tenant and its setting.
    let (status, retry, message) = push_at(&server, "full", "svc.cpu{k=3}", t, "main 1\n");
    assert_eq!(status, 429, "{message}");
    assert!(retry.is_some());
    assert!(
        message.contains(
            "tenant \"full\": service \"svc\" would have more than 2 series \
             (max_series_per_service in [tenants.full])"
        ),
        "{message}"
    );
    // Another tenant's same service takes all three: its series are its own.
    for k in 1..=3 {
        let (status, _, message) = push_at(
            &server,
            "roomy",
            &format!("svc.cpu{{k={k}}}"),
            t,
            "main 1\n",
        );
        assert_eq!(status, 200, "{message}");
    }
    // The full tenant's existing series still take data; the refused one left nothing.
    assert_eq!(
        push_at(&server, "full", "svc.cpu{k=1}", t, "main 1\n").0,
        200
    );
    assert_eq!(
        stored(&server, "full", "svc.cpu{}"),
        BTreeMap::from([("main".to_owned(), 3 * NS)])
    );
    assert!(stored(&server, "full", "svc.cpu{k=\"3\"}").is_empty());
    assert_eq!(
        stored(&server, "roomy", "svc.cpu{}"),
        BTreeMap::from([("main".to_owned(), 3 * NS)])
    );
    // [limits] applies to tenants without a table: 100 series over all services.
    for i in 0..100 {
        let (status, _, message) = push_at(&server, "many", &format!("s{i}.cpu"), t, "main 1\n");
        assert_eq!(status, 200, "{message}");
    }
    let (status, _, message) = push_at(&server, "many", "s100.cpu", t, "main 1\n");
    assert_eq!(status, 429, "{message}");
    assert!(
        message
            .contains("tenant \"many\" would have more than 100 series (max_series in [limits])"),
        "{message}"
    );
    assert_eq!(
        metric(&server, "embers_rejections_total{reason=\"store_limit\"} "),
        2
    );
}

#[test]
fn retention_is_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let short = "flush_interval_seconds = 1\n[tenants.short]\nretention = \"1h\"\n";
    let mut server = start(dir.path(), short);
    let (t, old) = (now(), now() - 2 * 3600);
    // Two hours ago, for a tenant keeping one hour and for one keeping everything.
    assert_eq!(
        push_at(&server, "short", "old.cpu", old, "main;old 5\n").0,
        200
    );
    assert_eq!(
        push_at(&server, "long", "old.cpu", old, "main;old 7\n").0,
        200
    );
    assert_eq!(
        push_at(&server, "short", "new.cpu", t, "main;new 3\n").0,
        200
    );
    // Retention runs in the maintenance loop: the short tenant's old series leaves its
    // catalog (three series over both tenants become two).
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(&server, "embers_store_series ") != 2 {
        assert!(
            Instant::now() < deadline,
            "retention never ran:\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();
    // Deleted, not hidden: with the retention lifted, the old data stays gone for the
    // short tenant, and the other tenant's is all there.
    let server = start(dir.path(), "flush_interval_seconds = 1\n");
    let old_range = |tenant, query| render(&server, tenant, query, old - 60, old + 60);
    assert!(old_range("short", "old.cpu{}").is_empty());
    assert_eq!(
        old_range("long", "old.cpu{}"),
        BTreeMap::from([("main;old".to_owned(), 7 * NS)])
    );
    assert_eq!(
        stored(&server, "short", "new.cpu{}"),
        BTreeMap::from([("main;new".to_owned(), 3 * NS)])
    );
}

#[test]
fn with_an_auth_file_the_tokens_tenant_is_the_one_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (metered, free) = ("embers_test_metered_4f1c9a7e", "embers_test_free_8b2e7d31");
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[tokens]]\ntoken = \"{metered}\"\ntenant = \"metered\"\nscopes = [\"ingest\", \"read\"]\n\
             [[tokens]]\ntoken = \"{free}\"\ntenant = \"free\"\nscopes = [\"ingest\"]\n"
        ),
    )
    .unwrap();
    let server = start(
        dir.path(),
        &format!(
            "auth_file = {:?}\nmetrics_open = true\n[tenants.metered]\ningest_bytes_per_second = 100\n\
             ingest_burst_bytes = 1000\n",
            auth.to_str().unwrap()
        ),
    );
    let (t, body) = (now(), folded_body("m", 900));
    let bearer = |token: &str| format!("Bearer {token}");
    // The token's tenant is metered: 900 bytes of a 1000-byte bucket, then a refusal.
    let (admitted, (_, retry, message)) = until_refused(200, || {
        push_with(
            &server,
            ("authorization", &bearer(metered)),
            "app.cpu",
            t,
            &body,
        )
    });
    assert!(admitted >= 1);
    assert!(retry.is_some());
    assert!(
        message.contains("tenant \"metered\"")
            && message.contains("ingest_bytes_per_second in [tenants.metered]"),
        "{message}"
    );
    // Another token's tenant has no rate: the same pushes all go through.
    for _ in 0..5 {
        let (status, _, message) = push_with(
            &server,
            ("authorization", &bearer(free)),
            "app.cpu",
            t,
            &body,
        );
        assert_eq!(status, 200, "{message}");
    }
    assert_eq!(
        metric(&server, "embers_rejections_total{reason=\"ingest_rate\"} "),
        1
    );
}
