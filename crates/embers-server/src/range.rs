//! [`QueryRange`]: the one bounded `[from, until)` every query API parses its time range
//! into, and the timeline steps drawn over it.
//!
//! The rules, in order (README "Query limits" says the same for users):
//! 1. `from`/`until` take every [`parse_time`] form; `until` may be at most
//!    [`QueryLimits::future_skew`] past the server's clock (clients' clocks drift a
//!    little; a far-future `until` is a mistake or an attack) and must be after `from`.
//! 2. `from` is clamped to the retention cutoff, then, if the range is still longer than
//!    [`QueryLimits::max_range`], to the oldest data stored: nothing exists before either,
//!    so the answer stays exact (`from=0` works on a young store).
//! 3. A range still longer than `max_range` is refused (400) with the limit in the message:
//!    answering part of it would be a silent lie, and the client can narrow it.
//! 4. Steps are powers of ten of 10 s leaves (the store's block sizes). A requested step
//!    is rounded down to one, then widened ×10 until the range has at most
//!    [`QueryLimits::max_points`] points, so a tiny step over a long range cannot allocate
//!    without bound and a huge step is simply one point.

use embers_store::LEAF_SECONDS;

use crate::error::ApiError;
use crate::params::{now, parse_duration, parse_time};

/// Most points of a timeline by default (Prometheus' limit too).
pub const MAX_POINTS: i64 = 11_000;

/// Bounds every query range obeys (from the server's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Longest `until - from`, seconds.
    pub max_range: i64,
    /// Most points in one timeline.
    pub max_points: i64,
    /// How far past now `until` may be, seconds.
    pub future_skew: i64,
    /// Data older than this many seconds is gone (retention), if set.
    pub retention: Option<i64>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_range: 32 * 86_400,
            max_points: MAX_POINTS,
            future_skew: 3600,
            retention: None,
        }
    }
}

/// A checked query range in Unix seconds, `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryRange {
    /// First second (inclusive).
    pub from: i64,
    /// End (exclusive).
    pub until: i64,
}

/// The default `from` of an API when the client sends none.
#[derive(Debug, Clone, Copy)]
pub enum DefaultFrom {
    /// `now-1h`: renders.
    LastHour,
    /// `now-30d`: label and series listings (what the UI's pickers offer).
    LastMonth,
}

impl DefaultFrom {
    fn from(self) -> &'static str {
        match self {
            DefaultFrom::LastHour => "now-1h",
            DefaultFrom::LastMonth => "now-30d",
        }
    }
}

/// `until` is exclusive; an `until` of the current second (`now`, the default) takes that
/// second in, so a profile ingested this second is in the answer. Without it, a query in
/// the first second of a 10 s leaf missed what was pushed in that same second.
fn through_now(until: i64, now: i64) -> i64 {
    if until == now {
        now + 1
    } else {
        until
    }
}

impl QueryRange {
    /// Parses request parameters (`None`: the API's default) against the clock.
    /// `oldest` gives the Unix second of the oldest stored data (asked only when the
    /// range would otherwise be refused, since it scans the catalog).
    pub fn parse(
        from: Option<&str>,
        until: Option<&str>,
        default: DefaultFrom,
        limits: &QueryLimits,
        oldest: impl FnOnce() -> Option<i64>,
    ) -> Result<QueryRange, ApiError> {
        let now = now();
        let from = parse_time(from.unwrap_or(default.from()), now)
            .map_err(|e| ApiError::bad_request(format!("`from`: {e}")))?;
        let until = parse_time(until.unwrap_or("now"), now)
            .map_err(|e| ApiError::bad_request(format!("`until`: {e}")))?;
        Self::check(from, through_now(until, now), now, limits, oldest)
    }

