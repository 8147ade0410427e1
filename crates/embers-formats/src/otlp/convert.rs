//! An OTLP export's profiles → call trees by service and sample labels, following
//! Grafana Pyroscope's `pkg/ingester/otlp` (`convert.go`, `ingest_handler.go`); where
//! Embers differs, the README's OTLP section says so.

use std::collections::HashMap;

use embers_profile::{Frame, FrameId, Labels, ProfileMeta, StackTree, SymbolTable, ValueType};

use super::proto::opentelemetry::proto::common::v1::{any_value, AnyValue, KeyValue};
use super::proto::opentelemetry::proto::profiles::v1development as pb;
use super::{ExportProfilesServiceRequest, OtlpExport, OtlpSeries, NAME};
use crate::ingest::{Bound, Spend};
use crate::pprof::LabelledTrees;
use crate::FormatError;

const SERVICE_NAME_ATTRIBUTE: &str = "service.name";

fn bad(message: impl Into<String>) -> FormatError {
    FormatError::malformed(NAME, message)
}

fn at<'a, T>(table: &'a [T], index: i32, what: &str) -> Result<&'a T, FormatError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .ok_or_else(|| {
            bad(format!(
                "{what} index {index} is out of range ({} entries)",
                table.len()
            ))
        })
}

/// The dictionary, with locations resolved into frames once per request.
struct Dictionary<'a> {
    d: &'a pb::ProfilesDictionary,
    symbols: SymbolTable,
    /// Location index → its frames, root-most first.
    locations: Vec<Option<Vec<FrameId>>>,
}

impl<'a> Dictionary<'a> {
    fn string(&self, index: i32) -> Result<&'a str, FormatError> {
        at(&self.d.string_table, index, "string").map(String::as_str)
    }

    /// A string attribute value (inline or from the string table); `None` for other
    /// kinds and empty strings, which Grafana skips too.
    fn string_value(&self, value: Option<&'a AnyValue>) -> Result<Option<&'a str>, FormatError> {
        Ok(match value.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            Some(any_value::Value::StringValueStrindex(i)) => Some(self.string(*i)?),
            _ => None,
        }
        .filter(|s| !s.is_empty()))
    }

    /// A resource or scope attribute's key (inline or from the string table).
    fn key(&self, kv: &'a KeyValue) -> Result<&'a str, FormatError> {
        if kv.key.is_empty() && kv.key_strindex != 0 {
            self.string(kv.key_strindex)
        } else {
            Ok(&kv.key)
        }
    }

    fn frames(&mut self, index: i32, spend: &Spend<'_>) -> Result<&[FrameId], FormatError> {
        let i = usize::try_from(index).map_err(|_| bad(format!("location index {index}")))?;
        if self.locations.get(i).is_some_and(Option::is_some) {
            return Ok(self.locations[i].as_deref().unwrap_or_default());
        }
        let loc = at(&self.d.location_table, index, "location")?;
        // Index 0 is the "no mapping" entry; an export without a mapping table has none.
        let module = match (loc.mapping_index, self.d.mapping_table.is_empty()) {
            (0, true) => "",
            (m, _) => self.string(at(&self.d.mapping_table, m, "mapping")?.filename_strindex)?,
        };
        spend.at_most(NAME, Bound::FrameLength, module.len())?;
        let module = (!module.is_empty()).then(|| module.to_owned());
        let mut frames = Vec::with_capacity(loc.lines.len().max(1));
        // lines[0] is the innermost inlined frame: read backwards for root-most first.
        for line in loc.lines.iter().rev() {
            let f = at(&self.d.function_table, line.function_index, "function")?;
            let name = match self.string(f.name_strindex)? {
                "" => self.string(f.system_name_strindex)?,
                name => name,
            };
            let file = self.string(f.filename_strindex)?;
            spend.at_most(NAME, Bound::FrameLength, name.len().max(file.len()))?;
            frames.push(self.symbols.intern_owned(Frame {
                function: name.to_owned(),
                file: (!file.is_empty()).then(|| file.to_owned()),
                line: u32::try_from(line.line).ok().filter(|&l| l > 0),
                module: module.clone(),
            }));
        }
        if frames.is_empty() {
            // No symbols: show the address, as pprof does.
            let frame = Frame {
                module,
                ..Frame::named(format!("{:#x}", loc.address))
            };
            frames.push(self.symbols.intern_owned(frame));
        }
        if self.locations.len() <= i {
            self.locations.resize(i + 1, None);
        }
        Ok(self.locations[i].insert(frames))
    }

    /// A stack's frames, root first, into `out`.
    fn stack(
        &mut self,
        index: i32,
        out: &mut Vec<FrameId>,
        spend: &Spend<'_>,
    ) -> Result<(), FormatError> {
        out.clear();
        let d = self.d;
        let stack = at(&d.stack_table, index, "stack")?;
        for &location in stack.location_indices.iter().rev() {
            let frames = self.frames(location, spend)?;
            out.extend_from_slice(frames);
            spend.at_most(NAME, Bound::StackDepth, out.len())?;
        }
        Ok(())
    }
}

