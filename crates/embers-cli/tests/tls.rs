//! HTTPS end to end with a private CA made in the test (rcgen): `embers server
//! --tls-cert/--tls-key`, `embers agent` sampling a real Python process and pushing over
//! HTTPS with `--ca-cert`, `embers query` reading it back; what clients without the CA,
//! or facing a certificate for another name, are told; plain HTTP on the TLS port; a
//! client that never shakes hands; certificate and key mistakes caught at start.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::{repo, ServerHandle};

/// The agent tests burn CPU in a Python target: one at a time.
static BUSY: Mutex<()> = Mutex::new(());

fn busy() -> std::sync::MutexGuard<'static, ()> {
    BUSY.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A test CA: its PEM file, and the issuer that signs server certificates.
struct Ca {
    pem: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses): (cert, key) files.
    fn server_cert(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, stem);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// A server on HTTPS with a certificate for 127.0.0.1 and localhost from `ca`.
fn https_server(dir: &Path, ca: &Ca, extra: &[&str]) -> ServerHandle {
    let (cert, key) = ca.server_cert(dir, "server", &["127.0.0.1", "localhost"]);
    let mut args = vec![
        "--tls-cert".to_owned(),
        cert.display().to_string(),
        "--tls-key".to_owned(),
        key.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerHandle::start(&dir.join("data"), &args);
    // The harness learns the address before the line reaches the log: wait for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let log = server.log.lock().unwrap().clone();
        if let Some(line) = log.lines().find(|l| l.contains("embers server ready")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no ready line:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(ready.contains("scheme=https"), "{ready}");
    server
}

fn https(server: &ServerHandle) -> String {
    format!("https://{}", server.address)
}

fn embers(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_embers"))
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("EMBERS_CA_CERT")
        .output()
        .unwrap()
}

/// `embers query tls-app.cpu` against `server`, output discarded: what it says, on error.
fn failed_query(server: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "query",
        "tls-app.cpu",
        "--server",
        server,
        "-o",
        "/dev/null",
    ];
    args.extend_from_slice(extra);
    let out = embers(&args);
    assert!(!out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `embers agent` launching foobar.py for `seconds`, pushing to `server`.
fn agent(server: &str, extra: &[&str], seconds: &str) -> Output {
    let script = repo().join("examples/foobar/foobar.py");
    let mut args = vec!["agent", "--server", server, "--app", "tls-app"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--",
        "python3",
        script.to_str().unwrap(),
        "--seconds",
        seconds,
    ]);
    embers(&args)
}

/// The sample count of the agent's "agent stopped" line.
fn samples(log: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("agent stopped"))
        .unwrap_or_else(|| panic!("no summary in:\n{log}"));
    line.split("samples=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sample count in {line:?}"))
}

/// One sample is one sampling period of CPU: 10 ms at 100 Hz, in nanoseconds.
const SAMPLE_NS: u64 = 10_000_000;

#[test]
fn agent_pushes_over_https_with_a_private_ca_and_query_reads_it_back() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    let server = https_server(dir.path(), &ca, &[]);
    let ca_pem = ca.pem.to_str().unwrap();

    let out = agent(&https(&server), &["--ca-cert", ca_pem], "3");
    let log = stderr(&out);
    assert!(out.status.success(), "agent failed:\n{log}");
    assert!(!log.contains("cannot push"), "{log}");
    let samples = samples(&log);
    assert!(samples > 0, "{log}");

    let folded = dir.path().join("tls.folded");
    let out = embers(&[
        "query",
        "tls-app.cpu",
        "--from",
        "now-1h",
        "--server",
        &https(&server),
        "--ca-cert",
        ca_pem,
        "-o",
        folded.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "query failed:\n{}", stderr(&out));
    let text = std::fs::read_to_string(&folded).unwrap();
    let total: u64 = text
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    // Every sample the agent took arrived, once, through TLS both ways.
    assert_eq!(total, samples * SAMPLE_NS, "{text}");
    assert!(text.contains("foo"), "{text}");

    // The CA also comes from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_embers"))
        .args(["query", "tls-app.cpu", "--from", "now-1h", "--server"])
        .arg(https(&server))
        .arg("-o")
        .arg(dir.path().join("env.folded"))
        .env("EMBERS_CA_CERT", &ca.pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("env.folded")).unwrap(),
        text
    );
}

