//! Prometheus metrics: request counters and latency histograms for ingest and queries,
//! plus the store's own counters, in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use embers_store::Store;

use crate::tenants::Tenants;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, since: Instant) {
        let secs = since.elapsed().as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The route a response answered (the matched path pattern, e.g. `/render`), put in the
/// response's extensions so the connection layer can count responses by route.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub std::sync::Arc<str>);

/// Why a request or connection was turned away before being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// The in-flight ingest byte budget was full (429).
    IngestInflight,
    /// Every query slot stayed busy past the queue timeout (503).
    QueryQueue,
    /// `max_connections` reached (503).
    Connections,
    /// The store refused for a limit (series budgets; 429).
    StoreLimit,
    /// The store cannot persist now (503).
    StoreUnavailable,
    /// A tenant pushed faster than its `ingest_bytes_per_second` (429).
    IngestRate,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Rejection::IngestInflight => "ingest_inflight_bytes",
            Rejection::QueryQueue => "query_queue",
            Rejection::Connections => "max_connections",
            Rejection::StoreLimit => "store_limit",
            Rejection::StoreUnavailable => "store_unavailable",
            Rejection::IngestRate => "ingest_rate",
        }
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by (route, status code).
    http: Mutex<BTreeMap<(String, u16), u64>>,
    rejections: Mutex<BTreeMap<Rejection, u64>>,
    /// Connections closed by the server, by reason.
    closed: Mutex<BTreeMap<&'static str, u64>>,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    ingest_requests: AtomicU64,
    ingest_errors: AtomicU64,
    ingest_bytes: AtomicU64,
    ingest_series_puts: AtomicU64,
    ingest_latency: Histogram,
    query_requests: AtomicU64,
    query_errors: AtomicU64,
    query_latency: Histogram,
}

impl Metrics {
    /// Starts timing a request.
    pub fn start(&self) -> Instant {
        Instant::now()
    }

    /// A request whose body was accepted.
    pub fn ingested(&self, bytes: usize, puts: usize, since: Instant) {
        self.ingest_requests.fetch_add(1, Ordering::Relaxed);
        self.ingest_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.ingest_series_puts
            .fetch_add(puts as u64, Ordering::Relaxed);
        self.ingest_latency.observe(since);
    }

