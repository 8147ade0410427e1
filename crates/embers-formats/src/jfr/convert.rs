//! Events → call trees, as Grafana Pyroscope converts them (jfr-parser's `pprof/`): one
//! profile per kind of event, with the sample types, period types and `__name__`
//! families of its table, values aggregated per (stack, correlation) within a chunk and
//! trees built once at the end.

use std::collections::HashMap;

use embers_profile::{Frame, FrameId, Labels, ProfileMeta, StackTree, SymbolTable, ValueType};

use super::events::{Event, EventKind};
use super::labels_proto::LabelsSnapshot;
use super::pools::Pools;
use super::reader::NAME;
use super::symbols::normalise;
use super::JfrGroup;
use crate::ingest::{Bound, Spend};
use crate::pprof::LabelledTrees;
use crate::FormatError;

/// The profiles a recording can give, in Grafana's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Kind {
    Cpu,
    Wall,
    InNewTlab,
    OutsideTlab,
    Lock,
    ThreadPark,
    LiveObject,
    AllocSample,
    Malloc,
}

/// A kind's family, sample types and period type (`None`: Grafana sets none).
type Shape = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<(&'static str, &'static str)>,
);

impl Kind {
    fn shape(self) -> Shape {
        match self {
            Kind::Cpu => (
                "process_cpu",
                &[("cpu", "nanoseconds")],
                Some(("cpu", "nanoseconds")),
            ),
            Kind::Wall => (
                "wall",
                &[("wall", "nanoseconds")],
                Some(("wall", "nanoseconds")),
            ),
            Kind::InNewTlab => (
                "memory",
                &[
                    ("alloc_in_new_tlab_objects", "count"),
                    ("alloc_in_new_tlab_bytes", "bytes"),
                ],
                Some(("space", "bytes")),
            ),
            Kind::OutsideTlab => (
                "memory",
                &[
                    ("alloc_outside_tlab_objects", "count"),
                    ("alloc_outside_tlab_bytes", "bytes"),
                ],
                Some(("space", "bytes")),
            ),
            Kind::Lock => (
                "mutex",
                &[("contentions", "count"), ("delay", "nanoseconds")],
                Some(("mutex", "count")),
            ),
            Kind::ThreadPark => (
                "block",
                &[("contentions", "count"), ("delay", "nanoseconds")],
                Some(("block", "count")),
            ),
            Kind::LiveObject => ("memory", &[("live", "count")], Some(("objects", "count"))),
            Kind::AllocSample => (
                "memory",
                &[
                    ("alloc_sample_objects", "count"),
                    ("alloc_sample_bytes", "bytes"),
                ],
                Some(("space", "bytes")),
            ),
            Kind::Malloc => (
                "memory",
                &[("malloc_objects", "count"), ("malloc_bytes", "bytes")],
                None,
            ),
        }
    }
}

/// What ties a sample to labels: the event's context id, span id and span name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct Correlation {
    context: i64,
    span_id: i64,
    span_name: i64,
}

/// Samples of one kind and correlation: (stack span in the resolved frames, values).
type Spans = Vec<(usize, usize, [u64; 2])>;

/// Options of one conversion.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Nanoseconds per CPU or wall sample (1e9 / sampleRate); 0 drops them, as Grafana
    /// does for `sampleRate=0`.
    pub(super) period: i64,
    pub(super) time_nanos: i64,
    pub(super) duration_nanos: i64,
}

/// Collects a recording's samples across chunks.
pub(super) struct Collector<'s> {
    settings: Settings,
    labels: Option<&'s LabelsSnapshot>,
    /// The last `event` setting: async-profiler's event, and the `jfr_event` label.
    pub(super) event: Option<String>,
    symbols: SymbolTable,
    /// Resolved stacks, root first, back to back.
    frames: Vec<FrameId>,
    /// Per kind and correlation: (stack span in `frames`, values).
    samples: HashMap<(Kind, Correlation), Spans>,
    /// This chunk's samples by (kind, stack key, correlation), aggregated.
    chunk: HashMap<(Kind, i64, Correlation), [u64; 2]>,
}