#[test]
fn without_the_ca_agent_and_query_refuse_the_unknown_issuer_and_say_so() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    let server = https_server(dir.path(), &ca, &[]);

    let err = failed_query(&https(&server), &[]);
    assert!(
        err.contains("certificate for 127.0.0.1 is not trusted"),
        "{err}"
    );
    assert!(err.contains("unknown issuer"), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");

    // Another CA is no better than none.
    let other = Ca::new(dir.path(), "another-ca");
    let err = failed_query(&https(&server), &["--ca-cert", other.pem.to_str().unwrap()]);
    assert!(err.contains("unknown issuer"), "{err}");

    // The agent keeps its windows and retries, saying why; with a short flush timeout
    // it gives up when its target is gone and exits non-zero.
    let out = agent(&https(&server), &["--flush-timeout", "1"], "1");
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("unknown issuer"), "{log}");
    assert!(log.contains("127.0.0.1"), "{log}");
    assert!(log.contains("unsent"), "{log}");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    let (cert, key) = ca.server_cert(dir.path(), "elsewhere", &["elsewhere.example"]);
    let server = ServerHandle::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let err = failed_query(&https(&server), &["--ca-cert", ca.pem.to_str().unwrap()]);
    assert!(
        err.contains("not valid for the name 127.0.0.1 (it names elsewhere.example)"),
        "the message names the host: {err}"
    );

    // The CA's own certificate served as the server's: a common mistake, named.
    let ca_key = dir.path().join("embers-test-ca.key");
    let server = ServerHandle::start(
        &dir.path().join("data-ca"),
        &[
            "--tls-cert",
            ca.pem.to_str().unwrap(),
            "--tls-key",
            ca_key.to_str().unwrap(),
        ],
    );
    let err = failed_query(&https(&server), &["--ca-cert", ca.pem.to_str().unwrap()]);
    assert!(err.contains("it is a CA certificate"), "{err}");
}

/// An HTTPS client trusting `ca`, as the agent and `embers query` build it.
fn client(ca: &Ca) -> ureq::Agent {
    embers_agent::http::client(&embers_agent::http::ClientConfig {
        ca_cert: Some(ca.pem.clone()),
        timeout: Some(Duration::from_secs(60)),
    })
    .unwrap()
}

fn healthz(client: &ureq::Agent, server: &ServerHandle) -> u16 {
    client
        .get(format!("{}/healthz", https(server)))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn plain_http_on_the_tls_port_is_told_to_use_https_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    let server = https_server(dir.path(), &ca, &[]);
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(answer.contains("use an https:// URL"), "{answer:?}");

    // The same through the CLI: a plain message, not a TLS alert.
    let err = failed_query(&format!("http://{}", server.address), &[]);
    assert!(err.contains("use an https:// URL"), "{err}");

    // Garbage that is not HTTP either fails the handshake and closes.
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // A handshake record holding a message of an unknown type (255).
    stream
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00])
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);

    assert_eq!(healthz(&client(&ca), &server), 200);

    // The other way round: https:// to a plain HTTP server is told so too.
    let plain = ServerHandle::start(&dir.path().join("plain"), &[]);
    let err = failed_query(&https(&plain), &["--ca-cert", ca.pem.to_str().unwrap()]);
    assert!(err.contains("127.0.0.1 did not answer TLS"), "{err}");
    assert!(err.contains("use an http:// URL"), "{err}");
}

