//! Shared pieces of the Embers benchmarks: realistic synthetic profiles and a tiny timing
//! harness that reports medians and ratios against a baseline run in the same process.

pub mod process;

use std::time::{Duration, Instant};

use embers_profile::{Frame, Labels, Profile, ProfileMeta, ValueType};

/// A deterministic pseudo-random generator (SplitMix64), so every run sees the same data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// A profile shaped like a real service's: `stacks` distinct stacks of depth 10..50 that
/// share prefixes (a few entry points fanning out), over `functions` Python-style frames.
pub fn synthetic_profile(stacks: usize, functions: usize, seed: u64) -> Profile {
    let mut rng = Rng::new(seed);
    let frames: Vec<Frame> = (0..functions)
        .map(|i| {
            Frame::at(
                format!("handler_{i}"),
                format!("app/module_{}/views.py", i % 97),
                Some(10 + (i as u32 % 400)),
            )
        })
        .collect();
    let mut profile = Profile::new(ProfileMeta::sampled_at(100));
    let mut stack: Vec<&Frame> = Vec::new();
    while profile.samples().len() < stacks {
        let depth = rng.range(10, 50) as usize;
        stack.clear();
        // Shallow frames come from a small pool, deep ones from the whole set: trees
        // share their trunks like real call trees do.
        for level in 0..depth {
            let pool = (8 * (level + 1) * (level + 1)).min(functions) as u64;
            stack.push(&frames[rng.range(0, pool) as usize]);
        }
        let weight = 1 + rng.range(0, 100) * rng.range(0, 3);
        profile.add_frames(stack.iter().copied(), Labels::new(), weight);
    }
    profile
}

/// Median time of `runs` calls of `f` after one warm-up call.
pub fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Megabytes per second for `bytes` processed in `time`.
pub fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

/// A 10 s CPU profile of ~500 distinct stacks of depth 10..50 (mean ≈ 30), as a client
/// sends it: gzipped pprof. `seed` varies the sample weights, not the code shape.
pub fn client_pprof(seed: u64) -> Vec<u8> {
    let shape = synthetic_profile(500, 400, 7);
    let mut rng = Rng::new(seed);
    let mut p = Profile::new(ProfileMeta {
        sample_type: ValueType::new("cpu", "nanoseconds"),
        period_type: Some(ValueType::new("cpu", "nanoseconds")),
        period: 10_000_000,
        ..ProfileMeta::default()
    });
    p.symbols = shape.symbols.clone();
    for s in shape.samples() {
        p.add(s.stack.clone(), Labels::new(), 10_000_000 * rng.range(1, 5));
    }
    let mut out = Vec::new();
    embers_formats::pprof::encode(&p, &mut out).expect("encoding to memory");
    out
}

/// A Connect `PushRequest` body carrying one gzipped pprof for `service`, as pyroscope-io
/// and the agent send it.
pub fn push_request(pprof: &[u8], service: &str) -> Vec<u8> {
    use embers_server::wire::{LabelPair, PushRequest, RawProfileSeries, RawSample};
    use prost::Message;
    let label = |name: &str, value: &str| LabelPair {
        name: name.into(),
        value: value.into(),
    };
    PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                label("service_name", service),
                label("__name__", "process_cpu"),
            ],
            samples: vec![RawSample {
                raw_profile: pprof.to_vec(),
                id: String::new(),
            }],
            annotations: vec![],
        }],
    }
    .encode_to_vec()
}

/// CPU time (user + system) of this whole process so far, every thread, from
/// `/proc/self/stat` (in clock ticks of 10 ms: time runs of seconds).
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`): unlike
/// wall time, it does not count the time other processes on a busy machine take.
pub fn on_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat")
}
