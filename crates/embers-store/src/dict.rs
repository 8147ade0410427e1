//! The store-wide dictionary of frames and call paths.
//!
//! Every distinct call path (a frame under a parent path) gets a small id once, for the
//! life of the store. A stored tree is then just `(path id, self value)` pairs: no frame
//! strings and no tree structure repeat in each 10 s leaf, which is what makes leaves a
//! few percent of the pprof a client sent; and merging trees for a query is adding
//! integers per path id, converted to a tree once at the end.
//!
//! Ids are never reused, but entries are not kept forever: code churn (every deploy
//! renames some functions) would grow the dictionary without bound. Garbage collection
//! ([`Dictionary::sweep`], driven by retention in `dict_gc.rs`) drops the persisted
//! entries no live block, head tree or WAL record uses. Entries are therefore held in
//! maps keyed by id, not in a vector with a slot per id ever given, so memory really
//! comes back. An id that resolves to nothing (its entry was in a damaged `symbols/`
//! object) shows as the frame [`LOST`] instead of failing the query.
//!
//! Each flush persists the entries it added as a `symbols/` object, written before the
//! run objects that use them (`symbols.rs` has the objects and start-up loading).

use std::hash::BuildHasherDefault;
use std::sync::Arc;

use embers_profile::{Frame, FrameId, FxHashMap, FxHasher, StackTree};

use crate::tree_codec::{decode_frames, encode_frames, TreeLimits};
use crate::varint::{put_uvarint, Corrupt, Reader};

/// The root path: the empty stack.
pub const ROOT: u32 = 0;

/// The frame a path resolves to when its dictionary entry was lost to damage.
pub const LOST: &str = "[lost: damaged dictionary]";

/// Frames and call paths, by id.
#[derive(Debug)]
pub struct Dictionary {
    frames: FxHashMap<u32, Arc<Frame>>,
    frame_index: FxHashMap<Arc<Frame>, u32>,
    /// Path id → (parent path id, frame id); the root is implicit.
    paths: FxHashMap<u32, (u32, u32)>,
    path_index: FxHashMap<(u32, u32), u32>,
    /// The ids the next frame and path get.
    next: (u32, u32),
    /// Ids below these are in `symbols/` objects (or were, before a sweep).
    persisted: (u32, u32),
    /// While a collection reads blocks: every path ingest resolves, so a path that comes
    /// back into use meanwhile is not swept.
    marking: Option<IdSet>,
    /// Path count after the last load or sweep: collection is due when it has grown.
    baseline: usize,
    /// Damaged `symbols/` objects found (and quarantined) at start-up.
    damaged: usize,
    /// At the last collection (or the first check after start-up): the store's count of
    /// deleted objects, and how many block objects there were.
    pub(crate) last_collection: Option<(u64, usize)>,
    /// Sweeps run so far ([`Dictionary::generation`]).
    generation: u64,
}

/// A persisted path: (id, parent, frame).
pub(crate) type PathEntry = (u32, u32, u32);

/// A set of ids, hashed like the maps.
pub(crate) type IdSet = std::collections::HashSet<u32, BuildHasherDefault<FxHasher>>;

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary {
            frames: FxHashMap::default(),
            frame_index: FxHashMap::default(),
            paths: FxHashMap::default(),
            path_index: FxHashMap::default(),
            next: (0, 1),
            persisted: (0, 1),
            marking: None,
            baseline: 1,
            damaged: 0,
            last_collection: None,
            generation: 0,
        }
    }
}

/// New dictionary entries with consecutive ids, as a flush writes them to a `symbols/`
/// object and an ingest logs them in its WAL record.
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

    /// The frame and path ids after its last entries.
    pub fn ends(&self) -> (usize, usize) {
        (
            self.first_frame + self.frames.len(),
            self.first_path + self.paths.len(),
        )
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
            paths.push((
                read_u32(&mut r, "parent out of range")?,
                read_u32(&mut r, "frame out of range")?,
            ));
        }
        if first_frame + frames.len() > u32::MAX as usize || first_path + n > u32::MAX as usize {
            return Err(r.corrupt("ids out of range"));
        }
        Ok(Segment {
            first_frame,
            frames,
            first_path,
            paths,
        })
    }
}

pub(crate) fn read_u32(r: &mut Reader<'_>, what: &'static str) -> Result<u32, Corrupt> {
    u32::try_from(r.uvarint()?).map_err(|_| r.corrupt(what))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("dictionary ids are below 2^32")
}

