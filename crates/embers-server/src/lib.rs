//! `embers server`: accepts profiles from agents and Pyroscope clients, stores them in
//! the embedded [`embers_store::Store`], and answers queries.
//!
//! Routes:
//! - ingest: `POST /ingest` (also `/pyroscope/ingest`), Connect
//!   `POST /push.v1.PusherService/Push`, OTLP `POST /v1development/profiles` and
//!   OTLP/gRPC `ProfilesService/Export` (HTTP/2 on the same port);
//! - query: `GET /render`, `/render-diff`, `/labels`, `/label-values`, `/series`,
//!   `/apps` (each also under `/pyroscope/`), Connect
//!   `POST /querier.v1.QuerierService/{method}`, `POST /settings.v1.SettingsService/{method}`;
//! - ad-hoc profiles: Connect `POST /adhocprofiles.v1.AdHocProfileService/{method}`
//!   (upload, view, list and diff profile files, kept apart from the time series);
//! - operations: `/healthz`, `/ready`, `/metrics`, `/auth/whoami`;
//! - the web UI: `GET /` and its files under `/ui/` (see [`ui`]).
//!
//! Every query API bounds its range with [`QueryRange`]; ingest takes a share of an
//! in-flight byte budget (429 when full), queries a slot of a bounded pool (503 when none
//! frees up); connections are served by hyper with a cap and header and idle timeouts.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = embers_server::ServerConfig::default();
//! let server = embers_server::Server::start(config).await?;
//! println!("listening on {}", server.address());
//! server.run_until(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```

mod access;
mod adhoc;
mod budget;
mod config;
mod error;
mod flamebearer;
/// Grafana Pyroscope's `querier.v1`, `types.v1`, `settings.v1` and `google.v1` messages,
/// generated from `proto/grafana/` (with proto3 JSON) by `cargo run -p xtask -- protogen`.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub
)]
#[rustfmt::skip]
pub mod grafana_proto;
mod ingest;
pub mod limits;
mod metrics;
mod params;
mod profile_type;
mod querier;
mod query;
pub mod range;
mod serve;
mod spans;
pub mod tenant;
pub mod ui;
mod warnings;
/// Protobuf messages of the Pyroscope push and query APIs (in `embers-formats`, which
/// the agent shares).
pub use embers_formats::wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use embers_store::Store;

pub use adhoc::AdHocConfig;
pub use config::ServerConfig;
pub use embers_formats::IngestBudget;
pub use error::ApiError;
pub use ingest::pprof_puts;
pub use params::{parse_duration, parse_time};
pub use range::{QueryLimits, QueryRange};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    store: Arc<Store>,
    metrics: Arc<metrics::Metrics>,
    budget: Arc<IngestBudget>,
    query_limits: QueryLimits,
    queries: Arc<budget::QueryGate>,
    ingest_budget: Arc<budget::InflightBytes>,
    adhoc: adhoc::AdHoc,
    settings: Arc<querier::settings::Settings>,
    /// Take the tenant from `X-Scope-OrgID` (no auth file; behind a trusted proxy).
    multitenancy: bool,
    /// Each tenant's ingest byte rate (`ingest_bytes_per_second`), checked with the budget.
    ingest_rate: Arc<limits::rate::IngestRate>,
}

impl AppState {
    /// A request's time range, bounded by the server's [`QueryLimits`].
    fn range(
        &self,
        from: Option<&str>,
        until: Option<&str>,
        default: range::DefaultFrom,
    ) -> Result<QueryRange, ApiError> {
        QueryRange::parse(from, until, default, &self.query_limits, || {
            self.store.oldest_data()
        })
    }

    /// A Connect request's `start`/`end` (ms), bounded likewise.
    fn range_ms(&self, start: i64, end: i64) -> Result<QueryRange, ApiError> {
        QueryRange::from_millis(start, end, &self.query_limits, || self.store.oldest_data())
    }

    /// Runs a store read in a query slot, off the async workers.
    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = Arc::clone(&self.store);
        self.queries.run(move || f(&store)).await
    }
}

/// The HTTP routes over a store.
pub fn router(store: Arc<Store>, config: &ServerConfig) -> Router {
    router_with_metrics(store, config, Arc::default())
}

