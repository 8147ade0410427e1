//! What the agent samples, where it sends, and how patiently.

use std::path::PathBuf;
use std::time::Duration;

/// Credentials the Pyroscope clients already know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer TOKEN`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Server base URL, e.g. `http://localhost:4040`.
    pub server: String,
    /// Application (service) name.
    pub app: String,
    /// Static tags on every series, e.g. `region=us-east-1`.
    pub tags: Vec<(String, String)>,
    /// Window length: one profile per target is pushed this often.
    pub period: Duration,
    /// Most windows waiting to be sent; beyond it the oldest are dropped (and counted).
    pub queue_windows: usize,
    /// Keep unsent windows in this directory too, so they survive an agent restart.
    pub spool_dir: Option<PathBuf>,
    /// Authorization.
    pub auth: Auth,
    /// Sent as `X-Scope-OrgID` (multi-tenant servers).
    pub tenant_id: Option<String>,
    /// PEM file of CA certificates trusted besides the system's roots (an `https://`
    /// server whose certificate comes from a private CA).
    pub ca_cert: Option<PathBuf>,
    /// Label every series with the pid it came from (several targets, forked workers).
    pub tag_pid: bool,
    /// Sampling settings (rate, idle, threads, subprocesses, ...).
    pub sampler: embers_sampler::Config,
    /// How long to keep trying to send what is left when stopping.
    pub flush_timeout: Duration,
    /// How often a status line is logged.
    pub log_every: Duration,
    /// Timeout of one push request.
    pub request_timeout: Duration,
}

impl AgentConfig {
    /// Settings for `app` sending to `server`, with the defaults of the command line.
    pub fn new(server: impl Into<String>, app: impl Into<String>) -> Self {
        AgentConfig {
            server: server.into(),
            app: app.into(),
            tags: Vec::new(),
            period: Duration::from_secs(10),
            queue_windows: 360,
            spool_dir: None,
            auth: Auth::None,
            tenant_id: None,
            ca_cert: None,
            tag_pid: false,
            sampler: embers_sampler::Config::default(),
            flush_timeout: Duration::from_secs(10),
            log_every: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}
