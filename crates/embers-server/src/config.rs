//! Server settings: defaults, overridden by a TOML file, then by `EMBERS_*` environment
//! variables and flags (the CLI merges those two through clap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `embers server` can be told.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory (created if missing).
    pub data_dir: PathBuf,
    /// Keep data this long (`30d`, `12h`); empty keeps everything.
    pub retention: Option<String>,
    /// Largest request body, in bytes, as sent (compressed).
    pub max_body_bytes: usize,
    /// Largest body after decompression.
    pub max_decoded_bytes: usize,
    /// Most labels on one series.
    pub max_labels_per_series: usize,
    /// Longest label name or value.
    pub max_label_length: usize,
    /// Most series per service.
    pub max_series_per_service: usize,
    /// Most series in the whole store, over every service (429 past it).
    pub max_series: usize,
    /// Longest query range (`32d`, `12h`); see `range.rs` for how `from` is clamped
    /// first.
    pub max_query_range: String,
    /// Queries computed at once; 0: the number of CPUs (at least 2).
    pub max_concurrent_queries: usize,
    /// Milliseconds a query waits for a free slot before a 503.
    pub query_queue_timeout_ms: u64,
    /// Bytes of ingest request bodies in flight at once (429 past it).
    pub max_inflight_ingest_bytes: usize,
    /// Seconds a connection has to send a complete request head.
    pub header_timeout_seconds: u64,
    /// Seconds a keep-alive connection may stay without a request.
    pub idle_timeout_seconds: u64,
    /// Connections served at once (503 past it).
    pub max_connections: usize,
    /// The other bounds of one ingest request (`[ingest]` in the TOML file). The four
    /// above (body sizes, label count and length) are set there, not here: their keys
    /// in this table are ignored.
    pub ingest: embers_formats::IngestBudget,
    /// Seconds between flushes of the in-memory head.
    pub flush_interval_seconds: u64,
    /// Bytes of decoded blocks cached for queries.
    pub cache_bytes: usize,
    /// `text` or `json` logs.
    pub log_format: String,
    /// Uploaded ad-hoc profiles kept (`[adhoc]` in the TOML file).
    pub adhoc: crate::AdHocConfig,
    /// Tokens, their scopes and tenants (TOML); unset: no authentication.
    pub auth_file: Option<PathBuf>,
    /// Without an auth file, take each request's tenant from `X-Scope-OrgID` (for use
    /// behind an authenticating proxy, as Grafana Pyroscope does).
    pub multitenancy: bool,
    /// Origins (`scheme://host[:port]`, exact, no wildcards) of web pages served
    /// elsewhere that may change state here from a browser (a UI on another host);
    /// they also get CORS headers. Every other foreign `Origin` is refused on
    /// POST/PUT/PATCH/DELETE (see `origin.rs`).
    pub allowed_origins: Vec<String>,
    /// Host names this server answers to (IP addresses and `localhost` always pass);
    /// empty: any. Set it on a network where a page could re-point its own name at the
    /// server (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Take the request's host and scheme from `X-Forwarded-Host`/`X-Forwarded-Proto`
    /// (only behind a proxy that sets them; any client can send them).
    pub trust_proxy_headers: bool,
    /// Serve `/metrics` without a token even with an auth file (for a Prometheus that
    /// cannot send one); otherwise it needs the `admin` scope.
    pub metrics_open: bool,
    /// Most tenants with data besides the default one: each has a store of its own
    /// (files, a WAL, memory for its head and catalog), so a flood of tenant IDs cannot
    /// exhaust the server. A new tenant's first write past it is refused (429).
    pub max_tenants: usize,
    /// PEM certificate chain (the server's certificate first) to serve HTTPS with;
    /// needs `tls_key`. Unset: plain HTTP. Reloaded on SIGHUP or when the file changes.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Limits of every tenant (`[limits]`: series, retention, ingest bytes/s); a key
    /// unset here falls back to the top-level key of the same name (see `limits.rs`).
    pub limits: crate::limits::LimitsTable,
    /// Per-tenant overrides of `[limits]` (`[tenants.<id>]`, IDs checked like
    /// `X-Scope-OrgID`).
    #[serde(deserialize_with = "crate::limits::tenant_tables")]
    pub tenants: std::collections::BTreeMap<crate::tenant::TenantId, crate::limits::LimitsTable>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 4040)),
            data_dir: PathBuf::from("embers-data"),
            retention: None,
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
            max_labels_per_series: 64,
            max_label_length: 1024,
            max_series_per_service: 10_000,
            max_series: 1_000_000,
            max_query_range: "32d".into(),
            max_concurrent_queries: 0,
            query_queue_timeout_ms: 2_000,
            max_inflight_ingest_bytes: 256 << 20,
            header_timeout_seconds: 10,
            idle_timeout_seconds: 120,
            max_connections: 1024,
            ingest: embers_formats::IngestBudget::default(),
            flush_interval_seconds: 10,
            cache_bytes: 256 << 20,
            log_format: "text".into(),
            adhoc: crate::AdHocConfig::default(),
            auth_file: None,
            multitenancy: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            trust_proxy_headers: false,
            metrics_open: false,
            max_tenants: 1000,
            tls_cert: None,
            tls_key: None,
            limits: crate::limits::LimitsTable::default(),
            tenants: std::collections::BTreeMap::new(),
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file (every key optional, unknown keys refused).
    pub fn from_toml(text: &str) -> Result<ServerConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The retention as a duration.
    pub fn retention(&self) -> Result<Option<Duration>, String> {
        match self.retention.as_deref().map(str::trim) {
            None | Some("") | Some("0") => Ok(None),
            Some(s) => crate::params::parse_duration(s)
                .map(|secs| Some(Duration::from_secs(secs.max(0) as u64)))
                .map_err(|e| format!("retention: {e}")),
        }
    }
}

