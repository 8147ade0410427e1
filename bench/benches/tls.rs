//! Ingest over HTTPS vs plain HTTP, in the same run (issue 13, TLS): two in-process
//! servers, one with a certificate from a CA made here (rcgen), 8 clients built by
//! `embers_agent::http::client` (the agent's and `embers query`'s client) pushing the
//! server bench's 30 KB profiles over Connect Push, rounds alternating plain and TLS.
//!
//! - kept-alive connections (what the agent and pyroscope-io do): the record layer's cost;
//! - a new connection per push: the handshake's cost too (the worst case).
//!
//! Reported per mode: profiles/s (wall, the clients share the 2 cores with the server) and
//! process CPU per push (server + clients), medians of the rounds.
//!
//! `cargo bench -p embers-bench --bench tls` (`TMPDIR=/dev/shm` to leave fsync out)

use std::path::Path;
use std::time::{Duration, Instant};

use embers_bench::{client_pprof, process_cpu, push_request};

const CLIENTS: usize = 8;
const PUSHES_PER_CLIENT: usize = 150;
const ROUNDS: usize = 5;

/// A CA and a server certificate for 127.0.0.1: (ca, cert, key) files in `dir`.
fn pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

/// Pushes every body `PUSHES_PER_CLIENT` times from each client: (wall, process CPU).
fn push_all(url: &str, ca: &Path, bodies: &[Vec<u8>], fresh: bool) -> (Duration, Duration) {
    let cpu = process_cpu();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            scope.spawn(move || {
                let config = embers_agent::http::ClientConfig {
                    ca_cert: Some(ca.to_owned()),
                    timeout: Some(Duration::from_secs(60)),
                };
                let client = embers_agent::http::client(&config).expect("client");
                for i in 0..PUSHES_PER_CLIENT {
                    let mut request = client.post(url).header("content-type", "application/proto");
                    if fresh {
                        // Not kept alive: the next push connects (and shakes hands) anew.
                        request = request.header("connection", "close");
                    }
                    let r = request
                        .send(&bodies[(i + c) % bodies.len()][..])
                        .expect("push");
                    assert_eq!(r.status().as_u16(), 200);
                }
            });
        }
    });
    (start.elapsed(), process_cpu().saturating_sub(cpu))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = pki(dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let start = |name: &str, tls: bool| {
        let config = embers_server::ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().join(name),
            tls_cert: tls.then(|| cert.clone()),
            tls_key: tls.then(|| key.clone()),
            ..embers_server::ServerConfig::default()
        };
        let server = runtime
            .block_on(embers_server::Server::start(config))
            .expect("server");
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{}/push.v1.PusherService/Push", server.address());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = runtime.spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        (url, stop, serving)
    };
    let plain = start("plain", false);
    let tls = start("tls", true);
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|seed| push_request(&client_pprof(seed), "tls-bench"))
        .collect();
    let pushes = (CLIENTS * PUSHES_PER_CLIENT) as f64;
    println!("tls: {CLIENTS} clients x {PUSHES_PER_CLIENT} pushes of ~30 KB, {ROUNDS} rounds alternating");
    for fresh in [false, true] {
        let (mut p, mut t) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            p.push(push_all(&plain.0, &ca, &bodies, fresh));
            t.push(push_all(&tls.0, &ca, &bodies, fresh));
        }
        let wall = |v: &[(Duration, Duration)]| median(v.iter().map(|r| r.0).collect());
        let cpu = |v: &[(Duration, Duration)]| median(v.iter().map(|r| r.1).collect());
        let mode = if fresh {
            "new connection per push"
        } else {
            "kept-alive connections"
        };
        println!("  {mode}:");
        for (name, runs) in [("plain HTTP", &p), ("HTTPS", &t)] {
            println!(
                "    {name:<10} {:>7.0} profiles/s  {:>7.0} µs CPU per push",
                pushes / wall(runs).as_secs_f64(),
                cpu(runs).as_secs_f64() * 1e6 / pushes
            );
        }
        println!(
            "    HTTPS cost: {:+.1} % wall, {:+.1} % CPU",
            (wall(&t).as_secs_f64() / wall(&p).as_secs_f64() - 1.0) * 100.0,
            (cpu(&t).as_secs_f64() / cpu(&p).as_secs_f64() - 1.0) * 100.0
        );
    }
    for (_, stop, serving) in [plain, tls] {
        let _ = stop.send(());
        runtime
            .block_on(serving)
            .expect("join")
            .expect("server stops cleanly");
    }
}