fn router_with_metrics(
    store: Arc<Store>,
    config: &ServerConfig,
    metrics: Arc<metrics::Metrics>,
) -> Router {
    let state = AppState {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        budget: Arc::new(ingest::budget(config)),
        query_limits: config.query_limits().unwrap_or_default(),
        queries: Arc::new(budget::QueryGate::new(
            config.query_slots(),
            Duration::from_millis(config.query_queue_timeout_ms),
        )),
        ingest_budget: Arc::new(budget::InflightBytes::new(
            config.max_inflight_ingest_bytes,
            config.max_body_bytes,
        )),
        adhoc: adhoc::AdHoc {
            profiles: Arc::new(store.adhoc(config.adhoc.limits())),
        },
        settings: Arc::new(querier::settings::Settings::open(&config.data_dir)),
        multitenancy: config.multitenancy,
        ingest_rate: Arc::new(limits::rate::IngestRate::new(config)),
    };
    let ingest_budget = || from_fn_with_state(state.clone(), budget::ingest_budget);
    let mut app = Router::new()
        .route(
            "/push.v1.PusherService/Push",
            post(ingest::push).route_layer(ingest_budget()),
        )
        .route(
            "/querier.v1.QuerierService/SelectMergeSpanProfile",
            post(spans::select_merge_span_profile),
        )
        .route(
            "/v1development/profiles",
            post(ingest::otlp::http).route_layer(ingest_budget()),
        )
        .route(
            ingest::otlp::GRPC_EXPORT,
            post(ingest::otlp::grpc).route_layer(ingest_budget()),
        )
        .route("/querier.v1.QuerierService/{method}", post(querier::call))
        .route(
            "/adhocprofiles.v1.AdHocProfileService/{method}",
            post(adhoc::call)
                .route_layer(ingest_budget())
                .layer(DefaultBodyLimit::max(adhoc::body_limit(
                    config.max_body_bytes,
                ))),
        )
        .route(
            "/settings.v1.SettingsService/{method}",
            post(querier::settings::call),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/auth/whoami", get(access::whoami))
        .route("/", get(ui::index))
        .route("/ui/{*path}", get(ui::file));
    for prefix in ["", "/pyroscope"] {
        app = app
            .route(
                &format!("{prefix}/ingest"),
                post(ingest::legacy).route_layer(ingest_budget()),
            )
            .route(&format!("{prefix}/render"), get(query::render))
            .route(&format!("{prefix}/render-diff"), get(query::render_diff))
            .route(&format!("{prefix}/labels"), get(query::labels))
            .route(&format!("{prefix}/label-values"), get(query::label_values))
            .route(&format!("{prefix}/series"), get(query::series))
            .route(&format!("{prefix}/apps"), get(query::apps));
    }
    app.layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), access::check))
        .layer(from_fn_with_state(metrics, budget::label_route))
        .with_state(state)
}

/// `GET /ready`: 503 with the reason while the store cannot persist writes.
async fn ready(State(state): State<AppState>) -> axum::response::Response {
    match state.store.unwritable_reason() {
        None => "ready\n".into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the store cannot persist writes: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let mut text = state.metrics.render(&state.store);
    text.push_str(&format!(
        "# HELP embers_ingest_inflight_bytes Request body bytes of pushes being served.\n\
         # TYPE embers_ingest_inflight_bytes gauge\nembers_ingest_inflight_bytes {}\n",
        state.ingest_budget.in_use()
    ));
    ([("content-type", "text/plain; version=0.0.4")], text)
}

/// A started server: bound, store open, maintenance running.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    router: Router,
    metrics: Arc<metrics::Metrics>,
    conn_limits: serve::ConnLimits,
    stop: Arc<AtomicBool>,
    maintenance: std::thread::JoinHandle<()>,
}

impl Server {
    /// Opens the store (recovering from a crash if need be) and binds the address.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
        let store_config = embers_store::Config {
            retention: config.retention().map_err(anyhow::Error::msg)?,
            flush_interval: Duration::from_secs(config.flush_interval_seconds.max(1)),
            max_series_per_service: config.max_series_per_service,
            max_series: config.max_series,
            cache_bytes: config.cache_bytes,
            ..embers_store::Config::default()
        };
        config.query_limits().map_err(anyhow::Error::msg)?;
        let dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open_dir(&dir, store_config))
            .await?
            .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
        let store = Arc::new(store);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let stop = Arc::new(AtomicBool::new(false));
        let maintenance = spawn_maintenance(Arc::clone(&store), Arc::clone(&stop));
        let metrics = Arc::<metrics::Metrics>::default();
        let router = router_with_metrics(Arc::clone(&store), &config, Arc::clone(&metrics));
        tracing::info!(address = %listener.local_addr()?, data = %config.data_dir.display(), "embers server ready");
        Ok(Server {
            listener,
            store,
            router,
            metrics,
            conn_limits: config.conn_limits(),
            stop,
            maintenance,
        })
    }

    /// The bound address (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes requests in
    /// flight, and flushes the store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        serve::serve(
            self.listener,
            self.router,
            self.conn_limits,
            self.metrics,
            shutdown,
        )
        .await;
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(move || self.maintenance.join()).await;
        let store = self.store;
        tokio::task::spawn_blocking(move || store.close()).await??;
        tracing::info!("embers server stopped; everything flushed");
        Ok(())
    }
}

/// Flushes the head every interval and compacts, until `stop`.
fn spawn_maintenance(store: Arc<Store>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("embers-maintenance".into())
        .spawn(move || {
            let interval = store.flush_interval();
            let mut next = std::time::Instant::now() + interval;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if std::time::Instant::now() < next {
                    continue;
                }
                next = std::time::Instant::now() + interval;
                if let Err(e) = store.flush() {
                    tracing::error!(error = %e, "flush failed; the WAL keeps the data, retrying");
                }
                if let Err(e) = store.compact(params::now()) {
                    tracing::error!(error = %e, "compaction failed; queries read finer blocks meanwhile");
                }
            }
        })
        .expect("spawning a thread")
}
