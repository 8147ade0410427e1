//! The store-wide dictionary of frames and call paths.
//!
//! Every distinct call path (a frame under a parent path) gets a small id once, for the
//! life of the store. A stored tree is then just `(path id, self value)` pairs: no frame
//! strings and no tree structure repeat in each 10 s leaf, which is what makes leaves a
//! few percent of the pprof a client sent; and merging trees for a query is adding
//! integers per path id, converted to a tree once at the end.
//!
//! The dictionary only grows. Each flush persists the entries it added as a `symbols/`
//! object, written before the run objects that use them; start-up loads them in order.

use embers_profile::{Frame, FrameId, FxHashMap, StackTree, SymbolTable};

use crate::tree_codec::{decode_frames, encode_frames, TreeLimits};
use crate::varint::{put_uvarint, Corrupt, Reader};

/// The root path: the empty stack.
pub const ROOT: u32 = 0;

/// Frames and call paths, by id.
#[derive(Debug)]
pub struct Dictionary {
    frames: SymbolTable,
    /// Path id → (parent path id, frame id); entry 0 is the root.
    paths: Vec<(u32, u32)>,
    index: FxHashMap<(u32, u32), u32>,
    /// How many frames and paths are persisted.
    persisted: (usize, usize),
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary {
            frames: SymbolTable::new(),
            paths: vec![(ROOT, u32::MAX)],
            index: FxHashMap::default(),
            persisted: (0, 1),
        }
    }
}

/// New dictionary entries, as written to a `symbols/` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Id of the first frame in `frames`.
    pub first_frame: usize,
    /// New frames.
    pub frames: Vec<Frame>,
    /// Id of the first path in `paths`.
    pub first_path: usize,
    /// New paths: (parent, frame).
    pub paths: Vec<(u32, u32)>,
}

impl Segment {
    /// Whether it adds nothing.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.paths.is_empty()
    }

    /// Payload bytes: first frame, frames, first path, n paths, (parent, frame) pairs.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_uvarint(&mut out, self.first_frame as u64);
        encode_frames(self.frames.iter(), &mut out);
        put_uvarint(&mut out, self.first_path as u64);
        put_uvarint(&mut out, self.paths.len() as u64);
        for &(parent, frame) in &self.paths {
            put_uvarint(&mut out, u64::from(parent));
            put_uvarint(&mut out, u64::from(frame));
        }
        out
    }

    /// Reads a payload written by [`Segment::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Segment, Corrupt> {
        let mut r = Reader::new(bytes);
        let first_frame = r.len(u32::MAX as usize, "frame id out of range")?;
        let frames = decode_frames(&mut r, &TreeLimits::default())?;
        let first_path = r.len(u32::MAX as usize, "path id out of range")?;
        let n = r.len(bytes.len(), "too many paths")?;
        let mut paths = Vec::with_capacity(n);
        for _ in 0..n {
            let parent =
                u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("parent out of range"))?;
            let frame = u32::try_from(r.uvarint()?).map_err(|_| r.corrupt("frame out of range"))?;
            paths.push((parent, frame));
        }
        Ok(Segment {
            first_frame,
            frames,
            first_path,
            paths,
        })
    }
}

impl Dictionary {
    /// Number of paths (ids are below it).
    pub fn paths(&self) -> usize {
        self.paths.len()
    }

