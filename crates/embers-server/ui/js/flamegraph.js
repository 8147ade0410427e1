// @ts-check
// The flame graph: one canvas, drawn from positioned nodes (thousands of nodes would be
// thousands of DOM elements otherwise). Hover shows a tooltip, click zooms, a regex search
// highlights matches and reports their share; flame (root at the bottom) or icicle.

import { h, replace, sizeCanvas } from './dom.js';
import { diffColour, frameColour, percent, splitFrame, value } from './format.js';
import { OTHER, change } from './graph.js';

const ROW = 18;
const FONT = '12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace';

/**
 * @typedef {import('./graph.js').Graph} Graph
 * @typedef {{ orientation?: 'icicle' | 'flame', onZoom?: (id: number) => void,
 *   onSelect?: (name: number) => void, title?: string }} Options
 */

/**
 * Builds a case-insensitive regex unless the pattern has an upper-case letter (smart case);
 * null for an empty or invalid pattern.
 * @param {string} pattern
 */
export function searchRegex(pattern) {
  if (!pattern) return null;
  try {
    return new RegExp(pattern, /[A-Z]/.test(pattern) ? '' : 'i');
  } catch {
    return null;
  }
}

export class FlameGraph {
  /**
   * @param {HTMLElement} container
   * @param {HTMLElement} tooltip a shared, absolutely positioned element
   * @param {Options} [options]
   */
  constructor(container, tooltip, options = {}) {
    this.container = container;
    this.tooltip = tooltip;
    this.options = options;
    this.orientation = options.orientation ?? 'icicle';
    /** @type {Graph | null} */
    this.graph = null;
    this.zoom = 0;
    this.hover = -1;
    /** @type {RegExp | null} */
    this.search = null;
    /** @type {Uint8Array} */
    this.matches = new Uint8Array(0);
    /** Function highlighted from the table (index into names), or -1. */
    this.highlightName = -1;
    this.crumbs = h('div', { class: 'crumbs' });
    this.canvas = h('canvas', { class: 'flamegraph', role: 'img' });
    container.append(this.crumbs, this.canvas);
    this.lastDrawMs = 0;
    /** @type {string[]} */
    this.fills = [];
    /** @type {string[]} */
    this.labels = [];
    /** @type {string[]} */
    this.diffFills = [];
    this.canvasKey = '';
    this.canvas.addEventListener('mousemove', (e) => this.onMove(e));
    this.canvas.addEventListener('mouseleave', () => {
      this.hover = -1;
      this.tooltip.hidden = true;
      this.draw();
    });
    this.canvas.addEventListener('click', (e) => {
      const id = this.nodeAt(e.offsetX, e.offsetY);
      if (id >= 0) this.zoomTo(id);
    });
    new ResizeObserver(() => {
      if (this.graph && Math.floor(container.clientWidth) !== this.drawnWidth) this.draw();
    }).observe(container);
    this.drawnWidth = 0;
  }

  /** @param {Graph} graph @param {number} [zoom] */
  setGraph(graph, zoom = 0) {
    this.graph = graph;
    // Per name, once: colour and label (a draw touches thousands of nodes).
    this.fills = graph.names.map((n) => (n === OTHER ? '#c8c8c8' : frameColour(n)));
    this.labels = graph.names.map((n) => (n === OTHER ? 'other (truncated)' : splitFrame(n).fn));
    this.diffFills = graph.diff ? graph.nodes.map((n) => diffColour(change(graph, n))) : [];
    this.zoom = zoom >= 0 && zoom < graph.nodes.length ? zoom : 0;
    this.hover = -1;
    this.canvas.setAttribute('aria-label', this.options.title ?? 'flame graph');
    this.applySearch();
    this.draw();
  }

  /** @param {'icicle' | 'flame'} o */
  setOrientation(o) {
    this.orientation = o;
    this.draw();
  }

  /**
   * Highlights frames whose name matches; returns the matched share of the total (frames
   * under a matching frame are not counted twice).
   * @param {string} pattern
   */
  setSearch(pattern) {
    this.search = searchRegex(pattern);
    const matched = this.applySearch();
    this.draw();
    return matched;
  }

  /** @param {number} name */
  setHighlight(name) {
    this.highlightName = name;
    this.draw();
  }

  applySearch() {
    const g = this.graph;
    if (!g) return 0;
    this.matches = new Uint8Array(g.nodes.length);
    if (!this.search) return 0;
    const nameMatch = g.names.map((n) => (this.search ? this.search.test(n) : false));
    let matched = 0;
    for (let i = 1; i < g.nodes.length; i++) {
      const n = g.nodes[i];
      if (!nameMatch[n.name]) continue;
      this.matches[i] = 1;
      let covered = false;
      for (let p = n.parent; p > 0; p = g.nodes[p].parent) if (this.matches[p]) covered = true;
      if (!covered) matched += n.total;
    }
    return matched;
  }

