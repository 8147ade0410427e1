//! `embers convert`: any readable format in, any writable format out.

use std::path::PathBuf;

use clap::Args;

use crate::commands::ShapeArgs;
use crate::output::{write_profile_to, OutputArgs};

/// Arguments of `embers convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The profile to convert (folded or pprof; `-` is standard input).
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Converts `input` to the format of `-o` (or `--format`).
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    if args.output.output.is_none() && args.output.format.is_none() {
        anyhow::bail!("say what to write: -o FILE (format from its extension) or --format NAME");
    }
    let profile = crate::input::read_profile(&args.input, args.shape.input_format)?;
    let profile = args.shape.apply(profile);
    write_profile_to(&profile, &args.output, "-")?;
    Ok(())
}
