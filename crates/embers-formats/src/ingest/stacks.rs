//! The text and node-list ingest bodies, straight into a call tree within the budget:
//! folded (`a;b;c 5`), `lines` (one sample per line), and the legacy `trie` and `tree`
//! bodies of Pyroscope's pre-pprof agents.
//!
//! Trie and tree are pre-order node lists, each node `uvarint(len) name uvarint(value)
//! uvarint(children)`. In a trie, names are key fragments: a node's key is the
//! concatenation of the fragments from the root, and a value > 0 ends a `a;b;c` key.
//! In a tree, each name is one frame and the value is the node's self value.

use std::collections::HashMap;

use embers_profile::{Frame, FrameId, NodeId, StackTree};

use super::budget::{Bound, Spend};
use crate::FormatError;

/// Builds one tree, spending depth, frames, nodes and values from the request's budget.
pub(super) struct Builder<'s, 'b> {
    pub(super) spend: &'s mut Spend<'b>,
    format: &'static str,
    pub(super) tree: StackTree,
    ids: HashMap<String, FrameId>,
    stack: Vec<FrameId>,
}

impl<'s, 'b> Builder<'s, 'b> {
    pub(super) fn new(spend: &'s mut Spend<'b>, format: &'static str) -> Self {
        Builder {
            spend,
            format,
            tree: StackTree::new(),
            ids: HashMap::new(),
            stack: Vec::new(),
        }
    }

    fn frame(&mut self, label: &str) -> Result<FrameId, FormatError> {
        if let Some(&id) = self.ids.get(label) {
            return Ok(id);
        }
        self.spend
            .at_most(self.format, Bound::FrameLength, label.len())?;
        let id = self
            .tree
            .symbols_mut()
            .intern_owned(Frame::parse_label(label));
        self.ids.insert(label.to_owned(), id);
        Ok(id)
    }

    /// Adds `value` at the end of the stack of `labels` (root first).
    pub(super) fn add<'l>(
        &mut self,
        labels: impl Iterator<Item = &'l str>,
        value: u64,
    ) -> Result<(), FormatError> {
        let mut stack = std::mem::take(&mut self.stack);
        stack.clear();
        for label in labels {
            stack.push(self.frame(label)?);
            self.spend
                .at_most(self.format, Bound::StackDepth, stack.len())?;
        }
        self.spend
            .spend(self.format, Bound::StackFrames, stack.len())?;
        self.spend.value(self.format, value)?;
        let before = self.tree.node_count();
        self.tree.add_stack(&stack, value);
        self.spend
            .spend(self.format, Bound::Nodes, self.tree.node_count() - before)?;
        self.stack = stack;
        Ok(())
    }
}

fn text<'a>(format: &'static str, body: &'a [u8]) -> Result<&'a str, FormatError> {
    std::str::from_utf8(body).map_err(|e| {
        FormatError::malformed(format, format!("not UTF-8 text (byte {})", e.valid_up_to()))
    })
}

/// Folded stacks: `frame;frame;... COUNT` per line; blank lines and `#` comments skipped.
pub(crate) fn folded(body: &[u8], spend: &mut Spend<'_>) -> Result<StackTree, FormatError> {
    const NAME: &str = "folded";
    let mut b = Builder::new(spend, NAME);
    for (i, raw) in text(NAME, body)?.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |message: &str| FormatError::Malformed {
            format: NAME,
            message: message.into(),
            line: Some(i + 1),
        };
        let (frames, count) = line
            .rsplit_once(' ')
            .ok_or_else(|| at("expected `frame;frame;... COUNT`, found no count"))?;
        let count: u64 = count
            .parse()
            .map_err(|_| at("the count is not a whole number of samples"))?;
        let frames = frames.trim_end();
        if frames.is_empty() {
            return Err(at("a count with no stack"));
        }
        if frames
            .rsplit_once(' ')
            .is_some_and(|(_, c)| c.parse::<u64>().is_ok())
        {
            return Err(at("two counts: differential input cannot be ingested"));
        }
        b.spend.spend(NAME, Bound::Samples, 1)?;
        b.add(frames.split(';'), count)?;
    }
    Ok(b.tree)
}

