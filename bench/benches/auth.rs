//! The cost of authentication for BENCHMARKS.md, next to its baseline in the same run:
//!
//! - lookup: one token looked up among 100 `[[tokens]]` (SHA-256 of the presented token,
//!   then a constant-time comparison with every entry), vs SHA-256 alone and vs the
//!   decode of one client profile, the work each ingest request does anyway;
//! - ingest: the latency of `POST /ingest` (gzipped pprof, as @pyroscope/nodejs sends)
//!   over HTTP into a server with an auth file of 100 tokens and into one without, the
//!   two alternating request by request so load on the machine falls on both alike.
//!
//! `cargo bench -p embers-bench --bench auth [-- lookup|ingest]`

use std::time::{Duration, Instant};

use embers_bench::{client_pprof, median_time};
use embers_profile::Labels;
use embers_server::auth::{self, Scope};
use embers_server::tenant::TenantId;
use embers_server::{pprof_puts, IngestBudget};

/// Tokens in the auth file: the presented one is the last, so every lookup compares all.
const TOKENS: usize = 100;

fn auth_file(presented: &str) -> String {
    let tenant = |id: &str| TenantId::parse(id).expect("valid tenant");
    let mut text = String::new();
    for i in 0..TOKENS - 1 {
        let token = format!("embers_bench_token_{i:04}_padding");
        let scopes = [Scope::Ingest].into_iter().collect();
        text.push_str(&auth::toml_entry(
            &token,
            &tenant(&format!("t{i}")),
            scopes,
            None,
        ));
    }
    let scopes = [Scope::Ingest, Scope::Read].into_iter().collect();
    text.push_str(&auth::toml_entry(
        presented,
        &tenant("anonymous"),
        scopes,
        None,
    ));
    text
}

fn lookup() {
    let presented = auth::new_token().expect("OS random numbers");
    let tokens = auth::file::parse(&auth_file(&presented)).expect("valid auth file");
    let runs = 20_000;
    let find = median_time(50, || {
        for _ in 0..runs {
            std::hint::black_box(tokens.find(std::hint::black_box(&presented)));
        }
    });
    let hash = median_time(50, || {
        for _ in 0..runs {
            std::hint::black_box(auth::sha256(std::hint::black_box(presented.as_bytes())));
        }
    });
    let body = client_pprof(1);
    let labels = Labels::from_pairs([("service_name", "bench-app")]);
    let limits = IngestBudget::default();
    let decode = median_time(50, || {
        let puts = pprof_puts(&body, &labels, Some("process_cpu"), 1_700_000_000, &limits);
        std::hint::black_box(puts.expect("valid"));
    });
    let per = |d: Duration| d.as_secs_f64() * 1e9 / runs as f64;
    println!(
        "lookup: {:.0} ns per request among {TOKENS} tokens (SHA-256 alone {:.0} ns: {:.2}x); \
         decoding one client profile {:.0} ns: the lookup adds {:.3} % to an ingest request",
        per(find),
        per(hash),
        find.as_secs_f64() / hash.as_secs_f64(),
        decode.as_secs_f64() * 1e9,
        per(find) / (decode.as_secs_f64() * 1e9) * 100.0
    );
}

/// A server in this process, on a free port, with or without an auth file.
struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

fn start(runtime: &tokio::runtime::Runtime, auth_text: Option<&str>) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth_file = auth_text.map(|text| {
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, text).expect("writing the auth file");
        path
    });
    let config = embers_server::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().join("data"),
        auth_file,
        ..embers_server::ServerConfig::default()
    };
    let server = runtime
        .block_on(embers_server::Server::start(config))
        .expect("server");
    let url = format!("http://{}/ingest", server.address());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run_until(async {
        let _ = rx.await;
    }));
    Running {
        url,
        stop: Some(tx),
        serving: Some(serving),
        _dir: dir,
    }
}

impl Running {
    fn stop(mut self, runtime: &tokio::runtime::Runtime) {
        let _ = self.stop.take().map(|tx| tx.send(()));
        if let Some(serving) = self.serving.take() {
            runtime
                .block_on(serving)
                .expect("join")
                .expect("server stops cleanly");
        }
    }
}

/// One push of `body` to `url`: its latency.
fn push(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    body: &[u8],
    name: &str,
    from: u64,
) -> Duration {
    let mut request = agent
        .post(url)
        .query("name", name)
        .query("format", "pprof")
        .query("from", from.to_string())
        .query("until", (from + 10).to_string())
        .header("content-type", "application/octet-stream");
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    let start = Instant::now();
    let r = request.send(body).expect("push");
    let took = start.elapsed();
    assert_eq!(r.status().as_u16(), 200);
    took
}

/// 4 clients, each pushing 400 profiles to each server, alternating request by request
/// (which goes first alternates too), so load on the shared machine falls on both alike:
/// the summed latencies with auth and without.
fn ingest() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let token = auth::new_token().expect("OS random numbers");
    let bodies: Vec<Vec<u8>> = (0..16).map(client_pprof).collect();
    let with = start(&runtime, Some(&auth_file(&token)));
    let without = start(&runtime, None);
    let (clients, per_client) = (4, 400);
    let totals: Vec<(Duration, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (with, without, bodies, token) = (&with.url, &without.url, &bodies, &token);
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                    let name = format!("bench-{c}.cpu");
                    let (mut on, mut off) = (Duration::ZERO, Duration::ZERO);
                    for i in 0..per_client {
                        let body = &bodies[(i + c) % bodies.len()];
                        let from = 1_700_000_000 + ((c * per_client + i) as u64) * 10;
                        let auth_on = || push(&agent, with, Some(token), body, &name, from);
                        let auth_off = || push(&agent, without, None, body, &name, from);
                        if i % 2 == 0 {
                            on += auth_on();
                            off += auth_off();
                        } else {
                            off += auth_off();
                            on += auth_on();
                        }
                    }
                    (on, off)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    with.stop(&runtime);
    without.stop(&runtime);
    let on: Duration = totals.iter().map(|t| t.0).sum();
    let off: Duration = totals.iter().map(|t| t.1).sum();
    let n = (clients * per_client) as f64;
    println!(
        "ingest over HTTP, {clients} clients x {per_client} pushes to each server, alternating: \
         auth on ({TOKENS} tokens) {:.0} µs per push, off {:.0} µs: cost {:+.1} %",
        on.as_secs_f64() * 1e6 / n,
        off.as_secs_f64() * 1e6 / n,
        (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if run("lookup") {
        lookup();
    }
    if run("ingest") {
        ingest();
    }
}
