//! The top-level error handler: prints the cause chain, and turns causes a user can fix
//! into a one-line hint.

use std::io;
use std::process::ExitCode;

/// Returned by a command whose output was written but is incomplete (the target exited
/// before `--duration` ran out, for example). The process exits with code 2.
#[derive(Debug)]
pub struct Incomplete(pub String);

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Incomplete {}

/// Exit code for incomplete output.
pub const EXIT_INCOMPLETE: u8 = 2;

/// Prints `err` to stderr and picks the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if let Some(incomplete) = err.downcast_ref::<Incomplete>() {
        eprintln!("embers: {incomplete}");
        return ExitCode::from(EXIT_INCOMPLETE);
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = hint(err) {
        eprintln!("hint: {hint}");
    }
    ExitCode::FAILURE
}

fn hint(err: &anyhow::Error) -> Option<String> {
    for cause in err.chain() {
        if let Some(sampler) = cause.downcast_ref::<embers_sampler::Error>() {
            return sampler.hint();
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::PermissionDenied => {
                    Some("check the file permissions, or run with the rights it needs".into())
                }
                io::ErrorKind::NotFound => Some("check the path".into()),
                io::ErrorKind::AddrInUse => Some(
                    "another process listens on that port: stop it or pick another with --listen"
                        .into(),
                ),
                io::ErrorKind::ConnectionRefused => Some(
                    "is the server running? start it with `embers server`, or pass --server".into(),
                ),
                _ => None,
            };
        }
    }
    None
}
