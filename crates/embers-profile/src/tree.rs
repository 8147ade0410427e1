//! The call tree: one node per distinct call path, with self and total values.

use crate::hash::FxHashMap;

use crate::frame::{Frame, FrameId, SymbolTable};

/// Index of a node in a [`StackTree`]; the root is [`StackTree::ROOT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// A node. Children are a linked list (first child, next sibling, and the last child for
/// appending in order) rather than a `Vec` per node: a tree of millions of nodes then costs
/// no allocation per node, which dominated building trees from large profiles.
#[derive(Debug, Clone)]
struct Node {
    frame: Option<FrameId>,
    self_value: u64,
    total: u64,
    /// 0 when there is none: the root is never a child.
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
}

impl Node {
    fn new(frame: Option<FrameId>) -> Self {
        Node {
            frame,
            self_value: 0,
            total: 0,
            first_child: 0,
            last_child: 0,
            next_sibling: 0,
        }
    }
}

/// The children of one node, in insertion order.
#[derive(Debug, Clone)]
pub struct Children<'a> {
    nodes: &'a [Node],
    next: u32,
}

impl Iterator for Children<'_> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        if self.next == 0 {
            return None;
        }
        let id = NodeId(self.next);
        self.next = self.nodes[self.next as usize].next_sibling;
        Some(id)
    }
}

/// A call tree built from stacks. Each node's `total` is its own `self` plus its children's
/// totals; the root has no frame and its total is the profile's total.
#[derive(Debug, Clone)]
pub struct StackTree {
    symbols: SymbolTable,
    nodes: Vec<Node>,
    edges: FxHashMap<(NodeId, FrameId), NodeId>,
    /// False after a bulk build ([`StackTree::from_stacks`]), which links nodes without
    /// the edge map; the first lookup that needs it rebuilds it.
    edges_complete: bool,
}

impl Default for StackTree {
    fn default() -> Self {
        StackTree::new()
    }
}

impl StackTree {
    /// The root node, which stands for "all samples".
    pub const ROOT: NodeId = NodeId(0);

    /// An empty tree.
    pub fn new() -> Self {
        StackTree {
            symbols: SymbolTable::new(),
            nodes: vec![Node::new(None)],
            edges: FxHashMap::default(),
            edges_complete: true,
        }
    }

    /// The frames this tree's nodes refer to.
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// Mutable access to the symbols, to intern frames before [`StackTree::add_stack`].
    pub fn symbols_mut(&mut self) -> &mut SymbolTable {
        &mut self.symbols
    }

    /// Adds `value` at the end of `stack` (frame ids of this tree, root first).
    pub fn add_stack(&mut self, stack: &[FrameId], value: u64) {
        if value == 0 {
            return;
        }
        let mut at = Self::ROOT;
        self.nodes[0].total += value;
        for &frame in stack {
            at = self.child_or_insert(at, frame);
            self.nodes[at.0 as usize].total += value;
        }
        self.nodes[at.0 as usize].self_value += value;
    }

