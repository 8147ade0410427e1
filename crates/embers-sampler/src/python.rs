//! CPython through py-spy: `PythonSpy` in our own stratified loop for one process, and
//! py-spy's `Sampler` (which follows workers as they fork) with `subprocesses`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::backend::{Backend, Running};
use crate::detect::{is_alive, Interpreter};
use crate::pacing::Pacer;
use crate::threads::ThreadStates;

use crate::sampler::{frame, Event, Trace};
use crate::{Config, Error};

fn py_spy_config(config: &Config) -> py_spy::Config {
    py_spy::Config {
        sampling_rate: u64::from(config.rate_hz.max(1)),
        include_idle: config.include_idle,
        gil_only: config.gil_only,
        subprocesses: config.subprocesses,
        include_thread_ids: config.threads,
        blocking: if config.nonblocking {
            py_spy::config::LockingStrategy::NonBlocking
        } else {
            py_spy::config::LockingStrategy::Lock
        },
        ..py_spy::Config::default()
    }
}

/// Which traces to keep and how to turn them into ours. py-spy leaves the idle and GIL
/// filters to its command line's loop, so they are applied here.
#[derive(Debug, Clone, Copy)]
struct Convert {
    include_idle: bool,
    gil_only: bool,
    function_only: bool,
}

impl Convert {
    fn new(config: &Config) -> Self {
        Convert {
            include_idle: config.include_idle,
            gil_only: config.gil_only,
            function_only: config.function_only,
        }
    }

    fn traces(self, traces: &[py_spy::StackTrace]) -> Vec<Trace> {
        traces
            .iter()
            .filter(|t| self.include_idle || t.active)
            .filter(|t| !self.gil_only || t.owns_gil)
            .map(|t| self.trace(t))
            .collect()
    }

    fn trace(self, trace: &py_spy::StackTrace) -> Trace {
        Trace {
            pid: u32::try_from(trace.pid).unwrap_or_default(),
            thread: trace
                .thread_name
                .clone()
                .unwrap_or_else(|| format!("{:#x}", trace.thread_id)),
            frames: trace
                .frames
                .iter()
                .rev()
                .map(|f| {
                    frame(
                        &f.name,
                        Some(&f.filename),
                        i64::from(f.line),
                        self.function_only,
                    )
                })
                .collect(),
        }
    }
}

/// A failed read of the stacks (a torn read, a thread or the process gone).
#[derive(Debug)]
struct ReadFailed;

/// Reads only the stacks that can be reported: without idle samples, a thread that is
/// not on a CPU is dropped anyway, so its stack need not be walked.
///
/// py-spy walks every thread's stack and only then looks up whether the thread was on a
/// CPU; on a 20-thread service that is 19 walks (several `process_vm_readv` each per frame)
/// thrown away per sample. py-spy's library does not offer a per-thread read, but its
/// `gil_only` mode walks only the thread holding the GIL. So the OS states come first
/// ([`ThreadStates`]): no thread running means nothing to report, no walk at all; exactly
/// one running and it holds the GIL means the GIL-only read is the whole answer, the same
/// trace (`active`, `owns_gil`, name, frames) the full read would have reported. Anything
/// else (two threads running, one running without the GIL) takes py-spy's full read.
///
/// Only where py-spy knows each thread's OS id without pausing the target: CPython 3.11+
/// stores it in the thread state. Older versions, idle samples and `gil_only` always take
/// the full read, so what is reported does not change.
struct Reader {
    spy: py_spy::PythonSpy,
    states: Option<ThreadStates>,
    reads: Reads,
}

/// How each sample was read, for tests (and a debugger): the point is few `full` reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Reads {
    /// No thread on a CPU: no stack walked.
    skipped: u64,
    /// Only the GIL holder's stack walked.
    gil_only: u64,
    /// Every thread's stack walked.
    full: u64,
}

impl Reader {
    fn new(spy: py_spy::PythonSpy, convert: Convert) -> Self {
        let native_ids = (spy.version.major, spy.version.minor) >= (3, 11);
        let skip_idle = native_ids && !convert.include_idle && !convert.gil_only;
        let states = skip_idle.then(|| ThreadStates::new(spy.pid as u32));
        Reader {
            spy,
            states,
            reads: Reads::default(),
        }
    }

