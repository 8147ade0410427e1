//! Span profiles: which samples of a series belong to which tracing span.
//!
//! A span ID (OpenTelemetry's 64-bit span ID, sent by pyroscope-otel and the JFR and OTLP
//! clients as the sample label `span_id`) is never a series label: a series would be
//! born per span and the catalog would grow without bound. The series' tree holds every
//! sample; beside it, the store keeps, per (series, 10 s leaf), the `(call path, value)`
//! pairs of each span. Those go through the WAL record of their put, sit in the head next
//! to the series' pairs, and are written by a flush as one `spans/` object per run of
//! leaves, beside the run objects. They are never aggregated up the segment tree (a span
//! lives in a few leaves; nobody asks for a span over a year), so a span query reads the
//! objects of the leaves in its range and nothing else. Retention deletes them with their
//! leaves.
//!
//! Span pairs are always a subset of the paths of their series' tree at the same leaf
//! ([`Store::ingest`](crate::Store::ingest) refuses anything else), so the dictionary's
//! collection, which marks the paths of block objects, never drops a path a span object
//! still uses, and never has to read span objects.
//!
//! Object payload inside the [envelope](crate::envelope) (kind `EMBERSP\0`, integers
//! unsigned LEB128):
//! ```text
//! entries   n, then per entry: series id, leaf (zigzag), span id (u64 LE, 8 bytes),
//!           pair count, byte length of its pairs
//! pairs     per entry, in entry order: path id deltas (ascending ids) and values
//! ```

use std::collections::{BTreeMap, HashMap};

use embers_profile::FxHashMap;

use crate::block::BlockError;
use crate::envelope::{self, Kind};
use crate::head::Pairs;
use crate::series::{unzigzag, zigzag, SeriesId};
use crate::varint::{put_uvarint, Corrupt, Reader};

/// The pairs of each span of one put: span ID, then its sorted pairs.
pub type SpanPairs = Vec<(u64, Pairs)>;

/// Largest decompressed span payload accepted (a bound against damaged files).
const MAX_PAYLOAD: usize = 1 << 31;

/// Prefix of span objects.
pub(crate) const PREFIX: &str = "spans/";

/// Key of the span object flush `seq` writes for leaves `first..=last`.
pub(crate) fn object_key(seq: u64, first: i64, last: i64) -> String {
    format!("{PREFIX}{seq:020}-{first:012}-{last:012}.spn")
}

/// `(seq, first, last)` of a span object key.
pub(crate) fn parse_key(key: &str) -> Option<(u64, i64, i64)> {
    let name = key.strip_prefix(PREFIX)?.strip_suffix(".spn")?;
    let mut parts = name.split('-');
    let seq = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    (parts.next().is_none() && first <= last).then_some((seq, first, last))
}

fn put_pairs(out: &mut Vec<u8>, pairs: &[(u32, u64)]) {
    let mut previous = 0u32;
    for &(path, value) in pairs {
        put_uvarint(out, u64::from(path - previous));
        put_uvarint(out, value);
        previous = path;
    }
}

fn read_pairs(r: &mut Reader<'_>, count: usize) -> Result<Pairs, Corrupt> {
    let mut pairs = Vec::with_capacity(count);
    let mut path = 0u32;
    for _ in 0..count {
        let delta = u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("path id out of range"))?;
        path = path
            .checked_add(delta)
            .ok_or_else(|| r.corrupt("path id out of range"))?;
        pairs.push((path, r.uvarint()?));
    }
    Ok(pairs)
}

/// The WAL section of a record's spans: n puts with spans, each: put index, span count,
/// per span: span id (u64 LE), pair count, pairs (path-id delta, value).
pub(crate) fn encode_section(spans: &[&SpanPairs], out: &mut Vec<u8>) {
    let with: Vec<(usize, &&SpanPairs)> = spans
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .collect();
    put_uvarint(out, with.len() as u64);
    for (index, spans) in with {
        put_uvarint(out, index as u64);
        put_uvarint(out, spans.len() as u64);
        for (span, pairs) in spans.iter() {
            out.extend_from_slice(&span.to_le_bytes());
            put_uvarint(out, pairs.len() as u64);
            put_pairs(out, pairs);
        }
    }
}

/// Reads a section written by [`encode_section`] for a record of `puts` puts.
pub(crate) fn decode_section(
    r: &mut Reader<'_>,
    puts: usize,
    max: usize,
) -> Result<Vec<SpanPairs>, Corrupt> {
    let mut out = vec![SpanPairs::new(); puts];
    let n = r.len(puts, "more puts with spans than puts")?;
    for _ in 0..n {
        let index = r.len(puts.saturating_sub(1), "span put index out of range")?;
        let count = r.len(max, "too many spans")?;
        let mut spans = Vec::with_capacity(count);
        for _ in 0..count {
            let span = u64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes"));
            let pairs = r.len(max, "too many span pairs")?;
            spans.push((span, read_pairs(r, pairs)?));
        }
        out[index] = spans;
    }
    Ok(out)
}

