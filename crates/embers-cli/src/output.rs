//! Writing a profile where the user asked, in the format the file name implies.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use embers_formats::{Format, WriteOptions};
use embers_profile::{PathRules, Profile};

/// Output options shared by every command that writes a profile.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output file; `-` is standard output. The format follows the extension: .svg,
    /// .folded/.collapsed/.txt, .pb.gz (pprof), .speedscope.json, .callgrind or
    /// callgrind.out.*, .trace.json (Chrome trace).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format, when the file name does not tell it.
    #[arg(long, value_name = "FORMAT", value_parser = crate::input::parse_format)]
    pub format: Option<Format>,
    /// Title of the flame graph.
    #[arg(long)]
    pub title: Option<String>,
    /// Draw an icicle graph (callers on top) instead of a flame graph.
    #[arg(long)]
    pub icicle: bool,
    /// Hide flame graph boxes narrower than this percentage of the width.
    #[arg(long, value_name = "PERCENT")]
    pub min_width: Option<f64>,
    /// Keep full file paths instead of stripping site-packages, stdlib and gem prefixes.
    #[arg(long)]
    pub full_paths: bool,
    /// Rewrite file paths with a regex, like a `sed` step: REGEX=REPLACEMENT ($1 for
    /// groups). Repeatable; applied in order after the default prefix stripping.
    #[arg(long = "rewrite", value_name = "REGEX=REPLACEMENT")]
    pub rewrites: Vec<String>,
    /// Keep at most N call-tree nodes; what is cut shows as `other`, so totals stay exact.
    #[arg(long, value_name = "N")]
    pub max_nodes: Option<usize>,
}

impl OutputArgs {
    /// The output path, or `default` when none was given.
    pub fn path_or(&self, default: &str) -> PathBuf {
        self.output
            .clone()
            .unwrap_or_else(|| PathBuf::from(default))
    }

    /// The format to write `path` in.
    pub fn format_for(&self, path: &Path) -> anyhow::Result<Format> {
        if let Some(f) = self.format {
            return Ok(f);
        }
        if path == Path::new("-") {
            return Ok(Format::Folded);
        }
        match Format::from_path(path) {
            Some(f) => Ok(f),
            None => bail!(
                "cannot tell the output format from {:?}: use an extension such as .svg, \
                 .folded or .pb.gz, or pass --format",
                path.display().to_string()
            ),
        }
    }

    /// The path clean-up rules these options ask for.
    pub fn path_rules(&self) -> anyhow::Result<PathRules> {
        let mut rules = if self.full_paths {
            PathRules::none()
        } else {
            PathRules::defaults()
        };
        for rule in &self.rewrites {
            rules.push_rule(rule)?;
        }
        Ok(rules)
    }

    /// Writer options for the flame graph formats.
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            title: self.title.clone(),
            subtitle: None,
            icicle: self.icicle,
            min_width: self.min_width,
            max_nodes: self.max_nodes,
        }
    }

    /// Applies path rules and truncation, the transformations every output shares.
    pub fn prepare(&self, profile: &Profile) -> anyhow::Result<Profile> {
        let rules = self.path_rules()?;
        let cleaned = profile.map_frames(|f| rules.apply_frame(f));
        Ok(match self.max_nodes {
            Some(n) => Profile::from_tree(&cleaned.tree().truncated(n).0, cleaned.meta.clone()),
            None => cleaned,
        })
    }
}

/// Writes `profile` to the output the options name (default `default_path`), atomically:
/// a reader never sees a half-written file. Returns the path written.
pub fn write_profile_to(
    profile: &Profile,
    args: &OutputArgs,
    default_path: &str,
) -> anyhow::Result<PathBuf> {
    let path = args.path_or(default_path);
    let format = args.format_for(&path)?;
    let prepared = args.prepare(profile)?;
    let options = args.write_options();
    write_atomically(&path, |out| {
        embers_formats::write(&prepared, format, &options, out).map_err(anyhow::Error::from)
    })?;
    Ok(path)
}

/// Runs `fill` on a temporary file beside `path` and renames it into place; `-` writes to
/// standard output.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if path == Path::new("-") {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        fill(&mut lock)?;
        return lock.flush().context("writing standard output");
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = std::io::BufWriter::new(file);
        fill(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
