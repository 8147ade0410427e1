//! The real server on a full disk: a small tmpfs filled by a filler file. Pushes are
//! refused with 503 and `Retry-After`, refused data is never queryable, the store reports
//! itself unwritable; once the filler is gone, pushes are accepted again without a
//! restart, and every acknowledged sample is there exactly once, also after a restart.
//!
//! Mounting a tmpfs needs root (CI runs as root); where it is refused the test says so
//! and returns.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

#[path = "../../embers-store/tests/support/tmpfs.rs"]
mod tmpfs;

use std::collections::BTreeMap;

use support::{collapsed, enc, get, now, post_text, ServerHandle};
use tmpfs::Tmpfs;

/// Push `i`: `main;w<i>` with 1000 + i samples, and enough distinct padding stacks that
/// its WAL record needs fresh pages on disk.
fn push(server: &ServerHandle, from: u64, i: u64) -> (u16, Option<String>, String) {
    let mut body = format!("main;w{i} {}\n", 1000 + i);
    for k in 0..300 {
        body.push_str(&format!("main;pad-{i}-{k}-{} 1\n", "x".repeat(100)));
    }
    let url = server.url(&format!(
        "/ingest?name={}&from={from}&format=folded",
        enc("disk.cpu")
    ));
    post_text(&url, body.as_bytes())
}

/// The `w<i>` stacks a query returns, by `i`.
fn pushed(server: &ServerHandle) -> BTreeMap<u64, u64> {
    collapsed(server, "disk.cpu", "now-1h")
        .into_iter()
        .filter_map(|(stack, v)| Some((stack.strip_prefix("main;w")?.parse().ok()?, v)))
        .collect()
}

fn metric(server: &ServerHandle, name: &str) -> u64 {
    let (status, body) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn a_full_disk_refuses_pushes_invisibly_and_heals_without_a_restart() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let data = fs.path().join("data");
    // No flush until the end: the WAL segment holding the failed writes is replayed.
    let flush = ["--flush-interval", "3600"];
    let mut server = ServerHandle::start(&data, &flush);
    let from = now() - 60;
    let mut acked = Vec::new();
    for i in 0..3 {
        let (status, _, body) = push(&server, from, i);
        assert_eq!(status, 200, "{body}");
        acked.push(i);
    }
    let first = pushed(&server);
    let per_sample = first[&0] / 1000;
    assert!(per_sample > 0);
    let expected = |acked: &[u64]| -> BTreeMap<u64, u64> {
        acked
            .iter()
            .map(|&i| (i, (1000 + i) * per_sample))
            .collect()
    };
    assert_eq!(first, expected(&acked));
    assert_eq!(metric(&server, "embers_store_unwritable"), 0);
    assert_eq!(get(&server.url("/ready")).0, 200);

    let filler = fs.fill();
    for i in 3..6 {
        let (status, retry, body) = push(&server, from, i);
        assert_eq!(status, 503, "push {i} on a full disk: {body}");
        assert!(retry.is_some(), "503 without Retry-After");
        assert!(
            !body.contains(&*data.to_string_lossy()),
            "echoes a path: {body}"
        );
        assert_eq!(
            pushed(&server),
            expected(&acked),
            "refused push {i} visible"
        );
    }
    // While full: unwritable, `/ready` says why, and the errors are counted.
    assert_eq!(metric(&server, "embers_store_unwritable"), 1);
    let (ready, why) = get(&server.url("/ready"));
    assert_eq!(ready, 503, "{why}");
    assert!(why.contains("write-ahead log"), "{why}");
    assert!(metric(&server, "embers_store_wal_write_errors_total") >= 3);

    std::fs::remove_file(filler).unwrap();
    for i in 6..9 {
        let (status, _, body) = push(&server, from, i);
        assert_eq!(status, 200, "push {i} after space returned: {body}");
        acked.push(i);
    }
    assert_eq!(pushed(&server), expected(&acked));
    // (A flush that failed while full would keep it unwritable until the next one.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while metric(&server, "embers_store_unwritable") != 0 {
        assert!(std::time::Instant::now() < deadline, "still unwritable");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(get(&server.url("/ready")).0, 200);

    // Restarts, after SIGKILL (replaying the WAL, whose failed writes were cut back, so
    // replay finds nothing damaged) and clean: what was acknowledged is there once,
    // nothing refused came back.
    server.kill();
    let mut server = ServerHandle::start(&data, &flush);
    assert_eq!(pushed(&server), expected(&acked));
    let log = server.log.lock().unwrap().clone();
    assert!(
        !log.contains("DATA LOSS") && !log.contains("torn tail"),
        "replay found bytes of refused writes:\n{log}"
    );
    let (status, _, body) = push(&server, from, 9);
    assert_eq!(status, 200, "{body}");
    acked.push(9);
    server.stop();
    let server = ServerHandle::start(&data, &flush);
    assert_eq!(pushed(&server), expected(&acked));
    drop(server);
}
