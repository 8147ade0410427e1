//! `embers server`: settings from defaults, a TOML file, `EMBERS_*` variables and flags
//! (later ones win), logging, and a graceful stop on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use embers_server::{Server, ServerConfig};

/// Arguments of `embers server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML file with any of the settings below (snake_case keys, e.g. `data_dir`).
    #[arg(long, env = "EMBERS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:4040].
    #[arg(long, env = "EMBERS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./embers-data].
    #[arg(long, env = "EMBERS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Delete data older than this (e.g. 30d, 12h) [default: keep everything].
    #[arg(long, env = "EMBERS_RETENTION", value_name = "AGE")]
    pub retention: Option<String>,
    /// Largest request body in bytes, as sent [default: 16 MiB].
    #[arg(long, env = "EMBERS_MAX_BODY_BYTES", value_name = "N")]
    pub max_body_bytes: Option<usize>,
    /// Largest body after decompression [default: 64 MiB].
    #[arg(long, env = "EMBERS_MAX_DECODED_BYTES", value_name = "N")]
    pub max_decoded_bytes: Option<usize>,
    /// Most labels per series [default: 64].
    #[arg(long, env = "EMBERS_MAX_LABELS_PER_SERIES", value_name = "N")]
    pub max_labels_per_series: Option<usize>,
    /// Most series per service [default: 10000].
    #[arg(long, env = "EMBERS_MAX_SERIES_PER_SERVICE", value_name = "N")]
    pub max_series_per_service: Option<usize>,
    /// Most series in the whole store, over all services [default: 1000000].
    #[arg(long, env = "EMBERS_MAX_SERIES", value_name = "N")]
    pub max_series: Option<usize>,
    /// Longest time range one query may cover (e.g. 32d) [default: 32d].
    #[arg(long, env = "EMBERS_MAX_QUERY_RANGE", value_name = "AGE")]
    pub max_query_range: Option<String>,
    /// Queries computed at once; 0 = number of CPUs [default: 0].
    #[arg(long, env = "EMBERS_MAX_CONCURRENT_QUERIES", value_name = "N")]
    pub max_concurrent_queries: Option<usize>,
    /// Milliseconds a query waits for a free slot before a 503 [default: 2000].
    #[arg(long, env = "EMBERS_QUERY_QUEUE_TIMEOUT_MS", value_name = "MS")]
    pub query_queue_timeout_ms: Option<u64>,
    /// Bytes of ingest bodies in flight at once before 429s [default: 256 MiB].
    #[arg(long, env = "EMBERS_MAX_INFLIGHT_INGEST_BYTES", value_name = "N")]
    pub max_inflight_ingest_bytes: Option<usize>,
    /// Seconds a connection has to send a complete request head [default: 10].
    #[arg(long, env = "EMBERS_HEADER_TIMEOUT", value_name = "SECONDS")]
    pub header_timeout: Option<u64>,
    /// Seconds a keep-alive connection may wait for its next request [default: 120].
    #[arg(long, env = "EMBERS_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    /// Connections served at once; more are answered 503 [default: 1024].
    #[arg(long, env = "EMBERS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds between flushes of recent data to block files [default: 10].
    #[arg(long, env = "EMBERS_FLUSH_INTERVAL", value_name = "SECONDS")]
    pub flush_interval: Option<u64>,
    /// Log format: text or json [default: text]. Levels: RUST_LOG (default info).
    #[arg(long, env = "EMBERS_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Origins (scheme://host[:port], comma-separated) of web UIs served elsewhere that may
    /// POST here from a browser and get CORS headers; other foreign origins are refused.
    #[arg(
        long,
        env = "EMBERS_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Option<Vec<String>>,
    /// Host names this server answers to (comma-separated; IP addresses and localhost always
    /// pass), against DNS rebinding [default: any].
    #[arg(
        long,
        env = "EMBERS_ALLOWED_HOSTS",
        value_name = "HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Option<Vec<String>>,
    /// Take the request's host and scheme from X-Forwarded-Host/-Proto (behind a proxy).
    #[arg(long, env = "EMBERS_TRUST_PROXY_HEADERS")]
    pub trust_proxy_headers: bool,
    /// TOML file of tokens, their tenants and scopes; every API request then needs one
    /// (see `embers token new`). Reloaded when it changes and on SIGHUP.
    #[arg(long, env = "EMBERS_AUTH_FILE", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Serve /metrics without a token even with an auth file [default: needs `admin`].
    #[arg(long, env = "EMBERS_METRICS_OPEN")]
    pub metrics_open: bool,
    /// Take each request's tenant from `X-Scope-OrgID` (without an auth file; for use
    /// behind an authenticating proxy, as Grafana Pyroscope does). Each tenant's data is
    /// kept apart, in `DATA_DIR/tenants/ID/`.
    #[arg(long, env = "EMBERS_MULTITENANCY")]
    pub multitenancy: bool,
    /// Most tenants with data besides the default one [default: 1000].
    #[arg(long, env = "EMBERS_MAX_TENANTS", value_name = "N")]
    pub max_tenants: Option<usize>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key); reloaded on SIGHUP
    /// or when the file changes.
    #[arg(long, env = "EMBERS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "EMBERS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

impl ServerArgs {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                ServerConfig::from_toml(&text)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("in {}", path.display()))?
            }
            None => ServerConfig::default(),
        };
        macro_rules! set {
            ($($field:ident => $target:ident),*) => {$(
                if let Some(v) = self.$field.clone() { c.$target = v.into(); }
            )*};
        }
        set!(listen => listen, data_dir => data_dir, max_body_bytes => max_body_bytes,
             max_decoded_bytes => max_decoded_bytes, max_labels_per_series => max_labels_per_series,
             max_series_per_service => max_series_per_service, flush_interval => flush_interval_seconds,
             log_format => log_format, max_series => max_series,
             max_query_range => max_query_range, max_concurrent_queries => max_concurrent_queries,
             query_queue_timeout_ms => query_queue_timeout_ms,
             max_inflight_ingest_bytes => max_inflight_ingest_bytes,
             header_timeout => header_timeout_seconds, idle_timeout => idle_timeout_seconds,
             max_connections => max_connections, max_tenants => max_tenants);
        c.multitenancy |= self.multitenancy;
        if let Some(v) = &self.allowed_origins {
            c.allowed_origins = v.clone();
        }
        if let Some(v) = &self.allowed_hosts {
            c.allowed_hosts = v.clone();
        }
        c.trust_proxy_headers |= self.trust_proxy_headers;
        c.origin_policy()?;
        if let Some(file) = &self.auth_file {
            c.auth_file = Some(file.clone());
        }
        c.metrics_open |= self.metrics_open;
        if let Some(path) = &self.tls_cert {
            c.tls_cert = Some(path.clone());
        }
        if let Some(path) = &self.tls_key {
            c.tls_key = Some(path.clone());
        }
        if let Some(r) = &self.retention {
            c.retention = Some(r.clone());
        }
        c.retention().map_err(anyhow::Error::msg)?;
        c.query_limits().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

pub(crate) fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("unknown log format {other:?}: use text or json"),
    }
    Ok(())
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    init_logging(&config.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::start(config).await?;
        server.run_until(shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("stopping: finishing requests in flight and flushing");
}
