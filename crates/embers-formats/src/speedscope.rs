//! speedscope JSON (https://www.speedscope.app/file-format-schema.json), write only.

use std::collections::HashMap;
use std::io::Write;

use embers_profile::{FrameId, Profile};
use serde_json::{json, Value};

use crate::{FormatError, WriteOptions};

/// speedscope's value unit for a pprof-style unit name.
fn unit(unit: &str) -> &'static str {
    match unit {
        "nanoseconds" | "ns" => "nanoseconds",
        "microseconds" | "us" => "microseconds",
        "milliseconds" | "ms" => "milliseconds",
        "seconds" | "s" => "seconds",
        "bytes" => "bytes",
        _ => "none",
    }
}

/// Writes one `sampled` profile: a sample per distinct stack, weighted by its value.
pub fn write(
    profile: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let tree = profile.tree();
    let symbols = tree.symbols();
    // Only frames some stack uses, numbered in first-use order.
    let mut index: HashMap<FrameId, usize> = HashMap::new();
    let mut frames: Vec<Value> = Vec::new();
    let mut samples: Vec<Vec<usize>> = Vec::new();
    let mut weights: Vec<u64> = Vec::new();
    tree.for_each_stack(|stack, value| {
        let indices = stack
            .iter()
            .map(|&id| {
                *index.entry(id).or_insert_with(|| {
                    let f = symbols.get(id);
                    let mut frame = json!({ "name": f.function });
                    if let Some(file) = &f.file {
                        frame["file"] = json!(file);
                    }
                    if let Some(line) = f.line {
                        frame["line"] = json!(line);
                    }
                    frames.push(frame);
                    frames.len() - 1
                })
            })
            .collect();
        samples.push(indices);
        weights.push(value);
    });
    let name = options
        .title
        .clone()
        .unwrap_or_else(|| "embers profile".to_owned());
    let doc = json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": { "frames": frames },
        "profiles": [{
            "type": "sampled",
            "name": name,
            "unit": unit(&profile.meta.sample_type.unit),
            "startValue": 0,
            "endValue": tree.total(),
            "samples": samples,
            "weights": weights,
        }],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": concat!("embers ", env!("CARGO_PKG_VERSION")),
    });
    serde_json::to_writer(&mut *out, &doc).map_err(|e| FormatError::Io(e.into()))?;
    out.write_all(b"\n")?;
    Ok(())
}