/// What a [`Dictionary::sweep`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Paths removed.
    pub paths: usize,
    /// Frames removed.
    pub frames: usize,
}

impl Dictionary {
    /// Number of paths, the root included.
    pub fn paths(&self) -> usize {
        self.paths.len() + 1
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Numbers of frames and paths ever given: the ids the next entries will get.
    pub fn len(&self) -> (usize, usize) {
        (self.next.0 as usize, self.next.1 as usize)
    }

    /// Ids below these are persisted in `symbols/` objects.
    pub fn persisted(&self) -> (usize, usize) {
        (self.persisted.0 as usize, self.persisted.1 as usize)
    }

    /// Heap bytes held, estimated from map capacities and frame strings: the memory a
    /// collection gives back, without a global allocator hook.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let slot = |key: usize, value: usize| key + value + 1; // hashbrown: entry + control byte
        let strings: usize = self
            .frames
            .values()
            .map(|f| {
                f.function.capacity()
                    + f.file.as_ref().map_or(0, String::capacity)
                    + f.module.as_ref().map_or(0, String::capacity)
            })
            .sum();
        self.frames.capacity() * slot(4, size_of::<Arc<Frame>>())
            + self.frame_index.capacity() * slot(size_of::<Arc<Frame>>(), 4)
            + self.frames.len() * (size_of::<Frame>() + 16)
            + strings
            + self.paths.capacity() * slot(4, 8)
            + self.path_index.capacity() * slot(8, 4)
    }

    fn intern_frame(&mut self, frame: &Frame) -> u32 {
        if let Some(&id) = self.frame_index.get(frame) {
            return id;
        }
        let id = self.next.0;
        self.next.0 = id.checked_add(1).expect("dictionary ids are below 2^32");
        let frame = Arc::new(frame.clone());
        self.frame_index.insert(Arc::clone(&frame), id);
        self.frames.insert(id, frame);
        id
    }

    fn insert_frame(&mut self, id: u32, frame: Frame) {
        if !self.frames.contains_key(&id) {
            let frame = Arc::new(frame);
            self.frame_index.entry(Arc::clone(&frame)).or_insert(id);
            self.frames.insert(id, frame);
        }
        self.next.0 = self.next.0.max(id + 1);
    }

    fn insert_path(&mut self, id: u32, parent: u32, frame: u32) {
        // A parent always has a smaller id; anything else is damage, and resolving it
        // could loop. Such an entry is left out (it resolves as lost).
        if id != ROOT && parent < id && !self.paths.contains_key(&id) {
            self.path_index.entry((parent, frame)).or_insert(id);
            self.paths.insert(id, (parent, frame));
        }
        self.next.1 = self.next.1.max(id + 1);
    }

    /// Adds entries with the ids they were given. Entries already present are skipped
    /// (a WAL record logging entries a flush persisted before it crashed); an entry whose
    /// parent or frame is missing is kept and resolves as [`LOST`] at that point.
    pub fn insert(&mut self, segment: Segment) {
        let first_frame = to_u32(segment.first_frame);
        let first_path = to_u32(segment.first_path);
        for (i, frame) in (first_frame..).zip(segment.frames) {
            self.insert_frame(i, frame);
        }
        for (i, (parent, frame)) in (first_path..).zip(segment.paths) {
            self.insert_path(i, parent, frame);
        }
        self.next.0 = self.next.0.max(first_frame);
        self.next.1 = self.next.1.max(first_path);
    }

    /// Adds entries of a compacted object: `(id, frame)` and `(id, parent, frame)`.
    pub(crate) fn insert_sparse(&mut self, frames: Vec<(u32, Frame)>, paths: Vec<PathEntry>) {
        for (id, frame) in frames {
            self.insert_frame(id, frame);
        }
        for (id, parent, frame) in paths {
            self.insert_path(id, parent, frame);
        }
    }

    /// Makes sure no id below `ends` is given again (ids a lost object had given).
    pub(crate) fn reserve(&mut self, ends: (u32, u32)) {
        self.next = (self.next.0.max(ends.0), self.next.1.max(ends.1));
    }

    /// Everything held now counts as persisted (after loading `symbols/`, of which
    /// `damaged` objects were quarantined).
    pub(crate) fn loaded(&mut self, damaged: usize) {
        self.persisted = self.next;
        self.baseline = self.paths();
        self.damaged = damaged;
    }

