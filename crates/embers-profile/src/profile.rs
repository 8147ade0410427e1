//! A profile: labelled stack samples of one value type, plus metadata.

use crate::frame::{Frame, FrameId, SymbolTable};
use crate::hash::FxHashMap;
use crate::labels::Labels;
use crate::tree::StackTree;

/// What a sample value measures, as pprof's `ValueType` (`samples`/`count`, `cpu`/`nanoseconds`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueType {
    /// Kind of value, e.g. `samples`, `cpu`, `wall`, `alloc_space`.
    pub kind: String,
    /// Unit, e.g. `count`, `nanoseconds`, `bytes`.
    pub unit: String,
}

impl ValueType {
    /// A value type from its two names.
    pub fn new(kind: impl Into<String>, unit: impl Into<String>) -> Self {
        ValueType {
            kind: kind.into(),
            unit: unit.into(),
        }
    }

    /// Sample counts, what a sampling profiler records.
    pub fn samples() -> Self {
        ValueType::new("samples", "count")
    }
    /// `value` as people read it in this unit: time units as seconds (`1.50 s`,
    /// `12.0 ms`), bytes in binary multiples (`2.0 KiB`), counts with their kind
    /// (`300 samples`, `12 alloc_objects`). The CLI's summaries and the call graph use it,
    /// so a CPU profile counted in nanoseconds never reads as billions of "samples".
    pub fn format_value(&self, value: u64) -> String {
        let seconds = |s: f64| {
            if value == 0 {
                "0 s".to_owned()
            } else if s >= 1.0 {
                format!("{s:.2} s")
            } else if s >= 1e-3 {
                format!("{:.1} ms", s * 1e3)
            } else if s >= 1e-6 {
                format!("{:.0} µs", s * 1e6)
            } else {
                format!("{:.0} ns", s * 1e9)
            }
        };
        match self.unit.as_str() {
            "nanoseconds" | "ns" => seconds(value as f64 / 1e9),
            "microseconds" | "us" => seconds(value as f64 / 1e6),
            "milliseconds" | "ms" => seconds(value as f64 / 1e3),
            "seconds" | "s" => seconds(value as f64),
            "bytes" => {
                let units = ["B", "KiB", "MiB", "GiB", "TiB"];
                let (mut v, mut i) = (value as f64, 0);
                while v >= 1024.0 && i + 1 < units.len() {
                    v /= 1024.0;
                    i += 1;
                }
                if i == 0 {
                    format!("{value} B")
                } else {
                    format!("{v:.1} {}", units[i])
                }
            }
            _ => match self.kind.as_str() {
                "" => format!("{value} samples"),
                kind => format!("{value} {kind}"),
            },
        }
    }
}

impl Default for ValueType {
    fn default() -> Self {
        ValueType::samples()
    }
}

/// Facts about how a profile was taken.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileMeta {
    /// What each sample value counts.
    pub sample_type: ValueType,
    /// What one period is measured in (pprof `period_type`), e.g. `cpu`/`nanoseconds`.
    pub period_type: Option<ValueType>,
    /// Sampling period in `period_type` units (1e7 ns for 100 Hz); 0 when unknown.
    pub period: i64,
    /// When the profile started, in nanoseconds since the Unix epoch; 0 when unknown.
    pub time_nanos: i64,
    /// How long the profile covers, in nanoseconds; 0 when unknown.
    pub duration_nanos: i64,
}

impl ProfileMeta {
    /// Metadata of a sampling profile at `rate_hz` samples per second.
    pub fn sampled_at(rate_hz: u32) -> Self {
        ProfileMeta {
            sample_type: ValueType::samples(),
            period_type: Some(ValueType::new("cpu", "nanoseconds")),
            period: if rate_hz == 0 {
                0
            } else {
                1_000_000_000 / i64::from(rate_hz)
            },
            ..ProfileMeta::default()
        }
    }
}

/// One distinct (stack, labels) pair and its accumulated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Frames from the root (outermost call) to the leaf (where the CPU was).
    pub stack: Vec<FrameId>,
    /// Thread, pid and tags of this sample.
    pub labels: Labels,
    /// Accumulated value (sample count, nanoseconds, bytes…).
    pub value: u64,
}

/// A profile: labelled samples over a symbol table. Identical (stack, labels) pairs are
/// aggregated as they are added, so memory follows distinct stacks, not sample count.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// How the profile was taken.
    pub meta: ProfileMeta,
    /// Frames the stacks refer to.
    pub symbols: SymbolTable,
    samples: Vec<Sample>,
    index: FxHashMap<(Vec<FrameId>, Labels), usize>,
}