    /// Adds `value` for a stack of frames given root first, interning them.
    pub fn add_frames<'a>(&mut self, frames: impl IntoIterator<Item = &'a Frame>, value: u64) {
        let stack: Vec<FrameId> = frames.into_iter().map(|f| self.symbols.intern(f)).collect();
        self.add_stack(&stack, value);
    }

    /// Adds `value` along a path of nodes obtained from [`StackTree::child_or_insert`]
    /// (root excluded, root first): every node's total grows, the last node's self too.
    /// Decoders building a tree in pre-order use this instead of re-walking from the root.
    pub fn add_along(&mut self, path: &[NodeId], value: u64) {
        if value == 0 {
            return;
        }
        self.nodes[0].total += value;
        for node in path {
            self.nodes[node.0 as usize].total += value;
        }
        let last = path.last().map_or(0, |n| n.0 as usize);
        self.nodes[last].self_value += value;
    }

    /// The child of `parent` for `frame`, if there is one.
    pub fn child(&self, parent: NodeId, frame: FrameId) -> Option<NodeId> {
        if self.edges_complete {
            self.edges.get(&(parent, frame)).copied()
        } else {
            self.children(parent)
                .find(|&c| self.nodes[c.0 as usize].frame == Some(frame))
        }
    }

    fn complete_edges(&mut self) {
        if self.edges_complete {
            return;
        }
        self.edges.clear();
        self.edges.reserve(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let mut c = node.first_child;
            while c != 0 {
                let child = &self.nodes[c as usize];
                let frame = child.frame.expect("children have frames");
                self.edges.insert((NodeId(i as u32), frame), NodeId(c));
                c = child.next_sibling;
            }
        }
        self.edges_complete = true;
    }

    /// Builds a tree from `(stack, value)` pairs (frame ids of `symbols`, root first) in
    /// one pass over them sorted, sharing each stack's prefix with the previous one: no
    /// hash lookups per frame, which made tree building the largest cost of ingest. The
    /// edge map is rebuilt only if the tree is later merged into.
    pub fn from_stacks(symbols: SymbolTable, stacks: &mut [(&[FrameId], u64)]) -> StackTree {
        Self::from_stacks_bounded(symbols, stacks, usize::MAX)
            .expect("an unbounded build cannot exceed its bound")
    }

    /// [`StackTree::from_stacks`] that gives up (`None`) as soon as the tree would hold
    /// more than `max_nodes` nodes (root excluded): decoders of untrusted input stop
    /// before a hostile set of distinct stacks costs memory, not after.
    pub fn from_stacks_bounded(
        symbols: SymbolTable,
        stacks: &mut [(&[FrameId], u64)],
        max_nodes: usize,
    ) -> Option<StackTree> {
        stacks.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut tree = StackTree {
            symbols,
            edges_complete: false,
            ..StackTree::new()
        };
        // path[i]: node of the previous stack at depth i + 1.
        let mut path: Vec<u32> = Vec::new();
        let mut previous: &[FrameId] = &[];
        for &(stack, value) in stacks.iter() {
            let common = stack
                .iter()
                .zip(previous)
                .take_while(|(a, b)| a == b)
                .count();
            path.truncate(common);
            if tree.nodes.len() - 1 + (stack.len() - common) > max_nodes {
                return None;
            }
            for &frame in &stack[common..] {
                let parent = path.last().copied().unwrap_or(0);
                path.push(tree.append_child(parent, Node::new(Some(frame))));
            }
            tree.nodes[0].total += value;
            for &node in &path {
                tree.nodes[node as usize].total += value;
            }
            let last = path.last().copied().unwrap_or(0) as usize;
            tree.nodes[last].self_value += value;
            previous = stack;
        }
        Some(tree)
    }

    /// The child of `parent` for `frame`, created (with no value) if it does not exist.
    pub fn child_or_insert(&mut self, parent: NodeId, frame: FrameId) -> NodeId {
        self.complete_edges();
        if let Some(&child) = self.edges.get(&(parent, frame)) {
            return child;
        }
        let child = NodeId(self.append_child(parent.0, Node::new(Some(frame))));
        self.edges.insert((parent, frame), child);
        child
    }

    /// Appends `node` as the last child of `parent` (the edge map is the caller's
    /// business) and returns its index.
    fn append_child(&mut self, parent: u32, node: Node) -> u32 {
        let child = u32::try_from(self.nodes.len()).expect("more than 2^32 nodes");
        self.nodes.push(node);
        let p = &mut self.nodes[parent as usize];
        let previous_last = std::mem::replace(&mut p.last_child, child);
        if previous_last == 0 {
            p.first_child = child;
        } else {
            self.nodes[previous_last as usize].next_sibling = child;
        }
        child
    }

    /// Sum of all values.
    pub fn total(&self) -> u64 {
        self.nodes[0].total
    }

    /// Number of nodes, not counting the root.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - 1
    }

    /// Frame of a node (`None` for the root).
    pub fn frame(&self, node: NodeId) -> Option<&Frame> {
        self.nodes[node.0 as usize]
            .frame
            .map(|id| self.symbols.get(id))
    }

    /// Frame id of a node (`None` for the root).
    pub fn frame_id(&self, node: NodeId) -> Option<FrameId> {
        self.nodes[node.0 as usize].frame
    }

    /// Value spent in the node itself.
    pub fn self_value(&self, node: NodeId) -> u64 {
        self.nodes[node.0 as usize].self_value
    }

    /// Value spent in the node and everything it called.
    pub fn total_value(&self, node: NodeId) -> u64 {
        self.nodes[node.0 as usize].total
    }

    /// Children of a node in insertion order.
    pub fn children(&self, node: NodeId) -> Children<'_> {
        Children {
            nodes: &self.nodes,
            next: self.nodes[node.0 as usize].first_child,
        }
    }

    /// Pushes the children of `node` onto a depth-first stack so that they pop in
    /// insertion order.
    pub fn push_children_rev<T>(
        &self,
        node: NodeId,
        stack: &mut Vec<T>,
        f: impl FnMut(NodeId) -> T,
    ) {
        let start = stack.len();
        stack.extend(self.children(node).map(f));
        stack[start..].reverse();
    }

    /// Children of a node, heaviest first, ties by frame text (a stable drawing order).
    pub fn children_sorted(&self, node: NodeId) -> Vec<NodeId> {
        let mut c: Vec<NodeId> = self.children(node).collect();
        c.sort_by(|a, b| {
            self.total_value(*b)
                .cmp(&self.total_value(*a))
                .then_with(|| self.frame(*a).cmp(&self.frame(*b)))
        });
        c
    }

    /// Calls `f(stack, self_value)` for every node with a non-zero self value, in
    /// depth-first order; `stack` holds frame ids root first.
    pub fn for_each_stack(&self, mut f: impl FnMut(&[FrameId], u64)) {
        let mut path: Vec<FrameId> = Vec::new();
        // (node, depth of its frame in path); the root's frame is not on the path.
        let mut todo: Vec<(NodeId, usize)> = vec![(Self::ROOT, 0)];
        while let Some((node, depth)) = todo.pop() {
            path.truncate(depth);
            let n = &self.nodes[node.0 as usize];
            let depth = match n.frame {
                Some(frame) => {
                    path.push(frame);
                    depth + 1
                }
                None => depth,
            };
            if n.self_value > 0 {
                f(&path, n.self_value);
            }
            self.push_children_rev(node, &mut todo, |child| (child, depth));
        }
    }

    /// Adds every stack of `other` into `self`. Merge is associative and commutative up
    /// to the order of children.
    pub fn merge(&mut self, other: &StackTree) {
        let ids: Vec<FrameId> = other
            .symbols
            .iter()
            .map(|(_, frame)| self.symbols.intern(frame))
            .collect();
        let mut mapped = Vec::new();
        other.for_each_stack(|stack, value| {
            mapped.clear();
            mapped.extend(stack.iter().map(|id| ids[id.0 as usize]));
            self.add_stack(&mapped, value);
        });
    }

    /// A copy with every self value multiplied by `factor` and rounded to the nearest
    /// integer; totals stay consistent (total = self + children).
    pub fn scaled(&self, factor: f64) -> StackTree {
        let mut out = StackTree {
            symbols: self.symbols.clone(),
            ..StackTree::new()
        };
        self.for_each_stack(|stack, value| {
            let scaled = (value as f64 * factor).round();
            if scaled >= 1.0 {
                out.add_stack(stack, scaled as u64);
            }
        });
        out
    }

    /// A copy with every frame passed through `f`, merging paths that become equal.
    ///
    /// Only siblings can merge (a node and its descendant are at different depths), so
    /// the copy is built level by level: a new node's children are the children of the
    /// old nodes it stands for, grouped by their new frame (a sort of a few siblings, no
    /// hashing), each new node summing the self and total of its old ones. When `f`
    /// keeps frames apart, the shape is unchanged and only the symbols are replaced.
    pub fn map_frames(&self, mut f: impl FnMut(&Frame) -> Frame) -> StackTree {
        let mut symbols = SymbolTable::new();
        let ids: Vec<FrameId> = self
            .symbols
            .iter()
            .map(|(_, frame)| symbols.intern_owned(f(frame)))
            .collect();
        if symbols.len() == self.symbols.len() {
            // Interned in order and all distinct: every id maps to itself.
            return StackTree {
                symbols,
                ..self.clone()
            };
        }
        let mut out = StackTree {
            symbols,
            edges_complete: false,
            ..StackTree::new()
        };
        out.nodes.reserve(self.nodes.len());
        out.nodes[0].self_value = self.nodes[0].self_value;
        out.nodes[0].total = self.nodes[0].total;
        // The old nodes each new node stands for, as ranges of `sources`.
        let mut sources: Vec<u32> = vec![0];
        let mut todo: Vec<(u32, usize, usize)> = vec![(0, 0, 1)];
        let mut siblings: Vec<(FrameId, u32)> = Vec::new();
        while let Some((new, start, end)) = todo.pop() {
            siblings.clear();
            for &old in &sources[start..end] {
                let mut c = self.nodes[old as usize].first_child;
                while c != 0 {
                    let child = &self.nodes[c as usize];
                    let frame = ids[child.frame.expect("children have frames").0 as usize];
                    siblings.push((frame, c));
                    c = child.next_sibling;
                }
            }
            siblings.sort_unstable();
            for group in siblings.chunk_by(|a, b| a.0 == b.0) {
                let mut node = Node::new(Some(group[0].0));
                let from = sources.len();
                for &(_, old) in group {
                    let o = &self.nodes[old as usize];
                    node.self_value += o.self_value;
                    node.total += o.total;
                    sources.push(old);
                }
                let placed = out.append_child(new, node);
                todo.push((placed, from, sources.len()));
            }
        }
        out
    }

    /// The stacks as `(frames root first, value)` sorted by frame text: a canonical form
    /// for comparing trees.
    pub fn to_sorted_stacks(&self) -> Vec<(Vec<Frame>, u64)> {
        let mut out = Vec::new();
        self.for_each_stack(|stack, value| {
            out.push((
                stack
                    .iter()
                    .map(|&id| self.symbols.get(id).clone())
                    .collect(),
                value,
            ));
        });
        out.sort();
        out
    }
}

