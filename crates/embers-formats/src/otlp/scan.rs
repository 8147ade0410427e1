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

/// Spends the `KeyValue`s (field `number`) of a resource or scope as samples: each is a
/// small allocation, and none should be free.
fn attributes(raw: &[u8], number: u64, spend: &mut Spend<'_>) -> Result<(), FormatError> {
    fields(NAME, raw, |f| {
        if f.number == number {
            spend.spend(NAME, Bound::Samples, 1)?;
        }
        Ok(())
    })
}

fn profile(raw: &[u8], spend: &mut Spend<'_>) -> Result<(), FormatError> {
    let max_labels = spend.budget.max_labels_per_series;
    fields(NAME, raw, |field| {
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
        // A location's lines and a stack's location indices are entries too.
        2 | 7 => {
            let mut inner = 0;
            fields(NAME, field.payload, |f| {
                match (field.number, f.number) {
                    (2, 3) => inner += 1,
                    (7, 1) => inner += entries(&f, false),
                    _ => {}
                }
                Ok(())
            })?;
            spend.spend(NAME, Bound::Locations, 1 + inner)
        }
        1 | 3..=6 => spend.spend(NAME, Bound::Locations, 1),
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
