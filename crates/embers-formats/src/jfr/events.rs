//! The events Grafana Pyroscope turns into profiles, read by field role from whatever
//! layout the chunk's metadata gives them (the JDK's, async-profiler's, or a user event
//! that reuses a JDK name).

use super::metadata::{Role, Types};
use super::reader::Reader;
use super::values::{fields, plain, Scalar};
use crate::FormatError;

/// The event types that become profiles, and the setting that names async-profiler's
/// event (`cpu`, `itimer`, `wall`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventKind {
    ExecutionSample,
    WallClockSample,
    AllocationInNewTlab,
    AllocationOutsideTlab,
    AllocationSample,
    MonitorEnter,
    ThreadPark,
    LiveObject,
    Malloc,
    ActiveSetting,
}

impl EventKind {
    fn of(name: &str) -> Option<EventKind> {
        Some(match name {
            "jdk.ExecutionSample" => EventKind::ExecutionSample,
            "profiler.WallClockSample" => EventKind::WallClockSample,
            "jdk.ObjectAllocationInNewTLAB" => EventKind::AllocationInNewTlab,
            "jdk.ObjectAllocationOutsideTLAB" => EventKind::AllocationOutsideTlab,
            "jdk.ObjectAllocationSample" => EventKind::AllocationSample,
            "jdk.JavaMonitorEnter" => EventKind::MonitorEnter,
            "jdk.ThreadPark" => EventKind::ThreadPark,
            "profiler.LiveObject" => EventKind::LiveObject,
            "profiler.Malloc" => EventKind::Malloc,
            "jdk.ActiveSetting" => EventKind::ActiveSetting,
            _ => return None,
        })
    }

    /// The kind of every class of a chunk, by class index.
    pub(super) fn table(types: &Types) -> Vec<Option<EventKind>> {
        types.classes.iter().map(|c| Self::of(&c.name)).collect()
    }

    /// Whether the event's `contextId`, `spanId` and `spanName` are read (Grafana reads
    /// them on these five only).
    pub(super) fn correlated(self) -> bool {
        matches!(
            self,
            EventKind::ExecutionSample
                | EventKind::WallClockSample
                | EventKind::AllocationInNewTlab
                | EventKind::AllocationOutsideTlab
                | EventKind::MonitorEnter
        )
    }
}

/// The fields of one event the converter uses (0 or `None` when absent).
#[derive(Debug, Default)]
pub(super) struct Event<'a> {
    pub(super) stack: i64,
    pub(super) state: i64,
    pub(super) context_id: i64,
    pub(super) span_id: i64,
    pub(super) span_name: i64,
    pub(super) tlab_size: i64,
    pub(super) allocation_size: i64,
    pub(super) weight: i64,
    pub(super) duration: i64,
    pub(super) samples: i64,
    pub(super) size: i64,
    pub(super) name: Option<Scalar<'a>>,
    pub(super) value: Option<Scalar<'a>>,
}

/// Reads one event of class `class` (the reader is past its type id).
pub(super) fn read<'a>(
    r: &mut Reader<'a>,
    types: &Types,
    class: usize,
) -> Result<Event<'a>, FormatError> {
    let mut e = Event::default();
    fields(r, types, &types.classes[class], |r, f| {
        let Some(v) = plain(r, f)? else {
            return Ok(false);
        };
        let slot = match f.role {
            Role::StackTrace => &mut e.stack,
            Role::State => &mut e.state,
            Role::ContextId => &mut e.context_id,
            Role::SpanId => &mut e.span_id,
            Role::SpanName => &mut e.span_name,
            Role::TlabSize => &mut e.tlab_size,
            Role::AllocationSize => &mut e.allocation_size,
            Role::Weight => &mut e.weight,
            Role::Duration => &mut e.duration,
            Role::Samples => &mut e.samples,
            Role::Size => &mut e.size,
            Role::Name => {
                e.name = Some(v);
                return Ok(true);
            }
            Role::Value => {
                e.value = Some(v);
                return Ok(true);
            }
            _ => return Ok(true),
        };
        *slot = v.int();
        Ok(true)
    })?;
    Ok(e)
}
