//! pprof bytes → profiles, validated at the edge: every index is checked, sizes are
//! bounded (a gzip bomb is refused, not inflated), and nothing panics on bad input.

use std::collections::HashMap;
use std::io::Read;

use embers_profile::{
    Frame, FrameId, FxHashMap, Labels, Profile, ProfileMeta, StackTree, ValueType,
};
use prost::Message;

use super::proto;
use crate::{FormatError, ReadLimits};

const NAME: &str = "pprof";

fn bad(message: impl Into<String>) -> FormatError {
    FormatError::malformed(NAME, message)
}

/// Decodes the protobuf message, gunzipping first when the bytes are gzip.
pub fn decode_proto(bytes: &[u8], limits: &ReadLimits) -> Result<proto::Profile, FormatError> {
    let too_large = || FormatError::TooLarge {
        format: NAME,
        what: "bytes after decompression",
        limit: limits.max_decoded_bytes,
    };
    let inflated;
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        let cap = limits.max_decoded_bytes as u64 + 1;
        flate2::read::MultiGzDecoder::new(bytes)
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("corrupt gzip: {e}")))?;
        if out.len() > limits.max_decoded_bytes {
            return Err(too_large());
        }
        inflated = out;
        &inflated[..]
    } else {
        if bytes.len() > limits.max_decoded_bytes {
            return Err(too_large());
        }
        bytes
    };
    proto::Profile::decode(raw).map_err(|e| bad(format!("truncated or corrupt protobuf: {e}")))
}

/// Decodes the default sample type: the one `default_sample_type` names, else the last,
/// as `go tool pprof` does.
pub fn decode(bytes: &[u8], limits: &ReadLimits) -> Result<Profile, FormatError> {
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
    Decoder::new(&p, limits)?.profile(index)
}

/// Decodes every sample type into its own profile (the server keeps one series each).
pub fn decode_all(bytes: &[u8], limits: &ReadLimits) -> Result<Vec<Profile>, FormatError> {
    let p = decode_proto(bytes, limits)?;
    let decoder = Decoder::new(&p, limits)?;
    (0..p.sample_type.len())
        .map(|i| decoder.profile(i))
        .collect()
}

/// One sample type of a profile as call trees, one per distinct set of sample labels.
#[derive(Debug, Clone)]
pub struct LabelledTrees {
    /// What the values measure (and the profile's period and times).
    pub meta: ProfileMeta,
    /// Trees by sample labels; trees share the profile's whole symbol table.
    pub trees: Vec<(Labels, StackTree)>,
}

/// Decodes every sample type straight into call trees grouped by sample labels: what a
/// server stores, without building the per-sample [`Profile`] first (several times faster
/// for ingest).
pub fn decode_trees(bytes: &[u8], limits: &ReadLimits) -> Result<Vec<LabelledTrees>, FormatError> {
    let p = decode_proto(bytes, limits)?;
    let decoder = Decoder::new(&p, limits)?;
    (0..p.sample_type.len()).map(|i| decoder.trees(i)).collect()
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
    limits: &'a ReadLimits,
    template: Profile,
    /// Location id → its frames, root-most first.
    locations: Locations,
}

impl<'a> Decoder<'a> {
    fn new(p: &'a proto::Profile, limits: &'a ReadLimits) -> Result<Self, FormatError> {
        if p.string_table.first().is_some_and(|s| !s.is_empty()) {
            return Err(bad("string_table[0] must be the empty string"));
        }
        if p.sample.len() > limits.max_samples {
            return Err(FormatError::TooLarge {
                format: NAME,
                what: "samples",
                limit: limits.max_samples,
            });
        }
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
            functions.insert(f.id, (name, s(f.filename)?));
        }
        let mut mappings: HashMap<u64, &str> = HashMap::new();
        for m in &p.mapping {
            mappings.insert(m.id, s(m.filename)?);
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
            limits,
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
        if stack.len() > self.limits.max_stack_depth {
            return Err(FormatError::TooLarge {
                format: NAME,
                what: "frames in one stack",
                limit: self.limits.max_stack_depth,
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

    fn trees(&self, index: usize) -> Result<LabelledTrees, FormatError> {
        let p = self.p;
        let t = &p.sample_type[index];
        let mut meta = self.template.meta.clone();
        meta.sample_type = ValueType::new(self.string(t.r#type)?, self.string(t.unit)?);
        // Group by the raw label indices first: hashing small integers, not strings.
        let mut groups: FxHashMap<Vec<(i64, i64, i64)>, usize> = FxHashMap::default();
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
            let key: Vec<(i64, i64, i64)> =
                sample.label.iter().map(|l| (l.key, l.str, l.num)).collect();
            let group = match groups.get(&key) {
                Some(&g) => g,
                None => {
                    grouped.push((self.labels(sample)?, Vec::new()));
                    groups.insert(key, grouped.len() - 1);
                    grouped.len() - 1
                }
            };
            let start = frames.len();
            frames.extend_from_slice(&stack);
            grouped[group].1.push((start, frames.len(), value));
        }
        let trees = grouped
            .into_iter()
            .map(|(labels, spans)| {
                let mut stacks: Vec<(&[FrameId], u64)> =
                    spans.iter().map(|&(a, b, v)| (&frames[a..b], v)).collect();
                (
                    labels,
                    StackTree::from_stacks(self.template.symbols.clone(), &mut stacks),
                )
            })
            .collect();
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