/// `lines`: one stack per line (frames separated by `;`), each line one sample.
pub(crate) fn lines(body: &[u8], spend: &mut Spend<'_>) -> Result<StackTree, FormatError> {
    const NAME: &str = "lines";
    let mut b = Builder::new(spend, NAME);
    for line in text(NAME, body)?.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        b.spend.spend(NAME, Bound::Samples, 1)?;
        b.add(line.split(';'), 1)?;
    }
    Ok(b.tree)
}

struct Reader<'a> {
    format: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, message: &str) -> FormatError {
        FormatError::malformed(self.format, format!("{message} at byte {}", self.pos))
    }

    fn uvarint(&mut self) -> Result<u64, FormatError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| self.bad("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.bad("varint longer than 10 bytes"))
    }

    fn name(&mut self) -> Result<&'a str, FormatError> {
        let n = self.uvarint()?;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.bad("truncated name"))?;
        let s = std::str::from_utf8(&self.bytes[self.pos..end])
            .map_err(|_| self.bad("name is not UTF-8"))?;
        self.pos = end;
        Ok(s)
    }
}

/// Reads nodes in pre-order, calling `visit(spend, depth, name, value)`; the depth is
/// bounded by the budget's stack depth (the root, depth 0, is not a frame).
fn walk<'a>(
    format: &'static str,
    bytes: &'a [u8],
    spend: &mut Spend<'_>,
    mut visit: impl FnMut(&mut Spend<'_>, usize, &'a str, u64) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let mut r = Reader {
        format,
        bytes,
        pos: 0,
    };
    let mut pending: Vec<u64> = vec![1];
    while let Some(left) = pending.last_mut() {
        if *left == 0 {
            pending.pop();
            continue;
        }
        *left -= 1;
        let depth = pending.len() - 1;
        spend.at_most(format, Bound::StackDepth, depth)?;
        spend.spend(format, Bound::Samples, 1)?;
        let name = r.name()?;
        let value = r.uvarint()?;
        visit(spend, depth, name, value)?;
        let children = r.uvarint()?;
        if children > bytes.len() as u64 {
            return Err(r.bad("more children than bytes"));
        }
        pending.push(children);
    }
    if r.pos != bytes.len() {
        return Err(r.bad("bytes after the last node"));
    }
    Ok(())
}

/// A trie body: keys are the concatenated fragments from the root.
pub(crate) fn trie(bytes: &[u8], spend: &mut Spend<'_>) -> Result<StackTree, FormatError> {
    const NAME: &str = "trie";
    let mut values: Vec<(String, u64)> = Vec::new();
    let mut key: Vec<usize> = Vec::new(); // key length at each depth
    let mut text = String::new();
    walk(NAME, bytes, spend, |spend, depth, name, value| {
        key.truncate(depth);
        text.truncate(key.last().copied().unwrap_or(0));
        text.push_str(name);
        key.push(text.len());
        if value > 0 {
            // Keys repeat their prefixes: a small body can spell out a great deal of
            // text, which is what decompression means here.
            spend.spend(NAME, Bound::DecodedBytes, text.len())?;
            values.push((text.clone(), value));
        }
        Ok(())
    })?;
    let mut b = Builder::new(spend, NAME);
    for (key, value) in &values {
        b.add(key.split(';'), *value)?;
    }
    Ok(b.tree)
}