#[test]
fn a_client_that_never_shakes_hands_is_dropped_by_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    // One connection slot: the silent client holds it until the header timeout.
    let server = https_server(
        dir.path(),
        &ca,
        &["--header-timeout", "1", "--max-connections", "1"],
    );
    let mut silent = TcpStream::connect(&server.address).unwrap();
    // A guard against a hang only: the server must close well before this.
    silent
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).unwrap_or_else(|e| {
        panic!(
            "the server did not close a silent connection within {:?}: {e}",
            started.elapsed()
        )
    });
    assert_eq!(n, 0, "closed without an answer");

    // The slot is freed as the connection closes (poll: the close may reach us first),
    // and the close is counted as a header timeout.
    let client = client(&ca);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = client
            .get(format!("{}/metrics", https(&server)))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        if metrics.contains("embers_http_connections_closed_total{reason=\"header_timeout\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(healthz(&client, &server), 200);
}

#[test]
fn certificate_and_key_mistakes_stop_the_server_at_start_with_a_plain_message() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    let (cert, key) = ca.server_cert(dir.path(), "a", &["127.0.0.1"]);
    let (_, other_key) = ca.server_cert(dir.path(), "b", &["127.0.0.1"]);
    let data = dir.path().join("data");
    let start = |args: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_embers"));
        cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data);
        for pair in args.chunks(2) {
            cmd.arg(pair[0]).arg(pair[1]);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        stderr(&out)
    };
    let flag = |s: &'static str| Path::new(s);
    let err = start(&[flag("--tls-cert"), &cert]);
    assert!(err.contains("tls_cert and tls_key go together"), "{err}");
    let err = start(&[flag("--tls-cert"), &cert, flag("--tls-key"), &other_key]);
    assert!(err.contains("does not belong to the certificate"), "{err}");
    let err = start(&[flag("--tls-cert"), &key, flag("--tls-key"), &key]);
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let err = start(&[flag("--tls-cert"), &cert, flag("--tls-key"), &cert]);
    assert!(err.contains("holds no private key"), "{err}");
    let missing = dir.path().join("missing.pem");
    let err = start(&[flag("--tls-cert"), &missing, flag("--tls-key"), &key]);
    assert!(err.contains("missing.pem"), "{err}");
}

/// Folded stacks of `query` over the last hour, asked over HTTPS with `client`.
fn folded(client: &ureq::Agent, server: &ServerHandle, query: &str) -> String {
    let url = format!(
        "{}/render?query={}&from=now-1h&until={}&format=collapsed",
        https(server),
        support::enc(query),
        support::now() + 3600
    );
    let mut response = client.get(&url).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    assert_eq!(response.status().as_u16(), 200, "{text}");
    text
}

/// The CPU total of `service` over HTTPS.
fn cpu_total(client: &ureq::Agent, server: &ServerHandle, service: &str) -> u64 {
    folded(
        client,
        server,
        &format!("{CPU}{{service_name=\"{service}\"}}"),
    )
    .lines()
    .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
    .sum()
}

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

#[test]
fn otlp_over_https_and_grpc_over_tls_land_with_grpcio_verifying_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    let server = https_server(dir.path(), &ca, &[]);
    let script = repo().join("crates/embers-cli/tests/otlp/export.py");
    let client = client(&ca);
    for mode in ["protobuf", "grpc", "grpc-gzip"] {
        let service = format!("tls-{mode}");
        let out = Command::new("python3")
            .arg(&script)
            .args([mode, &https(&server), &service, "--ca"])
            .arg(&ca.pem)
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "export.py {mode} failed (scripts/install-test-deps.sh installs grpcio): {}",
            stderr(&out)
        );
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        if mode.starts_with("grpc") {
            // HTTP/2 was negotiated by ALPN: gRPC has no HTTP/1.1 fallback.
            assert_eq!(answer["code"], "OK", "{mode}: {answer}");
        } else {
            assert_eq!(answer["status"], 200, "{mode}: {answer}");
        }
        // export.py sends 6 samples of 10 ms of CPU per service (main;work_S 5, main;idle 1).
        assert_eq!(
            cpu_total(&client, &server, &service),
            6 * SAMPLE_NS,
            "{mode}"
        );
    }
}