    /// Adds a persisted segment; segments must come in the order they were written.
    pub fn load(&mut self, segment: Segment) -> Result<(), &'static str> {
        if segment.first_frame != self.frames.len() || segment.first_path != self.paths.len() {
            return Err(
                "dictionary segment does not follow the previous one (a symbols object is missing)",
            );
        }
        for frame in segment.frames {
            self.frames.intern_owned(frame);
        }
        for (parent, frame) in segment.paths {
            if parent as usize >= self.paths.len() || frame as usize >= self.frames.len() {
                return Err("dictionary path refers to an unknown parent or frame");
            }
            let id = self.paths.len() as u32;
            self.index.insert((parent, frame), id);
            self.paths.push((parent, frame));
        }
        self.persisted = (self.frames.len(), self.paths.len());
        Ok(())
    }

    /// The `(path, self value)` pairs of `tree`, sorted by path, interning new paths.
    pub fn intern_tree(&mut self, tree: &StackTree) -> Vec<(u32, u64)> {
        let mut frame_ids: Vec<Option<u32>> = vec![None; tree.symbols().len()];
        let mut out = Vec::new();
        let mut todo = vec![(StackTree::ROOT, ROOT)];
        while let Some((node, path)) = todo.pop() {
            let value = tree.self_value(node);
            if value > 0 {
                out.push((path, value));
            }
            for child in tree.children(node) {
                let local = tree.frame_id(child).expect("children have frames");
                let frame = *frame_ids[local.0 as usize]
                    .get_or_insert_with(|| self.frames.intern(tree.symbols().get(local)).0);
                let next = self.paths.len() as u32;
                let id = *self.index.entry((path, frame)).or_insert(next);
                if id == next {
                    self.paths.push((path, frame));
                }
                todo.push((child, id));
            }
        }
        out.sort_unstable();
        out
    }

    /// Numbers of frames and paths: the ids the next entries will get.
    pub fn len(&self) -> (usize, usize) {
        (self.frames.len(), self.paths.len())
    }

    /// The entries from ids `from` up to `to` (each `(frames, paths)`).
    pub fn segment(&self, from: (usize, usize), to: (usize, usize)) -> Segment {
        Segment {
            first_frame: from.0,
            frames: self
                .frames
                .iter()
                .skip(from.0)
                .take(to.0.saturating_sub(from.0))
                .map(|(_, f)| f.clone())
                .collect(),
            first_path: from.1,
            paths: self.paths[from.1.min(to.1)..to.1].to_vec(),
        }
    }

    /// Numbers of frames and paths already persisted.
    pub fn persisted(&self) -> (usize, usize) {
        self.persisted
    }

    /// Re-applies entries a WAL record logged. Entries already present (persisted by a
    /// flush that then crashed before the WAL was dropped) are skipped; a gap is damage.
    pub fn apply_logged(&mut self, segment: Segment) -> Result<(), &'static str> {
        let (frames, paths) = self.len();
        if segment.first_frame > frames || segment.first_path > paths {
            return Err("a WAL record refers to dictionary entries that were never logged");
        }
        let skip_frames = frames - segment.first_frame;
        let skip_paths = paths - segment.first_path;
        for frame in segment.frames.into_iter().skip(skip_frames) {
            self.frames.intern_owned(frame);
        }
        for (parent, frame) in segment.paths.into_iter().skip(skip_paths) {
            if parent as usize >= self.paths.len() || frame as usize >= self.frames.len() {
                return Err("dictionary path refers to an unknown parent or frame");
            }
            let id = self.paths.len() as u32;
            self.index.insert((parent, frame), id);
            self.paths.push((parent, frame));
        }
        Ok(())
    }

    /// Records that entries up to `segment`'s end are persisted.
    pub fn mark_persisted(&mut self, segment: &Segment) {
        self.persisted = (
            segment.first_frame + segment.frames.len(),
            segment.first_path + segment.paths.len(),
        );
    }

    /// Adds `(path, value)` pairs into `tree`.
    pub fn add_to_tree<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a u32, &'a u64)>,
        tree: &mut StackTree,
    ) -> Result<(), Corrupt> {
        let mut frame_ids: FxHashMap<u32, FrameId> = FxHashMap::default();
        let mut stack: Vec<FrameId> = Vec::new();
        for (&path, &value) in pairs {
            stack.clear();
            let mut at = path;
            while at != ROOT {
                let &(parent, frame) = self.paths.get(at as usize).ok_or(Corrupt {
                    offset: 0,
                    what: "unknown path id",
                })?;
                let id = match frame_ids.get(&frame) {
                    Some(&id) => id,
                    None => {
                        let id = tree.symbols_mut().intern(self.frames.get(FrameId(frame)));
                        frame_ids.insert(frame, id);
                        id
                    }
                };
                stack.push(id);
                if stack.len() > 65_536 {
                    return Err(Corrupt {
                        offset: 0,
                        what: "path cycle",
                    });
                }
                at = parent;
            }
            stack.reverse();
            tree.add_stack(&stack, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_round_trip_through_paths_and_segments() {
        let mut t = StackTree::new();
        let (main, foo, bar) = (
            Frame::named("main"),
            Frame::named("foo"),
            Frame::named("bar"),
        );
        t.add_frames([&main, &foo], 75);
        t.add_frames([&main, &bar], 25);
        t.add_frames([&main], 2);
        let mut d = Dictionary::default();
        let pairs = d.intern_tree(&t);
        assert_eq!(pairs.len(), 3);
        let again = d.intern_tree(&t);
        assert_eq!(pairs, again, "known paths keep their ids");
        let mut back = StackTree::new();
        let map: FxHashMap<u32, u64> = pairs.iter().copied().collect();
        d.add_to_tree(&map, &mut back).unwrap();
        assert_eq!(back.to_sorted_stacks(), t.to_sorted_stacks());

        let segment = d.segment(d.persisted(), d.len());
        let mut loaded = Dictionary::default();
        loaded
            .load(Segment::decode(&segment.encode()).unwrap())
            .unwrap();
        assert_eq!(loaded.intern_tree(&t), pairs);
        d.mark_persisted(&segment);
        assert!(d.segment(d.persisted(), d.len()).is_empty());
        // A WAL record logging entries a flush already persisted is skipped, not doubled.
        let mut replayed = Dictionary::default();
        replayed.load(segment.clone()).unwrap();
        replayed.apply_logged(segment.clone()).unwrap();
        assert_eq!(replayed.len(), d.len());
        let mut gap = segment.clone();
        gap.first_path += 1;
        assert!(Dictionary::default().load(gap).is_err());
    }
}
