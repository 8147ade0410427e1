//! pprof bytes → profiles, validated at the edge: every index is checked, sizes are
//! bounded (a gzip bomb is refused, not inflated), and nothing panics on bad input.

use std::collections::HashMap;

use embers_profile::{
    Frame, FrameId, FxHashMap, Labels, Profile, ProfileMeta, StackTree, ValueType,
};
use prost::Message;

use super::proto;
use crate::ingest::{Bound, IngestBudget, Spend};
use crate::{FormatError, ReadLimits};

const NAME: &str = "pprof";

fn bad(message: impl Into<String>) -> FormatError {
    FormatError::malformed(NAME, message)
}

/// Decodes the protobuf message, gunzipping first when the bytes are gzip.
pub fn decode_proto(bytes: &[u8], limits: &ReadLimits) -> Result<proto::Profile, FormatError> {
    let budget = IngestBudget::from_read_limits(limits);
    decode_in(bytes, &mut Spend::new(&budget), false).map_err(read_limits_error)
}

/// Gunzips within the budget, checks the counts on the wire when `scan` (untrusted
/// ingest), then decodes the message.
fn decode_in(
    bytes: &[u8],
    spend: &mut Spend<'_>,
    scan: bool,
) -> Result<proto::Profile, FormatError> {
    let raw = spend.gunzip(NAME, bytes)?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        spend.at_most(NAME, Bound::DecodedBytes, bytes.len())?;
    }
    if scan {
        crate::ingest::scan::pprof(&raw, spend)?;
    }
    proto::Profile::decode(&raw[..]).map_err(|e| bad(format!("truncated or corrupt protobuf: {e}")))
}