/// A label name from an attribute key: Prometheus' syntax (dots kept, as Grafana keeps
/// them); any other character becomes `_`.
fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    name
}

/// `service.name`, else `unknown_service[:<process.executable.name>]` (Grafana's and
/// OpenTelemetry's fallback).
fn service_name(attributes: &[KeyValue], d: &Dictionary<'_>) -> Result<String, FormatError> {
    let mut fallback = String::from("unknown_service");
    for kv in attributes {
        let value = d.string_value(kv.value.as_ref())?;
        match (d.key(kv)?, value) {
            (SERVICE_NAME_ATTRIBUTE, Some(v)) => return Ok(v.to_owned()),
            ("process.executable.name", Some(v)) => {
                fallback.push(':');
                fallback.push_str(v);
            }
            _ => {}
        }
    }
    Ok(fallback)
}

/// Adds string attributes as series labels, the first of a name winning; `service.name`
/// becomes `service_name` instead, and internal (`__`) names are dropped.
fn add_attributes(
    labels: &mut Labels,
    attributes: &[KeyValue],
    d: &Dictionary<'_>,
    spend: &Spend<'_>,
) -> Result<(), FormatError> {
    for kv in attributes {
        let key = d.key(kv)?;
        let Some(value) = d.string_value(kv.value.as_ref())? else {
            continue;
        };
        if key.is_empty() || key == SERVICE_NAME_ATTRIBUTE || key.starts_with("__") {
            continue;
        }
        let name = label_name(key);
        if labels.get(&name).is_none() {
            spend.label(&name, value)?;
            labels.set(name, value);
        }
    }
    Ok(())
}

