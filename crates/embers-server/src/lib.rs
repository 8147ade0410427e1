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
//! Every request is for one tenant ([`tenant`]), decided before any handler runs, and
//! reaches only that tenant's store ([`tenants`]: one store per tenant, the default one
//! at the data directory's root).
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
pub mod auth;
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
pub mod origin;
mod params;
mod profile_type;
mod querier;
mod query;
pub mod range;
mod serve;
mod spans;
pub mod tenant;
pub mod tenants;
pub mod tls;
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

pub use adhoc::AdHocConfig;
pub use config::ServerConfig;
pub use embers_formats::IngestBudget;
pub use error::ApiError;
pub use ingest::pprof_puts;
pub use params::{parse_duration, parse_time};
pub use range::{QueryLimits, QueryRange};
pub use tenants::Tenants;

/// What every handler shares. Handlers reach a tenant's data only through the
/// [`tenants::Tenant`] extractor (the request's tenant, decided by `access::check`).
#[derive(Debug, Clone)]
pub struct AppState {
    tenants: Arc<Tenants>,
    metrics: Arc<metrics::Metrics>,
    budget: Arc<IngestBudget>,
    queries: Arc<budget::QueryGate>,
    ingest_budget: Arc<budget::InflightBytes>,
    /// Take the tenant from `X-Scope-OrgID` (no auth file; behind a trusted proxy).
    multitenancy: bool,
    /// Tokens and scopes (see [`access`]).
    access: Arc<access::Access>,
    /// Each tenant's ingest byte rate (`ingest_bytes_per_second`), checked with the budget.
    ingest_rate: Arc<limits::rate::IngestRate>,
}

/// The HTTP routes over the tenants' stores; fails when the auth file is refused.
pub fn router(tenants: Arc<Tenants>, config: &ServerConfig) -> anyhow::Result<Router> {
    let access = access::Access::from_config(config)?;
    Ok(router_with_metrics(tenants, config, Arc::default(), access))
}

fn router_with_metrics(
    tenants: Arc<Tenants>,
    config: &ServerConfig,
    metrics: Arc<metrics::Metrics>,
    access: access::Access,
) -> Router {
    let state = AppState {
        tenants,
        metrics: Arc::clone(&metrics),
        budget: Arc::new(ingest::budget(config)),
        queries: Arc::new(budget::QueryGate::new(
            config.query_slots(),
            Duration::from_millis(config.query_queue_timeout_ms),
        )),
        ingest_budget: Arc::new(budget::InflightBytes::new(
            config.max_inflight_ingest_bytes,
            config.max_body_bytes,
        )),
        multitenancy: config.multitenancy,
        access: Arc::new(access),
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
        .layer(from_fn_with_state(
            origin::layer_state(config),
            origin::check,
        ))
        .layer(from_fn_with_state(metrics, budget::label_route))
        .with_state(state)
}

/// `GET /ready`: 503 with the reasons while any tenant's store cannot persist writes
/// (every open store is checked: one server, one disk, one answer).
async fn ready(State(state): State<AppState>) -> axum::response::Response {
    let reasons: Vec<String> = state
        .tenants
        .all()
        .into_iter()
        .filter_map(|(id, data)| {
            let reason = data.store.unwritable_reason()?;
            Some(format!("tenant {id}: {reason}"))
        })
        .collect();
    if reasons.is_empty() {
        return "ready\n".into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "not ready: the store cannot persist writes: {}\n",
            reasons.join("; ")
        ),
    )
        .into_response()
}

async fn metrics_text(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let mut text = state.metrics.render(&state.tenants);
    text.push_str(&format!(
        "# HELP embers_ingest_inflight_bytes Request body bytes of pushes being served.\n\
         # TYPE embers_ingest_inflight_bytes gauge\nembers_ingest_inflight_bytes {}\n",
        state.ingest_budget.in_use()
    ));
    text.push_str(&state.access.render_metrics());
    ([("content-type", "text/plain; version=0.0.4")], text)
}

/// A started server: bound, store open, maintenance running.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    tenants: Arc<Tenants>,
    router: Router,
    metrics: Arc<metrics::Metrics>,
    conn_limits: serve::ConnLimits,
    tls: Option<Arc<tls::Tls>>,
    stop: Arc<AtomicBool>,
    maintenance: std::thread::JoinHandle<()>,
}

impl Server {
    /// Opens the store (recovering from a crash if need be) and binds the address.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
        config.retention().map_err(anyhow::Error::msg)?;
        config.query_limits().map_err(anyhow::Error::msg)?;
        let tls = tls::Tls::from_settings(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
        let opening = config.clone();
        let tenants = tokio::task::spawn_blocking(move || Tenants::open(&opening))
            .await?
            .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
        let tenants = Arc::new(tenants);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let stop = Arc::new(AtomicBool::new(false));
        let maintenance = spawn_maintenance(Arc::clone(&tenants), Arc::clone(&stop));
        let metrics = Arc::<metrics::Metrics>::default();
        let access = access::Access::from_config(&config).with_context(|| {
            let file = config
                .auth_file
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            format!("loading the auth file {}", file.display())
        })?;
        let router =
            router_with_metrics(Arc::clone(&tenants), &config, Arc::clone(&metrics), access);
        if let Some(tls) = &tls {
            tls.watch(Duration::from_secs(10));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %listener.local_addr()?, %scheme, data = %config.data_dir.display(), "embers server ready");
        Ok(Server {
            listener,
            tenants,
            router,
            metrics,
            conn_limits: config.conn_limits(),
            tls,
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
            self.tls,
            shutdown,
        )
        .await;
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(move || self.maintenance.join()).await;
        let tenants = self.tenants;
        tokio::task::spawn_blocking(move || tenants.close()).await??;
        tracing::info!("embers server stopped; everything flushed");
        Ok(())
    }
}

/// Flushes every tenant's head every interval and compacts, until `stop`.
fn spawn_maintenance(tenants: Arc<Tenants>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("embers-maintenance".into())
        .spawn(move || {
            let interval = tenants.flush_interval();
            let mut next = std::time::Instant::now() + interval;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if std::time::Instant::now() < next {
                    continue;
                }
                next = std::time::Instant::now() + interval;
                tenants.maintain(params::now());
            }
        })
        .expect("spawning a thread")
}
