//! Chrome trace event JSON (chrome://tracing, Perfetto), write only: the call tree laid
//! out as a flame chart, each node a complete (`X`) event inside its parent.

use std::io::Write;

use embers_profile::{Profile, StackTree};
use serde_json::{json, Value};

use crate::{FormatError, WriteOptions};

/// Microseconds one unit of value stands for: the sampling period for sample counts,
/// the value itself for time units, else 10 ms (100 Hz).
fn micros_per_unit(profile: &Profile) -> f64 {
    let meta = &profile.meta;
    match meta.sample_type.unit.as_str() {
        "nanoseconds" => 1e-3,
        "microseconds" => 1.0,
        "milliseconds" => 1e3,
        "seconds" => 1e6,
        _ if meta.period > 0
            && meta
                .period_type
                .as_ref()
                .is_some_and(|t| t.unit == "nanoseconds") =>
        {
            meta.period as f64 / 1e3
        }
        _ => 10_000.0,
    }
}

/// Writes `{"traceEvents": [...]}` with one `X` event per call-tree node.
pub fn write(
    profile: &Profile,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> Result<(), FormatError> {
    let tree = profile.tree();
    let scale = micros_per_unit(profile);
    let name = options
        .title
        .clone()
        .unwrap_or_else(|| "embers profile".to_owned());
    let mut events: Vec<Value> = vec![
        json!({"name": "process_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": name}}),
        json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "all threads"}}),
    ];
    // (node, start in value units); children are laid out one after another from their
    // parent's start, heaviest first, so each lies within its parent.
    let mut todo = vec![(StackTree::ROOT, 0u64)];
    while let Some((node, start)) = todo.pop() {
        if let Some(frame) = tree.frame(node) {
            let mut args =
                json!({ "self": tree.self_value(node), "total": tree.total_value(node) });
            if let Some(file) = &frame.file {
                args["file"] = json!(file);
            }
            if let Some(line) = frame.line {
                args["line"] = json!(line);
            }
            events.push(json!({
                "name": frame.function,
                "cat": "embers",
                "ph": "X",
                "ts": start as f64 * scale,
                "dur": tree.total_value(node) as f64 * scale,
                "pid": 1,
                "tid": 1,
                "args": args,
            }));
        }
        let mut child_start = start;
        for child in tree.children_sorted(node) {
            todo.push((child, child_start));
            child_start += tree.total_value(child);
        }
    }
    serde_json::to_writer(
        &mut *out,
        &json!({ "traceEvents": events, "displayTimeUnit": "ms" }),
    )
    .map_err(|e| FormatError::Io(e.into()))?;
    out.write_all(b"\n")?;
    Ok(())
}