    /// Damaged `symbols/` objects quarantined at start-up.
    pub fn damaged_objects(&self) -> usize {
        self.damaged
    }

    /// Re-applies entries a WAL record logged: like [`Dictionary::insert`], and if the
    /// record starts past the ids loaded (the object with the entries between was lost),
    /// the gap is not persisted by the next flush: it has nothing to persist.
    pub fn apply_logged(&mut self, segment: Segment) {
        if segment.is_empty() {
            return;
        }
        if segment.first_path > self.next.1 as usize || segment.first_frame > self.next.0 as usize {
            tracing::warn!(
                first_path = segment.first_path,
                known = self.next.1,
                "a WAL record follows dictionary entries that were lost; their paths show as {LOST}"
            );
            if self.persisted == self.next {
                self.persisted = (to_u32(segment.first_frame), to_u32(segment.first_path));
            }
        }
        self.insert(segment);
    }

    /// The `(path, self value)` pairs of `tree`, sorted by path, interning new paths.
    pub fn intern_tree(&mut self, tree: &StackTree) -> Vec<(u32, u64)> {
        let pairs = walk(tree, |step| {
            Some(match step {
                Step::Frame(frame) => self.intern_frame(frame),
                Step::Path(parent, frame) => {
                    let id = match self.path_index.get(&(parent, frame)) {
                        Some(&id) => id,
                        None => {
                            let id = self.next.1;
                            self.insert_path(id, parent, frame);
                            id
                        }
                    };
                    if let Some(marking) = &mut self.marking {
                        marking.insert(id);
                    }
                    id
                }
            })
        });
        pairs.expect("interning resolves every path")
    }

    /// [`Dictionary::intern_tree`] for a tree whose frames and paths are all known, under
    /// a shared lock: in steady state (the same code, profile after profile) nearly every
    /// request resolves here, so concurrent requests do not queue for the write lock.
    /// `None` when an entry is new, or while a collection marks the paths ingest resolves
    /// (recording them needs the write lock).
    pub fn resolve_tree(&self, tree: &StackTree) -> Option<Vec<(u32, u64)>> {
        if self.marking.is_some() {
            return None;
        }
        walk(tree, |step| match step {
            Step::Frame(frame) => self.frame_index.get(frame).copied(),
            Step::Path(parent, frame) => self.path_index.get(&(parent, frame)).copied(),
        })
    }

    /// How many sweeps have run: pairs resolved under one generation stay valid while it
    /// lasts (a sweep may drop the entries they name).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The entries from ids `from` up to `to` (each `(frames, paths)`). Entries not yet
    /// persisted are never swept, so this range has no holes, except ids given by a WAL
    /// record that replay could not read: those are written as the [`LOST`] frame and a
    /// path that resolves to it, which is what they are.
    pub fn segment(&self, from: (usize, usize), to: (usize, usize)) -> Segment {
        let frames = (to_u32(from.0)..to_u32(to.0.max(from.0)))
            .map(|id| {
                self.frames
                    .get(&id)
                    .map_or_else(|| Frame::named(LOST), |f| Frame::clone(f))
            })
            .collect();
        let paths = (to_u32(from.1)..to_u32(to.1.max(from.1)))
            .map(|id| self.paths.get(&id).copied().unwrap_or((ROOT, u32::MAX)))
            .collect();
        Segment {
            first_frame: from.0,
            frames,
            first_path: from.1,
            paths,
        }
    }

    /// Records that entries up to `segment`'s end are persisted.
    pub fn mark_persisted(&mut self, segment: &Segment) {
        let (frames, paths) = segment.ends();
        self.persisted = (
            self.persisted.0.max(to_u32(frames)),
            self.persisted.1.max(to_u32(paths)),
        );
    }

    /// Whether enough paths were added since the last sweep for a collection to be worth
    /// reading every block: a quarter more than were live then (and at least `min`).
    pub fn collection_due(&self, min: usize) -> bool {
        self.paths() >= self.baseline + (self.baseline / 4).max(min)
    }

    /// Starts recording the paths ingest resolves, until [`Dictionary::sweep`].
    pub fn start_marking(&mut self) {
        self.marking = Some(IdSet::default());
    }

    /// Stops recording without sweeping (a collection that gave up); the next one is
    /// due after more growth, not at once.
    pub fn stop_marking(&mut self) {
        self.marking = None;
        self.baseline = self.paths();
    }

