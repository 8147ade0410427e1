//! `embers server` memory (issue "Demo and benchmarks", Measure): the resident set of a real
//! release server after six hours of 10 s profiles from ten services are pushed to it and
//! queried, next to the same process idle right after start (the baseline, same run).
//!
//! Run: `cargo bench -p embers-bench --bench server_memory`

use std::time::Instant;

use embers_bench::client_pprof;
use embers_bench::process::{release_embers, status_kb, vm_hwm_kb, Server};

const SERVICES: usize = 10;
const HOURS: u64 = 6;

/// `VmRSS` of the live server, in KiB.
fn vm_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS").expect("the server is running")
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn main() {
    let embers = release_embers();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&embers, &dir.path().join("data"));
    let pid = server.pid();
    let idle = vm_rss_kb(pid);

    // Ten services, one profile each per 10 s window over the last six hours; a handful of
    // distinct bodies (weights vary) so the store sees realistic repetition.
    let bodies: Vec<Vec<u8>> = (0..8).map(client_pprof).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 10
        * 10;
    let windows = HOURS * 360;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let start = Instant::now();
    let mut sent = 0usize;
    let mut bytes = 0usize;
    for w in 0..windows {
        let at = now - HOURS * 3600 + w * 10;
        for s in 0..SERVICES {
            let body = &bodies[(w as usize + s) % bodies.len()];
            let url = format!(
                "{}/ingest?name=svc-{s}.cpu%7Bregion%3Dr{}%7D&from={at}&until={}&format=pprof",
                server.url,
                s % 3,
                at + 10
            );
            let r = agent
                .post(&url)
                .header("content-type", "application/octet-stream")
                .send(&body[..])
                .expect("ingest");
            assert_eq!(r.status().as_u16(), 200);
            sent += 1;
            bytes += body.len();
        }
    }
    let pushed = start.elapsed();
    let after_ingest = vm_rss_kb(pid);
    // Queries over the whole range, per service and across all of them.
    let query = |q: &str, from: &str| {
        let url = format!("{}/render?query={q}&from={from}&until=now", server.url);
        let r = agent.get(&url).call().expect("query");
        assert_eq!(r.status().as_u16(), 200);
    };
    for s in 0..SERVICES {
        query(&format!("svc-{s}.cpu"), "now-7h");
        query(&format!("svc-{s}.cpu"), "now-1h");
    }
    query(
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds%7Bregion%3D%22r0%22%7D",
        "now-7h",
    );
    let after_queries = vm_rss_kb(pid);
    let peak = vm_hwm_kb(pid).unwrap_or(0);
    println!(
        "pushed {sent} profiles ({:.1} MB as sent, {SERVICES} services x {HOURS} h of 10 s windows) in {:.0} s",
        bytes as f64 / 1e6,
        pushed.as_secs_f64()
    );
    println!(
        "server RSS: idle {:.1} MiB (baseline), after ingest {:.1} MiB, after queries {:.1} MiB, peak {:.1} MiB: {:.1}x idle",
        mib(idle),
        mib(after_ingest),
        mib(after_queries),
        mib(peak),
        after_queries as f64 / idle as f64
    );
}
