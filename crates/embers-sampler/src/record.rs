//! Recording: sample until a duration passes, a stop is asked for, or the target exits,
//! and aggregate everything into one [`Profile`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use embers_profile::{Frame, FrameId, Labels, Profile, ProfileMeta};

use crate::sampler::{Event, Sampler, Trace};
use crate::{Config, Error};

/// Progress of a recording, for a status line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Time since sampling started.
    pub elapsed: Duration,
    /// Stacks recorded.
    pub samples: u64,
    /// Reads that failed.
    pub errors: u64,
    /// The function most often running, as `name (file:line)`.
    pub top_function: Option<String>,
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `Config::duration` passed.
    Duration,
    /// The caller asked to stop (Ctrl-C).
    Stopped,
    /// The target exited.
    TargetExited,
}

/// A finished recording.
#[derive(Debug)]
pub struct Recording {
    /// The samples, one unit of value each, labelled `pid` and `thread`.
    pub profile: Profile,
    /// Final statistics.
    pub stats: Stats,
    /// Why it ended.
    pub end: EndReason,
}

/// How often `progress` is called.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Samples `pid` per `config` until the duration passes, `stop` becomes true, or the target
/// exits, calling `progress` a few times a second.
pub fn record(
    pid: u32,
    config: &Config,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Stats),
) -> Result<Recording, Error> {
    let sampler = Sampler::attach(pid, config)?;
    let start = Instant::now();
    let mut meta = ProfileMeta::sampled_at(config.rate_hz);
    meta.time_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let mut acc = Accumulator::new(Profile::new(meta), config.threads);
    let mut last_progress = start;
    let end = loop {
        if stop.load(Ordering::SeqCst) {
            break EndReason::Stopped;
        }
        let now = Instant::now();
        if config
            .duration
            .is_some_and(|d| now.duration_since(start) >= d)
        {
            break EndReason::Duration;
        }
        match sampler.recv_timeout(Duration::from_millis(50)) {
            Some(Event::Traces(traces)) => traces.iter().for_each(|t| acc.add(t)),
            Some(Event::Errors(n)) => acc.stats.errors += n,
            Some(Event::Ended(Ok(()))) => break EndReason::TargetExited,
            Some(Event::Ended(Err(e))) => {
                if acc.stats.samples == 0 {
                    return Err(e);
                }
                break EndReason::TargetExited;
            }
            None => {}
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            acc.stats.elapsed = start.elapsed();
            acc.refresh_top();
            progress(&acc.stats);
        }
    };
    sampler.stop();
    drop(sampler);
    acc.stats.elapsed = start.elapsed();
    acc.refresh_top();
    let mut profile = acc.profile;
    profile.meta.duration_nanos = i64::try_from(acc.stats.elapsed.as_nanos()).unwrap_or(i64::MAX);
    if acc.stats.samples == 0 && end == EndReason::TargetExited {
        return Err(Error::Exited(pid));
    }
    Ok(Recording {
        profile,
        stats: acc.stats,
        end,
    })
}

/// Folds traces into the profile and keeps the running-frame counts for the status line.
struct Accumulator {
    profile: Profile,
    threads: bool,
    stats: Stats,
    leaf_counts: HashMap<FrameId, u64>,
    stack: Vec<FrameId>,
}

impl Accumulator {
    fn new(profile: Profile, threads: bool) -> Self {
        Accumulator {
            profile,
            threads,
            stats: Stats::default(),
            leaf_counts: HashMap::new(),
            stack: Vec::new(),
        }
    }

    fn add(&mut self, trace: &Trace) {
        self.stack.clear();
        if self.threads {
            let root = Frame::named(format!("thread ({})", trace.thread));
            self.stack.push(self.profile.symbols.intern_owned(root));
        }
        for frame in &trace.frames {
            self.stack.push(self.profile.symbols.intern(frame));
        }
        if let Some(&leaf) = self.stack.last() {
            *self.leaf_counts.entry(leaf).or_default() += 1;
        }
        let labels = Labels::from_pairs([
            ("pid", trace.pid.to_string()),
            ("thread", trace.thread.clone()),
        ]);
        self.profile.add(self.stack.clone(), labels, 1);
        self.stats.samples += 1;
    }

    fn refresh_top(&mut self) {
        let top = self
            .leaf_counts
            .iter()
            .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)));
        self.stats.top_function = top.map(|(id, _)| self.profile.symbols.get(*id).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_with_thread_roots_and_labels() {
        let mut acc = Accumulator::new(Profile::new(ProfileMeta::sampled_at(100)), true);
        let trace = Trace {
            pid: 7,
            thread: "MainThread".into(),
            frames: vec![Frame::named("main"), Frame::at("foo", "a.py", Some(3))],
        };
        acc.add(&trace);
        acc.add(&trace);
        acc.refresh_top();
        assert_eq!(acc.stats.samples, 2);
        assert_eq!(acc.stats.top_function.as_deref(), Some("foo (a.py:3)"));
        let s = &acc.profile.samples()[0];
        assert_eq!(s.value, 2);
        assert_eq!(s.labels.get("thread"), Some("MainThread"));
        assert_eq!(
            acc.profile.symbols.get(s.stack[0]).function,
            "thread (MainThread)"
        );
    }
}