    fn traces(&mut self) -> Result<Vec<py_spy::StackTrace>, ReadFailed> {
        let Some(states) = self.states.as_mut() else {
            return self.full();
        };
        let running = match states.running() {
            Ok(&[]) => {
                self.reads.skipped += 1;
                return Ok(Vec::new());
            }
            Ok(&[tid]) => u64::from(tid),
            Ok(_) | Err(_) => return self.full(),
        };
        self.spy.config.gil_only = true;
        let gil = self.spy.get_stack_traces();
        self.spy.config.gil_only = false;
        match gil {
            Ok(traces) if traces.len() == 1 && traces[0].os_thread_id == Some(running) => {
                self.reads.gil_only += 1;
                Ok(traces)
            }
            Ok(_) => self.full(),
            Err(_) => Err(ReadFailed),
        }
    }

    fn full(&mut self) -> Result<Vec<py_spy::StackTrace>, ReadFailed> {
        self.reads.full += 1;
        self.spy.get_stack_traces().map_err(|_| ReadFailed)
    }
}

/// CPython through py-spy.
#[derive(Debug, Clone, Copy, Default)]
pub struct PySpy;

impl Backend for PySpy {
    fn interpreter(&self) -> Interpreter {
        Interpreter::Python
    }

    /// Returns once py-spy has found the interpreter, or failed to.
    fn start(&self, pid: u32, config: &Config, stop: Arc<AtomicBool>) -> Result<Running, Error> {
        start(pid, config, stop).map(|(events, thread)| Running { events, thread })
    }
}

