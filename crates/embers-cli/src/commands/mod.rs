//! Commands other than `record`: files, the server, the agent, queries, the demo.

pub mod agent;
pub mod convert;
pub mod demo;
pub mod diff;
pub mod flamegraph;
pub mod fsck;
pub mod query;
pub mod server;
pub mod token;

use clap::Args;
use embers_formats::Format;
use embers_profile::Profile;
use regex::Regex;

/// Options that reshape a profile before it is written.
#[derive(Debug, Clone, Args)]
pub struct ShapeArgs {
    /// Input format, when file names and content do not tell it.
    #[arg(long = "input-format", value_name = "FORMAT", value_parser = crate::input::parse_format)]
    pub input_format: Option<Format>,
    /// Aggregate by function: drop line numbers.
    #[arg(long)]
    pub function: bool,
    /// Keep only what is under the outermost frames matching this regex (on `name (file:line)`).
    #[arg(long, value_name = "REGEX")]
    pub focus: Option<Regex>,
}

impl ShapeArgs {
    /// Applies `--function` and `--focus`.
    pub fn apply(&self, profile: Profile) -> Profile {
        let profile = if self.function {
            profile.map_frames(|f| f.without_line())
        } else {
            profile
        };
        match &self.focus {
            Some(re) => {
                let tree = profile.tree().focus(|f| re.is_match(&f.to_string()));
                Profile::from_tree(&tree, profile.meta.clone())
            }
            None => profile,
        }
    }
}
