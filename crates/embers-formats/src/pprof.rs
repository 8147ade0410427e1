//! pprof (`perftools.profiles.Profile`), gzipped or plain.

use std::io::Write;

use embers_profile::Profile;

use crate::{FormatError, ReadLimits};

/// Decodes a pprof profile (gzip detected) into its default sample type.
pub fn decode(bytes: &[u8], limits: &ReadLimits) -> Result<Profile, FormatError> {
    let _ = (bytes, limits);
    Err(FormatError::Unsupported {
        format: "pprof",
        operation: "read yet",
    })
}

/// Encodes `profile` as gzipped pprof.
pub fn encode(profile: &Profile, out: &mut dyn Write) -> Result<(), FormatError> {
    let _ = (profile, out);
    Err(FormatError::Unsupported {
        format: "pprof",
        operation: "written yet",
    })
}
