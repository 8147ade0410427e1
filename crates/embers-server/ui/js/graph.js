// @ts-check
// Flame graph data: the server's flamebearer levels decoded into positioned nodes with
// parents, plus what the table and sandwich views derive from them.

/**
 * A positioned node. `x` and `total` are in ticks (for a diff, left plus right).
 * @typedef {{ name: number, level: number, x: number, total: number, self: number,
 *   parent: number, lt: number, ls: number, rt: number, rs: number }} GNode
 * @typedef {{ names: string[], nodes: GNode[], levels: number[][], numTicks: number,
 *   units: import('./format.js').Units, diff: null | { leftTicks: number, rightTicks: number } }} Graph
 * @typedef {{ name: number, self: number, total: number,
 *   ls: number, lt: number, rs: number, rt: number }} FunctionRow
 * @typedef {{ name: number, total: number, self: number, children: Map<number, TNode> }} TNode
 */

export const OTHER = 'other';

/**
 * Decodes flamebearer levels: `[dx, total, self, name]` per node, or for a diff
 * `[ldx, ltotal, lself, rdx, rtotal, rself, name]`, offsets delta-encoded within a row.
 * @param {import('./api.js').Flamebearer} fb
 * @param {import('./format.js').Units} units
 * @param {{leftTicks: number, rightTicks: number}} [diff]
 * @returns {Graph}
 */
export function fromFlamebearer(fb, units, diff) {
  const stride = diff ? 7 : 4;
  /** @type {GNode[]} */
  const nodes = [];
  /** @type {number[][]} */
  const levels = [];
  fb.levels.forEach((row, level) => {
    const ids = [];
    let lx = 0;
    let rx = 0;
    for (let i = 0; i + stride <= row.length; i += stride) {
      /** @type {GNode} */
      let n;
      if (diff) {
        lx += row[i];
        const lt = row[i + 1];
        const ls = row[i + 2];
        rx += row[i + 3];
        const rt = row[i + 4];
        const rs = row[i + 5];
        n = { name: row[i + 6], level, x: lx + rx, total: lt + rt, self: ls + rs, parent: -1, lt, ls, rt, rs };
        lx += lt;
        rx += rt;
      } else {
        lx += row[i];
        n = { name: row[i + 3], level, x: lx, total: row[i + 1], self: row[i + 2], parent: -1, lt: 0, ls: 0, rt: 0, rs: 0 };
        lx += n.total;
      }
      ids.push(nodes.length);
      nodes.push(n);
    }
    levels.push(ids);
  });
  linkParents(nodes, levels);
  return { names: fb.names, nodes, levels, numTicks: fb.numTicks, units, diff: diff ?? null };
}

/**
 * Each node's parent: the node one level up whose span holds the node's start (rows are
 * sorted by x, so one pass per pair of rows).
 * @param {GNode[]} nodes
 * @param {number[][]} levels
 */
function linkParents(nodes, levels) {
  for (let l = 1; l < levels.length; l++) {
    const up = levels[l - 1];
    let j = 0;
    for (const id of levels[l]) {
      const n = nodes[id];
      while (j < up.length - 1 && nodes[up[j]].x + nodes[up[j]].total <= n.x) j++;
      n.parent = up[j] ?? -1;
    }
  }
}

/**
 * Lays out a tree (children heaviest first) as a graph, for sandwich views.
 * @param {TNode} root
 * @param {string[]} names
 * @param {import('./format.js').Units} units
 * @returns {Graph}
 */
export function fromTree(root, names, units) {
  /** @type {GNode[]} */
  const nodes = [];
  /** @type {number[][]} */
  const levels = [];
  /** @type {[TNode, number, number, number][]} */
  const todo = [[root, 0, 0, -1]];
  while (todo.length) {
    const [t, level, x, parent] = /** @type {[TNode, number, number, number]} */ (todo.pop());
    const id = nodes.length;
    nodes.push({ name: t.name, level, x, total: t.total, self: t.self, parent, lt: 0, ls: 0, rt: 0, rs: 0 });
    (levels[level] ??= []).push(id);
    let cx = x;
    const kids = [...t.children.values()].sort((a, b) => b.total - a.total);
    const placed = [];
    for (const c of kids) {
      placed.push(/** @type {[TNode, number, number, number]} */ ([c, level + 1, cx, id]));
      cx += c.total;
    }
    todo.push(...placed.reverse());
  }
  for (const row of levels) row.sort((a, b) => nodes[a].x - nodes[b].x);
  return { names, nodes, levels, numTicks: root.total, units, diff: null };
}

/**
 * Children lists, by node index.
 * @param {Graph} g
 * @returns {number[][]}
 */
export function children(g) {
  /** @type {number[][]} */
  const kids = g.nodes.map(() => []);
  for (const row of g.levels) for (const id of row) if (g.nodes[id].parent >= 0) kids[g.nodes[id].parent].push(id);
  return kids;
}

