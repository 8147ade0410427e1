//! Compact encoding of one call tree: a dictionary of the frames it uses, then the nodes
//! in pre-order as `(frame, self, children)` varints. Frames are written once however many
//! nodes use them, and small ids and counts take one or two bytes.
//!
//! Layout (all integers unsigned LEB128):
//! ```text
//! frames   n, then n × frame
//! frame    function: str, file: opt_str, line: uvarint (0 = none), module: opt_str
//! str      len, bytes (UTF-8)          opt_str  0 = none, else len + 1, bytes
//! nodes    root: self, children; then each child subtree in pre-order:
//!          frame index, self, children
//! ```

use embers_profile::{Frame, FrameId, NodeId, StackTree, SymbolTable};

use crate::varint::{put_uvarint, Corrupt, Reader};

/// Bounds for decoding, so corrupt bytes cannot make us allocate without limit.
#[derive(Debug, Clone, Copy)]
pub struct TreeLimits {
    /// Most frames in the dictionary.
    pub max_frames: usize,
    /// Most nodes in the tree.
    pub max_nodes: usize,
    /// Deepest path.
    pub max_depth: usize,
    /// Longest string.
    pub max_str: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_frames: 1 << 24,
            max_nodes: 1 << 26,
            max_depth: 4096,
            max_str: 1 << 16,
        }
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put_uvarint(out, 0),
        Some(s) => {
            put_uvarint(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Appends the encoding of `tree` to `out`.
pub fn encode_tree(tree: &StackTree, out: &mut Vec<u8>) {
    let frames: Vec<&Frame> = tree.symbols().iter().map(|(_, f)| f).collect();
    encode_frames(frames.iter().copied(), out);
    encode_nodes(tree, |id| u64::from(id.0), out);
}

/// Appends a frame dictionary: its length, then each frame.
pub(crate) fn encode_frames<'a>(
    frames: impl ExactSizeIterator<Item = &'a Frame>,
    out: &mut Vec<u8>,
) {
    put_uvarint(out, frames.len() as u64);
    for frame in frames {
        put_str(out, &frame.function);
        put_opt_str(out, frame.file.as_deref());
        put_uvarint(out, frame.line.map_or(0, |l| u64::from(l) + 1));
        put_opt_str(out, frame.module.as_deref());
    }
}

/// Appends `tree`'s nodes in pre-order, each frame written as `index(frame)`: its position in
/// whatever dictionary the caller writes beside the nodes.
pub(crate) fn encode_nodes(tree: &StackTree, index: impl Fn(FrameId) -> u64, out: &mut Vec<u8>) {
    let mut todo = vec![StackTree::ROOT];
    while let Some(node) = todo.pop() {
        if let Some(frame) = tree.frame_id(node) {
            put_uvarint(out, index(frame));
        }
        put_uvarint(out, tree.self_value(node));
        put_uvarint(out, tree.children(node).count() as u64);
        tree.push_children_rev(node, &mut todo, |child| child);
    }
}

/// Decodes a tree written by [`encode_tree`], returning it and the bytes consumed.
pub fn decode_tree(bytes: &[u8], limits: &TreeLimits) -> Result<(StackTree, usize), Corrupt> {
    let mut r = Reader::new(bytes);
    let frames = decode_frames(&mut r, limits)?;
    let mut tree = StackTree::new();
    let ids: Vec<FrameId> = frames
        .into_iter()
        .map(|f| tree.symbols_mut().intern_owned(f))
        .collect();
    decode_nodes_into(&mut r, limits, &mut tree, |i, _| ids.get(i).copied())?;
    Ok((tree, bytes.len() - r.remaining()))
}

/// Reads a frame dictionary written by [`encode_frames`].
pub(crate) fn decode_frames(
    r: &mut Reader<'_>,
    limits: &TreeLimits,
) -> Result<Vec<Frame>, Corrupt> {
    let nframes = r.len(limits.max_frames, "too many frames")?;
    let mut frames = Vec::with_capacity(nframes.min(r.remaining()));
    for _ in 0..nframes {
        let function = read_str(r, limits)?;
        let file = read_opt_str(r, limits)?;
        let line = match r.uvarint()? {
            0 => None,
            l => Some(u32::try_from(l - 1).map_err(|_| r.corrupt("line out of range"))?),
        };
        let module = read_opt_str(r, limits)?;
        frames.push(Frame {
            function,
            file,
            line,
            module,
        });
    }
    Ok(frames)
}

/// Reads nodes written by [`encode_nodes`] and adds their values into `tree`, which may
/// already hold other trees (queries merge straight into their result). `frame(i, symbols)`
/// maps a dictionary index to a frame of `tree` (interning it into `symbols` if need be),
/// `None` if out of range.
pub(crate) fn decode_nodes_into(
    r: &mut Reader<'_>,
    limits: &TreeLimits,
    tree: &mut StackTree,
    mut frame: impl FnMut(usize, &mut SymbolTable) -> Option<FrameId>,
) -> Result<(), Corrupt> {
    // Pre-order walk: `pending` holds, per open ancestor, how many children are still to
    // come; `path` the nodes from the root.
    let root_self = r.uvarint()?;
    tree.add_along(&[], root_self);
    let mut pending = vec![r.len(limits.max_nodes, "too many children")?];
    let mut path: Vec<NodeId> = Vec::new();
    let mut nodes = 0usize;
    while let Some(left) = pending.last_mut() {
        if *left == 0 {
            pending.pop();
            path.pop();
            continue;
        }
        *left -= 1;
        nodes += 1;
        if nodes > limits.max_nodes {
            return Err(r.corrupt("too many nodes"));
        }
        let index = r.len(usize::MAX, "frame index out of range")?;
        let id = frame(index, tree.symbols_mut())
            .ok_or_else(|| r.corrupt("frame index out of range"))?;
        let parent = path.last().copied().unwrap_or(StackTree::ROOT);
        path.push(tree.child_or_insert(parent, id));
        if path.len() > limits.max_depth {
            return Err(r.corrupt("tree deeper than the limit"));
        }
        let value = r.uvarint()?;
        tree.add_along(&path, value);
        pending.push(r.len(limits.max_nodes, "too many children")?);
    }
    Ok(())
}

pub(crate) fn read_str(r: &mut Reader<'_>, limits: &TreeLimits) -> Result<String, Corrupt> {
    let n = r.len(limits.max_str, "string too long")?;
    let bytes = r.bytes(n)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| r.corrupt("string is not UTF-8"))
}

