//! `embers server` under hostile queries and overload: enormous ranges and steps get a
//! bounded answer, silent connections are closed, connections past the cap are refused,
//! bursts of pushes past the in-flight budget get 429 with `Retry-After` (and every
//! acknowledged push is stored exactly), the global series budget holds across services,
//! and `/metrics` counts it all by route and status code.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use support::{agent, collapsed, enc, folded_body, get, now, post, post_text, ServerHandle};

/// One sample at 100 Hz, as the store keeps CPU time: nanoseconds.
const NS: u64 = 10_000_000;

/// Pushes folded stacks for `app.cpu` at `time` through the legacy API.
fn push(server: &ServerHandle, app: &str, time: u64, body: &str) -> (u16, Option<String>, String) {
    let url = server.url(&format!(
        "/ingest?name={app}.cpu&from={time}&sampleRate=100"
    ));
    post_text(&url, body.as_bytes())
}

/// One Connect querier call in JSON.
fn querier(server: &ServerHandle, method: &str, body: &Value) -> (u16, Value) {
    let (status, text) = post(
        &server.url(&format!("/querier.v1.QuerierService/{method}")),
        "application/json",
        body.to_string().as_bytes(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The value of one `/metrics` sample line (0 when absent).
fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Sends a GET on an open connection and reads the response: status, headers, body.
fn http_get(stream: &mut TcpStream, path: &str) -> (u16, String, String) {
    write!(stream, "GET {path} HTTP/1.1\r\nhost: embers\r\n\r\n").unwrap();
    read_response(stream)
}

fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "closed: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

#[test]
fn enormous_ranges_and_steps_get_bounded_answers_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &["--max-query-range", "1d"]);
    let t = now();
    assert_eq!(
        push(&server, "bound", t, "main;work 30\nmain;idle 10\n").0,
        200
    );
    let query = "bound.cpu{}";

    // `from=0`: clamped to the oldest data, so the answer is exact.
    let whole = collapsed(&server, query, "0");
    assert_eq!(
        whole,
        BTreeMap::from([
            ("main;idle".to_owned(), 10 * NS),
            ("main;work".to_owned(), 30 * NS)
        ])
    );
    let (status, body) =
        get(&server.url(&format!("/render?query={}&from=0&until=now", enc(query))));
    assert_eq!(status, 200, "{body}");
    let render: Value = serde_json::from_str(&body).unwrap();
    assert!(render["timeline"]["samples"].as_array().unwrap().len() <= 11_000);

    // A far-future `until` is refused with a message saying why.
    for until in ["99999999999", "9223372036854775807"] {
        let (status, body) = get(&server.url(&format!(
            "/render?query={}&from=0&until={until}",
            enc(query)
        )));
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("in the future"), "{body}");
    }
    for path in [
        "/labels",
        "/label-values?label=service_name&",
        "/series",
        "/apps",
    ] {
        let sep = if path.ends_with('&') { "" } else { "?" };
        let (status, body) = get(&server.url(&format!("{path}{sep}from=0&until=99999999999")));
        assert_eq!(status, 400, "{path}: {body}");
    }

    // SelectSeries: a huge step is one bounded point, a tiny one is widened to at most
    // 11,000 points; both sum to the merged total.
    let profile_type = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let select = |step: f64| {
        json!({"profileTypeID": profile_type, "labelSelector": "{service_name=\"bound\"}",
               "start": "0", "end": ((t + 60) * 1000).to_string(), "step": step})
    };
    let (status, merged) = querier(&server, "SelectMergeStacktraces", &select(10.0));
    assert_eq!(status, 200, "{merged}");
    let total: f64 = merged["flamegraph"]["total"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, 40.0 * 10_000_000.0);
    for step in [1e300, f64::MAX, 0.001, 10.0] {
        let (status, series) = querier(&server, "SelectSeries", &select(step));
        assert_eq!(status, 200, "step {step}: {series}");
        let points = series["series"][0]["points"].as_array().unwrap();
        assert!(!points.is_empty() && points.len() <= 11_000, "step {step}");
        let sum: f64 = points.iter().map(|p| p["value"].as_f64().unwrap()).sum();
        assert_eq!(sum, total, "step {step}");
    }
    let far = json!({"profileTypeID": profile_type, "labelSelector": "{}",
                     "start": "0", "end": i64::MAX.to_string(), "step": 10.0});
    let (status, body) = querier(&server, "SelectSeries", &far);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_argument");

    // Data older than the limit: `from=0` now spans more than a day and is refused with
    // the limit in the message, while ordinary ranges still answer.
    assert_eq!(
        push(&server, "bound", t - 3 * 86_400, "main;old 5\n").0,
        200
    );
    let (status, body) =
        get(&server.url(&format!("/render?query={}&from=0&until=now", enc(query))));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("max_query_range") && body.contains("1d"),
        "{body}"
    );
    assert_eq!(collapsed(&server, query, "now-1h").len(), 2);
    let (status, body) = get(&server.url(&format!(
        "/render?query={}&from={}",
        enc(query),
        t - 3 * 86_400 - 60
    )));
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(&server.url("/healthz")).0, 200);
}

