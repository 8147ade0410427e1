//! Block objects: many call trees (one per series and leaf, or per series and aggregate
//! block) sharing one frame dictionary, with an index in front so a query decodes only
//! the trees of the series it selected.
//!
//! Payload layout inside the [envelope](crate::envelope) (integers unsigned LEB128):
//! ```text
//! level     0 for leaf runs written by a flush, L for an aggregate of 10^L leaves
//! frames    dictionary shared by every tree below (see tree_codec)
//! entries   n, then per entry: series id, position (zigzag: the leaf, or the block
//!           index at `level`), total value, byte length of its node section
//! nodes     the node sections, in entry order (tree_codec's pre-order nodes)
//! ```

use embers_profile::{Frame, FrameId, StackTree, SymbolTable};

use crate::envelope::{self, EnvelopeError, Kind};
use crate::series::{unzigzag, zigzag, SeriesId};
use crate::tree_codec::{
    decode_frames, decode_nodes_into, encode_frames, encode_nodes, TreeLimits,
};
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

/// One tree in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Whose tree it is.
    pub series: SeriesId,
    /// The leaf (level 0) or block index (level L) it covers.
    pub position: i64,
    /// Sum of its values, known without decoding the tree.
    pub total: u64,
    nodes: std::ops::Range<usize>,
}

/// Collects trees and writes them as one block.
#[derive(Debug, Default)]
pub struct BlockWriter {
    symbols: SymbolTable,
    entries: Vec<Entry>,
    nodes: Vec<u8>,
    /// Per tree being added: its frame ids → ids in `symbols`.
    map: Vec<u32>,
}

impl BlockWriter {
    /// Adds the tree of `series` at `position`.
    pub fn add(&mut self, series: SeriesId, position: i64, tree: &StackTree) {
        self.map.clear();
        for (_, frame) in tree.symbols().iter() {
            self.map.push(self.symbols.intern(frame).0);
        }
        let start = self.nodes.len();
        let map = &self.map;
        encode_nodes(tree, |id| u64::from(map[id.0 as usize]), &mut self.nodes);
        self.entries.push(Entry {
            series,
            position,
            total: tree.total(),
            nodes: start..self.nodes.len(),
        });
    }

    /// Whether no tree was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sealed object: payload as documented above, compressed.
    pub fn finish(&self, level: u8) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.nodes.len() + 64 * self.symbols.len());
        put_uvarint(&mut payload, u64::from(level));
        let frames: Vec<&Frame> = self.symbols.iter().map(|(_, f)| f).collect();
        encode_frames(frames.into_iter(), &mut payload);
        put_uvarint(&mut payload, self.entries.len() as u64);
        for e in &self.entries {
            put_uvarint(&mut payload, u64::from(e.series.0));
            put_uvarint(&mut payload, zigzag(e.position));
            put_uvarint(&mut payload, e.total);
            put_uvarint(&mut payload, e.nodes.len() as u64);
        }
        payload.extend_from_slice(&self.nodes);
        envelope::seal(Kind::Block, &payload, true)
    }
}

/// A decoded block index over its payload; trees are decoded on demand.
#[derive(Debug)]
pub struct BlockReader {
    level: u8,
    frames: Vec<Frame>,
    entries: Vec<Entry>,
    payload: Vec<u8>,
}

impl BlockReader {
    /// Checks and indexes a block object.
    pub fn open(bytes: &[u8]) -> Result<BlockReader, BlockError> {
        let payload = envelope::open(Kind::Block, bytes, MAX_PAYLOAD)?;
        let mut r = Reader::new(&payload);
        let level = u8::try_from(r.uvarint()?).map_err(|_| r.corrupt("level out of range"))?;
        let frames = decode_frames(&mut r, &TreeLimits::default())?;
        let n = r.len(payload.len(), "too many entries")?;
        let mut entries = Vec::with_capacity(n);
        let mut raw = Vec::with_capacity(n);
        for _ in 0..n {
            let series =
                u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("series out of range"))?;
            let position = unzigzag(r.uvarint()?);
            let total = r.uvarint()?;
            let len = r.len(payload.len(), "node section too long")?;
            raw.push((SeriesId(series), position, total, len));
        }
        let mut at = payload.len() - r.remaining();
        for (series, position, total, len) in raw {
            let end = at
                .checked_add(len)
                .filter(|&e| e <= payload.len())
                .ok_or(Corrupt {
                    offset: at,
                    what: "node section past the end",
                })?;
            entries.push(Entry {
                series,
                position,
                total,
                nodes: at..end,
            });
            at = end;
        }
        Ok(BlockReader {
            level,
            frames,
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
        self.payload.len()
            + self.entries.len() * std::mem::size_of::<Entry>()
            + self
                .frames
                .iter()
                .map(|f| 64 + f.function.len() + f.file.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }

    /// The trees it holds.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Adds the tree of `entry` into `into`. `ids` caches this block's dictionary
    /// indices → frames of `into`; pass the same (initially empty) vector for every entry
    /// merged into the same tree.
    pub fn merge_into(
        &self,
        entry: &Entry,
        into: &mut StackTree,
        ids: &mut Vec<Option<FrameId>>,
    ) -> Result<(), Corrupt> {
        ids.resize(self.frames.len(), None);
        let mut r = Reader::new(&self.payload[entry.nodes.clone()]);
        let frames = &self.frames;
        decode_nodes_into(&mut r, &TreeLimits::default(), into, |i, symbols| {
            let slot = ids.get_mut(i)?;
            Some(*slot.get_or_insert_with(|| symbols.intern(&frames[i])))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(stacks: &[(&[&str], u64)]) -> StackTree {
        let mut t = StackTree::new();
        for (stack, v) in stacks {
            let frames: Vec<Frame> = stack.iter().map(|f| Frame::named(*f)).collect();
            t.add_frames(frames.iter(), *v);
        }
        t
    }

    #[test]
    fn trees_come_back_merged_and_selectively() {
        let a = tree(&[(&["main", "foo"], 75), (&["main", "bar"], 25)]);
        let b = tree(&[(&["main", "bar"], 5), (&["other"], 1)]);
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
                (SeriesId(1), 100, 100),
                (SeriesId(2), 100, 6),
                (SeriesId(1), -3, 6)
            ]
        );

        let mut merged = StackTree::new();
        let mut ids = Vec::new();
        for e in r.entries().iter().filter(|e| e.series == SeriesId(1)) {
            r.merge_into(e, &mut merged, &mut ids).unwrap();
        }
        let mut expected = a.clone();
        expected.merge(&b);
        assert_eq!(merged.to_sorted_stacks(), expected.to_sorted_stacks());
        // Only frames of the selected trees enter the result.
        let mut only_b = StackTree::new();
        r.merge_into(&r.entries()[1], &mut only_b, &mut Vec::new())
            .unwrap();
        assert_eq!(only_b.symbols().len(), 3);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut w = BlockWriter::default();
        w.add(SeriesId(0), 1, &tree(&[(&["a", "b"], 3)]));
        let bytes = w.finish(2);
        for cut in 0..bytes.len() {
            assert!(BlockReader::open(&bytes[..cut]).is_err());
        }
    }
}
