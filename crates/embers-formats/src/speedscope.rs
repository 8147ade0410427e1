//! speedscope JSON (write only).

use std::io::Write;

use embers_profile::Profile;

use crate::{FormatError, WriteOptions};

/// Writes `profile` as speedscope.
pub fn write(
    profile: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let _ = (profile, options, out);
    Err(FormatError::Unsupported {
        format: "speedscope",
        operation: "written yet",
    })
}