    /// The Connect querier's `start`/`end` in milliseconds; 0 (unset) means "from the
    /// oldest data" and "now".
    pub fn from_millis(
        start: i64,
        end: i64,
        limits: &QueryLimits,
        oldest: impl FnOnce() -> Option<i64>,
    ) -> Result<QueryRange, ApiError> {
        let now = now();
        let from = if start > 0 { start / 1000 } else { 0 };
        let until = if end > 0 {
            end.saturating_add(999) / 1000
        } else {
            through_now(now, now)
        };
        Self::check(from, until.max(from + 1), now, limits, oldest).map_err(ApiError::connect)
    }

    /// Applies the rules of the module doc to a parsed range.
    pub fn check(
        from: i64,
        until: i64,
        now: i64,
        limits: &QueryLimits,
        oldest: impl FnOnce() -> Option<i64>,
    ) -> Result<QueryRange, ApiError> {
        let latest = now.saturating_add(limits.future_skew);
        if until > latest {
            return Err(ApiError::bad_request(format!(
                "`until` ({until}) is in the future: at most {}s past the server's clock ({now}) is allowed",
                limits.future_skew
            )));
        }
        if until <= from {
            return Err(ApiError::bad_request(format!(
                "`until` ({until}) must be after `from` ({from})"
            )));
        }
        let mut from = from;
        if let Some(retention) = limits.retention {
            from = from.max(now.saturating_sub(retention));
        }
        if until.saturating_sub(from) > limits.max_range {
            // Before the oldest data there is nothing to miss; a leaf boundary keeps
            // timeline steps where they would have been.
            if let Some(oldest) = oldest() {
                from = from.max(oldest.div_euclid(LEAF_SECONDS) * LEAF_SECONDS);
            } else {
                from = from.max(until - 1);
            }
        }
        if until <= from {
            // Everything asked for is older than the retention: an empty, exact answer.
            from = until - 1;
        }
        if until - from > limits.max_range {
            return Err(ApiError::bad_request(format!(
                "the range from {from} to {until} is {} long; the server answers at most {} \
                 (max_query_range): narrow `from`/`until`",
                human(until - from),
                human(limits.max_range)
            )));
        }
        Ok(QueryRange { from, until })
    }

    /// Seconds covered.
    pub fn seconds(&self) -> i64 {
        self.until - self.from
    }

    /// The timeline step (in leaves, a power of ten) for about `target` points: the
    /// largest step at most `range / target` (the web UI's timeline asks 1,024).
    pub fn step_for(&self, target: i64) -> i64 {
        self.step_leaves(self.seconds() / target.max(1), MAX_POINTS)
    }

    /// The step (in leaves, a power of ten) for a requested step in seconds: rounded
    /// down to a power of ten of leaves, at least one leaf, then widened until the
    /// range has at most `max_points` points.
    pub fn step_leaves(&self, wanted_seconds: i64, max_points: i64) -> i64 {
        let span_leaves = self.seconds().div_euclid(LEAF_SECONDS) + 1;
        // Never wider than the range: one point holds it all.
        let wanted = (wanted_seconds / LEAF_SECONDS).clamp(1, span_leaves);
        let mut step = 1i64;
        while step.saturating_mul(10) <= wanted {
            step *= 10;
        }
        // `+ 1`: steps are aligned, so the range can straddle one more.
        while span_leaves / step + 1 > max_points.max(2) {
            step = step.saturating_mul(10);
        }
        step
    }
}

/// A duration in the largest whole unit that fits, for messages.
fn human(seconds: i64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds >= n && seconds % n == 0 {
            return format!("{}{unit}", seconds / n);
        }
    }
    if seconds >= 86_400 {
        return format!("{:.1}d", seconds as f64 / 86_400.0);
    }
    format!("{seconds}s")
}

