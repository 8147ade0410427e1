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
        let Some(mut spy) = announce(pid, attached, &ready_tx) else {
            return;
        };
        let mut pacer = Pacer::new(rate_hz, Instant::now());
        pacer.start(Instant::now());
        while !stop.load(Ordering::SeqCst) {
            let at = pacer.next_instant(Instant::now());
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let event = match spy.get_stack_traces() {
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
}
