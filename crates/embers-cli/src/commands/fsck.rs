//! `embers fsck`: check a data directory's objects, and repair what can be repaired.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Arguments of `embers fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The server's data directory.
    #[arg(long, env = "EMBERS_DATA_DIR", default_value = "./embers-data")]
    pub data_dir: PathBuf,
    /// Move damaged and unknown objects to `quarantine/` and rebuild `meta/flushed`.
    #[arg(long)]
    pub repair: bool,
}

/// Checks (and with `--repair` repairs) the directory; fails when damage remains.
pub fn run(args: FsckArgs) -> anyhow::Result<()> {
    let report = embers_store::fsck(&args.data_dir, args.repair)
        .with_context(|| format!("checking {}", args.data_dir.display()))?;
    print!("{report}");
    let damaged = report.damaged();
    if damaged == 0 {
        println!("clean: no damaged objects");
        return Ok(());
    }
    if args.repair && report.unrepaired.is_empty() {
        println!("repaired: {damaged} damaged object(s) moved aside or rebuilt");
        return Ok(());
    }
    anyhow::bail!(if args.repair {
        format!(
            "{} damaged object(s) could not be repaired",
            report.unrepaired.len()
        )
    } else {
        format!("{damaged} damaged object(s); `embers fsck --repair` moves them to quarantine")
    })
}
