//! Counting an OTLP export's repeated fields on the wire before `prost` decodes it, as
//! `ingest/scan.rs` does for pprof: a sample of a few bytes becomes a struct of ~100, so
//! a body of many tiny entries is refused before it costs memory.

use super::proto::opentelemetry::proto::profiles::v1development::ProfilesDictionary;
use super::{ExportProfilesServiceRequest, NAME};
use crate::ingest::scan::{fields, scalars, Field};
use crate::ingest::{Bound, Spend};
use crate::FormatError;

/// Entries of a repeated field (`fixed`: 8-byte packed entries, such as timestamps).
fn entries(field: &Field<'_>, fixed: bool) -> usize {
    match (field.wire_type, fixed) {
        (2, true) => field.payload.len() / 8,
        _ => scalars(field),
    }
}

/// Spends the request's samples (a sample's values and timestamps beyond its first are
/// observations of their own), attributes and dictionary entries, and checks each
/// sample's attribute count.
pub(super) fn request(raw: &[u8], spend: &mut Spend<'_>) -> Result<(), FormatError> {
    fields(NAME, raw, |field| match field.number {
        1 => resource_profiles(field.payload, spend),
        2 => dictionary(field.payload, spend),
        _ => Ok(()),
    })
}

fn resource_profiles(raw: &[u8], spend: &mut Spend<'_>) -> Result<(), FormatError> {
    fields(NAME, raw, |field| match field.number {
        1 => attributes(field.payload, 1, spend),
        2 => fields(NAME, field.payload, |scope| match scope.number {
            1 => attributes(scope.payload, 3, spend),
            2 => profile(scope.payload, spend),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })
}

/// Spends the `KeyValue`s (field `number`) of a resource or scope, and every value
/// nested in them, as samples: each is a small allocation, and none should be free.
fn attributes(raw: &[u8], number: u64, spend: &mut Spend<'_>) -> Result<(), FormatError> {
    fields(NAME, raw, |f| {
        if f.number == number {
            key_value(f.payload, Bound::Samples, 0, spend)?;
        }
        Ok(())
    })
}

/// Nesting of attribute values (arrays and key-value lists) allowed; prost stops at 100.
const MAX_VALUE_DEPTH: usize = 32;

/// A `KeyValue` (or a dictionary's `KeyValueAndUnit`: its value is field 2 too).
fn key_value(
    raw: &[u8],
    bound: Bound,
    depth: usize,
    spend: &mut Spend<'_>,
) -> Result<(), FormatError> {
    spend.spend(NAME, bound, 1)?;
    fields(NAME, raw, |f| match f.number {
        2 => any_value(f.payload, bound, depth + 1, spend),
        _ => Ok(()),
    })
}

/// An `AnyValue`: an array's values and a list's pairs are entries of their own (an
/// empty one is two bytes on the wire and a struct in memory).
fn any_value(
    raw: &[u8],
    bound: Bound,
    depth: usize,
    spend: &mut Spend<'_>,
) -> Result<(), FormatError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(FormatError::malformed(
            NAME,
            format!("attribute values nested deeper than {MAX_VALUE_DEPTH}"),
        ));
    }
    spend.spend(NAME, bound, 1)?;
    fields(NAME, raw, |f| match f.number {
        5 => fields(NAME, f.payload, |v| match v.number {
            1 => any_value(v.payload, bound, depth + 1, spend),
            _ => Ok(()),
        }),
        6 => fields(NAME, f.payload, |kv| match kv.number {
            1 => key_value(kv.payload, bound, depth + 1, spend),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })
}

fn profile(raw: &[u8], spend: &mut Spend<'_>) -> Result<(), FormatError> {
    let max_labels = spend.budget.max_labels_per_series;
    fields(NAME, raw, |field| {
        if field.number == 11 {
            return spend.spend(NAME, Bound::Locations, entries(&field, false));
        }
        if field.number != 2 {
            return Ok(());
        }
        let (mut attributes, mut values, mut timestamps) = (0, 0, 0);
        fields(NAME, field.payload, |f| {
            match f.number {
                2 => attributes += entries(&f, false),
                4 => values += entries(&f, false),
                5 => timestamps += entries(&f, true),
                _ => {}
            }
            Ok(())
        })?;
        if attributes > max_labels {
            return Err(spend.over(NAME, Bound::Labels));
        }
        spend.spend(NAME, Bound::Samples, values.max(timestamps).max(1))
    })
}

fn dictionary(raw: &[u8], spend: &mut Spend<'_>) -> Result<(), FormatError> {
    fields(NAME, raw, |field| match field.number {
        // Attribute indices, a location's lines and a stack's location indices are
        // entries too.
        1 | 2 | 7 => {
            let mut inner = 0;
            fields(NAME, field.payload, |f| {
                match (field.number, f.number) {
                    (1, 5) | (2, 4) | (7, 1) => inner += entries(&f, false),
                    (2, 3) => inner += 1,
                    _ => {}
                }
                Ok(())
            })?;
            spend.spend(NAME, Bound::Locations, 1 + inner)
        }
        6 => key_value(field.payload, Bound::Locations, 0, spend),
        3..=5 => spend.spend(NAME, Bound::Locations, 1),
        _ => Ok(()),
    })
}

/// The JSON path's counterpart of [`request`] for the dictionary (the body's braces were
/// spent as samples before parsing): table entries, lines and stack indices.
pub(super) fn tables(
    request: &ExportProfilesServiceRequest,
    spend: &mut Spend<'_>,
) -> Result<(), FormatError> {
    let Some(d) = &request.dictionary else {
        return Ok(());
    };
    let ProfilesDictionary {
        mapping_table,
        location_table,
        function_table,
        link_table,
        string_table,
        attribute_table,
        stack_table,
    } = d;
    let lines: usize = location_table.iter().map(|l| l.lines.len()).sum();
    let indices: usize = stack_table.iter().map(|s| s.location_indices.len()).sum();
    let entries = [
        mapping_table.len(),
        location_table.len(),
        function_table.len(),
        link_table.len(),
        string_table.len(),
        attribute_table.len(),
        stack_table.len(),
        lines,
        indices,
    ];
    spend.spend(NAME, Bound::Locations, entries.iter().sum())
}