impl ServerConfig {
    /// The query bounds every query API applies.
    pub fn query_limits(&self) -> Result<crate::range::QueryLimits, String> {
        Ok(crate::range::QueryLimits {
            max_range: crate::range::parse_max_range(&self.max_query_range)?,
            retention: self.retention()?.map(|d| d.as_secs() as i64),
            ..crate::range::QueryLimits::default()
        })
    }

    /// Query slots: the setting, or the number of CPUs (at least 2).
    pub fn query_slots(&self) -> usize {
        match self.max_concurrent_queries {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            n => n,
        }
    }

    /// The cross-site policy (`allowed_origins`, `allowed_hosts`, `trust_proxy_headers`).
    pub fn origin_policy(&self) -> Result<crate::origin::Policy, crate::origin::OriginError> {
        crate::origin::Policy::new(
            &self.allowed_origins,
            &self.allowed_hosts,
            self.trust_proxy_headers,
        )
    }

    /// The connection limits.
    pub fn conn_limits(&self) -> crate::serve::ConnLimits {
        crate::serve::ConnLimits {
            header_timeout: Duration::from_secs(self.header_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds.max(1)),
            max_connections: self.max_connections.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_refuses_typos() {
        let c =
            ServerConfig::from_toml("listen = \"127.0.0.1:5000\"\nretention = \"30d\"\n").unwrap();
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(
            c.retention().unwrap(),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(c.max_body_bytes, ServerConfig::default().max_body_bytes);
        assert!(ServerConfig::from_toml("retension = \"1d\"").is_err());
        let c = ServerConfig::from_toml("max_query_range = \"2d\"\nmax_connections = 3\n").unwrap();
        assert_eq!(c.query_limits().unwrap().max_range, 2 * 86_400);
        assert_eq!(c.conn_limits().max_connections, 3);
        assert!(ServerConfig::from_toml("max_query_range = \"x\"")
            .unwrap()
            .query_limits()
            .is_err());
    }
}