impl Profile {
    /// An empty profile with the given metadata.
    pub fn new(meta: ProfileMeta) -> Self {
        Profile {
            meta,
            ..Profile::default()
        }
    }

    /// Adds `value` to the sample at `stack` (root first) with `labels`.
    pub fn add(&mut self, stack: Vec<FrameId>, labels: Labels, value: u64) {
        if value == 0 {
            return;
        }
        let next = self.samples.len();
        let samples = &mut self.samples;
        match self.index.entry((stack, labels)) {
            std::collections::hash_map::Entry::Occupied(e) => samples[*e.get()].value += value,
            std::collections::hash_map::Entry::Vacant(e) => {
                let (stack, labels) = e.key().clone();
                samples.push(Sample {
                    stack,
                    labels,
                    value,
                });
                e.insert(next);
            }
        }
    }

    /// Adds `value` for a stack of frames given root first, interning them.
    pub fn add_frames<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a Frame>,
        labels: Labels,
        value: u64,
    ) {
        let stack: Vec<FrameId> = frames.into_iter().map(|f| self.symbols.intern(f)).collect();
        self.add(stack, labels, value);
    }

    /// The distinct samples in insertion order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Sum of all sample values.
    pub fn total(&self) -> u64 {
        self.samples.iter().map(|s| s.value).sum()
    }

    /// The frames of `stack`, root first.
    pub fn frames<'a>(&'a self, stack: &'a [FrameId]) -> impl Iterator<Item = &'a Frame> + 'a {
        stack.iter().map(|&id| self.symbols.get(id))
    }

    /// The call tree of every sample.
    pub fn tree(&self) -> StackTree {
        self.tree_where(|_| true)
    }

    /// The call tree of the samples whose labels satisfy `keep`.
    pub fn tree_where(&self, mut keep: impl FnMut(&Labels) -> bool) -> StackTree {
        let mut tree = StackTree::new();
        // Frame ids are dense, so a vector remaps them; frames are interned on first use
        // so the tree only holds frames its samples reach.
        let mut remap: Vec<Option<FrameId>> = vec![None; self.symbols.len()];
        let mut path = Vec::new();
        for sample in self.samples.iter().filter(|s| keep(&s.labels)) {
            path.clear();
            for &id in &sample.stack {
                let slot = &mut remap[id.0 as usize];
                let mapped =
                    *slot.get_or_insert_with(|| tree.symbols_mut().intern(self.symbols.get(id)));
                path.push(mapped);
            }
            tree.add_stack(&path, sample.value);
        }
        tree
    }

    /// A copy with every frame passed through `f` (path clean-up, `--function`), merging
    /// samples whose stacks become equal.
    pub fn map_frames(&self, mut f: impl FnMut(&Frame) -> Frame) -> Profile {
        let mut out = Profile::new(self.meta.clone());
        let ids: Vec<FrameId> = self
            .symbols
            .iter()
            .map(|(_, frame)| out.symbols.intern_owned(f(frame)))
            .collect();
        for s in &self.samples {
            let stack = s.stack.iter().map(|id| ids[id.0 as usize]).collect();
            out.add(stack, s.labels.clone(), s.value);
        }
        out
    }

    /// A profile holding the stacks of `tree` (without labels, which trees do not keep),
    /// for writing a truncated or focused tree with the profile writers.
    pub fn from_tree(tree: &StackTree, meta: ProfileMeta) -> Profile {
        let mut out = Profile::new(meta);
        out.symbols = tree.symbols().clone();
        tree.for_each_stack(|stack, value| out.add(stack.to_vec(), Labels::new(), value));
        out
    }

    /// Adds every sample of `other` into `self` (metadata of `self` is kept).
    pub fn merge(&mut self, other: &Profile) {
        let ids: Vec<FrameId> = other
            .symbols
            .iter()
            .map(|(_, frame)| self.symbols.intern(frame))
            .collect();
        for s in &other.samples {
            let stack = s.stack.iter().map(|id| ids[id.0 as usize]).collect();
            self.add(stack, s.labels.clone(), s.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_in_their_unit() {
        let f = |kind: &str, unit: &str, v| ValueType::new(kind, unit).format_value(v);
        assert_eq!(f("cpu", "nanoseconds", 1_500_000_000), "1.50 s");
        assert_eq!(f("wall", "nanoseconds", 12_000_000), "12.0 ms");
        assert_eq!(f("alloc_space", "bytes", 2048), "2.0 KiB");
        assert_eq!(f("alloc_space", "bytes", 10), "10 B");
        assert_eq!(f("samples", "count", 300), "300 samples");
        assert_eq!(f("goroutine", "count", 5), "5 goroutine");
        assert_eq!(f("cpu", "nanoseconds", 0), "0 s");
    }
}
