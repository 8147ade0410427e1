//! Profiles → gzipped pprof. Deterministic: the same profile gives the same bytes.

use std::collections::HashMap;
use std::io::Write;

use embers_profile::{FrameId, Profile, ValueType};
use flate2::{write::GzEncoder, Compression};
use prost::Message;

use super::proto;
use crate::FormatError;

/// Interns strings into pprof's string table (index 0 is "").
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        Strings {
            table: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }

    fn value_type(&mut self, t: &ValueType) -> proto::ValueType {
        proto::ValueType {
            r#type: self.get(&t.kind),
            unit: self.get(&t.unit),
        }
    }
}

/// Builds the protobuf message for `profile`.
pub fn encode_proto(profile: &Profile) -> proto::Profile {
    let mut strings = Strings::new();
    let mut out = proto::Profile {
        sample_type: vec![strings.value_type(&profile.meta.sample_type)],
        period_type: profile
            .meta
            .period_type
            .as_ref()
            .map(|t| strings.value_type(t)),
        period: profile.meta.period,
        time_nanos: profile.meta.time_nanos,
        duration_nanos: profile.meta.duration_nanos,
        ..proto::Profile::default()
    };
    let mut functions: HashMap<(i64, i64), u64> = HashMap::new();
    let mut mappings: HashMap<i64, u64> = HashMap::new();
    let mut locations: HashMap<FrameId, u64> = HashMap::new();
    for sample in profile.samples() {
        let mut location_id = Vec::with_capacity(sample.stack.len());
        for &frame_id in sample.stack.iter().rev() {
            let id = match locations.get(&frame_id) {
                Some(&id) => id,
                None => {
                    let frame = profile.symbols.get(frame_id);
                    let name = strings.get(&frame.function);
                    let file = strings.get(frame.file.as_deref().unwrap_or(""));
                    let next_fn = functions.len() as u64 + 1;
                    let function_id = *functions.entry((name, file)).or_insert_with(|| {
                        out.function.push(proto::Function {
                            id: next_fn,
                            name,
                            // Frames keep one name (the decoder takes `name`, else
                            // `system_name`), so there is no system name to write. Writing
                            // the name there too would make `go tool pprof` demangle it:
                            // `Foo<int>::bar(int)` would lose its template and arguments.
                            system_name: 0,
                            filename: file,
                            start_line: 0,
                        });
                        next_fn
                    });
                    let mapping_id = match &frame.module {
                        None => 0,
                        Some(module) => {
                            let filename = strings.get(module);
                            let next = mappings.len() as u64 + 1;
                            *mappings.entry(filename).or_insert_with(|| {
                                out.mapping.push(proto::Mapping {
                                    id: next,
                                    filename,
                                    has_functions: true,
                                    ..proto::Mapping::default()
                                });
                                next
                            })
                        }
                    };
                    let id = out.location.len() as u64 + 1;
                    out.location.push(proto::Location {
                        id,
                        mapping_id,
                        line: vec![proto::Line {
                            function_id,
                            line: frame.line.map_or(0, i64::from),
                            column: 0,
                        }],
                        ..proto::Location::default()
                    });
                    locations.insert(frame_id, id);
                    id
                }
            };
            location_id.push(id);
        }
        let label = sample
            .labels
            .iter()
            .map(|(k, v)| proto::Label {
                key: strings.get(k),
                str: strings.get(v),
                ..proto::Label::default()
            })
            .collect();
        out.sample.push(proto::Sample {
            location_id,
            value: vec![i64::try_from(sample.value).unwrap_or(i64::MAX)],
            label,
        });
    }
    out.string_table = strings.table;
    out
}

/// Writes `profile` as gzipped pprof.
pub fn encode(profile: &Profile, out: &mut dyn Write) -> Result<(), FormatError> {
    let bytes = encode_proto(profile).encode_to_vec();
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embers_profile::{Frame, Labels, ProfileMeta};

    /// `go tool pprof` demangles a function whose `system_name` equals its name; a
    /// template name must not be offered to it.
    #[test]
    fn names_only_and_the_profiles_period_and_times() {
        let meta = ProfileMeta {
            sample_type: ValueType::new("cpu", "nanoseconds"),
            period_type: Some(ValueType::new("cpu", "nanoseconds")),
            period: 10_000_000,
            time_nanos: 1_700_000_000_000_000_000,
            duration_nanos: 10_000_000_000,
        };
        let mut profile = Profile::new(meta.clone());
        let frame = profile.symbols.intern(&Frame::named("Foo<int>::bar(int)"));
        profile.add(vec![frame], Labels::new(), 3);
        let p = encode_proto(&profile);
        assert!(p.function.iter().all(|f| f.system_name == 0));
        assert_eq!(
            p.string_table[p.function[0].name as usize],
            "Foo<int>::bar(int)"
        );
        assert_eq!(
            (p.period, p.time_nanos, p.duration_nanos),
            (meta.period, meta.time_nanos, meta.duration_nanos)
        );
        let period_type = p.period_type.unwrap();
        assert_eq!(p.string_table[period_type.r#type as usize], "cpu");
    }
}
