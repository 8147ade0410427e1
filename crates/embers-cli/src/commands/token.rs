//! `embers token new`: a fresh token and the `[[tokens]]` block for the server's auth
//! file, which holds only the token's SHA-256, so the file is no secret.

use clap::{Args, Subcommand};
use embers_server::auth::{self, Scope, Scopes};
use embers_server::tenant::TenantId;

/// Arguments of `embers token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// What `embers token` does.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh token (on stdout's first line) and its `[[tokens]]` block for the
    /// auth file (the rest).
    New(NewArgs),
}

/// Arguments of `embers token new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The tenant the token reaches [default: the default tenant, "anonymous"].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// What it may do: ingest, read or admin (repeat for several).
    #[arg(long = "scope", value_name = "SCOPE", required = true)]
    pub scopes: Vec<Scope>,
    /// A name for the server's logs.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Runs `embers token`.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::New(args) => new(&args),
    }
}

fn new(args: &NewArgs) -> anyhow::Result<()> {
    let tenant = match &args.tenant {
        Some(t) => TenantId::parse(t).map_err(anyhow::Error::msg)?,
        None => TenantId::default_tenant(),
    };
    let scopes: Scopes = args.scopes.iter().copied().collect();
    let token = auth::new_token()
        .map_err(|e| anyhow::anyhow!("reading the operating system's random numbers: {e}"))?;
    println!("{token}");
    println!();
    println!("# Add to the server's auth file (it holds only the token's SHA-256):");
    print!(
        "{}",
        auth::toml_entry(&token, &tenant, scopes, args.name.as_deref())
    );
    eprintln!("embers: keep the token (the first line) secret; the auth file needs only the [[tokens]] block");
    Ok(())
}