/// Span pairs held in memory by leaf, series and span, next to the head's trees.
#[derive(Debug, Default)]
pub struct SpanHead {
    leaves: BTreeMap<i64, HashMap<SeriesId, BTreeMap<u64, Pairs>>>,
    pairs: usize,
}

impl SpanHead {
    /// Adds the spans of a put of `series` at `leaf`.
    pub fn add(&mut self, leaf: i64, series: SeriesId, spans: SpanPairs) {
        if spans.is_empty() {
            return;
        }
        let at = self
            .leaves
            .entry(leaf)
            .or_default()
            .entry(series)
            .or_default();
        for (span, pairs) in spans {
            let existing = at.entry(span).or_default();
            self.pairs -= existing.len();
            crate::head::merge_sorted(existing, &pairs);
            self.pairs += existing.len();
        }
    }

    /// How many pairs are held, for memory metrics.
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// Adds the pairs of `spans` of the series in `ids` at leaves `[first, end)` into
    /// `into`.
    pub fn add_into(
        &self,
        first: i64,
        end: i64,
        wanted: impl Fn(SeriesId, u64) -> bool,
        into: &mut FxHashMap<u32, u64>,
    ) {
        for (_, series) in self.leaves.range(first..end.max(first)) {
            for (&id, spans) in series {
                for (&span, pairs) in spans {
                    if wanted(id, span) {
                        for &(path, value) in pairs {
                            let sum = into.entry(path).or_insert(0);
                            *sum = sum.saturating_add(value);
                        }
                    }
                }
            }
        }
    }

    /// The object payload of leaves `first..=last`, or `None` when they hold no spans.
    pub fn encode(&self, first: i64, last: i64) -> Option<Vec<u8>> {
        let mut entries: Vec<(SeriesId, i64, u64, &Pairs)> = Vec::new();
        for (&leaf, series) in self.leaves.range(first..=last) {
            for (&id, spans) in series {
                for (&span, pairs) in spans {
                    entries.push((id, leaf, span, pairs));
                }
            }
        }
        if entries.is_empty() {
            return None;
        }
        entries.sort_unstable_by_key(|e| (e.0, e.1, e.2));
        let mut data = Vec::new();
        let mut index = Vec::with_capacity(entries.len() * 16 + 8);
        put_uvarint(&mut index, entries.len() as u64);
        for (id, leaf, span, pairs) in entries {
            let start = data.len();
            put_pairs(&mut data, pairs);
            put_uvarint(&mut index, u64::from(id.0));
            put_uvarint(&mut index, zigzag(leaf));
            index.extend_from_slice(&span.to_le_bytes());
            put_uvarint(&mut index, pairs.len() as u64);
            put_uvarint(&mut index, (data.len() - start) as u64);
        }
        index.extend_from_slice(&data);
        Some(envelope::seal(Kind::Spans, &index, true))
    }

    /// Drops leaves before `first_kept` (retention).
    pub fn expire(&mut self, first_kept: i64) {
        self.leaves = self.leaves.split_off(&first_kept);
        self.pairs = self
            .leaves
            .values()
            .flat_map(|s| s.values())
            .flat_map(|s| s.values())
            .map(Vec::len)
            .sum();
    }
}

/// Adds the pairs of the entries of span object `bytes` that `wanted` picks (by series,
/// leaf and span) into `into`. Fails without adding anything if the object is damaged.
pub(crate) fn read_object(
    bytes: &[u8],
    wanted: impl Fn(SeriesId, i64, u64) -> bool,
    into: &mut FxHashMap<u32, u64>,
) -> Result<(), BlockError> {
    let payload = envelope::open(Kind::Spans, bytes, MAX_PAYLOAD)?;
    let mut r = Reader::new(&payload);
    let n = r.len(payload.len(), "too many span entries")?;
    let mut picked = Vec::new();
    let mut at = 0usize;
    for _ in 0..n {
        let series = u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("series out of range"))?;
        let leaf = unzigzag(r.uvarint()?);
        let span = u64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes"));
        let pairs = r.len(payload.len(), "too many pairs")?;
        let len = r.len(payload.len(), "pair section too long")?;
        if wanted(SeriesId(series), leaf, span) {
            picked.push((at, len, pairs));
        }
        at = at
            .checked_add(len)
            .ok_or_else(|| r.corrupt("pair section past the end"))?;
    }
    let data = r.bytes(r.remaining())?;
    if at != data.len() {
        return Err(Corrupt {
            offset: payload.len() - data.len(),
            what: "pair sections do not fill the object",
        }
        .into());
    }
    // Decoded in full before anything is added: a damaged object adds nothing.
    let mut found = Vec::with_capacity(picked.len());
    for (start, len, count) in picked {
        let mut r = Reader::new(&data[start..start + len]);
        let pairs = read_pairs(&mut r, count)?;
        if r.remaining() != 0 {
            return Err(r.corrupt("pair section longer than its pairs").into());
        }
        found.push(pairs);
    }
    for pairs in found {
        for (path, value) in pairs {
            let sum = into.entry(path).or_insert(0);
            *sum = sum.saturating_add(value);
        }
    }
    Ok(())
}