  /** @param {number} id */
  zoomTo(id) {
    this.zoom = id;
    this.draw();
    this.options.onZoom?.(id);
  }

  resetZoom() {
    this.zoomTo(0);
  }

  get height() {
    return Math.max(1, this.graph ? this.graph.levels.length : 1) * ROW;
  }

  /** Node spans in CSS pixels: x, width. */
  scale() {
    const g = /** @type {Graph} */ (this.graph);
    const z = g.nodes[this.zoom] ?? { x: 0, total: g.numTicks };
    const width = Math.floor(this.container.clientWidth) || 800;
    return { x0: z.x, ticks: Math.max(1, z.total), width };
  }

  /** @param {number} level */
  rowY(level) {
    return this.orientation === 'icicle' ? level * ROW : this.height - (level + 1) * ROW;
  }

  draw() {
    const g = this.graph;
    if (!g) return;
    const start = performance.now();
    const { x0, ticks, width } = this.scale();
    // Resizing a canvas reallocates it: only when the size changed, else clear.
    const key = `${width}x${this.height}x${window.devicePixelRatio}`;
    /** @type {CanvasRenderingContext2D} */
    let ctx;
    if (key !== this.canvasKey) {
      ctx = sizeCanvas(this.canvas, width, this.height);
      this.canvasKey = key;
    } else {
      ctx = /** @type {CanvasRenderingContext2D} */ (this.canvas.getContext('2d'));
      ctx.clearRect(0, 0, width, this.height);
    }
    this.drawnWidth = width;
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    const charW = ctx.measureText('m').width || 7;
    const k = width / ticks;
    const z = g.nodes[this.zoom];
    const zl = z ? z.level : 0;
    const searching = this.search !== null || this.highlightName >= 0;
    // Collect first, then paint by colour: setting a fill style parses a CSS colour, so
    // it happens once per colour rather than once per node.
    /** @type {Map<string, number[]>} */
    const buckets = new Map();
    /** @type {number[]} */
    const outlines = [];
    /** @type {[string, number, number][]} */
    const texts = [];
    /** @type {number[] | null} */
    let hovered = null;
    for (let level = 0; level < g.levels.length; level++) {
      const y = this.rowY(level);
      for (const id of g.levels[level]) {
        const n = g.nodes[id];
        if (n.x + n.total <= x0 || n.x >= x0 + ticks) continue;
        // Above the zoomed node only its ancestors overlap the range; draw them full width.
        const left = Math.max(0, (n.x - x0) * k);
        const right = Math.min(width, (n.x + n.total - x0) * k);
        const w = right - left;
        if (w < 0.5) continue;
        const lit = this.matches[id] === 1 || n.name === this.highlightName;
        let fill = g.diff ? this.diffFills[id] : this.fills[n.name];
        if (lit && !g.diff) fill = '#ee00ee';
        else if (searching && !lit && !g.diff) fill = '#e2e2e2';
        // Ancestors of the zoomed node are faded ('~' marks their bucket).
        const key = level < zl ? `~${fill}` : fill;
        let bucket = buckets.get(key);
        if (!bucket) buckets.set(key, (bucket = []));
        bucket.push(left, y, Math.max(w - 0.5, 0.5));
        if (lit && g.diff) outlines.push(left + 1, y + 1, w - 2);
        if (id === this.hover) hovered = [left + 0.5, y + 0.5, w - 1.5];
        if (w > 28) texts.push([fit(this.labels[n.name], w - 6, charW), left + 3, y + ROW / 2]);
      }
    }
    for (const [key, rects] of buckets) {
      const faded = key.startsWith('~');
      ctx.globalAlpha = faded ? 0.6 : 1;
      ctx.fillStyle = faded ? key.slice(1) : key;
      for (let i = 0; i < rects.length; i += 3) ctx.fillRect(rects[i], rects[i + 1], rects[i + 2], ROW - 1);
    }
    ctx.globalAlpha = 1;
    if (outlines.length) {
      ctx.strokeStyle = '#ee00ee';
      ctx.lineWidth = 2;
      for (let i = 0; i < outlines.length; i += 3) ctx.strokeRect(outlines[i], outlines[i + 1], outlines[i + 2], ROW - 3);
    }
    if (hovered) {
      ctx.strokeStyle = '#222';
      ctx.lineWidth = 1;
      ctx.strokeRect(hovered[0], hovered[1], hovered[2], ROW - 2);
    }
    ctx.fillStyle = '#111';
    for (const [text, x, y] of texts) ctx.fillText(text, x, y);
    ctx.globalAlpha = 1;
    this.renderCrumbs();
    this.lastDrawMs = performance.now() - start;
  }

