//! The legacy `trie` and `tree` ingest bodies (Pyroscope's pre-pprof agents).
//!
//! Both are pre-order node lists, each node `uvarint(len) name uvarint(value)
//! uvarint(children)`. In a trie, names are key fragments: a node's key is the
//! concatenation of the fragments from the root, and a value > 0 ends a `a;b;c` key.
//! In a tree, each name is one frame and the value is the node's self value.

use embers_profile::{Frame, StackTree};

/// Longest key or deepest path accepted.
const MAX_DEPTH: usize = 4096;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn uvarint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn name(&mut self) -> Result<&str, String> {
        let n = usize::try_from(self.uvarint()?).map_err(|_| "name too long")?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("truncated name")?;
        let s = std::str::from_utf8(&self.bytes[self.pos..end]).map_err(|_| "name is not UTF-8")?;
        self.pos = end;
        Ok(s)
    }
}

/// Reads nodes in pre-order, calling `visit(depth, name, value)`.
fn walk(
    bytes: &[u8],
    mut visit: impl FnMut(usize, &str, u64) -> Result<(), String>,
) -> Result<(), String> {
    let mut r = Reader { bytes, pos: 0 };
    let mut pending: Vec<u64> = vec![1];
    while let Some(left) = pending.last_mut() {
        if *left == 0 {
            pending.pop();
            continue;
        }
        *left -= 1;
        let depth = pending.len() - 1;
        if depth > MAX_DEPTH {
            return Err("nesting deeper than the limit".into());
        }
        let name = r.name()?.to_owned();
        let value = r.uvarint()?;
        visit(depth, &name, value)?;
        let children = r.uvarint()?;
        if children > bytes.len() as u64 {
            return Err("more children than bytes".into());
        }
        pending.push(children);
    }
    if r.pos != bytes.len() {
        return Err(format!("{} bytes after the last node", bytes.len() - r.pos));
    }
    Ok(())
}

/// Decodes a trie body into a tree.
pub fn decode_trie(bytes: &[u8]) -> Result<StackTree, String> {
    let mut tree = StackTree::new();
    let mut key: Vec<usize> = Vec::new(); // key length at each depth
    let mut text = String::new();
    walk(bytes, |depth, name, value| {
        key.truncate(depth);
        text.truncate(key.last().copied().unwrap_or(0));
        text.push_str(name);
        key.push(text.len());
        if text.len() > MAX_DEPTH * 256 {
            return Err("key longer than the limit".into());
        }
        if value > 0 {
            let frames: Vec<Frame> = text.split(';').map(Frame::parse_label).collect();
            tree.add_frames(frames.iter(), value);
        }
        Ok(())
    })?;
    Ok(tree)
}

/// Decodes a tree body.
pub fn decode_tree(bytes: &[u8]) -> Result<StackTree, String> {
    let mut tree = StackTree::new();
    let mut path: Vec<Frame> = Vec::new();
    walk(bytes, |depth, name, value| {
        // depth 0 is the unnamed root.
        if depth == 0 {
            tree.add_frames(std::iter::empty(), value);
            return Ok(());
        }
        path.truncate(depth - 1);
        path.push(Frame::parse_label(name));
        tree.add_frames(path.iter(), value);
        Ok(())
    })?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(out: &mut Vec<u8>, name: &str, value: u64, children: u64) {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value as u8);
        out.push(children as u8);
    }

    #[test]
    fn trie_keys_are_concatenated_fragments() {
        // Keys "main;foo" = 3 and "main;bar" = 1, sharing the fragment "main;".
        let mut b = Vec::new();
        node(&mut b, "", 0, 1);
        node(&mut b, "main;", 0, 2);
        node(&mut b, "foo", 3, 0);
        node(&mut b, "bar", 1, 0);
        let t = decode_trie(&b).unwrap();
        let stacks: Vec<(String, u64)> = t
            .to_sorted_stacks()
            .into_iter()
            .map(|(f, v)| {
                (
                    f.iter()
                        .map(|f| f.function.clone())
                        .collect::<Vec<_>>()
                        .join(";"),
                    v,
                )
            })
            .collect();
        assert_eq!(stacks, vec![("main;bar".into(), 1), ("main;foo".into(), 3)]);
        assert!(decode_trie(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn tree_names_are_frames() {
        let mut b = Vec::new();
        node(&mut b, "", 0, 1);
        node(&mut b, "main", 1, 1);
        node(&mut b, "foo", 3, 0);
        let t = decode_tree(&b).unwrap();
        assert_eq!(t.total(), 4);
        assert!(decode_tree(&[0xff; 20]).is_err());
    }
}