/// Adds the pairs of every entry of span object `bytes` into `into` (damaged bytes fail
/// cleanly, adding nothing): the whole-object read `embers fsck` does, public for fuzzing.
pub fn read_span_object(bytes: &[u8], into: &mut FxHashMap<u32, u64>) -> Result<(), BlockError> {
    read_object(bytes, |_, _, _| true, into)
}

/// The span objects in storage, by first leaf, so a read finds those of its range without
/// looking at the rest.
#[derive(Debug, Default)]
pub(crate) struct SpanIndex {
    /// `(first leaf, seq)` → `(last leaf, key)`.
    objects: BTreeMap<(i64, u64), (i64, String)>,
    /// Most leaves one object covers, bounding how far before a range a read looks.
    widest: i64,
}

impl SpanIndex {
    pub(crate) fn add(&mut self, key: String) {
        if let Some((seq, first, last)) = parse_key(&key) {
            self.widest = self.widest.max(last - first);
            self.objects.insert((first, seq), (last, key));
        }
    }

    /// Keys of the objects with leaves in `[first, end)`.
    pub(crate) fn overlapping(&self, first: i64, end: i64) -> Vec<String> {
        let from = (first.saturating_sub(self.widest), 0);
        self.objects
            .range(from..(end, 0))
            .filter(|(_, (last, _))| *last >= first)
            .map(|(_, (_, key))| key.clone())
            .collect()
    }

    pub(crate) fn forget(&mut self, key: &str) {
        if let Some((seq, first, _)) = parse_key(key) {
            self.objects.remove(&(first, seq));
        }
    }

    /// Forgets the objects wholly before leaf `first_kept`; returns their keys.
    pub(crate) fn expire(&mut self, first_kept: i64) -> Vec<String> {
        let mut gone = Vec::new();
        self.objects.retain(|_, (last, key)| {
            let keep = *last >= first_kept;
            if !keep {
                gone.push(std::mem::take(key));
            }
            keep
        });
        gone
    }

    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_and_pick_by_series_leaf_and_span() {
        let mut head = SpanHead::default();
        head.add(
            5,
            SeriesId(1),
            vec![(7, vec![(1, 2), (3, 4)]), (9, vec![(1, 1)])],
        );
        head.add(5, SeriesId(1), vec![(7, vec![(3, 1), (4, 1)])]);
        head.add(6, SeriesId(2), vec![(7, vec![(8, 10)])]);
        assert_eq!(head.pairs(), 5);
        let bytes = head.encode(5, 6).unwrap();
        let mut got = FxHashMap::default();
        read_object(&bytes, |_, _, span| span == 7, &mut got).unwrap();
        let mut got: Vec<_> = got.into_iter().collect();
        got.sort_unstable();
        assert_eq!(got, vec![(1, 2), (3, 5), (4, 1), (8, 10)]);
        let mut got = FxHashMap::default();
        read_object(&bytes, |s, l, _| s == SeriesId(1) && l == 5, &mut got).unwrap();
        assert_eq!(got.values().sum::<u64>(), 2 + 5 + 1 + 1);
        assert!(head.encode(7, 9).is_none());
        head.expire(6);
        assert_eq!(head.pairs(), 1);
    }

    #[test]
    fn a_damaged_object_adds_nothing() {
        let mut head = SpanHead::default();
        head.add(5, SeriesId(1), vec![(7, vec![(1, 2), (3, 4)])]);
        let mut bytes = head.encode(5, 5).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        let mut got = FxHashMap::default();
        assert!(read_object(&bytes, |_, _, _| true, &mut got).is_err());
        assert!(got.is_empty());
    }

    #[test]
    fn wal_sections_round_trip() {
        let a: SpanPairs = vec![(u64::MAX, vec![(0, 1), (5, 2)])];
        let none = SpanPairs::new();
        let mut out = Vec::new();
        encode_section(&[&none, &a], &mut out);
        let mut r = Reader::new(&out);
        let back = decode_section(&mut r, 2, out.len()).unwrap();
        assert_eq!(back, vec![none, a]);
        assert!(decode_section(&mut Reader::new(&out), 1, out.len()).is_err());
    }

    #[test]
    fn index_finds_objects_of_a_range() {
        let mut index = SpanIndex::default();
        index.add(object_key(1, 10, 12));
        index.add(object_key(2, 13, 13));
        index.add(object_key(3, 20, 20));
        assert_eq!(index.overlapping(12, 14).len(), 2);
        assert_eq!(index.overlapping(14, 20).len(), 0);
        assert_eq!(index.overlapping(0, 100).len(), 3);
        assert_eq!(index.expire(13), vec![object_key(1, 10, 12)]);
        assert_eq!(index.len(), 2);
        assert_eq!(parse_key("spans/x.spn"), None);
    }
}
