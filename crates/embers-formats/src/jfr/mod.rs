//! Java Flight Recorder recordings (what pyroscope-java uploads, from async-profiler or
//! the JDK's own recorder) → call trees, converted as Grafana Pyroscope converts them.
//!
//! The reader is our own: `jfrs` (the Rust JFR reader on crates.io) sizes allocations
//! from lengths in the file and reads every value into a generic tree, so it can neither
//! be bounded by the request's [`IngestBudget`] nor kept cheap per byte. Here every
//! count is checked against the bytes left, fields that encode to nothing are dropped
//! from the layout once, inline values nest at most 16 deep, and every kept constant,
//! frame, sample, node and label is spent from the budget.
//!
//! Layout: `chunk` (chunk headers, the size-prefixed events), `reader` (integers and
//! strings), `metadata` (classes and fields), `values` (walking values by field role),
//! `pools` (symbols, classes, methods, stack traces, thread states), `events` (the
//! events that become profiles), `symbols` (generated names merged), `convert` (events
//! → trees by kind and sample labels).
//!
//! ```no_run
//! use embers_formats::jfr::{decode, JfrOptions};
//! use embers_formats::IngestBudget;
//!
//! let recording = std::fs::read("app.jfr").unwrap();
//! let groups = decode(&recording, None, &JfrOptions::default(), &IngestBudget::default()).unwrap();
//! for group in &groups {
//!     for profile in &group.profiles {
//!         println!("{} {}", group.family, profile.meta.sample_type.kind);
//!     }
//! }
//! ```

mod chunk;
mod convert;
mod events;
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, missing_docs, missing_debug_implementations)]
mod labels_proto;
mod metadata;
mod pools;
mod reader;
mod symbols;
mod values;

use embers_profile::Labels;
use prost::Message;

use crate::ingest::{IngestBudget, Spend};
use crate::pprof::LabelledTrees;
use crate::FormatError;

pub use labels_proto::{Context, LabelsSnapshot};

/// One profile of a recording: the events of one kind as trees, one per sample type.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JfrGroup {
    kind: convert::Kind,
    /// The series' `__name__`: `process_cpu`, `wall`, `memory`, `mutex` or `block`.
    pub family: &'static str,
    /// Series labels the recording adds: `jfr_event` (async-profiler's event) when set.
    pub labels: Labels,
    /// One per sample type, with Grafana's sample and period types; trees by sample
    /// labels (from the `labels` part: context labels, `span_id`, `span_name`).
    pub profiles: Vec<LabelledTrees>,
}

/// How to convert a recording.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct JfrOptions {
    /// Nanoseconds one CPU or wall sample stands for (1e9 / `sampleRate`); 0 drops
    /// CPU and wall samples, as Grafana does for `sampleRate=0`.
    pub period: i64,
    /// The profile's start (Unix nanoseconds; 0: the server's time).
    pub time_nanos: i64,
    /// How long it covers, in nanoseconds.
    pub duration_nanos: i64,
}

impl Default for JfrOptions {
    /// pyroscope-java's default: 100 Hz.
    fn default() -> Self {
        JfrOptions {
            period: 10_000_000,
            time_nanos: 0,
            duration_nanos: 0,
        }
    }
}

impl JfrOptions {
    /// Options with `period` nanoseconds per CPU or wall sample.
    pub fn with_period(period: i64) -> Self {
        JfrOptions {
            period,
            ..JfrOptions::default()
        }
    }
}

/// Reads every chunk's metadata, constant pools and events field by field within
/// `budget`, converting nothing: the least a JFR reader that understands events does
/// (the benchmark's floor). Returns the number of events.
pub fn scan(recording: &[u8], budget: &IngestBudget) -> Result<usize, FormatError> {
    let spend = &mut Spend::new(budget);
    let mut events = 0;
    for chunk in chunk::chunks(recording)? {
        let mut r = chunk.reader();
        r.seek(chunk.metadata_offset)?;
        let types = metadata::read(&mut r)?;
        let mut pools = pools::Pools::default();
        for event in chunk.events() {
            let (ty, mut r) = event?;
            events += 1;
            match ty {
                chunk::METADATA => {}
                chunk::CHECKPOINT => pools.checkpoint(&mut r, &types, spend)?,
                ty => {
                    let class = types
                        .index(ty)
                        .ok_or_else(|| reader::bad(format!("an event of unknown type {ty}")))?;
                    values::skip(&mut r, &types, metadata::Ty::Inline(class), false, 0)?;
                }
            }
        }
    }
    Ok(events)
}

/// Decodes a recording (plain bytes, several chunks allowed) and pyroscope-java's
/// `LabelsSnapshot` protobuf, within `budget`.
pub fn decode(
    recording: &[u8],
    labels: Option<&[u8]>,
    options: &JfrOptions,
    budget: &IngestBudget,
) -> Result<Vec<JfrGroup>, FormatError> {
    decode_in(recording, labels, options, &mut Spend::new(budget))
}

/// [`decode`] spending one request's budget (the ingest entry point's path).
pub(crate) fn decode_in(
    recording: &[u8],
    labels: Option<&[u8]>,
    options: &JfrOptions,
    spend: &mut Spend<'_>,
) -> Result<Vec<JfrGroup>, FormatError> {
    let snapshot = labels
        .map(|bytes| {
            LabelsSnapshot::decode(bytes).map_err(|e| {
                FormatError::malformed("jfr labels", format!("not a LabelsSnapshot protobuf: {e}"))
            })
        })
        .transpose()?;
    let settings = convert::Settings {
        period: options.period,
        time_nanos: options.time_nanos,
        duration_nanos: options.duration_nanos,
    };
    let mut collector = convert::Collector::new(settings, snapshot.as_ref());
    for chunk in chunk::chunks(recording)? {
        let mut r = chunk.reader();
        r.seek(chunk.metadata_offset)?;
        let types = metadata::read(&mut r)?;
        let kinds = events::EventKind::table(&types);
        let mut pools = pools::Pools::default();
        for event in chunk.events() {
            let (ty, mut r) = event?;
            if ty == chunk::CHECKPOINT {
                pools.checkpoint(&mut r, &types, spend)?;
            }
        }
        for event in chunk.events() {
            let (ty, mut r) = event?;
            if ty == chunk::METADATA || ty == chunk::CHECKPOINT {
                continue;
            }
            let class = types
                .index(ty)
                .ok_or_else(|| reader::bad(format!("an event of unknown type {ty}")))?;
            let Some(kind) = kinds[class] else { continue };
            let e = events::read(&mut r, &types, class)?;
            collector.add(kind, &e, &pools, chunk.ticks_per_second, spend)?;
        }
        collector.end_chunk(&pools, spend)?;
    }
    collector.finish(spend)
}
