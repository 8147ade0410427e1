//! Counting a protobuf's repeated fields before decoding it: `prost` allocates a struct
//! per message (a pprof sample of 3 bytes becomes ~100), so counts are checked against
//! the budget on the wire, where a hostile body costs nothing yet.

use super::budget::{Bound, Spend};
use crate::FormatError;

/// One field of a message: its number and, for length-delimited fields, the payload
/// (empty for the other wire types).
pub(crate) struct Field<'a> {
    pub(crate) number: u64,
    pub(crate) wire_type: u8,
    pub(crate) payload: &'a [u8],
}

fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Calls `f` for each field of one message level, in order.
pub(crate) fn fields<'a>(
    format: &'static str,
    bytes: &'a [u8],
    mut f: impl FnMut(Field<'a>) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let bad =
        |m: &str| FormatError::malformed(format, format!("truncated or corrupt protobuf: {m}"));
    let mut pos = 0;
    while pos < bytes.len() {
        let key = varint(bytes, &mut pos).ok_or_else(|| bad("bad field key"))?;
        let wire_type = (key & 7) as u8;
        let skip = match wire_type {
            0 => {
                varint(bytes, &mut pos).ok_or_else(|| bad("bad varint"))?;
                0
            }
            1 => 8,
            2 => varint(bytes, &mut pos)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad("bad length"))?,
            5 => 4,
            _ => return Err(bad("unsupported wire type")),
        };
        let end = pos
            .checked_add(skip)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| bad("field runs past the end"))?;
        let payload = if wire_type == 2 {
            &bytes[pos..end]
        } else {
            &[]
        };
        pos = end;
        f(Field {
            number: key >> 3,
            wire_type,
            payload,
        })?;
    }
    Ok(())
}

/// Entries of a repeated scalar field: one if unpacked, else the varints in the payload.
pub(crate) fn scalars(field: &Field<'_>) -> usize {
    if field.wire_type == 2 {
        field.payload.iter().filter(|&&b| b < 0x80).count()
    } else {
        1
    }
}

/// Spends a pprof's samples, symbol-table entries, location references and values, and
/// checks each sample's label count, before `prost` decodes it.
pub(crate) fn pprof(raw: &[u8], spend: &mut Spend<'_>) -> Result<(), FormatError> {
    const NAME: &str = "pprof";
    let max_labels = spend.budget.max_labels_per_series;
    fields(NAME, raw, |field| match field.number {
        2 => {
            spend.spend(NAME, Bound::Samples, 1)?;
            let mut labels = 0;
            let mut refs = 0;
            fields(NAME, field.payload, |f| {
                match f.number {
                    1 | 2 => refs += scalars(&f),
                    3 => labels += 1,
                    _ => {}
                }
                Ok(())
            })?;
            if labels > max_labels {
                return Err(spend.over(NAME, Bound::Labels));
            }
            spend.spend(NAME, Bound::StackFrames, refs)
        }
        3 | 5 | 6 => spend.spend(NAME, Bound::Locations, 1),
        4 => {
            let mut lines = 0;
            fields(NAME, field.payload, |f| {
                lines += usize::from(f.number == 4);
                Ok(())
            })?;
            spend.spend(NAME, Bound::Locations, 1 + lines)
        }
        1 | 13 => spend.spend(NAME, Bound::Locations, scalars(&field)),
        _ => Ok(()),
    })
}

/// Spends a Push request's samples and checks its series' label counts before `prost`
/// decodes it (an empty sample is two bytes on the wire).
pub(crate) fn push(raw: &[u8], spend: &mut Spend<'_>) -> Result<(), FormatError> {
    const NAME: &str = "push";
    let max_labels = spend.budget.max_labels_per_series;
    fields(NAME, raw, |series| {
        if series.number != 1 {
            return Ok(());
        }
        spend.spend(NAME, Bound::Samples, 1)?;
        let mut labels = 0;
        fields(NAME, series.payload, |f| {
            match f.number {
                1 => labels += 1,
                2 | 3 => spend.spend(NAME, Bound::Samples, 1)?,
                _ => {}
            }
            Ok(())
        })?;
        if labels > max_labels {
            return Err(spend.over(NAME, Bound::Labels));
        }
        Ok(())
    })
}
