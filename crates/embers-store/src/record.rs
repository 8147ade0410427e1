//! The WAL record codec: what one ingest request logs.

use crate::dict::{self};
use crate::seen::{self};
use crate::series::{
    decode_key, decode_periods, encode_key, encode_periods, unzigzag, zigzag, SeriesKey,
};
use crate::spans::{self, SpanPairs};
use crate::varint::{put_uvarint, Reader};

/// A logged put: series, Unix seconds, sorted path pairs, the pairs of its spans, and
/// its sampling period (0: unknown).
pub(crate) type Logged = (SeriesKey, i64, crate::head::Pairs, SpanPairs, i64);

/// WAL record: the dictionary entries this ingest created (length-prefixed segment), then
/// n puts, each: series key, time (zigzag), pair count, pairs (path-id delta, value); then,
/// if the write had any request IDs, spans or periods, its request IDs ([`seen::encode`],
/// maybe none); then, if it had spans or periods, the spans section
/// ([`spans::encode_section`], maybe of no put); then, if any put knows its sampling
/// period, the periods section (`series::encode_periods`: put index, period). Records
/// without the trailing sections decode as before.
pub(crate) fn encode_record<'a>(
    new_entries: &dict::Segment,
    puts: &[Logged],
    ids: impl ExactSizeIterator<Item = (&'a str, i64)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let segment = new_entries.encode();
    put_uvarint(&mut out, segment.len() as u64);
    out.extend_from_slice(&segment);
    put_uvarint(&mut out, puts.len() as u64);
    for (key, time, pairs, _, _) in puts {
        encode_key(key, &mut out);
        put_uvarint(&mut out, zigzag(*time));
        put_uvarint(&mut out, pairs.len() as u64);
        let mut previous = 0;
        for &(path, value) in pairs {
            put_uvarint(&mut out, u64::from(path - previous));
            put_uvarint(&mut out, value);
            previous = path;
        }
    }
    let periods: Vec<(usize, i64)> = puts
        .iter()
        .enumerate()
        .filter(|(_, p)| p.4 != 0)
        .map(|(i, p)| (i, p.4))
        .collect();
    let with_spans = puts.iter().any(|p| !p.3.is_empty()) || !periods.is_empty();
    if ids.len() > 0 || with_spans {
        seen::encode(ids, &mut out);
    }
    if with_spans {
        let spans: Vec<&SpanPairs> = puts.iter().map(|p| &p.3).collect();
        spans::encode_section(&spans, &mut out);
    }
    encode_periods(&periods, &mut out);
    out
}

/// A decoded record: its dictionary entries, puts and request IDs, and why its spans or
/// periods could not be read, if they could not (the puts stand without them).
pub(crate) struct Record {
    pub segment: dict::Segment,
    pub puts: Vec<Logged>,
    pub ids: Vec<(String, i64)>,
    pub spans_damaged: Option<crate::varint::Corrupt>,
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<Record, crate::varint::Corrupt> {
    let mut r = Reader::new(bytes);
    let len = r.len(bytes.len(), "dictionary entries longer than the record")?;
    let segment = dict::Segment::decode(r.bytes(len)?)?;
    let n = r.len(bytes.len(), "too many puts")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let key = decode_key(&mut r)?;
        let time = unzigzag(r.uvarint()?);
        let count = r.len(bytes.len(), "too many pairs")?;
        let mut pairs = Vec::with_capacity(count);
        let mut path = 0u32;
        for _ in 0..count {
            let delta =
                u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("path id out of range"))?;
            path = path
                .checked_add(delta)
                .ok_or_else(|| r.corrupt("path id out of range"))?;
            pairs.push((path, r.uvarint()?));
        }
        out.push((key, time, pairs, SpanPairs::new(), 0));
    }
    let ids = if r.remaining() > 0 {
        seen::decode(&mut r, bytes.len())?
    } else {
        Vec::new()
    };
    let mut spans_damaged = None;
    if r.remaining() > 0 {
        match spans::decode_section(&mut r, out.len(), bytes.len()) {
            Ok(spans) => {
                for (put, spans) in out.iter_mut().zip(spans) {
                    put.3 = spans;
                }
            }
            Err(e) => spans_damaged = Some(e),
        }
    }
    if spans_damaged.is_none() {
        match decode_periods(&mut r, out.len()) {
            Ok(periods) => {
                for (put, period) in out.iter_mut().zip(periods) {
                    put.4 = period;
                }
            }
            Err(e) => spans_damaged = Some(e),
        }
    }
    Ok(Record {
        segment,
        puts: out,
        ids,
        spans_damaged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use embers_profile::Labels;

    fn logged(service: &str, period: i64) -> Logged {
        let key = SeriesKey {
            profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
            labels: Labels::from_pairs([("service_name", service)]),
        };
        (
            key,
            1_700_000_000,
            vec![(1, 3), (4, 5)],
            SpanPairs::new(),
            period,
        )
    }

    #[test]
    fn periods_round_trip_and_a_damaged_periods_section_spares_the_puts() {
        let puts = vec![logged("a", 0), logged("b", 10_000_000)];
        let bytes = encode_record(&crate::ingest::no_entries(), &puts, [].into_iter());
        let back = decode_record(&bytes).unwrap();
        assert!(back.spans_damaged.is_none());
        assert_eq!(back.puts, puts);
        // Without a known period the record ends after its puts, as before periods.
        let plain = vec![logged("a", 0)];
        let old = encode_record(&crate::ingest::no_entries(), &plain, [].into_iter());
        assert_eq!(decode_record(&old).unwrap().puts, plain);
        // A periods section cut short: the puts stand, without periods.
        let back = decode_record(&bytes[..bytes.len() - 1]).unwrap();
        assert!(back.spans_damaged.is_some());
        assert_eq!(back.puts.len(), 2);
        assert!(back.puts.iter().all(|p| p.4 == 0));
    }
}
