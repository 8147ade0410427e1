//! `embers query`: fetch the merged profile of a selector and time range from a server
//! and write it in any format the CLI writes.

use anyhow::Context;
use clap::Args;
use std::io::Read;

use crate::output::{write_profile_to, OutputArgs};

/// Arguments of `embers query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Selector: `app.cpu{region="eu-west-1"}` or
    /// `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="app"}`.
    #[arg(value_name = "SELECTOR")]
    pub query: String,
    /// Start: `now-1h`, Unix seconds (or ms/µs/ns), or YYYYMMDD.
    #[arg(long, default_value = "now-1h")]
    pub from: String,
    /// End, same forms as --from.
    #[arg(long, default_value = "now")]
    pub until: String,
    /// The server to ask.
    #[arg(long, env = "EMBERS_SERVER", default_value = "http://localhost:4040")]
    pub server: String,
    /// Trust the CA certificates in this PEM file for an https:// server, besides the
    /// system's roots.
    #[arg(long, env = "EMBERS_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// One frame per function, file and line (the server groups by function name unless
    /// asked for lines).
    #[arg(long)]
    pub by_line: bool,
    /// Token for a server with an auth file, sent as `Authorization: Bearer`.
    #[arg(
        long,
        env = "EMBERS_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
    /// Tenant to ask for, sent as `X-Scope-OrgID` (a server with `--multitenancy`; with
    /// an auth file the token decides and this must match it).
    #[arg(long, env = "EMBERS_TENANT", value_name = "TENANT")]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Queries the server and writes the profile.
pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let url = format!("{}/render", args.server.trim_end_matches('/'));
    let client = embers_agent::http::client(&embers_agent::http::ClientConfig {
        ca_cert: args.ca_cert.clone(),
        ..Default::default()
    })?;
    let mut request = client.get(&url);
    if let Some(token) = &args.auth_token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    if let Some(tenant) = &args.tenant {
        request = request.header("x-scope-orgid", tenant);
    }
    let mut response = request
        .query("query", &args.query)
        .query("from", &args.from)
        .query("until", &args.until)
        .query("format", "pprof")
        .query(
            "aggregation",
            if args.by_line { "line" } else { "function" },
        )
        .call()
        .map_err(|e| anyhow::anyhow!(embers_agent::http::explain(&e, &url)))?;
    let status = response.status();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(1 << 30)
        .read_to_end(&mut body)
        .context("reading the answer")?;
    if status == 401 || status == 403 {
        anyhow::bail!(
            "the server refused the query's credentials ({status}): {} \
             (give a token with --auth-token or EMBERS_AUTH_TOKEN)",
            String::from_utf8_lossy(&body).trim()
        );
    }
    if !status.is_success() {
        anyhow::bail!(
            "the server refused the query ({status}): {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let profile = embers_formats::pprof::decode(&body, &embers_formats::ReadLimits::default())
        .context("decoding the server's pprof")?;
    if profile.total() == 0 {
        eprintln!("embers: no samples match {} in that range", args.query);
    } else {
        eprintln!(
            "embers: {} in total",
            profile.meta.sample_type.format_value(profile.total())
        );
    }
    let path = write_profile_to(&profile, &args.output, "-")?;
    if path.as_os_str() != "-" {
        eprintln!("embers: wrote {}", path.display());
    }
    Ok(())
}
