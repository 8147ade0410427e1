//! Reading speedscope JSON (https://www.speedscope.app/file-format-schema.json), the
//! format speedscope, rbspy, py-spy (`--format speedscope`) and our own exporter write.
//!
//! Both profile kinds are read: `sampled` (stacks of frame indices with weights) and
//! `evented` (open/close events; the time between two events is charged to the stack open
//! between them). Time units become nanoseconds, so every file lands in one unit. The
//! JSON is bounded by the body bytes already spent; samples, events, frames, depth and
//! values spend the request's budget through the folded builder.

use embers_profile::{Frame, ProfileMeta, ValueType};
use serde::Deserialize;

use super::adhoc::AdHocProfile;
use super::stacks::Builder;
use super::{Bound, Spend};
use crate::FormatError;

const NAME: &str = "speedscope";

#[derive(Deserialize)]
struct File {
    shared: Shared,
    profiles: Vec<Profile>,
}

#[derive(Deserialize)]
struct Shared {
    frames: Vec<FrameDef>,
}

#[derive(Deserialize)]
struct FrameDef {
    name: String,
    file: Option<String>,
    line: Option<u32>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Profile {
    Sampled {
        name: Option<String>,
        unit: String,
        samples: Vec<Vec<usize>>,
        weights: Vec<f64>,
    },
    Evented {
        name: Option<String>,
        unit: String,
        events: Vec<Event>,
    },
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    at: f64,
    frame: usize,
}

fn malformed(message: impl Into<String>) -> FormatError {
    FormatError::malformed(NAME, message)
}

/// The sample type a speedscope unit becomes, and the factor to its unit.
fn value_type(unit: &str) -> Result<(ValueType, f64), FormatError> {
    let time = |f: f64| Ok((ValueType::new("wall", "nanoseconds"), f));
    match unit {
        "none" => Ok((ValueType::samples(), 1.0)),
        "nanoseconds" => time(1.0),
        "microseconds" => time(1e3),
        "milliseconds" => time(1e6),
        "seconds" => time(1e9),
        "bytes" => Ok((ValueType::new("space", "bytes"), 1.0)),
        other => Err(malformed(format!("unknown unit {other:?}"))),
    }
}

/// Reads a speedscope file; profiles without a name take the file's name.
pub(super) fn decode(
    bytes: &[u8],
    file_name: &str,
    spend: &mut Spend<'_>,
) -> Result<Vec<AdHocProfile>, FormatError> {
    let file: File = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("not speedscope JSON: {e}")))?;
    let labels: Vec<String> = file
        .shared
        .frames
        .into_iter()
        .map(|f| {
            Frame {
                function: f.name,
                file: f.file,
                line: f.line,
                ..Frame::default()
            }
            .to_string()
        })
        .collect();
    let label = |i: usize| {
        labels
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| malformed(format!("frame index {i} is not in shared.frames")))
    };
    let mut out = Vec::new();
    for profile in file.profiles {
        let (name, unit) = match &profile {
            Profile::Sampled { name, unit, .. } | Profile::Evented { name, unit, .. } => {
                (name.clone(), unit.clone())
            }
        };
        let (sample_type, factor) = value_type(&unit)?;
        let mut b = Builder::new(spend, NAME);
        match profile {
            Profile::Sampled {
                samples, weights, ..
            } => {
                if samples.len() != weights.len() {
                    return Err(malformed("samples and weights differ in length"));
                }
                for (stack, weight) in samples.iter().zip(weights) {
                    b.spend.spend(NAME, Bound::Samples, 1)?;
                    let frames = stack
                        .iter()
                        .map(|&i| label(i))
                        .collect::<Result<Vec<_>, _>>()?;
                    b.add(frames.into_iter(), scaled(weight, factor)?)?;
                }
            }
            Profile::Evented { events, .. } => {
                let mut open: Vec<usize> = Vec::new();
                let mut last = None::<f64>;
                for e in events {
                    b.spend.spend(NAME, Bound::Samples, 1)?;
                    if let (Some(prev), false) = (last, open.is_empty()) {
                        if e.at < prev {
                            return Err(malformed("events go back in time"));
                        }
                        let frames = open
                            .iter()
                            .map(|&i| label(i))
                            .collect::<Result<Vec<_>, _>>()?;
                        b.add(frames.into_iter(), scaled(e.at - prev, factor)?)?;
                    }
                    last = Some(e.at);
                    match e.kind.as_str() {
                        "O" => {
                            label(e.frame)?;
                            b.spend.at_most(NAME, Bound::StackDepth, open.len() + 1)?;
                            open.push(e.frame);
                        }
                        "C" if open.last() == Some(&e.frame) => {
                            open.pop();
                        }
                        "C" => return Err(malformed("a close event for a frame that is not open")),
                        other => return Err(malformed(format!("unknown event type {other:?}"))),
                    }
                }
            }
        }
        out.push(AdHocProfile {
            name: name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| file_name.to_owned()),
            meta: ProfileMeta {
                sample_type,
                ..ProfileMeta::default()
            },
            tree: b.tree,
        });
    }
    Ok(out)
}