/// Turns the budget's errors into the [`ReadLimits`] errors callers of the file readers
/// have always seen.
fn read_limits_error(e: FormatError) -> FormatError {
    match e {
        FormatError::OverBudget {
            format,
            bound,
            limit,
        } => FormatError::TooLarge {
            format,
            what: bound.what(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        },
        other => other,
    }
}

/// Decodes the default sample type: the one `default_sample_type` names, else the last,
/// as `go tool pprof` does.
pub fn decode(bytes: &[u8], limits: &ReadLimits) -> Result<Profile, FormatError> {
    let budget = IngestBudget::from_read_limits(limits);
    let p = decode_proto(bytes, limits)?;
    if p.sample_type.is_empty() {
        return Err(bad(
            "no sample_type: the profile says nothing about what it measures",
        ));
    }
    let index = p
        .sample_type
        .iter()
        .position(|t| p.default_sample_type != 0 && t.r#type == p.default_sample_type)
        .unwrap_or(p.sample_type.len() - 1);
    Decoder::new(&p, &Spend::new(&budget))
        .and_then(|d| d.profile(index))
        .map_err(read_limits_error)
}

/// Decodes every sample type into its own profile (the server keeps one series each).
pub fn decode_all(bytes: &[u8], limits: &ReadLimits) -> Result<Vec<Profile>, FormatError> {
    let budget = IngestBudget::from_read_limits(limits);
    let p = decode_proto(bytes, limits)?;
    let decoder = Decoder::new(&p, &Spend::new(&budget)).map_err(read_limits_error)?;
    (0..p.sample_type.len())
        .map(|i| decoder.profile(i).map_err(read_limits_error))
        .collect()
}

/// One sample type of a profile as call trees, one per distinct set of sample labels.
#[derive(Debug, Clone)]
pub struct LabelledTrees {
    /// What the values measure (and the profile's period and times).
    pub meta: ProfileMeta,
    /// Trees by string sample labels (numeric labels are dropped); trees share the
    /// profile's whole symbol table.
    pub trees: Vec<(Labels, StackTree)>,
}

/// Decodes every sample type straight into call trees grouped by sample labels: what a
/// server stores, without building the per-sample [`Profile`] first (several times faster
/// for ingest).
pub fn decode_trees(bytes: &[u8], limits: &ReadLimits) -> Result<Vec<LabelledTrees>, FormatError> {
    let budget = IngestBudget::from_read_limits(limits);
    decode_trees_in(bytes, &mut Spend::new(&budget), false).map_err(read_limits_error)
}

/// [`decode_trees`] spending one request's budget (the ingest entry point's path).
pub(crate) fn decode_trees_in(
    bytes: &[u8],
    spend: &mut Spend<'_>,
    scan: bool,
) -> Result<Vec<LabelledTrees>, FormatError> {
    let p = decode_in(bytes, spend, scan)?;
    let decoder = Decoder::new(&p, spend)?;
    (0..p.sample_type.len())
        .map(|i| decoder.trees(i, spend))
        .collect()
}

/// Location id → its frames. Profilers number locations 1..n, so a vector indexed by id
/// serves nearly every profile; other ids go to a hash map. Every sample looks up each
/// of its locations, which made this lookup a hot spot of ingest.
struct Locations {
    dense: Vec<Option<Vec<FrameId>>>,
    sparse: FxHashMap<u64, Vec<FrameId>>,
}

impl Locations {
    fn new(count: usize) -> Self {
        Locations {
            dense: Vec::with_capacity(count + 1),
            sparse: FxHashMap::default(),
        }
    }

    fn insert(&mut self, id: u64, frames: Vec<FrameId>) {
        let limit = (self.dense.capacity().max(16) * 2) as u64;
        match usize::try_from(id) {
            Ok(i) if id < limit => {
                if self.dense.len() <= i {
                    self.dense.resize(i + 1, None);
                }
                self.dense[i] = Some(frames);
            }
            _ => {
                self.sparse.insert(id, frames);
            }
        }
    }

    fn get(&self, id: &u64) -> Option<&Vec<FrameId>> {
        usize::try_from(*id)
            .ok()
            .and_then(|i| self.dense.get(i))
            .and_then(Option::as_ref)
            .or_else(|| self.sparse.get(id))
    }
}

/// Locations resolved once into frames, shared by every sample type.
struct Decoder<'a> {
    p: &'a proto::Profile,
    max_stack_depth: usize,
    template: Profile,
    /// Location id → its frames, root-most first.
    locations: Locations,
}

impl<'a> Decoder<'a> {
    fn new(p: &'a proto::Profile, spend: &Spend<'_>) -> Result<Self, FormatError> {
        if p.string_table.first().is_some_and(|s| !s.is_empty()) {
            return Err(bad("string_table[0] must be the empty string"));
        }
        spend.at_most(NAME, Bound::Samples, p.sample.len())?;
        let s = |i: i64| -> Result<&str, FormatError> {
            usize::try_from(i)
                .ok()
                .and_then(|i| p.string_table.get(i))
                .map(String::as_str)
                .ok_or_else(|| {
                    bad(format!(
                        "string index {i} is out of range ({} strings)",
                        p.string_table.len()
                    ))
                })
        };
        let mut functions: HashMap<u64, (&str, &str)> = HashMap::new();
        for f in &p.function {
            let name = match s(f.name)? {
                "" => s(f.system_name)?,
                name => name,
            };
            let file = s(f.filename)?;
            spend.at_most(NAME, Bound::FrameLength, name.len().max(file.len()))?;
            functions.insert(f.id, (name, file));
        }
        let mut mappings: HashMap<u64, &str> = HashMap::new();
        for m in &p.mapping {
            let file = s(m.filename)?;
            spend.at_most(NAME, Bound::FrameLength, file.len())?;
            mappings.insert(m.id, file);
        }
        let mut template = Profile::new(ProfileMeta {
            period_type: p
                .period_type
                .as_ref()
                .map(|t| Ok::<_, FormatError>(ValueType::new(s(t.r#type)?, s(t.unit)?)))
                .transpose()?,
            period: p.period,
            time_nanos: p.time_nanos,
            duration_nanos: p.duration_nanos,
            ..ProfileMeta::default()
        });
        let mut locations = Locations::new(p.location.len());
        for loc in &p.location {
            let module = match loc.mapping_id {
                0 => None,
                id => Some(*mappings.get(&id).ok_or_else(|| {
                    bad(format!("location {} names unknown mapping {id}", loc.id))
                })?),
            };
            let mut frames = Vec::with_capacity(loc.line.len().max(1));
            // Line[0] is the innermost inlined frame: read backwards for root-most first.
            for line in loc.line.iter().rev() {
                let &(name, file) = functions.get(&line.function_id).ok_or_else(|| {
                    bad(format!(
                        "location {} names unknown function {}",
                        loc.id, line.function_id
                    ))
                })?;
                let frame = Frame {
                    function: name.to_owned(),
                    file: (!file.is_empty()).then(|| file.to_owned()),
                    line: u32::try_from(line.line).ok().filter(|&l| l > 0),
                    module: module.filter(|m| !m.is_empty()).map(str::to_owned),
                };
                frames.push(template.symbols.intern_owned(frame));
            }
            if frames.is_empty() {
                // A location without symbols: show its address, as pprof does.
                let frame = Frame {
                    module: module.map(str::to_owned),
                    ..Frame::named(format!("{:#x}", loc.address))
                };
                frames.push(template.symbols.intern_owned(frame));
            }
            locations.insert(loc.id, frames);
        }
        Ok(Decoder {
            p,
            max_stack_depth: spend.budget.max_stack_depth,
            template,
            locations,
        })
    }

    fn string(&self, i: i64) -> Result<&'a str, FormatError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.p.string_table.get(i))
            .map(String::as_str)
            .ok_or_else(|| bad(format!("string index {i} is out of range")))
    }

    fn sample_stack(
        &self,
        n: usize,
        sample: &proto::Sample,
        stack: &mut Vec<FrameId>,
    ) -> Result<(), FormatError> {
        stack.clear();
        for id in sample.location_id.iter().rev() {
            let frames = self
                .locations
                .get(id)
                .ok_or_else(|| bad(format!("sample {n} names unknown location {id}")))?;
            stack.extend_from_slice(frames);
        }
        if stack.len() > self.max_stack_depth {
            return Err(FormatError::OverBudget {
                format: NAME,
                bound: Bound::StackDepth,
                limit: self.max_stack_depth as u64,
            });
        }
        Ok(())
    }

    fn sample_value(
        &self,
        n: usize,
        sample: &proto::Sample,
        index: usize,
    ) -> Result<u64, FormatError> {
        let p = self.p;
        if sample.value.len() != p.sample_type.len() {
            return Err(bad(format!(
                "sample {n} has {} values for {} sample types",
                sample.value.len(),
                p.sample_type.len()
            )));
        }
        u64::try_from(sample.value[index]).map_err(|_| {
            bad(format!(
                "sample {n} has a negative value {}",
                sample.value[index]
            ))
        })
    }

    /// A sample's string labels only: numeric ones (`Label.num`, such as Go heap's
    /// `bytes`) are measurements, not dimensions, and Grafana deletes them before
    /// grouping; as series labels they would make one series per allocation size.
    fn string_labels(&self, sample: &proto::Sample) -> Result<Labels, FormatError> {
        let mut labels = Labels::new();
        for label in sample.label.iter().filter(|l| l.str != 0) {
            labels.set(self.string(label.key)?, self.string(label.str)?);
        }
        Ok(labels)
    }

    fn labels(&self, sample: &proto::Sample) -> Result<Labels, FormatError> {
        let mut labels = Labels::new();
        for label in &sample.label {
            let key = self.string(label.key)?;
            let value = if label.str != 0 {
                self.string(label.str)?.to_owned()
            } else {
                label.num.to_string()
            };
            labels.set(key, value);
        }
        Ok(labels)
    }

    fn trees(&self, index: usize, spend: &mut Spend<'_>) -> Result<LabelledTrees, FormatError> {
        let p = self.p;
        let t = &p.sample_type[index];
        let mut meta = self.template.meta.clone();
        meta.sample_type = ValueType::new(self.string(t.r#type)?, self.string(t.unit)?);
        // Group by the raw label indices first: hashing small integers, not strings.
        let mut groups: FxHashMap<Vec<(i64, i64)>, usize> = FxHashMap::default();
        // Per group: its labels, and its stacks as (start, end, value) into `frames`.
        type Spans = Vec<(usize, usize, u64)>;
        let mut grouped: Vec<(Labels, Spans)> = Vec::new();
        let mut frames: Vec<FrameId> = Vec::new();
        let mut stack = Vec::new();
        for (n, sample) in p.sample.iter().enumerate() {
            let value = self.sample_value(n, sample, index)?;
            self.sample_stack(n, sample, &mut stack)?;
            if value == 0 {
                continue;
            }
            spend.value(NAME, value)?;
            let key: Vec<(i64, i64)> = sample
                .label
                .iter()
                .filter(|l| l.str != 0)
                .map(|l| (l.key, l.str))
                .collect();
            let group = match groups.get(&key) {
                Some(&g) => g,
                None => {
                    grouped.push((self.string_labels(sample)?, Vec::new()));
                    groups.insert(key, grouped.len() - 1);
                    grouped.len() - 1
                }
            };
            let start = frames.len();
            spend.at_most(NAME, Bound::StackFrames, start + stack.len())?;
            frames.extend_from_slice(&stack);
            grouped[group].1.push((start, frames.len(), value));
        }
        let mut trees = Vec::with_capacity(grouped.len());
        for (labels, spans) in grouped {
            let (tree, table) =
                group_tree(&self.template.symbols, &frames, &spans, spend.nodes_left())
                    .ok_or_else(|| spend.over(NAME, Bound::Nodes))?;
            // A symbol table costs what nodes cost: charge whichever is larger, so many
            // sample types or label sets cannot each copy a large table for free.
            spend.spend(NAME, Bound::Nodes, tree.node_count().max(table))?;
            trees.push((labels, tree));
        }
        Ok(LabelledTrees { meta, trees })
    }

    fn profile(&self, index: usize) -> Result<Profile, FormatError> {
        let p = self.p;
        let t = &p.sample_type[index];
        let mut profile = self.template.clone();
        profile.meta.sample_type = ValueType::new(self.string(t.r#type)?, self.string(t.unit)?);
        let mut stack = Vec::new();
        for (n, sample) in p.sample.iter().enumerate() {
            let value = self.sample_value(n, sample, index)?;
            self.sample_stack(n, sample, &mut stack)?;
            profile.add(stack.clone(), self.labels(sample)?, value);
        }
        Ok(profile)
    }
}

/// One label set's tree, and the size of its symbol table. The profile's whole
/// table is shared by copy when the group's stacks are at least as large as it (the
/// common case: one label set); otherwise the tree gets only the frames it uses, so
/// a table is never copied once per small group. `None` past `max_nodes`.
pub(crate) fn group_tree(
    symbols: &embers_profile::SymbolTable,
    frames: &[FrameId],
    spans: &[(usize, usize, u64)],
    max_nodes: usize,
) -> Option<(StackTree, usize)> {
    let used: usize = spans.iter().map(|&(a, b, _)| b - a).sum();
    if symbols.len() <= used {
        let mut stacks: Vec<(&[FrameId], u64)> =
            spans.iter().map(|&(a, b, v)| (&frames[a..b], v)).collect();
        let tree = StackTree::from_stacks_bounded(symbols.clone(), &mut stacks, max_nodes)?;
        return Some((tree, symbols.len()));
    }
    let mut table = embers_profile::SymbolTable::new();
    let mut ids: FxHashMap<FrameId, FrameId> = FxHashMap::default();
    let local: Vec<FrameId> = spans
        .iter()
        .flat_map(|&(a, b, _)| &frames[a..b])
        .map(|&id| {
            *ids.entry(id)
                .or_insert_with(|| table.intern(symbols.get(id)))
        })
        .collect();
    let mut at = 0;
    let mut stacks: Vec<(&[FrameId], u64)> = spans
        .iter()
        .map(|&(a, b, v)| {
            at += b - a;
            (&local[at - (b - a)..at], v)
        })
        .collect();
    let n = table.len();
    let tree = StackTree::from_stacks_bounded(table, &mut stacks, max_nodes)?;
    Some((tree, n))
}