impl<'s> Collector<'s> {
    pub(super) fn new(settings: Settings, labels: Option<&'s LabelsSnapshot>) -> Self {
        Collector {
            settings,
            labels,
            event: None,
            symbols: SymbolTable::new(),
            frames: Vec::new(),
            samples: HashMap::new(),
            chunk: HashMap::new(),
        }
    }

    /// Adds one event; `ticks` converts its durations to nanoseconds.
    pub(super) fn add(
        &mut self,
        kind: EventKind,
        e: &Event<'_>,
        pools: &Pools,
        ticks_per_second: i64,
        spend: &mut Spend<'_>,
    ) -> Result<(), FormatError> {
        let nanos = |ticks: i64| -> u64 {
            let ticks = u64::try_from(ticks).unwrap_or(0);
            match u64::try_from(ticks_per_second) {
                Ok(1_000_000_000) | Err(_) | Ok(0) => ticks,
                Ok(tps) => (u128::from(ticks) * 1_000_000_000 / u128::from(tps))
                    .try_into()
                    .unwrap_or(u64::MAX),
            }
        };
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        // Without a `labels` part no correlation becomes a label (as in Grafana), so
        // samples are not kept apart by it.
        let correlation = if kind.correlated() && self.labels.is_some() {
            Correlation {
                context: e.context_id,
                span_id: e.span_id,
                span_name: e.span_name,
            }
        } else {
            Correlation::default()
        };
        if kind == EventKind::ActiveSetting {
            let name = e.name.as_ref().and_then(|s| text(s, pools));
            if name.as_deref() == Some("event") {
                self.event = e.value.as_ref().and_then(|s| text(s, pools));
            }
            return Ok(());
        }
        spend.spend(NAME, Bound::Samples, 1)?;
        let mut put = |k: Kind, values: [u64; 2]| {
            let slot = self
                .chunk
                .entry((k, e.stack, correlation))
                .or_insert([0, 0]);
            slot[0] = slot[0].saturating_add(values[0]);
            slot[1] = slot[1].saturating_add(values[1]);
        };
        let period = n(self.settings.period);
        match kind {
            EventKind::ExecutionSample => {
                if pools.state(e.state).is_some_and(|s| s != "STATE_SLEEPING") {
                    put(Kind::Cpu, [period, 0]);
                }
                if self.event.as_deref() == Some("wall") {
                    put(Kind::Wall, [period, 0]);
                }
            }
            EventKind::WallClockSample => {
                let value = n(e.samples).saturating_mul(period);
                // In wall mode async-profiler samples every thread: a running thread's
                // samples are CPU too (jfr-parser 1d06ce3).
                if self.event.as_deref() == Some("wall")
                    && pools.state(e.state) == Some("STATE_RUNNABLE")
                {
                    put(Kind::Cpu, [value, 0]);
                }
                put(Kind::Wall, [value, 0]);
            }
            EventKind::AllocationInNewTlab => put(Kind::InNewTlab, [1, n(e.tlab_size)]),
            EventKind::AllocationOutsideTlab => {
                put(Kind::OutsideTlab, [1, n(e.allocation_size)]);
            }
            EventKind::AllocationSample => put(Kind::AllocSample, [1, n(e.weight)]),
            EventKind::MonitorEnter => put(Kind::Lock, [1, nanos(e.duration)]),
            EventKind::ThreadPark => put(Kind::ThreadPark, [1, nanos(e.duration)]),
            EventKind::LiveObject => put(Kind::LiveObject, [1, 0]),
            EventKind::Malloc => put(Kind::Malloc, [1, n(e.size)]),
            EventKind::ActiveSetting => {}
        }
        Ok(())
    }