    /// A refused ingest request.
    pub fn ingest_error(&self) {
        self.ingest_requests.fetch_add(1, Ordering::Relaxed);
        self.ingest_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A finished query.
    pub fn queried(&self, ok: bool, since: Instant) {
        self.query_requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.query_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.query_latency.observe(since);
    }

    /// A response sent on `route` with `code`.
    pub fn http_response(&self, route: &str, code: u16) {
        *lock(&self.http)
            .entry((route.to_owned(), code))
            .or_insert(0) += 1;
    }

    /// A request or connection turned away.
    pub fn rejected(&self, why: Rejection) {
        *lock(&self.rejections).entry(why).or_insert(0) += 1;
    }

    /// A connection accepted for serving.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A served connection ended.
    pub fn connection_ended(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection the server closed for a timeout (or shutdown).
    pub fn connection_closed(&self, why: crate::serve::Closed) {
        let label = match why {
            crate::serve::Closed::HeaderTimeout => "header_timeout",
            crate::serve::Closed::IdleTimeout => "idle_timeout",
            crate::serve::Closed::Shutdown => "shutdown",
        };
        *lock(&self.closed).entry(label).or_insert(0) += 1;
    }

    fn render_http(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP embers_http_requests_total HTTP responses by route and status code.\n\
             # TYPE embers_http_requests_total counter"
        );
        for ((route, code), n) in lock(&self.http).iter() {
            let _ = writeln!(
                out,
                "embers_http_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP embers_rejections_total Requests and connections turned away, by reason.\n\
             # TYPE embers_rejections_total counter"
        );
        for (why, n) in lock(&self.rejections).iter() {
            let _ = writeln!(
                out,
                "embers_rejections_total{{reason=\"{}\"}} {n}",
                why.label()
            );
        }
        let _ = writeln!(
            out,
            "# HELP embers_http_connections_closed_total Connections the server closed, by reason.\n\
             # TYPE embers_http_connections_closed_total counter"
        );
        for (why, n) in lock(&self.closed).iter() {
            let _ = writeln!(
                out,
                "embers_http_connections_closed_total{{reason=\"{why}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP embers_http_connections Connections being served.\n\
             # TYPE embers_http_connections gauge\nembers_http_connections {}\n\
             # HELP embers_http_connections_total Connections accepted for serving.\n\
             # TYPE embers_http_connections_total counter\nembers_http_connections_total {}",
            self.connections_open.load(Ordering::Relaxed).max(0),
            self.connections_total.load(Ordering::Relaxed)
        );
    }

    /// The exposition text. Store figures are sums over every tenant's store (a label
    /// per tenant would grow the exposition with `max_tenants`); `embers_tenants` counts
    /// the tenants with data.
    pub fn render(&self, tenants: &Tenants) -> String {
        let all = tenants.all();
        let stores: Vec<&Store> = all.iter().map(|(_, data)| data.store.as_ref()).collect();
        let sum = |f: &dyn Fn(&Store) -> u64| stores.iter().map(|s| f(s)).sum::<u64>();
        let mut out = String::new();
        self.render_http(&mut out);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "embers_ingest_requests_total",
            "Ingest requests received.",
            load(&self.ingest_requests),
        );
        counter(
            &mut out,
            "embers_ingest_errors_total",
            "Ingest requests refused.",
            load(&self.ingest_errors),
        );
        counter(
            &mut out,
            "embers_ingest_bytes_total",
            "Request body bytes accepted.",
            load(&self.ingest_bytes),
        );
        counter(
            &mut out,
            "embers_ingest_series_puts_total",
            "Series trees stored.",
            load(&self.ingest_series_puts),
        );
        self.ingest_latency.render(
            "embers_ingest_duration_seconds",
            "Ingest latency, until durable.",
            &mut out,
        );
        counter(
            &mut out,
            "embers_query_requests_total",
            "Queries answered.",
            load(&self.query_requests),
        );
        counter(
            &mut out,
            "embers_query_errors_total",
            "Queries that failed.",
            load(&self.query_errors),
        );
        self.query_latency
            .render("embers_query_duration_seconds", "Query latency.", &mut out);
        counter(
            &mut out,
            "embers_store_wal_syncs_total",
            "WAL group commits (fsyncs).",
            sum(&|s| load(&s.stats.wal_syncs)),
        );
        counter(
            &mut out,
            "embers_store_wal_bytes_total",
            "Bytes written to the WAL.",
            sum(&|s| load(&s.stats.wal_bytes)),
        );
        counter(
            &mut out,
            "embers_store_flushes_total",
            "Head flushes.",
            sum(&|s| load(&s.stats.flushes)),
        );
        counter(
            &mut out,
            "embers_store_compactions_total",
            "Aggregates written.",
            sum(&|s| load(&s.stats.compactions)),
        );
        counter(
            &mut out,
            "embers_store_deleted_objects_total",
            "Objects deleted (retention, superseded).",
            sum(&|s| load(&s.stats.expired_objects)),
        );
        counter(
            &mut out,
            "embers_store_duplicate_writes_total",
            "Pushes acknowledged as retries of one already stored (same sample ID).",
            sum(&|s| load(&s.stats.duplicates)),
        );
        for (name, help, v) in [
            (
                "embers_store_quarantined_objects_total",
                "Objects moved to quarantine (damaged or unknown).",
                sum(&|s| load(&s.stats.quarantined)),
            ),
            (
                "embers_store_damaged_reads_total",
                "Blocks found damaged by a read; the read answered from the rest.",
                sum(&|s| load(&s.stats.damaged_reads)),
            ),
            (
                "embers_store_degraded_reads_total",
                "Queries answered with a warning that data in their range may be missing.",
                sum(&|s| load(&s.stats.degraded_reads)),
            ),
        ] {
            counter(&mut out, name, help, v);
        }
        counter(
            &mut out,
            "embers_store_wal_write_errors_total",
            "WAL writes that failed (their pushes were refused with 503).",
            sum(&|s| load(&s.stats.write_errors)),
        );
        counter(
            &mut out,
            "embers_store_flush_errors_total",
            "Flushes that failed (retried; the WAL keeps the data).",
            sum(&|s| load(&s.stats.flush_errors)),
        );
        counter(
            &mut out,
            "embers_store_forgotten_request_ids_total",
            "Request IDs forgotten early to stay under the cap.",
            sum(&|s| load(&s.stats.forgotten_request_ids)),
        );
        gauge(
            &mut out,
            "embers_store_unwritable",
            "1 while the store cannot persist writes (disk full, failing storage).",
            u64::from(stores.iter().any(|s| s.unwritable_reason().is_some())),
        );
        let (mut series, mut runs, mut aggs) = (0, 0, 0);
        for store in &stores {
            let (s, r, a) = store.counts();
            (series, runs, aggs) = (series + s, runs + r, aggs + a);
        }
        gauge(
            &mut out,
            "embers_store_series",
            "Series in the catalog.",
            series as u64,
        );
        gauge(
            &mut out,
            "embers_store_run_objects",
            "Run objects (flushed 10 s leaves).",
            runs as u64,
        );
        gauge(
            &mut out,
            "embers_store_aggregate_objects",
            "Aggregate objects.",
            aggs as u64,
        );
        gauge(
            &mut out,
            "embers_store_head_pairs",
            "Call-path values in memory, not flushed yet.",
            sum(&|s| s.head_pairs() as u64),
        );
        gauge(
            &mut out,
            "embers_tenants",
            "Tenants with data (the default one included), each with its own store.",
            stores.len() as u64,
        );
        gauge(
            &mut out,
            "embers_block_cache_bytes",
            "Decoded blocks cached for queries, one budget shared by every tenant.",
            tenants.cache_bytes() as u64,
        );
        out
    }
}