#[test]
fn pyroscope_io_pushes_to_an_https_server_trusting_the_ca_through_ssl_cert_file() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    let server = https_server(dir.path(), &ca, &[]);
    let script = repo().join("examples/clients/pyroscope_rideshare.py");
    // pyroscope-io's native client verifies with OpenSSL, which reads SSL_CERT_FILE.
    // Without it the CA is unknown: the client pushes nothing (first, so that the
    // trusting run's data, flushed the same way at shutdown, shows the absence is real).
    for (region, ca_file) in [("us-east-1", None), ("eu-west-1", Some(&ca.pem))] {
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .args([&https(&server), region, "3"])
            .env_remove("SSL_CERT_FILE");
        if let Some(file) = ca_file {
            cmd.env("SSL_CERT_FILE", file);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "client failed: {out:?}");
    }
    let untrusted = folded(
        &client(&ca),
        &server,
        r#"ride-sharing-app.cpu{region="us-east-1"}"#,
    );
    assert_eq!(untrusted, "", "pushed without trusting the CA");
    let text = folded(
        &client(&ca),
        &server,
        r#"ride-sharing-app.cpu{region="eu-west-1"}"#,
    );
    assert!(text.contains("find_nearest_vehicle"), "{text:?}");
}

/// Waits until the server's log has `count` lines containing `what`.
fn wait_log(server: &ServerHandle, what: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = server.log.lock().unwrap().clone();
        if log.matches(what).count() >= count {
            return;
        }
        assert!(Instant::now() < deadline, "no {what:?} in:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_the_certificate_and_a_broken_renewal_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new(dir.path(), "old-ca");
    let (cert, key) = old_ca.server_cert(dir.path(), "server", &["127.0.0.1"]);
    let server = ServerHandle::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // A fresh client per check: a kept-alive connection would not shake hands again.
    let healthz_with = |ca: &Ca| {
        embers_agent::http::client(&embers_agent::http::ClientConfig {
            ca_cert: Some(ca.pem.clone()),
            timeout: Some(Duration::from_secs(60)),
        })
        .unwrap()
        .get(format!("{}/healthz", https(&server)))
        .call()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
    };
    assert_eq!(healthz_with(&old_ca), Ok(200));

    // A renewal from another CA, written in place.
    let new_ca = Ca::new(dir.path(), "new-ca");
    let (new_cert, new_key) = new_ca.server_cert(dir.path(), "renewed", &["127.0.0.1"]);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    hup();
    wait_log(&server, "reason=SIGHUP", 1);
    assert_eq!(healthz_with(&new_ca), Ok(200));
    assert!(healthz_with(&old_ca).is_err());

    // A damaged key: logged, and the renewed pair goes on serving.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64\n").unwrap();
    hup();
    wait_log(&server, "TLS certificate not reloaded", 1);
    assert_eq!(healthz_with(&new_ca), Ok(200));
}

#[test]
fn tokens_travel_over_https_agent_and_query_with_auth_and_a_private_ca() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "embers-test-ca");
    let auth = dir.path().join("auth.toml");
    let token = "tls-test-token-0123456789abcdef";
    std::fs::write(
        &auth,
        format!(
            "[[tokens]]\ntoken = \"{token}\"\ntenant = \"team-tls\"\nscopes = [\"ingest\", \"read\"]\n"
        ),
    )
    .unwrap();
    let server = https_server(dir.path(), &ca, &["--auth-file", auth.to_str().unwrap()]);
    let ca_pem = ca.pem.to_str().unwrap();

    let out = agent(
        &https(&server),
        &["--ca-cert", ca_pem, "--auth-token", token],
        "2",
    );
    let log = stderr(&out);
    assert!(out.status.success(), "agent failed:\n{log}");
    let samples = samples(&log);

    let folded = dir.path().join("auth.folded");
    let base = https(&server);
    let query = |extra: &[&str]| {
        let mut args = vec![
            "query",
            "tls-app.cpu",
            "--from",
            "now-1h",
            "--server",
            &base,
            "--ca-cert",
            ca_pem,
            "-o",
            folded.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        embers(&args)
    };
    let out = query(&["--auth-token", token]);
    assert!(out.status.success(), "query failed:\n{}", stderr(&out));
    let total: u64 = std::fs::read_to_string(&folded)
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, samples * SAMPLE_NS);
    // Over TLS as over plain HTTP, no token is no answer.
    let out = query(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
}