/// Waits until the server closes `stream` (a read returns end of file or a reset).
fn wait_closed(stream: &mut TcpStream) {
    // A generous bound so a broken server fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected bytes: {:?}", &buf[..n]),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn silent_and_idle_connections_are_closed_by_their_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(
        dir.path(),
        &["--header-timeout", "1", "--idle-timeout", "1"],
    );
    let mut silent = TcpStream::connect(&server.address).unwrap();
    wait_closed(&mut silent);
    // Served once, then quiet: the idle timeout closes it.
    let mut idle = TcpStream::connect(&server.address).unwrap();
    assert_eq!(http_get(&mut idle, "/healthz").0, 200);
    wait_closed(&mut idle);
    // A connection that sends a request in time is served.
    let mut ok = TcpStream::connect(&server.address).unwrap();
    assert_eq!(http_get(&mut ok, "/healthz").0, 200);
    let (_, _, metrics) = http_get(&mut ok, "/metrics");
    assert!(
        metric(
            &metrics,
            "embers_http_connections_closed_total{reason=\"header_timeout\"} "
        ) >= 1,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "embers_http_connections_closed_total{reason=\"idle_timeout\"} "
        ) >= 1,
        "{metrics}"
    );
}

/// Starts a push of `body` whose headers and first kilobyte are sent, the rest held back.
fn start_held_push(server: &ServerHandle, app: &str, time: u64, body: &str) -> TcpStream {
    let mut held = TcpStream::connect(&server.address).unwrap();
    write!(
        held,
        "POST /ingest?name={app}.cpu&from={time}&sampleRate=100 HTTP/1.1\r\nhost: embers\r\n\
         content-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    held.write_all(&body.as_bytes()[..1000]).unwrap();
    held.flush().unwrap();
    held
}

/// Polls `/metrics` until the server is receiving at least `bytes` of pushes (a held push
/// has passed its headers and taken its share of the budget).
fn wait_inflight(server: &ServerHandle, bytes: usize) {
    while metric(
        &get(&server.url("/metrics")).1,
        "embers_ingest_inflight_bytes ",
    ) < bytes as u64
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends the rest of a held push and reads its answer.
fn finish_held_push(held: &mut TcpStream, body: &str) -> (u16, String) {
    held.write_all(&body.as_bytes()[1000..]).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let (status, _, text) = read_response(held);
    (status, text)
}

#[test]
fn a_stop_finishes_the_request_in_flight_and_flushes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerHandle::start(dir.path(), &[]);
    let t = now();
    let body = folded_body("inflight", 50_000);
    let mut held = start_held_push(&server, "inflight", t, &body);
    // Polled until the server is receiving it (its bytes count in the budget).
    while metric(
        &get(&server.url("/metrics")).1,
        "embers_ingest_inflight_bytes ",
    ) < body.len() as u64
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.terminate();
    // The listener closes (polled), while the held push is still being received...
    while TcpStream::connect(&server.address).is_ok() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and it completes and is acknowledged.
    let (status, text) = finish_held_push(&mut held, &body);
    assert_eq!(status, 200, "{text}");
    drop(held);
    server.stop();
    let address = server.address.clone();
    drop(server);
    let server = ServerHandle::start_at(&address, dir.path(), &[]);
    let stored = collapsed(&server, "inflight.cpu{}", "now-1h");
    assert_eq!(stored.len(), body.lines().count());
    assert!(stored.values().all(|&v| v == NS));
}

#[test]
fn connections_beyond_the_cap_are_refused_and_served_ones_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &["--max-connections", "2"]);
    let mut a = TcpStream::connect(&server.address).unwrap();
    let mut b = TcpStream::connect(&server.address).unwrap();
    assert_eq!(http_get(&mut a, "/healthz").0, 200);
    assert_eq!(http_get(&mut b, "/healthz").0, 200);
    // Both slots are held by keep-alive connections: a third is answered 503 and closed.
    let mut c = TcpStream::connect(&server.address).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let (status, head, body) = http_get(&mut c, "/healthz");
    assert_eq!(status, 503, "{head}{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(body.contains("max_connections"), "{body}");
    // The served connections still work.
    assert_eq!(http_get(&mut a, "/healthz").0, 200);
    let (_, _, metrics) = http_get(&mut b, "/metrics");
    assert!(
        metric(
            &metrics,
            "embers_rejections_total{reason=\"max_connections\"} "
        ) >= 1,
        "{metrics}"
    );
    // Closing one frees its slot for a newcomer (polled: the server notices the close
    // asynchronously).
    drop(a);
    loop {
        let mut d = TcpStream::connect(&server.address).unwrap();
        match http_get(&mut d, "/healthz").0 {
            200 => break,
            503 => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("status {other}"),
        }
    }
}

