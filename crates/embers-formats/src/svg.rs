//! Interactive SVG flame graphs through inferno.

use std::io::Write;

use embers_profile::Profile;

use crate::{FormatError, WriteOptions};

/// Writes `profile` as svg.
pub fn write(
    profile: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let _ = (profile, options, out);
    Err(FormatError::Unsupported {
        format: "svg",
        operation: "written yet",
    })
}

/// Writes the differential flame graph of `before` → `after`.
pub fn write_diff(
    before: &Profile,
    after: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let _ = (before, after, options, out);
    Err(FormatError::Unsupported {
        format: "svg",
        operation: "written yet",
    })
}
