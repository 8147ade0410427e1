//! `embers agent`: profile processes continuously and push 10 s windows to a server.

use std::path::PathBuf;
use std::time::Duration;

use crate::record::{launch, stop_on_signal, SamplingArgs};
use anyhow::{bail, Context};
use clap::Args;
use embers_agent::{AgentConfig, Auth, Targets};

/// Arguments of `embers agent`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 the targets exited or the agent was stopped (SIGTERM, \
    Ctrl-C) and the last windows were sent; 1 error or windows left unsent."
)]
pub struct AgentArgs {
    /// Server to push to (Embers, or any Pyroscope-compatible server).
    #[arg(long, env = "EMBERS_SERVER", default_value = "http://localhost:4040")]
    pub server: String,
    /// Application name (`service_name`).
    #[arg(long, env = "EMBERS_APP")]
    pub app: String,
    /// A static tag on every profile, `KEY=VALUE` (repeat for more).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Profile this process (repeat for several).
    #[arg(short, long = "pid", conflicts_with_all = ["pgrep", "command"])]
    pub pids: Vec<u32>,
    /// Profile every process whose command line matches this regex, now and later.
    #[arg(long, value_name = "PATTERN", conflicts_with = "command")]
    pub pgrep: Option<String>,
    /// Launch this command and profile it (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Pause the target while reading each sample's stacks. The agent reads them without
    /// pausing by default (`--nonblocking` is implied): pausing every thread 100 times a
    /// second slows a many-threaded target by tens of percent (BENCHMARKS.md), too much
    /// for always-on profiling; the price is a rare torn stack.
    #[arg(long, conflicts_with = "nonblocking")]
    pub lock_process: bool,
    /// Seconds per window: one profile per target is pushed this often.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_interval: u64,
    /// Most unsent windows kept while the server is unreachable (oldest dropped first).
    #[arg(long, default_value_t = 360, value_name = "N")]
    pub queue_size: usize,
    /// Also keep unsent windows in this directory, to survive an agent restart.
    #[arg(long, env = "EMBERS_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Send `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        env = "EMBERS_AUTH_TOKEN",
        value_name = "TOKEN",
        conflicts_with = "basic_auth"
    )]
    pub auth_token: Option<String>,
    /// Send HTTP basic auth, `USER:PASSWORD`.
    #[arg(long, env = "EMBERS_BASIC_AUTH", value_name = "USER:PASSWORD")]
    pub basic_auth: Option<String>,
    /// Tenant, sent as `X-Scope-OrgID`.
    #[arg(long, env = "EMBERS_TENANT_ID", value_name = "ID")]
    pub tenant_id: Option<String>,
    /// Trust the CA certificates in this PEM file for an https:// server, besides the
    /// system's roots.
    #[arg(long, env = "EMBERS_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Seconds to keep trying to send the last windows when stopping.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub flush_timeout: u64,
    /// Seconds between status lines in the log.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub log_every: u64,
    /// Log format: text or json. Levels: RUST_LOG (default info).
    #[arg(long, env = "EMBERS_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

fn parse_tag(tag: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = tag
        .split_once('=')
        .with_context(|| format!("tag {tag:?} is not KEY=VALUE"))?;
    embers_profile::validate_name(k).map_err(|e| anyhow::anyhow!("tag {tag:?}: {e}"))?;
    if k.starts_with("__") || k == "service_name" {
        bail!("tag {tag:?}: {k} is set by the agent");
    }
    Ok((k.to_owned(), v.to_owned()))
}

impl AgentArgs {
    fn config(&self) -> anyhow::Result<AgentConfig> {
        let mut c = AgentConfig::new(&self.server, &self.app);
        if self.app.is_empty() {
            bail!("--app must not be empty");
        }
        c.tags = self
            .tags
            .iter()
            .map(|t| parse_tag(t))
            .collect::<anyhow::Result<_>>()?;
        c.period = Duration::from_secs(self.upload_interval);
        c.queue_windows = self.queue_size.max(1);
        c.spool_dir.clone_from(&self.spool_dir);
        c.auth = match (&self.auth_token, &self.basic_auth) {
            (Some(token), _) => Auth::Bearer(token.clone()),
            (None, Some(pair)) => {
                let (user, password) = pair
                    .split_once(':')
                    .context("--basic-auth must be USER:PASSWORD")?;
                Auth::Basic {
                    user: user.to_owned(),
                    password: password.to_owned(),
                }
            }
            (None, None) => Auth::None,
        };
        c.tenant_id.clone_from(&self.tenant_id);
        c.ca_cert.clone_from(&self.ca_cert);
        c.sampler = self.sampling.config();
        c.sampler.nonblocking = !self.lock_process;
        c.tag_pid = self.sampling.subprocesses || self.pgrep.is_some() || self.pids.len() > 1;
        c.flush_timeout = Duration::from_secs(self.flush_timeout);
        c.log_every = Duration::from_secs(self.log_every.max(1));
        Ok(c)
    }
}

/// Runs the agent until its targets exit or it is stopped.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    crate::commands::server::init_logging(&args.log_format)?;
    let mut config = args.config()?;
    let stop = stop_on_signal()?;
    let mut launched = None;
    let targets = if let Some(pattern) = &args.pgrep {
        Targets::Pgrep(regex::Regex::new(pattern).with_context(|| format!("--pgrep {pattern:?}"))?)
    } else if !args.pids.is_empty() {
        Targets::Pids(args.pids.clone())
    } else if !args.command.is_empty() {
        let child = launch(&args.command, &mut config.sampler.lang)?;
        let pid = child.0.id();
        launched = Some(child);
        Targets::Pids(vec![pid])
    } else {
        bail!("say what to profile: --pid N, --pgrep PATTERN, or -- COMMAND");
    };
    let summary = embers_agent::run(&config, targets, &stop).map_err(|e| anyhow::anyhow!(e))?;
    drop(launched);
    tracing::info!(
        samples = summary.samples,
        windows = summary.windows,
        sent = summary.sent,
        dropped = summary.dropped,
        refused = summary.refused,
        unsent = summary.unsent,
        read_errors = summary.errors,
        "agent stopped"
    );
    if summary.unsent > 0 || summary.dropped > 0 || summary.refused > 0 {
        bail!(
            "{} windows unsent, {} dropped, {} refused (see the log)",
            summary.unsent,
            summary.dropped,
            summary.refused
        );
    }
    Ok(())
}
