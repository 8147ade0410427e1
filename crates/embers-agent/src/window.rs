//! Cutting samples into windows: one profile per target process per period, aligned to
//! multiples of the period (10:00:00, 10:00:10, ...) so windows from many agents line up.

use std::collections::BTreeMap;
use std::time::Duration;

use embers_profile::{Frame, Labels, Profile, ProfileMeta, ValueType};
use embers_sampler::Trace;

/// The samples of one process over `[start, end)` (Unix seconds). Values are CPU
/// nanoseconds: one sampling period per sample.
#[derive(Debug)]
pub struct Window {
    /// The process sampled.
    pub pid: u32,
    /// Start, Unix seconds.
    pub start: i64,
    /// End, Unix seconds (sooner than start + period for the last, partial window).
    pub end: i64,
    /// The samples, labelled `thread_name`.
    pub profile: Profile,
    /// How many samples.
    pub samples: u64,
}

/// Windows being filled.
#[derive(Debug)]
pub struct Windows {
    period: i64,
    rate_hz: u32,
    start: i64,
    open: BTreeMap<u32, (Profile, u64)>,
    stack: Vec<embers_profile::FrameId>,
}

impl Windows {
    /// Windows of `period` (whole seconds, at least 1) for samples taken at `rate_hz`;
    /// the first one is the one `now` (Unix seconds) falls in.
    pub fn new(period: Duration, rate_hz: u32, now: i64) -> Self {
        let period = i64::try_from(period.as_secs()).unwrap_or(10).max(1);
        Windows {
            period,
            rate_hz: rate_hz.max(1),
            start: now - now.rem_euclid(period),
            open: BTreeMap::new(),
            stack: Vec::new(),
        }
    }

    /// Start of the window being filled.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Whether the window being filled is over at `now`.
    pub fn due(&self, now: i64) -> bool {
        now >= self.start + self.period
    }

    /// The metadata of a window starting at `start`; built once per window, not per sample.
    fn meta(rate_hz: u32, start: i64) -> ProfileMeta {
        let period_ns = 1_000_000_000 / i64::from(rate_hz);
        ProfileMeta {
            sample_type: ValueType::new("cpu", "nanoseconds"),
            period_type: Some(ValueType::new("cpu", "nanoseconds")),
            period: period_ns,
            time_nanos: start.saturating_mul(1_000_000_000),
            ..ProfileMeta::default()
        }
    }

    /// Adds one sampled stack.
    pub fn add(&mut self, trace: &Trace) {
        let value = 1_000_000_000 / u64::from(self.rate_hz);
        let (rate_hz, start) = (self.rate_hz, self.start);
        let (profile, samples) = self
            .open
            .entry(trace.pid)
            .or_insert_with(|| (Profile::new(Self::meta(rate_hz, start)), 0));
        self.stack.clear();
        for frame in &trace.frames {
            self.stack.push(profile.symbols.intern(frame));
        }
        if self.stack.is_empty() {
            self.stack.push(
                profile
                    .symbols
                    .intern_owned(Frame::named("(no Python/Ruby frames)")),
            );
        }
        let labels = Labels::from_pairs([("thread_name", trace.thread.as_str())]);
        profile.add(self.stack.clone(), labels, value);
        *samples += 1;
    }

    /// Closes the window being filled at `now` (its natural end, or sooner for the last
    /// one) and starts the one `now` falls in. Returns the windows that had samples.
    pub fn cut(&mut self, now: i64) -> Vec<Window> {
        let end = now.min(self.start + self.period).max(self.start + 1);
        let start = self.start;
        let windows = std::mem::take(&mut self.open)
            .into_iter()
            .map(|(pid, (mut profile, samples))| {
                profile.meta.duration_nanos = (end - start).saturating_mul(1_000_000_000);
                Window {
                    pid,
                    start,
                    end,
                    profile,
                    samples,
                }
            })
            .collect();
        self.start = now - now.rem_euclid(self.period);
        windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(pid: u32, names: &[&str]) -> Trace {
        Trace {
            pid,
            thread: "MainThread".into(),
            frames: names.iter().map(|n| Frame::named(*n)).collect(),
        }
    }

    #[test]
    fn windows_are_aligned_per_process_and_valued_in_cpu_nanoseconds() {
        let mut w = Windows::new(Duration::from_secs(10), 100, 1_700_000_004);
        assert_eq!(w.start(), 1_700_000_000);
        w.add(&trace(1, &["main", "foo"]));
        w.add(&trace(1, &["main", "foo"]));
        w.add(&trace(2, &["main", "bar"]));
        assert!(!w.due(1_700_000_009));
        assert!(w.due(1_700_000_010));
        let out = w.cut(1_700_000_011);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].pid, out[0].samples), (1, 2));
        assert_eq!(out[0].profile.total(), 2 * 10_000_000);
        assert_eq!((out[0].start, out[0].end), (1_700_000_000, 1_700_000_010));
        assert_eq!(out[0].profile.meta.duration_nanos, 10_000_000_000);
        assert_eq!(
            out[0].profile.samples()[0].labels.get("thread_name"),
            Some("MainThread")
        );
        assert_eq!(w.start(), 1_700_000_010);
        // A partial last window ends when it is cut.
        w.add(&trace(1, &["main"]));
        let last = w.cut(1_700_000_013);
        assert_eq!((last[0].start, last[0].end), (1_700_000_010, 1_700_000_013));
        assert!(w.cut(1_700_000_020).is_empty());
    }
}
