//! What to sample and how.

use std::time::Duration;

/// Which interpreter the target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Detect from `/proc/PID/exe` and the libraries it maps.
    #[default]
    Auto,
    /// CPython, through py-spy.
    Python,
    /// CRuby (MRI), through rbspy.
    Ruby,
}

/// Sampling options; the defaults match py-spy's and Pyflame's.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Samples per second.
    pub rate_hz: u32,
    /// Stop after this long; `None` runs until stopped or the target exits.
    pub duration: Option<Duration>,
    /// Keep samples of threads that are not running (waiting on I/O, locks, sleep).
    pub include_idle: bool,
    /// Add a root frame per thread, so each thread is its own tower in the flame graph.
    pub threads: bool,
    /// Python: only sample the thread holding the GIL.
    pub gil_only: bool,
    /// Also sample child processes (forked workers), each labelled with its pid.
    pub subprocesses: bool,
    /// Don't pause the target while reading its memory: lower overhead, stacks may tear.
    pub nonblocking: bool,
    /// Aggregate by function: drop line numbers.
    pub function_only: bool,
    /// The interpreter, or [`Lang::Auto`].
    pub lang: Lang,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rate_hz: 100,
            duration: None,
            include_idle: false,
            threads: false,
            gil_only: false,
            subprocesses: false,
            nonblocking: false,
            function_only: false,
            lang: Lang::Auto,
        }
    }
}
