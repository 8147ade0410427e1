//! `embers record`: sample a running process, or launch one, and write the profile.

use std::io::{IsTerminal, Write};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use embers_sampler::{EndReason, Lang, Stats};

use crate::hints::Incomplete;
use crate::output::{write_profile_to, OutputArgs};

/// Interpreter choices for `--lang`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LangArg {
    /// Detect from the process.
    Auto,
    /// CPython.
    Python,
    /// CRuby.
    Ruby,
}

/// How to sample: shared by `record` and `agent`.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// The target's interpreter.
    #[arg(long, value_enum, default_value_t = LangArg::Auto)]
    pub lang: LangArg,
    /// Samples per second.
    #[arg(short, long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Keep samples of idle threads (by default, like Pyflame's -x, they are dropped).
    #[arg(long)]
    pub idle: bool,
    /// Give each thread its own root frame.
    #[arg(long)]
    pub threads: bool,
    /// Python: only sample the thread holding the GIL.
    #[arg(long)]
    pub gil: bool,
    /// Also profile child processes (forked workers).
    #[arg(short, long)]
    pub subprocesses: bool,
    /// Don't pause the target while reading its stacks (lower overhead, may tear stacks).
    #[arg(long)]
    pub nonblocking: bool,
    /// Aggregate by function: drop line numbers.
    #[arg(long)]
    pub function: bool,
}

impl SamplingArgs {
    /// The sampler settings these flags ask for (no duration).
    pub fn config(&self) -> embers_sampler::Config {
        embers_sampler::Config {
            rate_hz: self.rate,
            duration: None,
            include_idle: self.idle,
            threads: self.threads,
            gil_only: self.gil,
            subprocesses: self.subprocesses,
            nonblocking: self.nonblocking,
            function_only: self.function,
            lang: match self.lang {
                LangArg::Auto => Lang::Auto,
                LangArg::Python => Lang::Python,
                LangArg::Ruby => Lang::Ruby,
            },
        }
    }
}

/// Arguments of `embers record`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 done; 1 error; 2 the profile was written but is incomplete \
    (the target exited before --duration ended)."
)]
pub struct RecordArgs {
    /// Attach to this process.
    #[arg(
        short,
        long,
        conflicts_with = "command",
        required_unless_present = "command"
    )]
    pub pid: Option<u32>,
    /// Launch this command and profile it (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Stop after this many seconds (default: until Ctrl-C or the target exits).
    #[arg(short, long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl RecordArgs {
    fn config(&self) -> anyhow::Result<embers_sampler::Config> {
        let duration = match self.duration {
            Some(s) if !(s.is_finite() && s > 0.0) => {
                bail!("--duration must be a positive number of seconds")
            }
            Some(s) => Some(Duration::from_secs_f64(s)),
            None => None,
        };
        Ok(embers_sampler::Config {
            duration,
            ..self.sampling.config()
        })
    }
}

/// A launched target, killed if we stop before it does.
pub(crate) struct Launched(pub(crate) Child);

impl Drop for Launched {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Records, writes the output, and reports how it went.
pub fn run(args: RecordArgs) -> anyhow::Result<()> {
    let mut config = args.config()?;
    let stop = stop_on_signal()?;
    let mut launched = None;
    let pid = match args.pid {
        Some(pid) => pid,
        None => {
            let child = launch(&args.command, &mut config.lang)?;
            let pid = child.0.id();
            launched = Some(child);
            pid
        }
    };

    let status = StatusLine::new();
    let recording = embers_sampler::record(pid, &config, &stop, |stats| status.show(stats))
        .with_context(|| format!("recording pid {pid}"))?;
    status.clear();
    drop(launched);

    let default_name = format!("embers-{pid}.svg");
    let path = write_profile_to(&recording.profile, &args.output, &default_name)?;
    let stats = &recording.stats;
    eprintln!(
        "embers: wrote {} samples ({} distinct stacks, {} errors) over {:.1}s to {}",
        stats.samples,
        recording.profile.samples().len(),
        stats.errors,
        stats.elapsed.as_secs_f64(),
        path.display()
    );
    if recording.end == EndReason::TargetExited && config.duration.is_some() && args.pid.is_some() {
        return Err(Incomplete(format!(
            "pid {pid} exited after {:.1}s, before --duration ended; the profile holds what was \
             sampled until then",
            stats.elapsed.as_secs_f64()
        ))
        .into());
    }
    Ok(())
}

/// A flag set by SIGINT (Ctrl-C) or SIGTERM.
pub(crate) fn stop_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the SIGINT/SIGTERM handler")?;
    Ok(stop)
}

/// Launches `command` and, if `lang` is `Auto`, waits until it runs an interpreter.
pub(crate) fn launch(command: &[String], lang: &mut Lang) -> anyhow::Result<Launched> {
    let child = Command::new(&command[0])
        .args(&command[1..])
        .spawn()
        .with_context(|| format!("launching {}", command[0]))?;
    let launched = Launched(child);
    if *lang == Lang::Auto {
        *lang = wait_for_interpreter(launched.0.id())?;
    }
    Ok(launched)
}

/// A launched command may start as a wrapper (a pyenv shim, `env`, a shell script) that
/// execs the interpreter: wait until the process is Python or Ruby.
fn wait_for_interpreter(pid: u32) -> anyhow::Result<Lang> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match embers_sampler::detect(pid) {
            Ok(embers_sampler::Interpreter::Python) => return Ok(Lang::Python),
            Ok(embers_sampler::Interpreter::Ruby) => return Ok(Lang::Ruby),
            Err(embers_sampler::Error::NotPythonOrRuby { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The live status line on a terminal; silent otherwise.
struct StatusLine {
    enabled: bool,
}

impl StatusLine {
    fn new() -> Self {
        StatusLine {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, stats: &Stats) {
        if !self.enabled {
            return;
        }
        let top = stats.top_function.as_deref().unwrap_or("-");
        let line = format!(
            "\r\x1b[2K{:>6.1}s  {} samples  {} errors  top: {}",
            stats.elapsed.as_secs_f64(),
            stats.samples,
            stats.errors,
            top
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.enabled {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
        }
    }
}
