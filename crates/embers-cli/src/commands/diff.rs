//! `embers diff`: what changed between two profiles, drawn and tabulated.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use embers_profile::share_changes;

use crate::commands::ShapeArgs;
use crate::output::{write_atomically, OutputArgs};

/// Arguments of `embers diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline profile.
    #[arg(value_name = "BEFORE")]
    pub before: PathBuf,
    /// The profile to compare with it.
    #[arg(value_name = "AFTER")]
    pub after: PathBuf,
    /// Rows in the table of functions whose share changed most.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Writes the differential flame graph (`diff.svg` by default; red grew, blue shrank) and
/// prints the functions whose inclusive share changed most.
pub fn run(args: DiffArgs) -> anyhow::Result<()> {
    let read = |p: &PathBuf| -> anyhow::Result<_> {
        let profile = crate::input::read_profile(p, args.shape.input_format)?;
        args.output.prepare(&args.shape.apply(profile))
    };
    let (before, after) = (read(&args.before)?, read(&args.after)?);
    let path = args.output.path_or("diff.svg");
    let options = args.output.write_options();
    write_atomically(&path, |out| {
        embers_formats::write_diff_svg(&before, &after, &options, out)?;
        Ok(())
    })?;

    let rows = share_changes(&before.tree(), &after.tree());
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{:>8} {:>8} {:>9}  function",
        "before", "after", "change"
    )?;
    for row in rows.iter().take(args.top) {
        writeln!(
            stdout,
            "{:>7.2}% {:>7.2}% {:>+8.2}pp  {}",
            row.left_share * 100.0,
            row.right_share * 100.0,
            row.delta_points(),
            row.frame
        )?;
    }
    eprintln!(
        "wrote {} ({} → {})",
        path.display(),
        before.meta.sample_type.format_value(before.total()),
        after.meta.sample_type.format_value(after.total())
    );
    Ok(())
}