    /// Removes the persisted paths below `floor` that are not in `live` (nor resolved by
    /// ingest since [`Dictionary::start_marking`], nor ancestors of a kept path), and the
    /// persisted frames below `floor` no kept path uses. Ids are not given again.
    pub fn sweep(&mut self, floor: (usize, usize), mut live: IdSet) -> Swept {
        let floor = (
            to_u32(floor.0).min(self.persisted.0),
            to_u32(floor.1).min(self.persisted.1),
        );
        live.extend(self.marking.take().unwrap_or_default());
        live.extend(self.paths.keys().copied().filter(|&id| id >= floor.1));
        let roots: Vec<u32> = live.iter().copied().collect();
        for mut at in roots {
            while let Some(&(parent, _)) = self.paths.get(&at) {
                if parent == ROOT || !live.insert(parent) {
                    break;
                }
                at = parent;
            }
        }
        let before = (self.frames.len(), self.paths.len());
        self.paths.retain(|id, _| live.contains(id));
        self.path_index.retain(|_, id| live.contains(id));
        let used: IdSet = self.paths.values().map(|&(_, frame)| frame).collect();
        self.frames
            .retain(|id, _| *id >= floor.0 || used.contains(id));
        let frames = &self.frames;
        self.frame_index.retain(|_, id| frames.contains_key(id));
        self.paths.shrink_to_fit();
        self.path_index.shrink_to_fit();
        self.frames.shrink_to_fit();
        self.frame_index.shrink_to_fit();
        self.baseline = self.paths();
        self.generation += 1;
        Swept {
            paths: before.1 - self.paths.len(),
            frames: before.0 - self.frames.len(),
        }
    }

    /// The persisted entries, sorted by id: what a compacted `symbols/` object holds.
    pub(crate) fn persisted_entries(&self) -> (Vec<(u32, &Frame)>, Vec<PathEntry>) {
        let mut frames: Vec<(u32, &Frame)> = self
            .frames
            .iter()
            .filter(|(&id, _)| id < self.persisted.0)
            .map(|(&id, f)| (id, &**f))
            .collect();
        frames.sort_unstable_by_key(|&(id, _)| id);
        let mut paths: Vec<PathEntry> = self
            .paths
            .iter()
            .filter(|(&id, _)| id < self.persisted.1)
            .map(|(&id, &(parent, frame))| (id, parent, frame))
            .collect();
        paths.sort_unstable();
        (frames, paths)
    }

    /// Adds `(path, value)` pairs into `tree`. A path whose entry (or an ancestor's) is
    /// missing gets the frame [`LOST`] where the chain breaks, so its samples still count.
    pub fn add_to_tree<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a u32, &'a u64)>,
        tree: &mut StackTree,
    ) {
        let mut frame_ids: FxHashMap<u32, FrameId> = FxHashMap::default();
        let mut lost = None;
        let mut stack: Vec<FrameId> = Vec::new();
        for (&path, &value) in pairs {
            stack.clear();
            let mut at = path;
            while at != ROOT {
                let Some(&(parent, frame)) = self.paths.get(&at) else {
                    stack.push(lost_frame(tree, &mut lost));
                    break;
                };
                let id = match frame_ids.get(&frame) {
                    Some(&id) => id,
                    None => {
                        let id = match self.frames.get(&frame) {
                            Some(f) => tree.symbols_mut().intern(f),
                            None => lost_frame(tree, &mut lost),
                        };
                        frame_ids.insert(frame, id);
                        id
                    }
                };
                stack.push(id);
                at = parent; // parents have smaller ids: no cycles
            }
            stack.reverse();
            tree.add_stack(&stack, value);
        }
    }
}

/// What [`walk`] asks its resolver for: a frame's id, or the id of a path (parent, frame).
enum Step<'a> {
    Frame(&'a Frame),
    Path(u32, u32),
}