/// Decodes every profile of the request.
pub(super) fn export(
    request: &ExportProfilesServiceRequest,
    spend: &mut Spend<'_>,
) -> Result<OtlpExport, FormatError> {
    let d = request.dictionary.as_ref().ok_or_else(|| {
        bad("the request has no dictionary (ProfilesDictionary): nothing can be resolved")
    })?;
    let mut dict = Dictionary {
        d,
        symbols: SymbolTable::new(),
        locations: Vec::new(),
    };
    let mut out = OtlpExport::default();
    for rp in &request.resource_profiles {
        let attributes = rp.resource.as_ref().map_or(&[][..], |r| &r.attributes);
        let service = service_name(attributes, &dict)?;
        let mut resource_labels = Labels::new();
        add_attributes(&mut resource_labels, attributes, &dict, spend)?;
        for sp in &rp.scope_profiles {
            let mut labels = resource_labels.clone();
            if let Some(scope) = &sp.scope {
                add_attributes(&mut labels, &scope.attributes, &dict, spend)?;
            }
            for p in &sp.profiles {
                let Some(kind) = Kind::of(p, &dict)? else {
                    out.rejected_profiles += 1;
                    out.rejections
                        .push("a profile without sample_type was left out".to_owned());
                    continue;
                };
                for (sample_service, profile) in kind.convert(p, &mut dict, spend)? {
                    let mut labels = labels.clone();
                    let service = sample_service.unwrap_or(&service);
                    labels.set("service_name", service);
                    out.series.push(OtlpSeries {
                        labels,
                        name: kind.name.to_owned(),
                        profile,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// What one profile measures, named as Grafana names it.
struct Kind {
    meta: ProfileMeta,
    /// The family (`__name__`).
    name: &'static str,
    /// Values are sample counts of this period: multiply.
    scale: u64,
}

impl Kind {
    fn of(p: &pb::Profile, d: &Dictionary<'_>) -> Result<Option<Kind>, FormatError> {
        let Some(st) = &p.sample_type else {
            return Ok(None);
        };
        let (kind, unit) = (d.string(st.type_strindex)?, d.string(st.unit_strindex)?);
        let (pkind, punit) = match &p.period_type {
            Some(pt) => (d.string(pt.type_strindex)?, d.string(pt.unit_strindex)?),
            None => ("", ""),
        };
        let time = |v: u64, what: &str| {
            i64::try_from(v).map_err(|_| bad(format!("{what} {v} is out of range")))
        };
        let mut meta = ProfileMeta {
            sample_type: ValueType::new(kind, unit),
            period_type: Some(ValueType::new(pkind, punit)),
            period: p.period,
            time_nanos: time(p.time_unix_nano, "time_unix_nano")?,
            duration_nanos: time(p.duration_nano, "duration_nano")?,
        };
        let periodic = p.period != 0 && p.period_type.is_some();
        let (name, scale) = match (kind, unit, periodic, pkind, punit) {
            ("samples", "count", true, "cpu", "nanoseconds") => {
                meta.sample_type = ValueType::new("cpu", "nanoseconds");
                let scale = u64::try_from(p.period)
                    .map_err(|_| bad(format!("negative period {}", p.period)))?;
                ("process_cpu", scale)
            }
            ("events", "nanoseconds", false, ..) => {
                meta.period_type = Some(ValueType::new("", ""));
                ("off_cpu", 1)
            }
            // Grafana's guess for every other profile, kept so type ids match.
            _ => ("process_cpu", 1),
        };
        Ok(Some(Kind { meta, name, scale }))
    }

    /// The profile's samples by service (`None`: the resource's), each split by sample
    /// labels.
    fn convert<'a>(
        &self,
        p: &'a pb::Profile,
        d: &mut Dictionary<'a>,
        spend: &mut Spend<'_>,
    ) -> Result<Vec<(Option<&'a str>, LabelledTrees)>, FormatError> {
        // Group by service, then by the raw attribute indices and link: integers, not
        // strings, are hashed per sample; labels only once per distinct key. Both maps
        // are keyed by what the client sent: std's randomly seeded hasher, not Fx.
        type Key<'k> = (&'k [i32], i32);
        let mut services: Vec<(Option<&str>, Vec<LabelGroup>)> = Vec::new();
        let mut groups: HashMap<(Option<&str>, Key<'_>), (usize, usize)> = HashMap::new();
        let mut by_labels: HashMap<(usize, Labels), usize> = HashMap::new();
        let mut frames: Vec<FrameId> = Vec::new();
        let mut stack = Vec::new();
        for (n, sample) in p.samples.iter().enumerate() {
            let value = self.value(n, sample, spend)?;
            d.stack(sample.stack_index, &mut stack, spend)?;
            if value == 0 {
                continue;
            }
            let service = sample_service(sample, d)?;
            let key = (service, (&sample.attribute_indices[..], sample.link_index));
            let (s, g) = match groups.get(&key) {
                Some(&at) => at,
                None => {
                    let s = match services.iter().position(|(name, _)| *name == service) {
                        Some(s) => s,
                        None => {
                            services.push((service, Vec::new()));
                            services.len() - 1
                        }
                    };
                    // Different attribute indices can name the same labels: one group.
                    let labels = sample_labels(sample, d, spend)?;
                    let groups_of = &mut services[s].1;
                    let g = *by_labels.entry((s, labels.clone())).or_insert_with(|| {
                        groups_of.push((labels, Vec::new()));
                        groups_of.len() - 1
                    });
                    groups.insert(key, (s, g));
                    (s, g)
                }
            };
            spend.spend(NAME, Bound::StackFrames, stack.len())?;
            let start = frames.len();
            frames.extend_from_slice(&stack);
            services[s].1[g].1.push((start, frames.len(), value));
        }
        let mut out = Vec::with_capacity(services.len());
        for (service, grouped) in services {
            let mut trees = Vec::with_capacity(grouped.len());
            for (labels, spans) in grouped {
                trees.push((labels, tree(&d.symbols, &frames, &spans, spend)?));
            }
            let meta = self.meta.clone();
            out.push((service, LabelledTrees { meta, trees }));
        }
        Ok(out)
    }

    /// A sample's value: the sum of its values (one per timestamp), or its timestamp
    /// count when it has no values, as the specification says; scaled to nanoseconds
    /// for CPU samples.
    fn value(&self, n: usize, s: &pb::Sample, spend: &mut Spend<'_>) -> Result<u64, FormatError> {
        let mut sum = 0u64;
        for &v in &s.values {
            let v = u64::try_from(v).map_err(|_| bad(format!("sample {n} has value {v}")))?;
            sum = sum
                .checked_add(v)
                .ok_or_else(|| spend.over(NAME, Bound::TotalValue))?;
        }
        if s.values.is_empty() {
            if s.timestamps_unix_nano.is_empty() {
                return Err(bad(format!("sample {n} has neither values nor timestamps")));
            }
            sum = s.timestamps_unix_nano.len() as u64;
        }
        let value = sum
            .checked_mul(self.scale)
            .ok_or_else(|| spend.over(NAME, Bound::TotalValue))?;
        spend.value(NAME, value)?;
        Ok(value)
    }
}

/// Stacks of one label set: (start, end, value) into the profile's frames.
type Spans = Vec<(usize, usize, u64)>;

/// One set of sample labels and its stacks.
type LabelGroup = (Labels, Spans);

/// One label set's tree (sharing the request's symbol table or taking only the frames
/// it uses, as the pprof decoder does), spending its nodes (or its table, when larger).
fn tree(
    symbols: &SymbolTable,
    frames: &[FrameId],
    spans: &Spans,
    spend: &mut Spend<'_>,
) -> Result<StackTree, FormatError> {
    let (tree, entries) = crate::pprof::group_tree(symbols, frames, spans, spend.nodes_left())
        .ok_or_else(|| spend.over(NAME, Bound::Nodes))?;
    spend.spend(NAME, Bound::Nodes, tree.node_count().max(entries))?;
    Ok(tree)
}

/// The sample's own `service.name` attribute, which splits a profile by service.
fn sample_service<'a>(s: &pb::Sample, d: &Dictionary<'a>) -> Result<Option<&'a str>, FormatError> {
    for &i in &s.attribute_indices {
        let a = at(&d.d.attribute_table, i, "attribute")?;
        if d.string(a.key_strindex)? == SERVICE_NAME_ATTRIBUTE {
            return d.string_value(a.value.as_ref());
        }
    }
    Ok(None)
}

/// A sample's labels: its string attributes (but `service.name`) and its link's
/// `span_id` and `trace_id` in hex.
fn sample_labels(
    s: &pb::Sample,
    d: &Dictionary<'_>,
    spend: &Spend<'_>,
) -> Result<Labels, FormatError> {
    let mut labels = Labels::new();
    for &i in &s.attribute_indices {
        let a = at(&d.d.attribute_table, i, "attribute")?;
        let key = d.string(a.key_strindex)?;
        if key.is_empty() || key == SERVICE_NAME_ATTRIBUTE || key.starts_with("__") {
            continue;
        }
        if let Some(value) = d.string_value(a.value.as_ref())? {
            let name = label_name(key);
            spend.label(&name, value)?;
            labels.set(name, value);
        }
    }
    // Index 0 is the "no link" entry.
    if s.link_index != 0 {
        let link = at(&d.d.link_table, s.link_index, "link")?;
        for (name, id, len) in [
            ("span_id", &link.span_id, 8),
            ("trace_id", &link.trace_id, 16),
        ] {
            if id.is_empty() {
                continue;
            }
            if id.len() != len {
                return Err(bad(format!(
                    "a link's {name} has {} bytes, not {len}",
                    id.len()
                )));
            }
            labels.set(name, hex(id));
        }
    }
    spend.at_most(NAME, Bound::Labels, labels.len())?;
    Ok(labels)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
