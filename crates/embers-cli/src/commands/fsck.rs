//! `embers fsck`: check a data directory's objects, and repair what can be repaired.
//!
//! A data directory holds the default tenant's store at its root and every other
//! tenant's in `tenants/<id>/`; each is checked on its own and reported under its ID.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use embers_server::tenant::TenantId;
use embers_server::tenants::{tenant_dir, tenant_dirs};

/// Arguments of `embers fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The server's data directory.
    #[arg(long, env = "EMBERS_DATA_DIR", default_value = "./embers-data")]
    pub data_dir: PathBuf,
    /// Move damaged and unknown objects to `quarantine/` and rebuild `meta/flushed`.
    #[arg(long)]
    pub repair: bool,
    /// Check only this tenant's store (`anonymous` is the default tenant, at the data
    /// directory's root) [default: every tenant found].
    #[arg(long, value_name = "ID")]
    pub tenant: Option<String>,
}

/// Checks (and with `--repair` repairs) each tenant's store; fails when damage remains
/// in any.
pub fn run(args: FsckArgs) -> anyhow::Result<()> {
    let tenants = match &args.tenant {
        Some(id) => {
            let id = TenantId::parse(id).map_err(anyhow::Error::msg)?;
            let dir = tenant_dir(&args.data_dir, &id);
            anyhow::ensure!(dir.is_dir(), "tenant {id} has no data in {}", dir.display());
            vec![(id, dir)]
        }
        None => {
            let mut all = vec![(TenantId::default_tenant(), args.data_dir.clone())];
            all.extend(
                tenant_dirs(&args.data_dir)
                    .with_context(|| format!("listing tenants in {}", args.data_dir.display()))?,
            );
            all
        }
    };
    if let [(id, dir)] = tenants.as_slice() {
        if !id.is_default() {
            println!("== tenant {id} ({})", dir.display());
        }
        return check(dir, args.repair);
    }
    let mut failed = Vec::new();
    for (id, dir) in &tenants {
        println!("== tenant {id} ({})", dir.display());
        if let Err(e) = check(dir, args.repair) {
            println!("error: {e:#}");
            failed.push(id.to_string());
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!("damage remains in tenant(s) {}", failed.join(", "))
}

/// One store directory: its report, and an error when damage remains.
fn check(dir: &std::path::Path, repair: bool) -> anyhow::Result<()> {
    let report =
        embers_store::fsck(dir, repair).with_context(|| format!("checking {}", dir.display()))?;
    print!("{report}");
    let damaged = report.damaged();
    if damaged == 0 {
        println!("clean: no damaged objects");
        return Ok(());
    }
    if repair && report.unrepaired.is_empty() {
        println!("repaired: {damaged} damaged object(s) moved aside or rebuilt");
        return Ok(());
    }
    anyhow::bail!(if repair {
        format!(
            "{} damaged object(s) could not be repaired",
            report.unrepaired.len()
        )
    } else {
        format!("{damaged} damaged object(s); `embers fsck --repair` moves them to quarantine")
    })
}
