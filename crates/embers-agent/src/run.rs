//! The agent's two loops: sampling (this thread: read stacks, cut windows, queue them) and
//! uploading (a thread: send the oldest window, back off while the server is away).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use embers_sampler::{Event, Sampler};
use regex::Regex;

use crate::config::AgentConfig;
use crate::outbox::Outbox;
use crate::push;
use crate::upload::{Backoff, SendError, Uploader};
use crate::window::{Window, Windows};

/// Which processes to profile.
#[derive(Debug, Clone)]
pub enum Targets {
    /// These pids; the agent ends when all have exited.
    Pids(Vec<u32>),
    /// Every process whose command line matches, now or later; the agent runs until
    /// stopped, waiting for new matches when none is left.
    Pgrep(Regex),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Stacks sampled.
    pub samples: u64,
    /// Windows queued for sending.
    pub windows: u64,
    /// Windows the server accepted.
    pub sent: u64,
    /// Windows dropped because the queue was full.
    pub dropped: u64,
    /// Windows the server refused for good (a 4xx other than 408/429).
    pub refused: u64,
    /// Windows still unsent when the agent stopped (kept in the spool if there is one).
    pub unsent: usize,
    /// Failed stack reads.
    pub errors: u64,
}

/// An error that stops the agent before it starts.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