  renderCrumbs() {
    const g = /** @type {Graph} */ (this.graph);
    if (this.zoom === 0) {
      replace(this.crumbs);
      return;
    }
    const path = [];
    for (let p = this.zoom; p > 0; p = g.nodes[p].parent) path.push(p);
    path.reverse();
    replace(
      this.crumbs,
      h('button', { class: 'reset', onclick: () => this.resetZoom() }, 'Reset zoom'),
      ...path.map((id) => h('a', { href: '#', onclick: (/** @type {Event} */ e) => (e.preventDefault(), this.zoomTo(id)) }, splitFrame(g.names[g.nodes[id].name]).fn)),
    );
  }

  /**
   * The node under CSS pixel (x, y) of the canvas, or -1.
   * @param {number} px
   * @param {number} py
   */
  nodeAt(px, py) {
    const g = this.graph;
    if (!g) return -1;
    const level = this.orientation === 'icicle' ? Math.floor(py / ROW) : Math.floor((this.height - py) / ROW);
    const row = g.levels[level];
    if (!row) return -1;
    const { x0, ticks, width } = this.scale();
    const t = x0 + (px / width) * ticks;
    for (const id of row) {
      const n = g.nodes[id];
      if (t >= n.x && t < n.x + n.total && n.x + n.total > x0 && n.x < x0 + ticks) return id;
    }
    return -1;
  }

  /**
   * Where a node is drawn, in page coordinates (for tests and for scrolling into view).
   * @param {number} id
   */
  rectOf(id) {
    const g = /** @type {Graph} */ (this.graph);
    const n = g.nodes[id];
    const { x0, ticks, width } = this.scale();
    const box = this.canvas.getBoundingClientRect();
    const left = Math.max(0, ((n.x - x0) / ticks) * width);
    const right = Math.min(width, ((n.x + n.total - x0) / ticks) * width);
    return { x: box.left + left, y: box.top + this.rowY(n.level), width: right - left, height: ROW };
  }

  /**
   * The widest node whose function name (without location) is `fn`, or -1.
   * @param {string} fn
   */
  find(fn) {
    const g = this.graph;
    if (!g) return -1;
    let best = -1;
    g.nodes.forEach((n, id) => {
      if (splitFrame(g.names[n.name]).fn === fn && (best < 0 || n.total > g.nodes[best].total)) best = id;
    });
    return best;
  }

  /** @param {MouseEvent} e */
  onMove(e) {
    const id = this.nodeAt(e.offsetX, e.offsetY);
    if (id !== this.hover) {
      this.hover = id;
      this.draw();
    }
    if (id < 0) {
      this.tooltip.hidden = true;
      return;
    }
    replace(this.tooltip, ...this.describe(id));
    this.tooltip.hidden = false;
    const pad = 14;
    const tw = this.tooltip.offsetWidth;
    const x = e.pageX + pad + tw > window.scrollX + window.innerWidth ? e.pageX - tw - pad : e.pageX + pad;
    this.tooltip.style.left = `${Math.max(0, x)}px`;
    this.tooltip.style.top = `${e.pageY + pad}px`;
  }

  /**
   * The tooltip's lines for a node.
   * @param {number} id
   */
  describe(id) {
    const g = /** @type {Graph} */ (this.graph);
    const n = g.nodes[id];
    const name = g.names[n.name];
    const { fn, location } = splitFrame(name);
    const u = g.units;
    const title = name === OTHER ? 'other: nodes cut by maxNodes' : fn;
    const lines = [h('div', { class: 'tt-name' }, title)];
    if (location) lines.push(h('div', { class: 'tt-loc' }, location));
    if (g.diff) {
      const { leftTicks, rightTicks } = g.diff;
      const c = change(g, n);
      lines.push(
        row('baseline', `${value(n.lt, u, leftTicks)} (${percent(n.lt, leftTicks)}), self ${value(n.ls, u, leftTicks)}`),
        row('comparison', `${value(n.rt, u, rightTicks)} (${percent(n.rt, rightTicks)}), self ${value(n.rs, u, rightTicks)}`),
        row('change', n.lt === 0 ? 'new' : `${c >= 0 ? '+' : ''}${(c * 100).toFixed(1)} %`),
      );
    } else {
      lines.push(
        row('total', `${value(n.total, u, g.numTicks)} (${percent(n.total, g.numTicks)})`),
        row('self', `${value(n.self, u, g.numTicks)} (${percent(n.self, g.numTicks)})`),
      );
    }
    return lines;
  }
}

/**
 * @param {string} label
 * @param {string} text
 */
function row(label, text) {
  return h('div', { class: 'tt-row' }, h('span', { class: 'tt-label' }, label), text);
}

/**
 * The longest prefix of `text` (with an ellipsis) that fits in `width` pixels of a
 * monospace font whose characters are `charW` wide.
 * @param {string} text
 * @param {number} width
 * @param {number} charW
 */
function fit(text, width, charW) {
  const max = Math.floor(width / charW);
  if (text.length <= max) return text;
  return max > 1 ? `${text.slice(0, max - 1)}…` : '';
}
