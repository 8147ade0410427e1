//! Reading and writing profiles in the formats people already use.
//!
//! Every format is one module behind [`read`] and [`write`]; the format of a file is
//! inferred from its name with [`Format::from_path`] or sniffed from its bytes.
//! Decoders treat their input as untrusted: sizes, depths and counts are bounded by
//! [`ReadLimits`] and every failure is a [`FormatError`] that says what is wrong.
//!
//! ```
//! use embers_formats::{read, write, Format, WriteOptions};
//!
//! let profile = read(b"main;foo 75\nmain;bar 25\n", Some(Format::Folded)).unwrap();
//! assert_eq!(profile.total(), 100);
//! let mut out = Vec::new();
//! write(&profile, Format::Folded, &WriteOptions::default(), &mut out).unwrap();
//! assert_eq!(String::from_utf8(out).unwrap(), "main;bar 25\nmain;foo 75\n");
//! ```

pub mod callgrind;
pub mod chrome;
pub mod dot;
mod error;
pub mod folded;
mod format;
pub mod ingest;
pub mod jfr;
pub mod otlp;
pub mod pprof;
pub mod speedscope;
pub mod svg;
/// Protobuf messages of the Pyroscope push and query APIs (generated from
/// `proto/pyroscope.proto`): the server reads them, the agent writes them.
#[rustfmt::skip]
#[allow(clippy::all, missing_docs, missing_debug_implementations)]
pub mod wire;

pub use error::FormatError;
pub use format::Format;
pub use ingest::{decode_legacy, decode_push, IngestBudget};

use std::io::Write;

use embers_profile::Profile;

/// Bounds applied while decoding untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest input accepted after decompression, in bytes.
    pub max_decoded_bytes: usize,
    /// Deepest stack accepted, in frames.
    pub max_stack_depth: usize,
    /// Most distinct samples (lines, pprof samples) accepted.
    pub max_samples: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_decoded_bytes: 512 << 20,
            max_stack_depth: 4096,
            max_samples: 10_000_000,
        }
    }
}

/// Presentation options for writers; formats ignore what they cannot show.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Title of a flame graph.
    pub title: Option<String>,
    /// Subtitle of a flame graph (defaults to totals and sample rate).
    pub subtitle: Option<String>,
    /// Draw an icicle graph (root at the top) instead of a flame graph.
    pub icicle: bool,
    /// Hide boxes narrower than this share of the width, in percent (default 0.1).
    pub min_width: Option<f64>,
    /// Most boxes in a call graph (`dot`; default [`dot::DEFAULT_MAX_NODES`]).
    pub max_nodes: Option<usize>,
}

/// Reads a profile. With `format` `None` the bytes are sniffed: gzip or protobuf means
/// pprof, anything else is read as folded stacks.
pub fn read(bytes: &[u8], format: Option<Format>) -> Result<Profile, FormatError> {
    read_with_limits(bytes, format, &ReadLimits::default())
}

/// [`read`] with explicit limits.
pub fn read_with_limits(
    bytes: &[u8],
    format: Option<Format>,
    limits: &ReadLimits,
) -> Result<Profile, FormatError> {
    let format = format.unwrap_or_else(|| Format::sniff(bytes));
    match format {
        Format::Folded => folded::parse(bytes, limits),
        Format::Pprof => pprof::decode(bytes, limits),
        other => Err(FormatError::Unsupported {
            format: other.name(),
            operation: "read",
        }),
    }
}

/// Writes `profile` in `format`.
pub fn write(
    profile: &Profile,
    format: Format,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    match format {
        Format::Folded => folded::write(profile, out),
        Format::Pprof => pprof::encode(profile, out),
        Format::Speedscope => speedscope::write(profile, options, out),
        Format::Callgrind => callgrind::write(profile, options, out),
        Format::ChromeTrace => chrome::write(profile, options, out),
        Format::Svg => svg::write(profile, options, out),
        Format::Dot => dot::write(profile, options, out),
    }
}

/// Writes a differential flame graph of `before` → `after` as SVG: red where `after`
/// spends a larger share, blue where it spends less.
pub fn write_diff_svg(
    before: &Profile,
    after: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    svg::write_diff(before, after, options, out)
}
