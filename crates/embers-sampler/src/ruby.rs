//! CRuby through rbspy's sampler. rbspy reports attach failures asynchronously (it retries
//! while the VM starts), so they arrive as [`Event::Ended`] with the error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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

/// Starts sampling `pid`.
pub(crate) fn start(
    pid: u32,
    config: &Config,
    stop: Arc<AtomicBool>,
) -> Result<(Receiver<Event>, JoinHandle<()>), Error> {
    let sampler = rbspy::sampler::Sampler::new(
        pid as rbspy::Pid,
        config.rate_hz.max(1),
        !config.nonblocking,
        None,
        config.subprocesses,
        None,
        !config.include_idle,
    );
    let (trace_tx, trace_rx) = sync_channel::<rbspy::StackTrace>(1024);
    let (result_tx, result_rx) = channel();
    sampler
        .start(trace_tx, result_tx)
        .map_err(|e| Error::from_backend(pid, &e))?;
    let function_only = config.function_only;
    let (events, rx) = sync_channel::<Event>(1024);
    let thread = std::thread::Builder::new()
        .name(format!("rbspy {pid}"))
        .spawn(move || {
            let end = loop {
                if stop.load(Ordering::SeqCst) {
                    sampler.stop();
                    break Ok(());
                }
                match trace_rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(trace) => {
                        let traces = vec![convert(&trace, pid, function_only)];
                        if events.send(Event::Traces(traces)).is_err() {
                            sampler.stop();
                            return;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {}
                }
                match result_rx.try_recv() {
                    Ok(Ok(())) | Err(TryRecvError::Disconnected) => break Ok(()),
                    Ok(Err(e)) => break Err(Error::from_backend(pid, &e)),
                    Err(TryRecvError::Empty) => {}
                }
            };
            // Traces still queued were read before the end: deliver them.
            let rest: Vec<Trace> = trace_rx
                .try_iter()
                .map(|t| convert(&t, pid, function_only))
                .collect();
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
