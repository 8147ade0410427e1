//! The one error type of this crate.

/// Why a profile could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input is not valid for the format; `line` is 1-based where the format has lines.
    #[error("{format}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Malformed {
        /// Format name.
        format: &'static str,
        /// What is wrong, in words a user can act on.
        message: String,
        /// Line of the problem, for line-based formats.
        line: Option<usize>,
    },
    /// The input exceeds a [`crate::ReadLimits`] bound.
    #[error("{format}: input exceeds the limit of {limit} {what}")]
    TooLarge {
        /// Format name.
        format: &'static str,
        /// What was counted (bytes after decompression, frames, samples).
        what: &'static str,
        /// The bound.
        limit: usize,
    },
    /// The input exceeds a bound of the [`crate::ingest::IngestBudget`]; the message
    /// names the setting to raise.
    #[error("{format}: over the ingest budget: {} above {limit} (setting {})", bound.what(), bound.setting())]
    OverBudget {
        /// Format (or part of the request) that went over.
        format: &'static str,
        /// Which bound.
        bound: crate::ingest::Bound,
        /// Its value.
        limit: u64,
    },
    /// The format cannot do this (speedscope is write-only, for example).
    #[error("{format} profiles cannot be {operation}")]
    Unsupported {
        /// Format name.
        format: &'static str,
        /// "read" or "write" (as a past participle in the message).
        operation: &'static str,
    },
    /// Writing failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

impl FormatError {
    pub(crate) fn malformed(format: &'static str, message: impl Into<String>) -> Self {
        FormatError::Malformed {
            format,
            message: message.into(),
            line: None,
        }
    }
}
