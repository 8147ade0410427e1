//! Reading profile files given on the command line (`-` is standard input).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use embers_formats::Format;
use embers_profile::Profile;

/// Reads one profile, taking its format from `format`, else its name, else its bytes.
pub fn read_profile(path: &Path, format: Option<Format>) -> anyhow::Result<Profile> {
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    let format = format.or_else(|| Format::from_path(path).filter(|f| f.can_read()));
    if let Some(f) = format {
        if !f.can_read() {
            bail!(
                "{} files cannot be read back; read folded or pprof files",
                f.name()
            );
        }
    }
    embers_formats::read(&bytes, format).with_context(|| format!("reading {}", path.display()))
}

/// Reads several profiles and merges them into the first one's metadata.
pub fn read_merged(
    paths: &[std::path::PathBuf],
    format: Option<Format>,
) -> anyhow::Result<Profile> {
    let mut merged: Option<Profile> = None;
    for path in paths {
        let profile = read_profile(path, format)?;
        match merged.as_mut() {
            Some(m) => m.merge(&profile),
            None => merged = Some(profile),
        }
    }
    merged.context("no input profile given")
}

/// Parses a `--format` value.
pub fn parse_format(name: &str) -> Result<Format, String> {
    Format::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        format!("unknown format {name:?}; one of: {}", names.join(", "))
    })
}