/**
 * Calls `visit(node, outermost)` for every node in depth-first order, where `outermost`
 * says no ancestor has the same name (so totals of recursive functions count once).
 * @param {Graph} g
 * @param {(id: number, outermost: boolean) => void} visit
 * @param {number[][]} [kids] children lists, when the caller has them already
 */
function walk(g, visit, kids = children(g)) {
  if (!g.nodes.length) return;
  /** @type {Map<number, number>} */
  const onPath = new Map();
  /** @type {[number, boolean][]} */
  const stack = [[0, false]];
  while (stack.length) {
    const [id, leaving] = /** @type {[number, boolean]} */ (stack.pop());
    const name = g.nodes[id].name;
    if (leaving) {
      const c = (onPath.get(name) ?? 1) - 1;
      if (c) onPath.set(name, c);
      else onPath.delete(name);
      continue;
    }
    visit(id, !onPath.has(name));
    onPath.set(name, (onPath.get(name) ?? 0) + 1);
    stack.push([id, true]);
    for (let i = kids[id].length - 1; i >= 0; i--) stack.push([kids[id][i], false]);
  }
}

/**
 * Self and total per function (the root excluded), for the table.
 * @param {Graph} g
 * @returns {FunctionRow[]}
 */
export function functionTable(g) {
  /** @type {Map<number, FunctionRow>} */
  const rows = new Map();
  walk(g, (id, outermost) => {
    if (id === 0) return;
    const n = g.nodes[id];
    let r = rows.get(n.name);
    if (!r) {
      r = { name: n.name, self: 0, total: 0, ls: 0, lt: 0, rs: 0, rt: 0 };
      rows.set(n.name, r);
    }
    r.self += n.self;
    r.ls += n.ls;
    r.rs += n.rs;
    if (outermost) {
      r.total += n.total;
      r.lt += n.lt;
      r.rt += n.rt;
    }
  });
  return [...rows.values()];
}

/** @param {number} name @returns {TNode} */
function tnode(name) {
  return { name, total: 0, self: 0, children: new Map() };
}

/**
 * The sandwich of one function: its callers (a tree rooted at the function, each level
 * one caller further out) and its callees (its subtrees merged).
 * @param {Graph} g
 * @param {number} name index into `g.names`
 * @returns {{ callers: Graph, callees: Graph }}
 */
export function sandwich(g, name) {
  const kids = children(g);
  const callers = tnode(name);
  const callees = tnode(name);
  walk(g, (id, outermost) => {
    const n = g.nodes[id];
    if (n.name !== name || !outermost) return;
    callers.total += n.total;
    callees.total += n.total;
    // Callers: up the parent chain (the root excluded).
    let t = callers;
    for (let p = n.parent; p > 0; p = g.nodes[p].parent) {
      const pn = g.nodes[p].name;
      let c = t.children.get(pn);
      if (!c) t.children.set(pn, (c = tnode(pn)));
      c.total += n.total;
      t = c;
    }
    t.self += n.total;
    // Callees: merge the subtree.
    /** @type {[number, TNode][]} */
    const todo = [[id, callees]];
    while (todo.length) {
      const [src, dst] = /** @type {[number, TNode]} */ (todo.pop());
      dst.self += g.nodes[src].self;
      for (const k of kids[src]) {
        const kn = g.nodes[k];
        let c = dst.children.get(kn.name);
        if (!c) dst.children.set(kn.name, (c = tnode(kn.name)));
        c.total += kn.total;
        todo.push([k, c]);
      }
    }
  }, kids);
  return { callers: fromTree(callers, g.names, g.units), callees: fromTree(callees, g.names, g.units) };
}

/**
 * The names on the path from the root's child down to a node.
 * @param {Graph} g
 * @param {number} id
 */
export function pathOf(g, id) {
  const path = [];
  for (let n = id; n > 0; n = g.nodes[n].parent) path.push(g.names[g.nodes[n].name]);
  return path.reverse();
}

/**
 * The node at a path of names (the heaviest where names repeat), or -1.
 * @param {Graph} g
 * @param {string[]} path
 */
export function findPath(g, path) {
  const kids = children(g);
  let id = 0;
  for (const name of path) {
    const next = kids[id].find((k) => g.names[g.nodes[k].name] === name);
    if (next === undefined) return -1;
    id = next;
  }
  return g.nodes.length ? id : -1;
}

/**
 * The relative change of a diff node's share, right against left (+1 = new, -1 = gone).
 * @param {Graph} g
 * @param {{lt: number, rt: number}} n
 */
export function change(g, n) {
  if (!g.diff) return 0;
  const l = g.diff.leftTicks ? n.lt / g.diff.leftTicks : 0;
  const r = g.diff.rightTicks ? n.rt / g.diff.rightTicks : 0;
  if (l === 0) return r > 0 ? 1 : 0;
  return (r - l) / l;
}
