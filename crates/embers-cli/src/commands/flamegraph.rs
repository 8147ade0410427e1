//! `embers flamegraph`: profile files in, an interactive SVG out.

use std::path::PathBuf;

use clap::Args;

use crate::commands::ShapeArgs;
use crate::output::{write_profile_to, OutputArgs};

/// Arguments of `embers flamegraph`.
#[derive(Debug, Args)]
pub struct FlamegraphArgs {
    /// Profiles to draw (folded or pprof; several are merged; `-` is standard input).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Draws the merged inputs as a flame graph (`flamegraph.svg` unless `-o` says otherwise).
pub fn run(mut args: FlamegraphArgs) -> anyhow::Result<()> {
    let profile = crate::input::read_merged(&args.inputs, args.shape.input_format)?;
    let profile = args.shape.apply(profile);
    if args.output.format.is_none() && args.output.output.is_none() {
        args.output.format = Some(embers_formats::Format::Svg);
    }
    let path = write_profile_to(&profile, &args.output, "flamegraph.svg")?;
    eprintln!(
        "wrote {} to {}",
        profile.meta.sample_type.format_value(profile.total()),
        path.display()
    );
    Ok(())
}