#[test]
fn a_full_ingest_budget_answers_429_and_every_acknowledged_push_is_stored_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 300_000;
    let server = ServerHandle::start(
        dir.path(),
        &["--max-inflight-ingest-bytes", &budget.to_string()],
    );
    let t = now();
    // Hold most of the budget: a push whose headers promise 250 kB and whose body is
    // still on its way.
    let held_body = folded_body("held", 250_000);
    let mut held = start_held_push(&server, "held", t, &held_body);
    // Once the server holds its share, a large push no longer fits.
    wait_inflight(&server, held_body.len());
    let probe_body = folded_body("probe", 100_000);
    let (status, retry, body) = push(&server, "probe", t, &probe_body);
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"), "{body}");
    assert!(body.contains("max_inflight_ingest_bytes"), "{body}");
    // A burst of concurrent large pushes while the budget is held: all refused, and small
    // pushes that fit the rest of the budget are still served.
    let burst: Vec<_> = (0..8)
        .map(|i| {
            let server_url = server.url("");
            let body = folded_body(&format!("burst{i}"), 100_000);
            std::thread::spawn(move || {
                let url = format!("{server_url}/ingest?name=burst{i}.cpu&from={t}&sampleRate=100");
                let r = agent()
                    .post(&url)
                    .header("content-type", "text/plain")
                    .send(body.as_bytes())
                    .unwrap();
                (
                    i,
                    r.status().as_u16(),
                    r.headers().contains_key("retry-after"),
                )
            })
        })
        .collect();
    let mut refused = 1;
    for handle in burst {
        let (i, status, retry) = handle.join().unwrap();
        assert_eq!(status, 429, "burst push {i}");
        assert!(retry);
        refused += 1;
    }
    assert_eq!(push(&server, "small", t, "main;small 3\n").0, 200);
    // The held push completes and is acknowledged; afterwards large pushes fit again.
    let (status, body) = finish_held_push(&mut held, &held_body);
    assert_eq!(status, 200, "{body}");
    let after = folded_body("after", 100_000);
    assert_eq!(push(&server, "after", t, &after).0, 200);

    // Every acknowledged push is in the store exactly; refused ones left nothing.
    let stored = |app: &str| collapsed(&server, &format!("{app}.cpu{{}}"), "now-1h");
    let expect = |body: &str| -> BTreeMap<String, u64> {
        body.lines()
            .map(|l| (l.rsplit_once(' ').unwrap().0.to_owned(), NS))
            .collect()
    };
    assert!(
        stored("held") == expect(&held_body),
        "the held push differs"
    );
    assert!(stored("after") == expect(&after), "the push after differs");
    assert_eq!(
        stored("small"),
        BTreeMap::from([("main;small".to_owned(), 3 * NS)])
    );
    assert!(stored("probe").is_empty());
    for i in 0..8 {
        assert!(stored(&format!("burst{i}")).is_empty());
    }

    // `/metrics` counts the answers by route and code, and the rejections by reason.
    let (_, metrics) = get(&server.url("/metrics"));
    assert_eq!(
        metric(
            &metrics,
            "embers_http_requests_total{route=\"/ingest\",code=\"429\"} "
        ),
        refused
    );
    assert_eq!(
        metric(
            &metrics,
            "embers_http_requests_total{route=\"/ingest\",code=\"200\"} "
        ),
        3
    );
    assert_eq!(
        metric(
            &metrics,
            "embers_rejections_total{reason=\"ingest_inflight_bytes\"} "
        ),
        refused
    );
}

#[test]
fn the_global_series_budget_refuses_across_many_services() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(dir.path(), &["--max-series", "5"]);
    let t = now();
    for i in 0..5 {
        assert_eq!(push(&server, &format!("svc{i}"), t, "main 1\n").0, 200);
    }
    let (status, retry, body) = push(&server, "svc5", t, "main 1\n");
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(body.contains("max_series"), "{body}");
    // Existing series still take data; the refused one left nothing.
    assert_eq!(push(&server, "svc0", t, "main 1\n").0, 200);
    assert_eq!(
        collapsed(&server, "svc0.cpu{}", "now-1h"),
        BTreeMap::from([("main".to_owned(), 2 * NS)])
    );
    assert!(collapsed(&server, "svc5.cpu{}", "now-1h").is_empty());
    let (_, metrics) = get(&server.url("/metrics"));
    assert_eq!(
        metric(&metrics, "embers_rejections_total{reason=\"store_limit\"} "),
        1
    );
    assert_eq!(
        metric(
            &metrics,
            "embers_http_requests_total{route=\"/ingest\",code=\"429\"} "
        ),
        1
    );
}