    /// Resolves this chunk's stacks (its pools end with it) into frames.
    pub(super) fn end_chunk(
        &mut self,
        pools: &Pools,
        spend: &mut Spend<'_>,
    ) -> Result<(), FormatError> {
        let mut stacks: HashMap<i64, Option<(usize, usize)>> = HashMap::new();
        let mut methods: HashMap<(i64, i32), Option<FrameId>> = HashMap::new();
        let mut entries: Vec<_> = std::mem::take(&mut self.chunk).into_iter().collect();
        // Stack keys in order, so stacks resolve in the same order every time.
        entries.sort_unstable_by_key(|&((k, s, c), _)| (k, s, c.context, c.span_id, c.span_name));
        for ((kind, stack, correlation), values) in entries {
            let span = match stacks.get(&stack) {
                Some(&span) => span,
                None => {
                    let span = self.resolve(stack, pools, &mut methods, spend)?;
                    stacks.insert(stack, span);
                    span
                }
            };
            // Grafana drops samples whose stack trace is not in the pool.
            if let Some((start, end)) = span {
                self.samples
                    .entry((kind, correlation))
                    .or_default()
                    .push((start, end, values));
            }
        }
        Ok(())
    }

    fn resolve(
        &mut self,
        stack: i64,
        pools: &Pools,
        methods: &mut HashMap<(i64, i32), Option<FrameId>>,
        spend: &mut Spend<'_>,
    ) -> Result<Option<(usize, usize)>, FormatError> {
        let Some(s) = pools.stacks.get(&stack) else {
            return Ok(None);
        };
        let start = self.frames.len();
        spend.spend(NAME, Bound::StackFrames, s.end - s.start)?;
        // JFR lists the leaf first; trees want the root first.
        for &(method, line) in pools.frames[s.start..s.end].iter().rev() {
            let id = match methods.get(&(method, line)) {
                Some(&id) => id,
                None => {
                    let id =
                        frame(method, line, pools, spend)?.map(|f| self.symbols.intern_owned(f));
                    methods.insert((method, line), id);
                    id
                }
            };
            // A frame whose method or class is not in the pools is left out, as Grafana
            // leaves it out.
            if let Some(id) = id {
                self.frames.push(id);
            }
        }
        Ok(Some((start, self.frames.len())))
    }

    /// The groups of trees: one per kind, by sample labels.
    pub(super) fn finish(self, spend: &mut Spend<'_>) -> Result<Vec<JfrGroup>, FormatError> {
        let mut by_kind: Vec<(Kind, Labels, Spans)> = Vec::new();
        let mut index: HashMap<(Kind, Labels), usize> = HashMap::new();
        let mut samples: Vec<_> = self.samples.into_iter().collect();
        samples.sort_unstable_by_key(|&((k, c), _)| (k, c.context, c.span_id, c.span_name));
        for ((kind, correlation), spans) in samples {
            let labels = sample_labels(self.labels, correlation, spend)?;
            match index.get(&(kind, labels.clone())) {
                Some(&i) => by_kind[i].2.extend(spans),
                None => {
                    index.insert((kind, labels.clone()), by_kind.len());
                    by_kind.push((kind, labels, spans));
                }
            }
        }
        let mut groups: Vec<JfrGroup> = Vec::new();
        for (kind, labels, spans) in by_kind {
            let (family, types, period_type) = kind.shape();
            let group = match groups.iter().position(|g| g.kind == kind) {
                Some(i) => i,
                None => {
                    groups.push(JfrGroup {
                        kind,
                        family,
                        labels: Labels::new(),
                        profiles: types
                            .iter()
                            .map(|&(t, u)| LabelledTrees {
                                meta: ProfileMeta {
                                    sample_type: ValueType::new(t, u),
                                    period_type: Some(period_type.map_or_else(
                                        || ValueType::new("", ""),
                                        |(t, u)| ValueType::new(t, u),
                                    )),
                                    period: match kind {
                                        Kind::Cpu | Kind::Wall => self.settings.period,
                                        _ => 0,
                                    },
                                    time_nanos: self.settings.time_nanos,
                                    duration_nanos: self.settings.duration_nanos,
                                },
                                trees: Vec::new(),
                            })
                            .collect(),
                    });
                    groups.len() - 1
                }
            };
            for (slot, profile) in groups[group].profiles.iter_mut().enumerate() {
                let tree = tree(&self.symbols, &self.frames, &spans, slot, spend)?;
                if tree.total() > 0 {
                    profile.trees.push((labels.clone(), tree));
                }
            }
        }
        if let Some(event) = self.event.filter(|e| !e.is_empty()) {
            for g in &mut groups {
                g.labels.set("jfr_event", event.clone());
            }
        }
        Ok(groups)
    }
}

