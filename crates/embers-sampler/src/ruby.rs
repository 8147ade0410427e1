//! CRuby through rbspy's sampler. rbspy reports attach failures asynchronously (it retries
//! while the VM starts), so they arrive as [`Event::Ended`] with the error.
//!
//! rbspy samples on a fixed grid (every 1/rate s from its start), which locks onto a
//! periodic program: the seed-000 loop read foo at 73.8–86 % against a true 75 %. Its
//! stack reader is not public, so for one process we pace it from outside: rbspy hands
//! each trace over a rendezvous channel, and its grid is set at twice our rate so that it
//! is always behind it and reads the next trace as soon as we accept one. Accepting at
//! [`Pacer`]'s random instant, one per slot, makes rbspy's reads stratified like the
//! Python ones. (While the target is idle rbspy polls it on that grid, finding nothing.) A process tree (`subprocesses`) keeps
//! rbspy's own schedule, since all its per-process threads share one channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Running};
use crate::detect::Interpreter;
use crate::pacing::Pacer;
use crate::sampler::{frame, Event, Trace};
use crate::{Config, Error};

fn convert(trace: &rbspy::StackTrace, root_pid: u32, function_only: bool) -> Trace {
    Trace {
        pid: trace
            .pid
            .map_or(root_pid, |p| u32::try_from(p).unwrap_or(root_pid)),
        thread: trace
            .thread_id
            .map_or_else(|| "main".to_owned(), |t| format!("{t:#x}")),
        // rbspy lists the running frame first.
        frames: trace
            .trace
            .iter()
            .rev()
            .map(|f| {
                let file = f.absolute_path.as_deref().unwrap_or(&f.relative_path);
                let line = f.lineno.map_or(0, |l| i64::try_from(l).unwrap_or(0));
                frame(&f.name, Some(file), line, function_only)
            })
            .collect(),
    }
}

/// CRuby through rbspy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rbspy;

impl Backend for Rbspy {
    fn interpreter(&self) -> Interpreter {
        Interpreter::Ruby
    }

    /// Returns once rbspy's thread is started; attach failures come as [`Event::Ended`].
    fn start(&self, pid: u32, config: &Config, stop: Arc<AtomicBool>) -> Result<Running, Error> {
        start(pid, config, stop).map(|(events, thread)| Running { events, thread })
    }
}

fn start(
    pid: u32,
    config: &Config,
    stop: Arc<AtomicBool>,
) -> Result<(Receiver<Event>, JoinHandle<()>), Error> {
    let paced = !config.subprocesses;
    let rate = config.rate_hz.max(1);
    let sampler = rbspy::sampler::Sampler::new(
        pid as rbspy::Pid,
        if paced { rate.saturating_mul(2) } else { rate },
        !config.nonblocking,
        None,
        config.subprocesses,
        None,
        !config.include_idle,
    );
    let (trace_tx, trace_rx) = sync_channel::<rbspy::StackTrace>(if paced { 0 } else { 1024 });
    let (result_tx, result_rx) = channel();
    sampler
        .start(trace_tx, result_tx)
        .map_err(|e| Error::from_backend(pid, &e))?;
    let function_only = config.function_only;
    let mut pacer = paced.then(|| Pacer::new(rate, Instant::now()));
    let (events, rx) = sync_channel::<Event>(1024);
    let thread = std::thread::Builder::new()
        .name(format!("rbspy {pid}"))
        .spawn(move || {
            if let Some(pacer) = pacer.as_mut() {
                pacer.start(Instant::now());
            }
            let end = loop {
                if stop.load(Ordering::SeqCst) {
                    sampler.stop();
                    break Ok(());
                }
                if let Some(pacer) = pacer.as_mut() {
                    let at = pacer.next_instant(Instant::now());
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                match trace_rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(trace) => {
                        let traces = vec![convert(&trace, pid, function_only)];
                        if events.send(Event::Traces(traces)).is_err() {
                            sampler.stop();
                            break Ok(());
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
                }
                match result_rx.try_recv() {
                    Ok(Ok(())) | Err(TryRecvError::Disconnected) => break Ok(()),
                    Ok(Err(e)) => break Err(Error::from_backend(pid, &e)),
                    Err(TryRecvError::Empty) => {}
                }
            };
            // Traces still queued (or, paced, the one rbspy is handing over) were read
            // before the end: deliver them. Then wait for rbspy's thread to report, which
            // it does only to a receiver still there (it panics otherwise).
            let mut rest = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                rest.extend(trace_rx.try_iter().map(|t| convert(&t, pid, function_only)));
                match result_rx.recv_timeout(Duration::from_millis(10)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(_) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            if !rest.is_empty() {
                let _ = events.send(Event::Traces(rest));
            }
            let _ = events.send(Event::Ended(end));
        })
        .map_err(|e| Error::Backend {
            pid,
            detail: format!("starting the sampler thread: {e}"),
        })?;
    Ok((rx, thread))
}