/// A weight in the profile's unit, as a whole number of the sample type's unit.
fn scaled(weight: f64, factor: f64) -> Result<u64, FormatError> {
    let v = (weight * factor).round();
    if !(0.0..1.8e19).contains(&v) {
        return Err(malformed(format!(
            "weight {weight} is negative or too large"
        )));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use crate::ingest::adhoc::{decode_file, FileFormat};
    use crate::IngestBudget;

    #[test]
    fn our_own_export_reads_back_with_its_totals() {
        let profile = crate::read(b"main;work 75\nmain;idle 25\n", None).unwrap();
        let mut out = Vec::new();
        crate::speedscope::write(&profile, &Default::default(), &mut out).unwrap();
        let f = decode_file("p.json", &out, &IngestBudget::default()).unwrap();
        assert_eq!(f.format, FileFormat::Speedscope);
        assert_eq!(f.profiles.len(), 1);
        assert_eq!(f.profiles[0].tree.total(), 100);
    }

    #[test]
    fn evented_profiles_charge_time_between_events() {
        let json = br#"{"shared":{"frames":[{"name":"main"},{"name":"work"}]},
          "profiles":[{"type":"evented","name":"t","unit":"milliseconds","startValue":0,"endValue":10,
          "events":[{"type":"O","at":0,"frame":0},{"type":"O","at":2,"frame":1},
                    {"type":"C","at":9,"frame":1},{"type":"C","at":10,"frame":0}]}]}"#;
        let f = decode_file("e.json", json, &IngestBudget::default()).unwrap();
        let p = &f.profiles[0];
        assert_eq!(p.name, "t");
        assert_eq!(p.tree.total(), 10_000_000);
        let stacks = crate::folded::lines(&p.tree);
        assert_eq!(stacks, vec!["main 3000000", "main;work 7000000"]);
    }

    #[test]
    fn bad_files_are_malformed_not_panics() {
        for bad in [
            &br#"{"shared":{"frames":[]},"profiles":[{"type":"sampled","unit":"none","samples":[[3]],"weights":[1]}]}"#[..],
            br#"{"shared":{"frames":[{"name":"a"}]},"profiles":[{"type":"evented","unit":"none","events":[{"type":"C","at":0,"frame":0}]}]}"#,
            br#"{"shared":{"frames":[{"name":"a"}]},"profiles":[{"type":"sampled","unit":"none","samples":[[0]],"weights":[-1]}]}"#,
            br#"{"shared":"#,
        ] {
            let err = decode_file("b.json", bad, &IngestBudget::default()).unwrap_err();
            assert!(err.to_string().contains("speedscope"), "{err}");
        }
    }
}