fn start(
    pid: u32,
    config: &Config,
    stop: Arc<AtomicBool>,
) -> Result<(Receiver<Event>, JoinHandle<()>), Error> {
    let py_config = py_spy_config(config);
    let convert = Convert::new(config);
    let (events, rx) = sync_channel::<Event>(1024);
    let (ready_tx, ready_rx) = channel::<Result<(), Error>>();
    let thread = if config.subprocesses {
        spawn_subprocess_sampler(pid, py_config, convert, stop, events, ready_tx)?
    } else {
        spawn_stratified(
            pid,
            py_config,
            config.rate_hz,
            convert,
            stop,
            events,
            ready_tx,
        )?
    };
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((rx, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(Error::Backend {
            pid,
            detail: "the py-spy thread ended unexpectedly".into(),
        }),
    }
}

/// One process: our own loop around `PythonSpy`, paced by [`Pacer`] (stratified samples).
fn spawn_stratified(
    pid: u32,
    py_config: py_spy::Config,
    rate_hz: u32,
    convert: Convert,
    stop: Arc<AtomicBool>,
    events: SyncSender<Event>,
    ready_tx: Sender<Result<(), Error>>,
) -> Result<JoinHandle<()>, Error> {
    spawn(pid, move || {
        // PythonSpy is not Send on Linux: it must live on this thread.
        let attached = py_spy::PythonSpy::retry_new(pid as py_spy::Pid, &py_config, 20);
        let Some(spy) = announce(pid, attached, &ready_tx) else {
            return;
        };
        let mut reader = Reader::new(spy, convert);
        let mut pacer = Pacer::new(rate_hz, Instant::now());
        pacer.start(Instant::now());
        while !stop.load(Ordering::SeqCst) {
            let at = pacer.next_instant(Instant::now());
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let event = match reader.traces() {
                Ok(traces) => Event::Traces(convert.traces(&traces)),
                Err(_) if !is_alive(pid) => break,
                Err(_) => Event::Errors(1),
            };
            if events.send(event).is_err() {
                return;
            }
        }
        let _ = events.send(Event::Ended(Ok(())));
    })
}

/// A process tree: py-spy's own sampler, which attaches to workers as they appear.
fn spawn_subprocess_sampler(
    pid: u32,
    py_config: py_spy::Config,
    convert: Convert,
    stop: Arc<AtomicBool>,
    events: SyncSender<Event>,
    ready_tx: Sender<Result<(), Error>>,
) -> Result<JoinHandle<()>, Error> {
    spawn(pid, move || {
        let attached = py_spy::sampler::Sampler::new(pid as py_spy::Pid, &py_config);
        let Some(sampler) = announce(pid, attached, &ready_tx) else {
            return;
        };
        for sample in sampler {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let errors = sample.sampling_errors.map_or(0, |e| e.len() as u64);
            if errors > 0 && events.send(Event::Errors(errors)).is_err() {
                return;
            }
            let traces = convert.traces(&sample.traces);
            if events.send(Event::Traces(traces)).is_err() {
                return;
            }
        }
        // Stopped by us, or the iterator ended because every target exited.
        let _ = events.send(Event::Ended(Ok(())));
    })
}

/// Tells `start` whether attaching worked; the backend comes back only when it did and
/// `start` is still waiting for the answer.
fn announce<T>(
    pid: u32,
    attached: Result<T, impl std::fmt::Display>,
    ready: &Sender<Result<(), Error>>,
) -> Option<T> {
    match attached {
        Ok(backend) => ready.send(Ok(())).is_ok().then_some(backend),
        Err(e) => {
            let _ = ready.send(Err(Error::from_backend(pid, &e)));
            None
        }
    }
}

fn spawn(pid: u32, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(format!("py-spy {pid}"))
        .spawn(body)
        .map_err(|e| Error::Backend {
            pid,
            detail: format!("starting the sampler thread: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_maps_onto_py_spy() {
        let c = py_spy_config(&Config {
            rate_hz: 250,
            nonblocking: true,
            gil_only: true,
            ..Config::default()
        });
        assert_eq!(c.sampling_rate, 250);
        assert!(c.gil_only);
        assert_eq!(c.blocking, py_spy::config::LockingStrategy::NonBlocking);
        assert!(!c.include_idle);
    }

    /// A real CPython: eight threads blocked on an event, and a main thread that spins
    /// (`spin`) or blocks too (`idle`). Killed in `Drop`.
    struct Target(std::process::Child);

    const SCRIPT: &str = "import sys, threading\n\
        go = threading.Event()\n\
        for i in range(8):\n    threading.Thread(target=go.wait, name=f'idle-{i}', daemon=True).start()\n\
        def spin():\n    while True:\n        sum(range(1000))\n\
        print('ready', flush=True)\n\
        spin() if sys.argv[1] == 'spin' else go.wait()\n";

    impl Target {
        fn start(mode: &str) -> Target {
            use std::io::BufRead;
            let mut child = std::process::Command::new("python3")
                .args(["-c", SCRIPT, mode])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("python3 runs");
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("ready line");
            assert_eq!(line.trim(), "ready");
            Target(child)
        }

        fn reader(&self, include_idle: bool) -> Reader {
            let config = Config {
                nonblocking: true,
                include_idle,
                ..Config::default()
            };
            let pid = self.0.id() as py_spy::Pid;
            let spy = py_spy::PythonSpy::retry_new(pid, &py_spy_config(&config), 20)
                .expect("py-spy attaches (ptrace allowed)");
            Reader::new(spy, Convert::new(&config))
        }
    }

    impl Drop for Target {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn names(trace: &py_spy::StackTrace) -> Vec<&str> {
        trace.frames.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn one_running_thread_among_idle_ones_is_read_alone_and_as_the_full_read_reads_it() {
        let target = Target::start("spin");
        let mut fast = target.reader(false);
        let mut all = target.reader(true);
        assert!(all.states.is_none(), "idle samples take the full read");
        let full = all.traces().expect("full read");
        assert_eq!(full.len(), 9, "every thread is read with idle samples");
        let spinning = full.iter().find(|t| t.active).expect("the spinning thread");
        assert!(full
            .iter()
            .filter(|t| !t.active)
            .all(|t| names(t).iter().any(|n| n.ends_with("wait"))));
        let reads = 100;
        for _ in 0..reads {
            let traces = fast.traces().expect("fast read");
            assert!(traces.len() <= 1, "only the running thread is read");
            for t in &traces {
                assert!(t.active && t.owns_gil);
                assert_eq!(t.thread_name.as_deref(), Some("MainThread"));
                assert_eq!(t.os_thread_id, spinning.os_thread_id);
                assert_eq!(names(t), names(spinning));
            }
        }
        // The main thread holds the GIL and is the only one running: the GIL-only read
        // is the whole answer nearly always (a torn read may count as neither).
        assert!(fast.reads.gil_only * 10 >= reads * 9, "{:?}", fast.reads);
    }

    #[test]
    fn a_process_with_every_thread_idle_walks_no_stack_and_its_exit_is_seen() {
        let mut target = Target::start("idle");
        let mut fast = target.reader(false);
        let reads = 50;
        for _ in 0..reads {
            assert!(fast.traces().expect("read").is_empty());
        }
        assert!(fast.reads.skipped * 10 >= reads * 9, "{:?}", fast.reads);
        // Killed but not reaped: a zombie has no memory to read, and must not pass for
        // a process whose threads are all idle.
        target.0.kill().expect("kill");
        let ended = (0..100_000).any(|_| fast.traces().is_err());
        assert!(ended, "the exit was never reported");
    }
}
