// @ts-check
// The function table: self and total per function, sortable, filterable; a click selects
// the function (the flame graph highlights it and the sandwich view opens). For a diff it
// shows both sides' shares and the change.

import { h, replace } from './dom.js';
import { percent, splitFrame, value } from './format.js';

/** The most rows drawn at once; the rest are behind the filter. */
const MAX_ROWS = 500;

/**
 * @typedef {import('./graph.js').FunctionRow} FunctionRow
 * @typedef {import('./graph.js').Graph} Graph
 * @typedef {{ key: string, label: string, get: (r: FunctionRow) => number | string,
 *   show: (r: FunctionRow) => string }} Column
 */

export class FunctionTable {
  /**
   * @param {HTMLElement} container
   * @param {{ onSelect?: (name: number) => void }} [options]
   */
  constructor(container, options = {}) {
    this.options = options;
    this.filter = h('input', { type: 'search', class: 'table-filter', placeholder: 'Filter functions', 'aria-label': 'filter functions' });
    this.filter.addEventListener('input', () => this.render());
    this.table = h('table', { class: 'functions' });
    this.note = h('div', { class: 'table-note' });
    container.append(this.filter, h('div', { class: 'table-scroll' }, this.table), this.note);
    /** @type {FunctionRow[]} */
    this.rows = [];
    /** @type {Graph | null} */
    this.graph = null;
    this.sortKey = 'self';
    this.descending = true;
    this.selected = -1;
  }

  /** @param {Graph} graph @param {FunctionRow[]} rows */
  set(graph, rows) {
    this.graph = graph;
    this.rows = rows;
    if (graph.diff && !['name', 'left', 'right', 'change'].includes(this.sortKey)) this.sortKey = 'change';
    if (!graph.diff && !['name', 'self', 'total'].includes(this.sortKey)) this.sortKey = 'self';
    this.render();
  }

  /** @param {number} name */
  select(name) {
    this.selected = name;
    this.render();
  }

  /** @returns {Column[]} */
  columns() {
    const g = /** @type {Graph} */ (this.graph);
    const name = (/** @type {FunctionRow} */ r) => g.names[r.name];
    if (g.diff) {
      const { leftTicks, rightTicks } = g.diff;
      const share = (/** @type {number} */ v, /** @type {number} */ t) => (t ? v / t : 0);
      const delta = (/** @type {FunctionRow} */ r) => share(r.rs, rightTicks) - share(r.ls, leftTicks);
      return [
        { key: 'name', label: 'Function', get: name, show: name },
        { key: 'left', label: 'Baseline self', get: (r) => share(r.ls, leftTicks), show: (r) => percent(r.ls, leftTicks) },
        { key: 'right', label: 'Comparison self', get: (r) => share(r.rs, rightTicks), show: (r) => percent(r.rs, rightTicks) },
        {
          key: 'change',
          label: 'Change',
          get: delta,
          show: (r) => `${delta(r) >= 0 ? '+' : ''}${(delta(r) * 100).toFixed(2)} pp`,
        },
      ];
    }
    const u = g.units;
    return [
      { key: 'name', label: 'Function', get: name, show: name },
      { key: 'self', label: 'Self', get: (r) => r.self, show: (r) => `${value(r.self, u, g.numTicks)} (${percent(r.self, g.numTicks)})` },
      { key: 'total', label: 'Total', get: (r) => r.total, show: (r) => `${value(r.total, u, g.numTicks)} (${percent(r.total, g.numTicks)})` },
    ];
  }

  render() {
    if (!this.graph) return;
    const g = this.graph;
    const cols = this.columns();
    const col = cols.find((c) => c.key === this.sortKey) ?? cols[1];
    const needle = this.filter.value.toLowerCase();
    const rows = this.rows.filter((r) => !needle || g.names[r.name].toLowerCase().includes(needle));
    const dir = this.descending ? -1 : 1;
    rows.sort((a, b) => {
      const x = col.get(a);
      const y = col.get(b);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    const head = h(
      'tr',
      {},
      cols.map((c) =>
        h(
          'th',
          {
            class: c.key === col.key ? (this.descending ? 'sorted desc' : 'sorted asc') : '',
            dataset: { key: c.key },
            onclick: () => {
              if (this.sortKey === c.key) this.descending = !this.descending;
              else {
                this.sortKey = c.key;
                this.descending = c.key !== 'name';
              }
              this.render();
            },
          },
          c.label,
        ),
      ),
    );
    const body = rows.slice(0, MAX_ROWS).map((r) => {
      const { fn, location } = splitFrame(g.names[r.name]);
      return h(
        'tr',
        {
          class: r.name === this.selected ? 'selected' : '',
          dataset: { name: String(r.name) },
          onclick: () => {
            this.selected = this.selected === r.name ? -1 : r.name;
            this.render();
            this.options.onSelect?.(this.selected);
          },
        },
        cols.map((c, i) =>
          i === 0 ? h('td', { class: 'fn', title: g.names[r.name] }, fn, location && h('span', { class: 'loc' }, ` ${location}`)) : h('td', { class: 'num' }, c.show(r)),
        ),
      );
    });
    replace(this.table, h('thead', {}, head), h('tbody', {}, body));
    this.note.textContent = rows.length > MAX_ROWS ? `showing ${MAX_ROWS} of ${rows.length} functions: filter to see others` : `${rows.length} functions`;
  }
}
