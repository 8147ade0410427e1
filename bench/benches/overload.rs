//! `embers server` under a push flood (issue 14, backpressure): 64 clients push 1 MB
//! bodies as fast as the server answers, for 15 s, against a server whose in-flight ingest
//! budget is 8 MiB, next to the same flood against the default 256 MiB budget (the
//! baseline, same run). Reported: answers by status, 429 latency, and server RSS (idle,
//! and peak `VmHWM`).
//!
//! Run: `cargo bench -p embers-bench --bench overload`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use embers_bench::process::{release_embers, status_kb, vm_hwm_kb, Server};

const CLIENTS: usize = 64;
const SECONDS: u64 = 15;

/// Folded stacks of about 1 MB, distinct per client.
fn body(client: usize) -> Vec<u8> {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < 1 << 20 {
        out.push_str(&format!("main;handler_{client};work_{} 1\n", i % 5000));
        i += 1;
    }
    out.into_bytes()
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
    refused_micros: AtomicU64,
}

fn flood(budget: Option<&str>) {
    let embers = release_embers();
    let dir = tempfile::tempdir().expect("temp dir");
    let extra: Vec<&str> = match budget {
        Some(b) => vec!["--max-inflight-ingest-bytes", b],
        None => Vec::new(),
    };
    let server = Server::start_with(&embers, &dir.path().join("data"), &extra);
    let pid = server.pid();
    let idle = status_kb(pid, "VmRSS").expect("running");
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (counts, stop, url) = (Arc::clone(&counts), Arc::clone(&stop), server.url.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let body = body(c);
                let url = format!("{url}/ingest?name=flood-{c}.cpu&from={now}&sampleRate=100");
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let status = agent
                        .post(&url)
                        .header("content-type", "text/plain")
                        .send(&body[..])
                        .map_or(0, |r| r.status().as_u16());
                    match status {
                        200 => counts.ok.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            counts
                                .refused_micros
                                .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                            counts.refused.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => counts.other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(SECONDS));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let peak = vm_hwm_kb(pid).unwrap_or(0);
    let (ok, refused) = (
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
    );
    println!(
        "budget {}: {ok} pushes stored ({:.0} MB/s), {refused} answered 429 (mean {:.1} ms), {} other; RSS idle {:.1} MiB, peak {:.1} MiB",
        budget.unwrap_or("256 MiB (default, baseline)"),
        ok as f64 * (1 << 20) as f64 / 1e6 / SECONDS as f64,
        counts.refused_micros.load(Ordering::Relaxed) as f64 / 1e3 / refused.max(1) as f64,
        counts.other.load(Ordering::Relaxed),
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
}

fn main() {
    flood(None);
    flood(Some("8388608"));
}
