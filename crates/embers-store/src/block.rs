//! Block objects: many stored trees (one per series and leaf, or per series and
//! aggregate block) as `(path id, value)` pairs over the store's
//! [dictionary](crate::dict), with an index in front so a query decodes only the trees
//! of the series it selected.
//!
//! Payload layout inside the [envelope](crate::envelope) (integers unsigned LEB128):
//! ```text
//! level     0 for leaf runs written by a flush, L for an aggregate of 10^L leaves
//! entries   n, then per entry: series id, position (zigzag: the leaf, or the block
//!           index at `level`), total value, scale, pair count, byte length of its pairs
//! pairs     per entry, in entry order: path id deltas (ascending ids) and value/scale;
//!           scale is the GCD of the entry's values (CPU nanoseconds are multiples of the
//!           sampling period, so values shrink to sample counts)
//! ```

use embers_profile::FxHashMap;

use crate::envelope::{self, EnvelopeError, Kind};
use crate::series::{unzigzag, zigzag, SeriesId};
use crate::varint::{put_uvarint, Corrupt, Reader};

/// Largest decompressed block payload accepted (a bound against damaged files).
const MAX_PAYLOAD: usize = 1 << 31;

/// Why a block could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The envelope was wrong (magic, version, checksum).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The payload did not decode.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// One stored tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Whose tree it is.
    pub series: SeriesId,
    /// The leaf (level 0) or block index (level L) it covers.
    pub position: i64,
    /// Sum of its values, known without decoding the pairs.
    pub total: u64,
    scale: u64,
    pairs: usize,
    bytes: std::ops::Range<usize>,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Collects trees and writes them as one block.
#[derive(Debug, Default)]
pub struct BlockWriter {
    entries: Vec<Entry>,
    data: Vec<u8>,
}

impl BlockWriter {
    /// Adds the tree of `series` at `position` as `(path, value)` pairs sorted by path.
    pub fn add(&mut self, series: SeriesId, position: i64, pairs: &[(u32, u64)]) {
        let scale = pairs.iter().fold(0, |g, &(_, v)| gcd(g, v)).max(1);
        let start = self.data.len();
        let mut previous = 0u32;
        let mut total = 0u64;
        for &(path, value) in pairs {
            put_uvarint(&mut self.data, u64::from(path - previous));
            put_uvarint(&mut self.data, value / scale);
            previous = path;
            total = total.saturating_add(value);
        }
        self.entries.push(Entry {
            series,
            position,
            total,
            scale,
            pairs: pairs.len(),
            bytes: start..self.data.len(),
        });
    }

    /// Whether no tree was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sealed object, compressed.
    pub fn finish(&self, level: u8) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.data.len() + 16 * self.entries.len() + 8);
        put_uvarint(&mut payload, u64::from(level));
        put_uvarint(&mut payload, self.entries.len() as u64);
        for e in &self.entries {
            put_uvarint(&mut payload, u64::from(e.series.0));
            put_uvarint(&mut payload, zigzag(e.position));
            put_uvarint(&mut payload, e.total);
            put_uvarint(&mut payload, e.scale);
            put_uvarint(&mut payload, e.pairs as u64);
            put_uvarint(&mut payload, e.bytes.len() as u64);
        }
        payload.extend_from_slice(&self.data);
        envelope::seal(Kind::Block, &payload, true)
    }
}

/// A decoded block index over its payload; pairs are decoded on demand.
#[derive(Debug)]
pub struct BlockReader {
    level: u8,
    entries: Vec<Entry>,
    payload: Vec<u8>,
}

impl BlockReader {
    /// Checks and indexes a block object.
    pub fn open(bytes: &[u8]) -> Result<BlockReader, BlockError> {
        let payload = envelope::open(Kind::Block, bytes, MAX_PAYLOAD)?;
        let mut r = Reader::new(&payload);
        let level = u8::try_from(r.uvarint()?).map_err(|_| r.corrupt("level out of range"))?;
        let n = r.len(payload.len(), "too many entries")?;
        let mut raw = Vec::with_capacity(n);
        for _ in 0..n {
            let series =
                u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("series out of range"))?;
            let position = unzigzag(r.uvarint()?);
            let total = r.uvarint()?;
            let scale = r.uvarint()?.max(1);
            let pairs = r.len(payload.len(), "too many pairs")?;
            let len = r.len(payload.len(), "pair section too long")?;
            raw.push((SeriesId(series), position, total, scale, pairs, len));
        }
        let mut at = payload.len() - r.remaining();
        let mut entries = Vec::with_capacity(n);
        for (series, position, total, scale, pairs, len) in raw {
            let end = at
                .checked_add(len)
                .filter(|&e| e <= payload.len())
                .ok_or(Corrupt {
                    offset: at,
                    what: "pair section past the end",
                })?;
            entries.push(Entry {
                series,
                position,
                total,
                scale,
                pairs,
                bytes: at..end,
            });
            at = end;
        }
        Ok(BlockReader {
            level,
            entries,
            payload,
        })
    }

    /// 0 for a flush's leaf runs, L for an aggregate level.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Approximate memory held, for the cache budget.
    pub fn size(&self) -> usize {
        self.payload.len() + self.entries.len() * std::mem::size_of::<Entry>()
    }

    /// The trees it holds.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Adds the values of `entry` into `into`, by path id.
    pub fn add_into(&self, entry: &Entry, into: &mut FxHashMap<u32, u64>) -> Result<(), Corrupt> {
        let mut r = Reader::new(&self.payload[entry.bytes.clone()]);
        let mut path = 0u32;
        for _ in 0..entry.pairs {
            let delta =
                u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("path id out of range"))?;
            path = path
                .checked_add(delta)
                .ok_or_else(|| r.corrupt("path id out of range"))?;
            let value = r
                .uvarint()?
                .checked_mul(entry.scale)
                .ok_or_else(|| r.corrupt("value out of range"))?;
            // Saturates: queries and compaction add many blocks (see `head::merge_sorted`).
            let sum = into.entry(path).or_insert(0);
            *sum = sum.saturating_add(value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_back_merged_and_selectively() {
        let a = [(1u32, 30_000_000u64), (4, 10_000_000), (9, 50_000_000)];
        let b = [(4u32, 7u64), (5, 1)];
        let mut w = BlockWriter::default();
        w.add(SeriesId(1), 100, &a);
        w.add(SeriesId(2), 100, &b);
        w.add(SeriesId(1), -3, &b);
        let bytes = w.finish(0);
        let r = BlockReader::open(&bytes).unwrap();
        assert_eq!(r.level(), 0);
        let totals: Vec<_> = r
            .entries()
            .iter()
            .map(|e| (e.series, e.position, e.total))
            .collect();
        assert_eq!(
            totals,
            vec![
                (SeriesId(1), 100, 90_000_000),
                (SeriesId(2), 100, 8),
                (SeriesId(1), -3, 8)
            ]
        );
        let mut acc = FxHashMap::default();
        for e in r.entries().iter().filter(|e| e.series == SeriesId(1)) {
            r.add_into(e, &mut acc).unwrap();
        }
        let mut got: Vec<_> = acc.into_iter().collect();
        got.sort_unstable();
        assert_eq!(
            got,
            vec![(1, 30_000_000), (4, 10_000_007), (5, 1), (9, 50_000_000)]
        );
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut w = BlockWriter::default();
        w.add(SeriesId(0), 1, &[(3, 3)]);
        let bytes = w.finish(2);
        for cut in 0..bytes.len() {
            assert!(BlockReader::open(&bytes[..cut]).is_err());
        }
    }
}
