//! Tenants are walls, with the real `embers` binary and `--multitenancy` (the tenant
//! from `X-Scope-OrgID`): two tenants push the same service name — the unmodified
//! `pyroscope-io` client with `tenant_id=` and raw HTTP — and each sees only its own data
//! through every query API, ad-hoc profiles and settings; request IDs, series limits and
//! the tenant count are per tenant; a restart replays each tenant's WAL; a tenant
//! without data answers empty and leaves nothing on disk; `embers fsck` checks each.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use embers_profile::{Frame, Labels, Profile, ProfileMeta, ValueType};
use serde_json::{json, Value};
use support::{agent, enc, now, ServerHandle};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const HEADER: &str = "X-Scope-OrgID";

/// A request with the tenant header (none for `None`): status and body.
fn call(
    server: &ServerHandle,
    tenant: Option<&str>,
    path: &str,
    post: Option<(&str, &[u8])>,
) -> (u16, String) {
    let url = server.url(path);
    let a = agent();
    let response = match post {
        None => {
            let mut r = a.get(&url);
            if let Some(t) = tenant {
                r = r.header(HEADER, t);
            }
            r.call()
        }
        Some((content_type, body)) => {
            let mut r = a.post(&url).header("content-type", content_type);
            if let Some(t) = tenant {
                r = r.header(HEADER, t);
            }
            r.send(body)
        }
    };
    let mut r = response.unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn get_ok(server: &ServerHandle, tenant: Option<&str>, path: &str) -> String {
    let (status, body) = call(server, tenant, path, None);
    assert_eq!(status, 200, "{tenant:?} GET {path}: {body}");
    body
}

/// A Connect call in JSON: status and parsed body.
fn connect(server: &ServerHandle, tenant: Option<&str>, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = call(
        server,
        tenant,
        path,
        Some(("application/json", body.to_string().as_bytes())),
    );
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({status}): {e}: {text}"));
    (status, value)
}

fn connect_ok(server: &ServerHandle, tenant: Option<&str>, path: &str, body: Value) -> Value {
    let (status, value) = connect(server, tenant, path, body);
    assert_eq!(status, 200, "{tenant:?} {path}: {value}");
    value
}

fn querier(server: &ServerHandle, tenant: Option<&str>, method: &str, body: Value) -> Value {
    connect_ok(
        server,
        tenant,
        &format!("/querier.v1.QuerierService/{method}"),
        body,
    )
}

/// The strings of a JSON array field (absent: empty, as proto3 JSON omits it).
fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `/render` as folded stacks for one tenant, over the last hour.
fn folded(server: &ServerHandle, tenant: Option<&str>, query: &str) -> BTreeMap<String, u64> {
    let path = format!(
        "/render?query={}&from=now-1h&until={}&format=collapsed",
        enc(query),
        now() + 60
    );
    get_ok(server, tenant, &path)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (stack, v) = l.rsplit_once(' ').unwrap();
            (stack.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// Raw `/ingest` of folded stacks for `app.cpu{tags}`, ten seconds ending a minute ago.
fn ingest(server: &ServerHandle, tenant: Option<&str>, name: &str, stacks: &str) -> (u16, String) {
    let from = now() - 70;
    call(
        server,
        tenant,
        &format!(
            "/ingest?name={}&from={from}&until={}&sampleRate=100",
            enc(name),
            from + 10
        ),
        Some(("text/plain", stacks.as_bytes())),
    )
}

/// A CPU pprof: `main;pushed` for one second.
fn cpu_pprof() -> Vec<u8> {
    let mut p = Profile::new(ProfileMeta {
        sample_type: ValueType::new("cpu", "nanoseconds"),
        period_type: Some(ValueType::new("cpu", "nanoseconds")),
        period: 10_000_000,
        ..ProfileMeta::default()
    });
    p.add_frames(
        [&Frame::named("main"), &Frame::named("pushed")],
        Labels::new(),
        1_000_000_000,
    );
    let mut out = Vec::new();
    embers_formats::pprof::encode(&p, &mut out).unwrap();
    out
}

/// A Connect push of [`cpu_pprof`] for `service` with the sample ID `id`.
fn push(server: &ServerHandle, tenant: &str, service: &str, id: &str) {
    let body = json!({"series": [{
        "labels": [{"name": "service_name", "value": service}, {"name": "__name__", "value": "process_cpu"}],
        "samples": [{"ID": id, "rawProfile": base64::engine::general_purpose::STANDARD.encode(cpu_pprof())}],
    }]});
    connect_ok(server, Some(tenant), "/push.v1.PusherService/Push", body);
}

/// `pyroscope-io` burning CPU in `work_<tenant>` for `seconds`, pushing every second
/// as tenant `tenant` (its `tenant_id`, sent as `X-Scope-OrgID`), service `shared`.
const CLIENT: &str = r#"
import sys, time, pyroscope
server, tenant, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
pyroscope.configure(application_name="shared", server_address=server, tenant_id=tenant,
                    sample_rate=100, upload_interval=1)
def work_team_a():
    end = time.process_time() + 0.01
    while time.process_time() < end:
        pass
def work_team_b():
    end = time.process_time() + 0.01
    while time.process_time() < end:
        pass
work = {"team-a": work_team_a, "team-b": work_team_b}[tenant]
end = time.monotonic() + seconds
while time.monotonic() < end:
    work()
pyroscope.shutdown()
print("stopped", flush=True)
"#;

/// What one tenant pushed: its own names, and the other tenant's it must never see.
struct Side {
    tenant: &'static str,
    region: &'static str,
    key: &'static str,
    private_app: &'static str,
    frames: [&'static str; 2],
}

const A: Side = Side {
    tenant: "team-a",
    region: "a-east",
    key: "only_a",
    private_app: "a-private",
    frames: ["work_team_a", "raw_a"],
};
const B: Side = Side {
    tenant: "team-b",
    region: "b-west",
    key: "only_b",
    private_app: "b-private",
    frames: ["work_team_b", "raw_b"],
};

fn ms_range() -> (i64, i64) {
    let end = (now() as i64 + 60) * 1000;
    (end - 3_600_000, end)
}

/// Everything `me` may see, and nothing of `other`, through every read API.
fn sees_only_its_own(server: &ServerHandle, me: &Side, other: &Side) {
    let t = Some(me.tenant);
    let stacks = folded(server, t, "shared.cpu");
    let text = format!("{stacks:?}");
    for f in me.frames {
        assert!(text.contains(f), "{}: {f} missing in {text}", me.tenant);
    }
    for f in other.frames {
        assert!(!text.contains(f), "{}: sees {f}: {text}", me.tenant);
    }
    let apps = get_ok(server, t, "/apps");
    assert!(
        apps.contains("\"shared\"") && apps.contains(me.private_app),
        "{apps}"
    );
    assert!(!apps.contains(other.private_app), "{}: {apps}", me.tenant);
    let labels = get_ok(server, t, &format!("/labels?query={}", enc("shared.cpu")));
    assert!(
        labels.contains(me.key) && !labels.contains(other.key),
        "{labels}"
    );
    let values = get_ok(
        server,
        t,
        &format!("/label-values?label=region&query={}", enc("shared.cpu")),
    );
    assert_eq!(values, format!(r#"["{}"]"#, me.region));

    let (start, end) = ms_range();
    let shared = r#"{service_name="shared"}"#;
    let flame = querier(
        server,
        t,
        "SelectMergeStacktraces",
        json!({"profileTypeID": CPU, "labelSelector": shared, "start": start, "end": end}),
    );
    let names = strings(&flame["flamegraph"], "names");
    for f in me.frames {
        assert!(names.contains(&f.to_owned()), "{names:?}");
    }
    for f in other.frames {
        assert!(!names.contains(&f.to_owned()), "{}: {names:?}", me.tenant);
    }
    let names = strings(
        &querier(
            server,
            t,
            "LabelNames",
            json!({"matchers": [shared], "start": start, "end": end}),
        ),
        "names",
    );
    assert!(names.contains(&me.key.to_owned()), "{names:?}");
    assert!(!names.contains(&other.key.to_owned()), "{names:?}");
    let values = strings(
        &querier(
            server,
            t,
            "LabelValues",
            json!({"name": "region", "matchers": [shared], "start": start, "end": end}),
        ),
        "names",
    );
    assert_eq!(values, vec![me.region.to_owned()]);
    let series = querier(
        server,
        t,
        "Series",
        json!({"matchers": [shared], "start": start, "end": end}),
    )
    .to_string();
    assert!(series.contains(me.region), "{series}");
    assert!(!series.contains(other.region), "{}: {series}", me.tenant);
    let types = querier(
        server,
        t,
        "ProfileTypes",
        json!({"start": start, "end": end}),
    );
    assert_eq!(types["profileTypes"][0]["ID"], CPU, "{types}");
}

/// A tenant that never wrote: every API answers empty, and nothing is created.
fn answers_empty(server: &ServerHandle, tenant: &str) {
    let t = Some(tenant);
    assert!(folded(server, t, "shared.cpu").is_empty());
    assert_eq!(get_ok(server, t, "/apps"), "[]");
    assert_eq!(
        get_ok(server, t, &format!("/labels?query={}", enc("shared.cpu"))),
        "[]"
    );
    let (start, end) = ms_range();
    let names = querier(
        server,
        t,
        "LabelNames",
        json!({"matchers": [], "start": start, "end": end}),
    );
    assert!(strings(&names, "names").is_empty(), "{names}");
    let types = querier(
        server,
        t,
        "ProfileTypes",
        json!({"start": start, "end": end}),
    );
    assert!(strings(&types, "profileTypes").is_empty(), "{types}");
    let settings = connect_ok(server, t, "/settings.v1.SettingsService/Get", json!({}));
    assert_eq!(settings, json!({}));
    connect_ok(
        server,
        t,
        "/settings.v1.SettingsService/Delete",
        json!({"name": "pluginSettings"}),
    );
    let list = connect_ok(
        server,
        t,
        "/adhocprofiles.v1.AdHocProfileService/List",
        json!({}),
    );
    assert!(strings(&list, "profiles").is_empty(), "{list}");
    // A push that decodes to nothing is no write either.
    let (status, body) = ingest(server, t, "shared.cpu", "");
    assert_eq!(status, 200, "{body}");
}

fn run_client(server: &ServerHandle, tenant: &str, seconds: &str) -> std::process::Child {
    Command::new("python3")
        .args(["-c", CLIENT, &server.url(""), tenant, seconds])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Polls `/render` until `frame` shows up in `tenant`'s data, or fails at the deadline.
fn wait_for(server: &ServerHandle, tenant: &str, frame: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if format!("{:?}", folded(server, Some(tenant), "shared.cpu")).contains(frame) {
            return;
        }
        assert!(Instant::now() < deadline, "{frame} never reached {tenant}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fsck(data: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_embers"))
        .args(["fsck", "--data-dir"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn two_tenants_with_the_same_service_see_only_their_own_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // No flush while the test runs: the restart below must replay each tenant's WAL.
    let args = ["--multitenancy", "--flush-interval", "3600"];
    let mut server = ServerHandle::start(&data, &args);

    // The real client, once per tenant, the same service name.
    let clients: Vec<_> = [A.tenant, B.tenant]
        .into_iter()
        .map(|t| run_client(&server, t, "3"))
        .collect();
    for side in [&A, &B] {
        let (status, body) = ingest(
            &server,
            Some(side.tenant),
            &format!("shared.cpu{{region={},{}=1}}", side.region, side.key),
            &format!("main;{} 5\n", side.frames[1]),
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = ingest(
            &server,
            Some(side.tenant),
            &format!("{}.cpu", side.private_app),
            "main 1\n",
        );
        assert_eq!(status, 200, "{body}");
    }
    for client in clients {
        let out = client.wait_with_output().unwrap();
        assert!(out.status.success(), "client failed: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    }
    wait_for(&server, A.tenant, A.frames[0]);
    wait_for(&server, B.tenant, B.frames[0]);
    sees_only_its_own(&server, &A, &B);
    sees_only_its_own(&server, &B, &A);
    // The default tenant (no header) has none of it.
    assert_eq!(get_ok(&server, None, "/apps"), "[]");

    // The same request ID in two tenants is two writes; a retry within one is not.
    push(&server, A.tenant, "dedup", "same-id");
    push(&server, A.tenant, "dedup", "same-id");
    push(&server, B.tenant, "dedup", "same-id");
    let dedup_a = folded(&server, Some(A.tenant), "dedup.cpu");
    let dedup_b = folded(&server, Some(B.tenant), "dedup.cpu");
    assert_eq!(dedup_a.values().sum::<u64>(), 1_000_000_000, "{dedup_a:?}");
    assert_eq!(dedup_a, dedup_b);

    // Ad-hoc profiles and settings are the tenant's own.
    let adhoc = |m: &str| format!("/adhocprofiles.v1.AdHocProfileService/{m}");
    let upload = connect_ok(
        &server,
        Some(A.tenant),
        &adhoc("Upload"),
        json!({"name": "a.txt", "profile": base64::engine::general_purpose::STANDARD.encode("main;adhoc_a 3\n")}),
    );
    let id = upload["id"].as_str().unwrap().to_owned();
    let list = connect_ok(&server, Some(A.tenant), &adhoc("List"), json!({}));
    assert_eq!(list["profiles"][0]["id"], id.as_str(), "{list}");
    let list = connect_ok(&server, Some(B.tenant), &adhoc("List"), json!({}));
    assert!(strings(&list, "profiles").is_empty(), "{list}");
    let (status, answer) = connect(&server, Some(B.tenant), &adhoc("Get"), json!({"id": id}));
    assert_ne!(status, 200, "team-b read team-a's upload: {answer}");
    let settings = |m: &str| format!("/settings.v1.SettingsService/{m}");
    connect_ok(
        &server,
        Some(A.tenant),
        &settings("Set"),
        json!({"setting": {"name": "pluginSettings", "value": "{\"a\":1}"}}),
    );
    let got = connect_ok(&server, Some(A.tenant), &settings("Get"), json!({}));
    assert_eq!(got["settings"][0]["value"], "{\"a\":1}", "{got}");
    assert_eq!(
        connect_ok(&server, Some(B.tenant), &settings("Get"), json!({})),
        json!({})
    );

    // A tenant without data answers empty and leaves no directory.
    answers_empty(&server, "team-z");
    assert!(!data.join("tenants").join("team-z").exists());
    // An invalid tenant ID is refused, on reads and writes.
    let (status, body) = call(&server, Some("../a"), "/apps", None);
    assert_eq!(status, 400, "{body}");
    let (status, body) = ingest(&server, Some("a b"), "shared.cpu", "main 1\n");
    assert_eq!(status, 400, "{body}");

    // SIGKILL: nothing was flushed, each tenant's WAL brings its data back.
    let before: Vec<_> = [A.tenant, B.tenant]
        .iter()
        .map(|t| folded(&server, Some(t), "shared.cpu"))
        .collect();
    server.kill();
    assert!(data.join("tenants").join(A.tenant).join("wal").is_dir());
    let mut server = ServerHandle::start(&data, &args);
    for (t, stacks) in [A.tenant, B.tenant].iter().zip(&before) {
        assert_eq!(&folded(&server, Some(t), "shared.cpu"), stacks, "{t}");
    }
    sees_only_its_own(&server, &A, &B);
    sees_only_its_own(&server, &B, &A);
    let got = connect_ok(&server, Some(A.tenant), &settings("Get"), json!({}));
    assert_eq!(got["settings"][0]["value"], "{\"a\":1}", "{got}");
    answers_empty(&server, "team-z");
    let metrics = get_ok(&server, None, "/metrics");
    assert!(metrics.contains("\nembers_tenants 3\n"), "{metrics}");
    server.stop();

    // fsck checks every tenant, or the one asked for.
    let (ok, text) = fsck(&data, &[]);
    assert!(ok, "{text}");
    for t in ["anonymous", A.tenant, B.tenant] {
        assert!(text.contains(&format!("== tenant {t} (")), "{text}");
    }
    let (ok, text) = fsck(&data, &["--tenant", A.tenant]);
    assert!(ok, "{text}");
    assert!(
        text.contains("== tenant team-a") && !text.contains("team-b"),
        "{text}"
    );
    let (ok, text) = fsck(&data, &["--tenant", "team-z"]);
    assert!(!ok && text.contains("tenant team-z has no data"), "{text}");
}

#[test]
fn series_limits_and_the_tenant_count_are_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(
        dir.path(),
        &["--multitenancy", "--max-series", "1", "--max-tenants", "2"],
    );
    for t in [Some("team-a"), Some("team-b"), None] {
        let (status, body) = ingest(&server, t, "first.cpu", "main 1\n");
        assert_eq!(status, 200, "{t:?}: {body}");
    }
    for t in [Some("team-a"), Some("team-b"), None] {
        let (status, body) = ingest(&server, t, "second.cpu", "main 1\n");
        assert_eq!(
            status, 429,
            "{t:?}: the second series is over max_series: {body}"
        );
    }
    // Two tenants besides the default one: a third gets no store.
    let (status, body) = ingest(&server, Some("team-c"), "first.cpu", "main 1\n");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("max_tenants"), "{body}");
    assert!(!dir.path().join("tenants").join("team-c").exists());
    // Reads of it still answer (empty).
    assert_eq!(get_ok(&server, Some("team-c"), "/apps"), "[]");
}

#[test]
fn without_multitenancy_the_header_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &[]);
    let (status, body) = ingest(&server, Some("team-a"), "shared.cpu", "main;raw_a 5\n");
    assert_eq!(status, 200, "{body}");
    // Even a header that is no valid tenant ID: nobody reads it.
    let (status, body) = ingest(&server, Some("a/b"), "shared.cpu", "main;raw_x 2\n");
    assert_eq!(status, 200, "{body}");
    let all = folded(&server, None, "shared.cpu");
    assert_eq!(all, folded(&server, Some("team-b"), "shared.cpu"));
    assert_eq!(all.get("main;raw_a"), Some(&50_000_000), "{all:?}");
    assert_eq!(all.get("main;raw_x"), Some(&20_000_000), "{all:?}");
    assert!(!dir.path().join("tenants").exists());
}

#[test]
fn the_agent_lands_in_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &["--multitenancy"]);
    let mut target = Command::new("python3")
        .arg(support::repo().join("examples/foobar/foobar.py"))
        .args(["--seconds", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(target.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert!(ready.starts_with("ready"), "{ready:?}");
    let pid = target.id().to_string();
    let agent = Command::new(env!("CARGO_BIN_EXE_embers"))
        .args(["agent", "--server", &server.url(""), "--app", "foobar"])
        .args(["--tenant-id", "team-a", "--pid", &pid])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    target.wait().unwrap();
    // The agent ends by itself once its target is gone, after sending the last window.
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent failed:\n{log}");
    let mine: u64 = folded(&server, Some("team-a"), "foobar.cpu").values().sum();
    assert!(mine > 0, "nothing arrived in team-a:\n{log}");
    assert!(folded(&server, None, "foobar.cpu").is_empty());
    assert!(folded(&server, Some("team-b"), "foobar.cpu").is_empty());
}