fn text(s: &super::values::Scalar<'_>, pools: &Pools) -> Option<String> {
    match s {
        super::values::Scalar::Str(s) => pools.resolve(s),
        _ => None,
    }
}

/// `package/Class.method`, the class as the JVM writes it (with `/`), as Grafana names
/// Java frames; generated names merged.
fn frame(
    method: i64,
    line: i32,
    pools: &Pools,
    spend: &Spend<'_>,
) -> Result<Option<Frame>, FormatError> {
    let Some(m) = pools.methods.get(&method) else {
        return Ok(None);
    };
    let Some(class) = pools.classes.get(&m.class) else {
        return Ok(None);
    };
    let class = normalise(pools.text(true, *class).unwrap_or(""));
    let name = normalise(pools.text(true, m.name).unwrap_or(""));
    let function = format!("{class}.{name}");
    spend.at_most(NAME, Bound::FrameLength, function.len())?;
    Ok(Some(Frame {
        function,
        line: u32::try_from(line).ok().filter(|&l| l > 0),
        ..Frame::default()
    }))
}

/// The sample labels of a correlation: the context's pairs from the `labels` part, the
/// span id (16 hex digits) and the span name, as Grafana names them (its `profile_id`
/// is stored as `span_id` there too).
fn sample_labels(
    snapshot: Option<&LabelsSnapshot>,
    c: Correlation,
    spend: &Spend<'_>,
) -> Result<Labels, FormatError> {
    let mut labels = Labels::new();
    let Some(snapshot) = snapshot else {
        return Ok(labels);
    };
    let string = |id: i64| snapshot.strings.get(&id).map(String::as_str).unwrap_or("");
    if let Some(context) = snapshot.contexts.get(&c.context) {
        let mut pairs: Vec<_> = context.labels.iter().collect();
        pairs.sort_unstable();
        for (&k, &v) in pairs {
            let (k, v) = (string(k), string(v));
            if k.is_empty() || v.is_empty() {
                continue;
            }
            spend.label(k, v)?;
            labels.set(k, v);
        }
    }
    if c.span_id != 0 {
        labels.set("span_id", format!("{:016x}", c.span_id as u64));
    }
    if c.span_name != 0 {
        let name = string(c.span_name);
        if !name.is_empty() {
            spend.label("span_name", name)?;
            labels.set("span_name", name);
        }
    }
    spend.at_most(NAME, Bound::Labels, labels.len())?;
    Ok(labels)
}

/// The tree of one value slot over `spans`: with the whole symbol table when the spans
/// use at least as many frames as it has, else with a table of their own frames (a
/// small label group never copies a large table).
fn tree(
    symbols: &SymbolTable,
    frames: &[FrameId],
    spans: &[(usize, usize, [u64; 2])],
    slot: usize,
    spend: &mut Spend<'_>,
) -> Result<StackTree, FormatError> {
    let mut stacks: Vec<(Vec<FrameId>, u64)> = Vec::new();
    let used: usize = spans.iter().map(|&(a, b, _)| b - a).sum();
    let whole = symbols.len() <= used;
    let mut table = if whole {
        symbols.clone()
    } else {
        SymbolTable::new()
    };
    let mut local: HashMap<FrameId, FrameId> = HashMap::new();
    for &(a, b, values) in spans {
        let v = values[slot];
        if v == 0 {
            continue;
        }
        spend.value(NAME, v)?;
        let stack = if whole {
            frames[a..b].to_vec()
        } else {
            frames[a..b]
                .iter()
                .map(|&id| {
                    *local
                        .entry(id)
                        .or_insert_with(|| table.intern(symbols.get(id)))
                })
                .collect()
        };
        stacks.push((stack, v));
    }
    let size = table.len();
    let mut refs: Vec<(&[FrameId], u64)> = stacks.iter().map(|(s, v)| (&s[..], *v)).collect();
    let tree = StackTree::from_stacks_bounded(table, &mut refs, spend.nodes_left())
        .ok_or_else(|| spend.over(NAME, Bound::Nodes))?;
    spend.spend(NAME, Bound::Nodes, tree.node_count().max(size))?;
    Ok(tree)
}