#[cfg(test)]
mod bulk_tests {
    use super::*;

    #[test]
    fn bulk_build_equals_incremental_build_and_merges_afterwards() {
        let mut symbols = SymbolTable::new();
        let ids: Vec<FrameId> = ["main", "foo", "bar", "baz"]
            .iter()
            .map(|n| symbols.intern(&Frame::named(*n)))
            .collect();
        let (m, f, b, z) = (ids[0], ids[1], ids[2], ids[3]);
        let stacks: Vec<(Vec<FrameId>, u64)> = vec![
            (vec![m, f], 5),
            (vec![m, b, z], 2),
            (vec![m], 1),
            (vec![m, f], 3),
            (vec![z], 4),
            (vec![], 7),
        ];
        let mut incremental = StackTree::new();
        *incremental.symbols_mut() = symbols.clone();
        for (s, v) in &stacks {
            incremental.add_stack(s, *v);
        }
        let mut refs: Vec<(&[FrameId], u64)> =
            stacks.iter().map(|(s, v)| (s.as_slice(), *v)).collect();
        // The bounded build stops past its node count (this tree has 5 nodes).
        assert!(StackTree::from_stacks_bounded(symbols.clone(), &mut refs, 4).is_none());
        let bounded = StackTree::from_stacks_bounded(symbols.clone(), &mut refs, 5).unwrap();
        assert_eq!(bounded.node_count(), 5);
        let mut bulk = StackTree::from_stacks(symbols, &mut refs);
        assert_eq!(bulk.to_sorted_stacks(), incremental.to_sorted_stacks());
        assert_eq!(bulk.total(), 22);
        assert_eq!(bulk.node_count(), incremental.node_count());
        assert!(bulk.child(StackTree::ROOT, m).is_some());
        bulk.add_stack(&[m, f], 1);
        bulk.merge(&incremental);
        assert_eq!(bulk.total(), 45);
        assert_eq!(
            bulk.node_count(),
            incremental.node_count(),
            "no duplicate children after merging"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tree(stacks: &[(&str, u64)]) -> StackTree {
        let mut t = StackTree::new();
        for (s, v) in stacks {
            let frames: Vec<Frame> = s.split(';').map(Frame::named).collect();
            t.add_frames(&frames, *v);
        }
        t
    }

    #[test]
    fn totals_follow_children() {
        let t = tree(&[("main;foo;work", 75), ("main;bar;work", 25), ("main", 5)]);
        assert_eq!(t.total(), 105);
        let main = t.children(StackTree::ROOT).next().unwrap();
        assert_eq!(t.total_value(main), 105);
        assert_eq!(t.self_value(main), 5);
        assert_eq!(t.node_count(), 5);
        let heaviest = t.children_sorted(main)[0];
        assert_eq!(t.frame(heaviest).map(|f| f.function.as_str()), Some("foo"));
    }

    #[test]
    fn scaling_keeps_totals_consistent() {
        let t = tree(&[("a;b", 10), ("a", 3)]).scaled(0.5);
        assert_eq!(
            t.to_sorted_stacks().iter().map(|s| s.1).sum::<u64>(),
            t.total()
        );
        assert_eq!(t.total(), 7); // 5 + round(1.5) = 5 + 2
    }
}