/// A tree body: each name is one frame, each value that node's self value.
pub(crate) fn tree(bytes: &[u8], spend: &mut Spend<'_>) -> Result<StackTree, FormatError> {
    const NAME: &str = "tree";
    let mut entries: Vec<(usize, &str, u64)> = Vec::new();
    walk(NAME, bytes, spend, |_, depth, name, value| {
        entries.push((depth, name, value));
        Ok(())
    })?;
    let mut b = Builder::new(spend, NAME);
    let mut path: Vec<NodeId> = Vec::new();
    for (depth, name, value) in entries {
        b.spend.value(NAME, value)?;
        if depth == 0 {
            // The unnamed root.
            b.tree.add_along(&[], value);
            continue;
        }
        path.truncate(depth - 1);
        let frame = b.frame(name)?;
        let parent = path.last().copied().unwrap_or(StackTree::ROOT);
        let before = b.tree.node_count();
        path.push(b.tree.child_or_insert(parent, frame));
        b.spend
            .spend(NAME, Bound::Nodes, b.tree.node_count() - before)?;
        b.tree.add_along(&path, value);
    }
    Ok(b.tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::IngestBudget;

    fn node(out: &mut Vec<u8>, name: &str, value: u64, children: u64) {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value as u8);
        out.push(children as u8);
    }

    fn stacks(t: &StackTree) -> Vec<(String, u64)> {
        t.to_sorted_stacks()
            .into_iter()
            .map(|(f, v)| {
                let names: Vec<_> = f.iter().map(|f| f.function.clone()).collect();
                (names.join(";"), v)
            })
            .collect()
    }

    fn with<T>(budget: IngestBudget, f: impl FnOnce(&mut Spend<'_>) -> T) -> T {
        f(&mut Spend::new(&budget))
    }

    fn over(r: Result<StackTree, FormatError>) -> Bound {
        match r {
            Err(FormatError::OverBudget { bound, .. }) => bound,
            Err(other) => panic!("expected over budget, got {other}"),
            Ok(tree) => panic!("expected over budget, got {} nodes", tree.node_count()),
        }
    }

    #[test]
    fn trie_keys_are_concatenated_fragments() {
        // Keys "main;foo" = 3 and "main;bar" = 1, sharing the fragment "main;".
        let mut b = Vec::new();
        node(&mut b, "", 0, 1);
        node(&mut b, "main;", 0, 2);
        node(&mut b, "foo", 3, 0);
        node(&mut b, "bar", 1, 0);
        let t = with(IngestBudget::default(), |s| trie(&b, s)).unwrap();
        assert_eq!(
            stacks(&t),
            vec![("main;bar".into(), 1), ("main;foo".into(), 3)]
        );
        assert!(with(IngestBudget::default(), |s| trie(&b[..b.len() - 1], s)).is_err());
    }

    #[test]
    fn tree_names_are_frames() {
        let mut b = Vec::new();
        node(&mut b, "", 0, 1);
        node(&mut b, "main", 1, 1);
        node(&mut b, "foo", 3, 0);
        let t = with(IngestBudget::default(), |s| tree(&b, s)).unwrap();
        assert_eq!(t.total(), 4);
        assert!(with(IngestBudget::default(), |s| tree(&[0xff; 20], s)).is_err());
    }

    #[test]
    fn every_text_format_bounds_depth() {
        let budget = || IngestBudget {
            max_stack_depth: 8,
            ..IngestBudget::default()
        };
        let deep = ["f"; 9].join(";");
        assert_eq!(
            over(with(budget(), |s| lines(deep.as_bytes(), s))),
            Bound::StackDepth
        );
        let folded_body = format!("{deep} 1");
        assert_eq!(
            over(with(budget(), |s| folded(folded_body.as_bytes(), s))),
            Bound::StackDepth
        );
        // A chain of nine nested tree nodes under the root.
        let mut b = Vec::new();
        node(&mut b, "", 0, 1);
        for i in 0..9 {
            node(&mut b, "f", 0, u64::from(i < 8));
        }
        assert_eq!(over(with(budget(), |s| tree(&b, s))), Bound::StackDepth);
        assert_eq!(over(with(budget(), |s| trie(&b, s))), Bound::StackDepth);
        assert!(with(budget(), |s| lines(["f"; 8].join(";").as_bytes(), s)).is_ok());
    }

    #[test]
    fn distinct_paths_are_bounded() {
        let budget = IngestBudget {
            max_nodes: 50,
            ..IngestBudget::default()
        };
        let body: String = (0..60).map(|i| format!("main;f{i}\n")).collect();
        assert_eq!(
            over(with(budget, |s| lines(body.as_bytes(), s))),
            Bound::Nodes
        );
    }

    #[test]
    fn values_that_overflow_are_refused() {
        let body = format!("a 1\nb {}\n", u64::MAX);
        let budget = IngestBudget {
            max_total_value: u64::MAX,
            ..IngestBudget::default()
        };
        assert_eq!(
            over(with(budget, |s| folded(body.as_bytes(), s))),
            Bound::TotalValue
        );
    }

    #[test]
    fn long_frames_and_many_samples_are_refused() {
        let budget = || IngestBudget {
            max_frame_length: 10,
            max_samples: 3,
            ..IngestBudget::default()
        };
        assert_eq!(
            over(with(budget(), |s| lines(b"main;abcdefghijk\n", s))),
            Bound::FrameLength
        );
        assert_eq!(
            over(with(budget(), |s| lines(b"a\na\na\na\n", s))),
            Bound::Samples
        );
    }
}
