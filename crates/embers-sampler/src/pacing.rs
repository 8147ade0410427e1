//! When to take the next sample.
//!
//! Samples are *stratified*: time is cut into slots of 1/rate seconds and one sample is
//! taken at a uniformly random instant inside each slot. Like py-spy's exponential
//! intervals this cannot lock onto a periodic workload (no aliasing), and its estimates
//! are never noisier than independent random sampling; unlike them it takes exactly
//! `rate` samples a second and never bursts to catch up after a stall.
//!
//! It is no cure for sampling noise when a slot spans many of the program's cycles (the
//! seed-000 loop cycles every ~2.4 ms): then each sample is still a near-independent draw,
//! and a share estimated from n samples has a standard error of sqrt(p(1-p)/n), about
//! 1.9 points for p = 0.75 and n = 500 (5 s at 100 Hz).

use std::time::{Duration, Instant};

/// Produces sampling instants, one per slot.
#[derive(Debug)]
pub(crate) struct Pacer {
    slot: Duration,
    slot_start: Instant,
    rng: u64,
    /// Slots skipped because sampling ran late (a slow read, a busy machine).
    pub(crate) missed: u64,
}

impl Pacer {
    pub(crate) fn new(rate_hz: u32, now: Instant) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x2545_f491_4f6c_dd1d, |d| d.as_nanos() as u64)
            | 1;
        Pacer {
            slot: Duration::from_secs(1) / rate_hz.max(1),
            slot_start: now,
            rng: seed,
            missed: 0,
        }
    }

    /// xorshift64*: plenty for placing samples, and no dependency.
    fn next_unit(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let bits = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }

    /// The instant of the next sample, given the time now. Slots already over are skipped
    /// (and counted), so a stall never causes a burst of catch-up samples.
    pub(crate) fn next_instant(&mut self, now: Instant) -> Instant {
        while self.slot_start + self.slot <= now {
            self.slot_start += self.slot;
            self.missed += 1;
        }
        let at = self.slot_start + self.slot.mul_f64(self.next_unit());
        self.slot_start += self.slot;
        at.max(now)
    }

    /// Undoes the count of the first slot, which is "missed" only because sampling starts
    /// in the middle of it.
    pub(crate) fn start(&mut self, now: Instant) {
        self.slot_start = now;
        self.missed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_slot_inside_the_slot() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.start(t0);
        let mut now = t0;
        for i in 0..1000u32 {
            let at = p.next_instant(now);
            let slot_start = t0 + Duration::from_millis(10) * i;
            assert!(
                at >= slot_start && at < slot_start + Duration::from_millis(10),
                "slot {i}"
            );
            now = at;
        }
        assert_eq!(p.missed, 0);
    }

    #[test]
    fn stalls_skip_slots_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.start(t0);
        let late = t0 + Duration::from_millis(55);
        let at = p.next_instant(late);
        assert!(at >= late && at < t0 + Duration::from_millis(60));
        assert_eq!(p.missed, 5);
    }

    #[test]
    fn instants_are_spread_over_the_slot() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.start(t0);
        let mut now = t0;
        let mut halves = [0u32; 2];
        for i in 0..2000u32 {
            let at = p.next_instant(now);
            let offset = at - (t0 + Duration::from_millis(10) * i);
            halves[usize::from(offset >= Duration::from_millis(5))] += 1;
            now = at;
        }
        // Uniform placement: each half gets 1000 ± a few standard deviations (σ ≈ 22).
        assert!(
            halves.iter().all(|&h| (900..=1100).contains(&h)),
            "{halves:?}"
        );
    }
}