struct Shared {
    outbox: Mutex<Outbox>,
    wake: Condvar,
    closing: AtomicBool,
    sent: AtomicU64,
    refused: AtomicU64,
    send_failures: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Runs the agent until the targets are gone (pids) or `stop` is set; then sends the
/// last, partial windows (for at most `flush_timeout`) and returns what happened.
pub fn run(config: &AgentConfig, targets: Targets, stop: &AtomicBool) -> Result<Summary, Error> {
    // First: a CA file that cannot be read stops the agent before it attaches to anything.
    let uploader = Uploader::new(config)?;
    let outbox = Outbox::open(config.queue_windows, config.spool_dir.clone())?;
    let shared = Arc::new(Shared {
        outbox: Mutex::new(outbox),
        wake: Condvar::new(),
        closing: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        send_failures: AtomicU64::new(0),
    });
    let mut samplers: Vec<(u32, Sampler)> = Vec::new();
    let pattern = match targets {
        Targets::Pids(pids) => {
            for pid in pids {
                samplers.push((pid, Sampler::attach(pid, &config.sampler)?));
                tracing::info!(pid, "profiling");
            }
            None
        }
        Targets::Pgrep(re) => Some(re),
    };
    let upload_thread = {
        let shared = Arc::clone(&shared);
        let timeout = config.flush_timeout;
        std::thread::Builder::new()
            .name("embers-upload".into())
            .spawn(move || upload_loop(&shared, &uploader, timeout))?
    };
    let instance = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 40);
    let mut windows = Windows::new(config.period, config.sampler.rate_hz, unix_now());
    let mut summary = Summary::default();
    let queue = |windows: Vec<Window>, summary: &mut Summary| {
        for window in windows {
            match push::encode(&window, &config.app, &config.tags, config.tag_pid, instance) {
                Ok(out) => {
                    summary.windows += 1;
                    if let Err(e) = lock(&shared.outbox).push(out) {
                        tracing::error!(error = %e, "could not spool a window; it is lost");
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not encode a window; it is lost"),
            }
        }
        shared.wake.notify_all();
    };
    let mut ignored: Vec<u32> = Vec::new();
    let mut last_scan: Option<Instant> = None;
    let mut last_log = Instant::now();
    let mut logged = (0u64, 0u64);
    loop {
        if stop.load(Ordering::SeqCst) {
            tracing::info!("stopping: sending the last windows");
            break;
        }
        if let Some(re) = &pattern {
            if last_scan.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_scan = Some(Instant::now());
                for pid in crate::targets::pgrep(re) {
                    if samplers.iter().any(|(p, _)| *p == pid) || ignored.contains(&pid) {
                        continue;
                    }
                    match Sampler::attach(pid, &config.sampler) {
                        Ok(s) => {
                            tracing::info!(pid, "profiling a new match");
                            samplers.push((pid, s));
                        }
                        Err(e) => {
                            tracing::warn!(pid, error = %e, "not profiling this match");
                            ignored.push(pid);
                        }
                    }
                }
            }
        }
        let mut busy = false;
        samplers.retain(|(pid, sampler)| {
            while let Some(event) = sampler.recv_timeout(Duration::ZERO) {
                busy = true;
                match event {
                    Event::Traces(traces) => {
                        for t in &traces {
                            windows.add(t);
                        }
                        summary.samples += traces.len() as u64;
                    }
                    Event::Errors(n) => summary.errors += n,
                    Event::Ended(Ok(())) => {
                        tracing::info!(pid, "target exited");
                        return false;
                    }
                    Event::Ended(Err(e)) => {
                        tracing::warn!(pid, error = %e, "stopped profiling");
                        return false;
                    }
                }
            }
            true
        });
        let now = unix_now();
        if windows.due(now) {
            queue(windows.cut(now), &mut summary);
        }
        if samplers.is_empty() && pattern.is_none() {
            break;
        }
        if last_log.elapsed() >= config.log_every {
            last_log = Instant::now();
            let sent = shared.sent.load(Ordering::Relaxed);
            let (queued, dropped) = {
                let o = lock(&shared.outbox);
                (o.len(), o.dropped)
            };
            tracing::info!(
                targets = samplers.len(),
                samples = summary.samples - logged.0,
                windows_sent = sent - logged.1,
                queue = queued,
                dropped_total = dropped,
                send_failures_total = shared.send_failures.load(Ordering::Relaxed),
                read_errors_total = summary.errors,
                "status"
            );
            logged = (summary.samples, sent);
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(samplers);
    queue(windows.cut(unix_now()), &mut summary);
    shared.closing.store(true, Ordering::SeqCst);
    shared.wake.notify_all();
    let _ = upload_thread.join();
    let outbox = lock(&shared.outbox);
    summary.sent = shared.sent.load(Ordering::Relaxed);
    summary.refused = shared.refused.load(Ordering::Relaxed);
    summary.dropped = outbox.dropped;
    summary.unsent = outbox.len();
    if summary.unsent > 0 {
        if config.spool_dir.is_some() {
            tracing::warn!(
                windows = summary.unsent,
                "unsent windows stay in the spool for the next run"
            );
        } else {
            tracing::error!(windows = summary.unsent, "the server did not take these windows in time; they are lost (use --spool-dir to keep them)");
        }
    }
    Ok(summary)
}

/// Sends the oldest window until the outbox is empty and the agent is closing, or the
/// flush timeout after closing has passed.
fn upload_loop(shared: &Shared, uploader: &Uploader, flush_timeout: Duration) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut deadline: Option<Instant> = None;
    let mut failing = false;
    loop {
        let next = {
            let mut outbox = lock(&shared.outbox);
            loop {
                if let Some(front) = outbox.front() {
                    break Some(front.clone());
                }
                if shared.closing.load(Ordering::SeqCst) {
                    break None;
                }
                outbox = shared
                    .wake
                    .wait_timeout(outbox, Duration::from_secs(1))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        };
        let Some(outgoing) = next else { return };
        if shared.closing.load(Ordering::SeqCst) {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + flush_timeout);
            if Instant::now() >= deadline {
                return;
            }
        }
        match uploader.send(&outgoing) {
            Ok(()) => {
                if failing {
                    tracing::info!("server reachable again: sending queued windows");
                    failing = false;
                }
                backoff.reset();
                lock(&shared.outbox).done(&outgoing.id);
                shared.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(SendError::Refused(why)) => {
                tracing::error!(window = %outgoing.id, %why, "server refused a window; dropped");
                lock(&shared.outbox).done(&outgoing.id);
                shared.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(SendError::Retry(why)) => {
                shared.send_failures.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(%why, "cannot push; keeping windows and retrying with backoff");
                    failing = true;
                }
                let mut wait = backoff.next_wait();
                if let Some(deadline) = deadline {
                    wait = wait.min(deadline.saturating_duration_since(Instant::now()));
                }
                let outbox = lock(&shared.outbox);
                let _ = shared.wake.wait_timeout(outbox, wait);
            }
        }
    }
}