/// The `(path, self value)` pairs of `tree`, sorted by path, with ids from `resolve`;
/// `None` as soon as it resolves nothing. Each distinct frame is resolved once.
fn walk(
    tree: &StackTree,
    mut resolve: impl FnMut(Step<'_>) -> Option<u32>,
) -> Option<Vec<(u32, u64)>> {
    let mut frame_ids = FrameMap::for_tree(tree);
    let mut out = Vec::new();
    let mut todo = vec![(StackTree::ROOT, ROOT)];
    while let Some((node, path)) = todo.pop() {
        let value = tree.self_value(node);
        if value > 0 {
            out.push((path, value));
        }
        for child in tree.children(node) {
            let local = tree.frame_id(child).expect("children have frames");
            let frame = match frame_ids.get(local.0) {
                Some(f) => f,
                None => {
                    let f = resolve(Step::Frame(tree.symbols().get(local)))?;
                    frame_ids.insert(local.0, f);
                    f
                }
            };
            todo.push((child, resolve(Step::Path(path, frame))?));
        }
    }
    out.sort_unstable();
    Some(out)
}

/// The [`LOST`] frame in `tree`, interned on first use (a result without lost paths does
/// not list it).
fn lost_frame(tree: &mut StackTree, lost: &mut Option<FrameId>) -> FrameId {
    *lost.get_or_insert_with(|| tree.symbols_mut().intern(&Frame::named(LOST)))
}

/// A tree's frame ids → dictionary frame ids. Dense (indexed by frame id) when the tree
/// uses a fair part of its symbol table; sparse when it uses a few frames of a large
/// table, as a span's tree does (it shares its profile's whole table): a vector per span
/// would cost the table's size for each span.
enum FrameMap {
    Dense(Vec<Option<u32>>),
    Sparse(FxHashMap<u32, u32>),
}

impl FrameMap {
    fn for_tree(tree: &StackTree) -> FrameMap {
        let symbols = tree.symbols().len();
        if symbols <= 4 * tree.node_count() + 64 {
            FrameMap::Dense(vec![None; symbols])
        } else {
            FrameMap::Sparse(FxHashMap::default())
        }
    }

    fn get(&self, local: u32) -> Option<u32> {
        match self {
            FrameMap::Dense(v) => v[local as usize],
            FrameMap::Sparse(m) => m.get(&local).copied(),
        }
    }

    fn insert(&mut self, local: u32, frame: u32) {
        match self {
            FrameMap::Dense(v) => v[local as usize] = Some(frame),
            FrameMap::Sparse(m) => {
                m.insert(local, frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression guard: a span's tree shares its profile's large symbol table; interning
    /// it must give the same ids as a tree with a table of its own.
    #[test]
    fn a_tree_using_few_frames_of_a_large_table_interns_the_same() {
        let mut big = StackTree::new();
        for i in 0..1000 {
            big.symbols_mut()
                .intern(&Frame::named(format!("unused{i}")));
        }
        big.add_frames([&Frame::named("main"), &Frame::named("work")], 5);
        let small = tree(&[(&["main", "work"], 5)]);
        assert!(matches!(FrameMap::for_tree(&big), FrameMap::Sparse(_)));
        assert!(matches!(FrameMap::for_tree(&small), FrameMap::Dense(_)));
        let mut dict = Dictionary::default();
        assert_eq!(dict.intern_tree(&big), dict.intern_tree(&small));
        assert_eq!(dict.paths(), 3);
    }

    #[test]
    fn known_trees_resolve_under_a_shared_lock_to_the_ids_interning_gives() {
        let t = tree(&[
            (&["main", "foo"], 75),
            (&["main", "bar"], 25),
            (&["main"], 2),
        ]);
        let mut d = Dictionary::default();
        assert_eq!(d.resolve_tree(&t), None, "new paths need the write lock");
        let pairs = d.intern_tree(&t);
        assert_eq!(d.resolve_tree(&t), Some(pairs.clone()));
        // A known frame on a new path is not resolved either.
        let moved = tree(&[(&["main", "foo", "bar"], 1)]);
        assert_eq!(d.resolve_tree(&moved), None);
        assert_eq!(d.len(), (3, 4), "resolving adds nothing");
        // While a collection marks, ingest must record what it uses: no shortcut.
        d.start_marking();
        assert_eq!(d.resolve_tree(&t), None);
        assert_eq!(d.intern_tree(&t), pairs);
        let generation = d.generation();
        let all = d.segment((0, 0), d.len());
        d.mark_persisted(&all);
        d.sweep(d.len(), IdSet::default());
        assert_eq!(
            d.generation(),
            generation + 1,
            "a sweep starts a generation"
        );
        assert_eq!(d.resolve_tree(&t), Some(pairs), "marked paths survive it");
    }

    fn tree(stacks: &[(&[&str], u64)]) -> StackTree {
        let mut t = StackTree::new();
        for (names, value) in stacks {
            let frames: Vec<Frame> = names.iter().map(|n| Frame::named(*n)).collect();
            t.add_frames(frames.iter(), *value);
        }
        t
    }

    fn resolve(d: &Dictionary, pairs: &[(u32, u64)]) -> Vec<(Vec<Frame>, u64)> {
        let mut back = StackTree::new();
        let map: FxHashMap<u32, u64> = pairs.iter().copied().collect();
        d.add_to_tree(&map, &mut back);
        back.to_sorted_stacks()
    }

    #[test]
    fn trees_round_trip_through_paths_and_segments() {
        let t = tree(&[
            (&["main", "foo"], 75),
            (&["main", "bar"], 25),
            (&["main"], 2),
        ]);
        let mut d = Dictionary::default();
        let pairs = d.intern_tree(&t);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs, d.intern_tree(&t), "known paths keep their ids");
        assert_eq!(resolve(&d, &pairs), t.to_sorted_stacks());

        let segment = d.segment(d.persisted(), d.len());
        let mut loaded = Dictionary::default();
        loaded.insert(Segment::decode(&segment.encode()).unwrap());
        assert_eq!(loaded.intern_tree(&t), pairs);
        d.mark_persisted(&segment);
        assert!(d.segment(d.persisted(), d.len()).is_empty());
        // A WAL record logging entries a flush already persisted is skipped, not doubled.
        loaded.apply_logged(segment);
        assert_eq!((loaded.len(), loaded.paths()), (d.len(), d.paths()));
    }

    #[test]
    fn sweep_drops_unused_persisted_entries_keeps_ancestors_and_never_reuses_ids() {
        let mut d = Dictionary::default();
        let old = d.intern_tree(&tree(&[(&["main", "v1_handler", "leaf"], 5)]));
        let kept = d.intern_tree(&tree(&[(&["main", "stable", "deep"], 7)]));
        let all = d.segment((0, 0), d.len());
        d.mark_persisted(&all);
        let unflushed = d.intern_tree(&tree(&[(&["main", "v2_handler"], 3)]));
        let before = (d.paths(), d.frames(), d.heap_bytes());
        // Only the deepest path of `kept` is named live: its ancestors stay too.
        let live: IdSet = kept.iter().map(|p| p.0).collect();
        let swept = d.sweep(d.persisted(), live);
        assert_eq!(swept.paths, 2, "v1_handler and leaf go");
        assert_eq!(swept.frames, 2);
        assert!(d.paths() < before.0 && d.frames() < before.1 && d.heap_bytes() < before.2);
        assert_eq!(
            resolve(&d, &kept),
            tree(&[(&["main", "stable", "deep"], 7)]).to_sorted_stacks()
        );
        assert_eq!(
            resolve(&d, &unflushed).len(),
            1,
            "unpersisted entries are never swept"
        );
        // The old function comes back: new ids, not the swept ones.
        let again = d.intern_tree(&tree(&[(&["main", "v1_handler", "leaf"], 5)]));
        assert!(again[0].0 >= d.persisted().1 as u32 && again[0].0 != old[0].0);
    }

    #[test]
    fn paths_marked_during_a_collection_survive_it() {
        let mut d = Dictionary::default();
        let t = tree(&[(&["main", "comeback"], 1)]);
        let pairs = d.intern_tree(&t);
        d.mark_persisted(&d.segment((0, 0), d.len()));
        d.start_marking();
        assert_eq!(d.intern_tree(&t), pairs);
        d.sweep(d.persisted(), IdSet::default());
        assert_eq!(resolve(&d, &pairs), t.to_sorted_stacks());
    }

    #[test]
    fn unknown_ids_resolve_to_the_lost_frame() {
        let mut d = Dictionary::default();
        let mut t = tree(&[(&["a", "b"], 1)]);
        let pairs = d.intern_tree(&t);
        // Entries 1.. lost; a later segment (path 3 under the lost path 2) still loads.
        let mut damaged = Dictionary::default();
        damaged.insert(Segment {
            first_frame: 2,
            frames: vec![Frame::named("c")],
            first_path: 3,
            paths: vec![(pairs[0].0, 2)],
        });
        assert_eq!(damaged.len(), (3, 4));
        let got = resolve(&damaged, &[(3, 4), (pairs[0].0, 1)]);
        assert_eq!(
            got,
            vec![
                (vec![Frame::named(LOST)], 1),
                (vec![Frame::named(LOST), Frame::named("c")], 4)
            ]
        );
        t.add_frames([&Frame::named("a")], 1);
        let pairs = d.intern_tree(&t);
        assert_eq!(
            resolve(&d, &pairs),
            t.to_sorted_stacks(),
            "no lost frame when whole"
        );
    }
}