fn read_opt_str(r: &mut Reader<'_>, limits: &TreeLimits) -> Result<Option<String>, Corrupt> {
    match r.len(limits.max_str + 1, "string too long")? {
        0 => Ok(None),
        n => {
            let bytes = r.bytes(n - 1)?;
            String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| r.corrupt("string is not UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_tree() -> StackTree {
        let mut t = StackTree::new();
        let main = Frame::at("<module>", "app.py", Some(40));
        let foo = Frame::at("foo", "app.py", Some(22));
        let bar = Frame {
            module: Some("libapp.so".into()),
            ..Frame::named("bar")
        };
        let work = Frame::at("work", "app.py", None);
        t.add_frames([&main, &foo, &work], 75);
        t.add_frames([&main, &bar, &work], 25);
        t.add_frames([&main], 3);
        t.add_frames([&main, &foo], 1);
        t
    }

    #[test]
    fn round_trip() {
        let t = sample_tree();
        let mut bytes = Vec::new();
        encode_tree(&t, &mut bytes);
        bytes.extend_from_slice(b"trailing");
        let (back, used) = decode_tree(&bytes, &TreeLimits::default()).unwrap();
        assert_eq!(&bytes[used..], b"trailing");
        assert_eq!(back.to_sorted_stacks(), t.to_sorted_stacks());
        assert_eq!(back.total(), 104);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut bytes = Vec::new();
        encode_tree(&sample_tree(), &mut bytes);
        for cut in 0..bytes.len() {
            assert!(
                decode_tree(&bytes[..cut], &TreeLimits::default()).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn limits_hold() {
        let mut bytes = Vec::new();
        encode_tree(&sample_tree(), &mut bytes);
        let tight = TreeLimits {
            max_depth: 2,
            ..TreeLimits::default()
        };
        assert!(decode_tree(&bytes, &tight).is_err());
        let tight = TreeLimits {
            max_nodes: 3,
            ..TreeLimits::default()
        };
        assert!(decode_tree(&bytes, &tight).is_err());
    }
}