/// Parses a `max_query_range` setting (`32d`, `12h`).
pub fn parse_max_range(s: &str) -> Result<i64, String> {
    let secs = parse_duration(s.trim()).map_err(|e| format!("max_query_range: {e}"))?;
    if secs <= 0 {
        return Err("max_query_range must be positive".into());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn check(from: i64, until: i64, limits: &QueryLimits) -> Result<QueryRange, String> {
        QueryRange::check(from, until, NOW, limits, || Some(NOW - 7 * 86_400))
            .map_err(|e| e.message)
    }

    #[test]
    fn ordinary_ranges_pass_unchanged() {
        let l = QueryLimits::default();
        assert_eq!(
            check(NOW - 3600, NOW, &l),
            Ok(QueryRange {
                from: NOW - 3600,
                until: NOW
            })
        );
        // A little clock skew is fine.
        assert!(check(NOW - 3600, NOW + 60, &l).is_ok());
    }

    #[test]
    fn until_now_takes_in_the_current_second() {
        // A push in second NOW lands in leaf NOW / 10; `[from, NOW)` ends before it when
        // NOW starts a leaf.
        assert_eq!(through_now(NOW, NOW), NOW + 1);
        assert_eq!(through_now(NOW - 60, NOW), NOW - 60);
        let before = now();
        let r = QueryRange::parse(
            None,
            None,
            DefaultFrom::LastHour,
            &QueryLimits::default(),
            || None,
        )
        .unwrap();
        let after = now();
        assert!(
            r.until > before && r.until <= after + 1,
            "{r:?} in [{before}, {after}]"
        );
    }

    #[test]
    fn far_future_until_and_reversed_ranges_are_refused() {
        let l = QueryLimits::default();
        let e = check(0, i64::MAX, &l).unwrap_err();
        assert!(e.contains("in the future"), "{e}");
        assert!(check(NOW, NOW - 1, &l).unwrap_err().contains("after"));
    }

    #[test]
    fn from_zero_is_clamped_to_the_oldest_data_when_that_keeps_it_exact() {
        let l = QueryLimits::default();
        let r = check(0, NOW, &l).unwrap();
        assert_eq!(r.from, NOW - 7 * 86_400);
        // With no data at all, any range is an empty, exact answer.
        let r = QueryRange::check(0, NOW, NOW, &l, || None).unwrap();
        assert!(r.seconds() <= l.max_range);
    }

    #[test]
    fn ranges_longer_than_the_limit_over_data_are_refused_with_the_limit() {
        let l = QueryLimits {
            max_range: 86_400,
            ..QueryLimits::default()
        };
        let e = check(0, NOW, &l).unwrap_err();
        assert!(e.contains("max_query_range") && e.contains("1d"), "{e}");
        // Within the limit once clamped by retention.
        let l = QueryLimits {
            retention: Some(3600),
            ..l
        };
        assert_eq!(check(0, NOW, &l).unwrap().from, NOW - 3600);
        // Wholly before the retention: empty, not an error.
        assert!(check(0, NOW - 7200, &l).is_ok());
    }

    #[test]
    fn steps_are_powers_of_ten_and_bounded_in_points() {
        const P: i64 = MAX_POINTS;
        let day = QueryRange {
            from: NOW - 86_400,
            until: NOW,
        };
        assert_eq!(day.step_leaves(10, P), 1);
        assert_eq!(day.step_leaves(15, P), 1);
        assert_eq!(day.step_leaves(100, P), 10);
        // A huge step is one point, without overflowing.
        assert_eq!(day.step_leaves(i64::MAX, P), 1000);
        assert_eq!(day.step_leaves(i64::MIN, P), 1);
        // A tiny step over a month widens until it fits 11,000 points.
        let month = QueryRange {
            from: NOW - 30 * 86_400,
            until: NOW,
        };
        let step = month.step_leaves(1, P);
        assert_eq!(step, 100);
        assert!(month.seconds() / (step * LEAF_SECONDS) < 11_000);
        // The render timeline: about 1,024 points.
        assert_eq!(day.step_for(1024), 1);
        assert_eq!(month.step_for(1024), 100);
    }

    #[test]
    fn max_range_settings_parse() {
        assert_eq!(parse_max_range("32d"), Ok(32 * 86_400));
        assert!(parse_max_range("0").is_err());
        assert!(parse_max_range("soon").is_err());
    }
}
