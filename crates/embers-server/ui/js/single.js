// @ts-check
// The single view: one selection, its timeline, the function table and the flame graph
// side by side (or either alone), and the sandwich of the selected function.

import * as api from './api.js';
import { failed, selectionPanel, timelineOf } from './controls.js';
import { h, replace } from './dom.js';
import { exportMenu } from './export.js';
import { FlameGraph } from './flamegraph.js';
import { percent, splitFrame, value } from './format.js';
import { findPath, fromFlamebearer, functionTable, pathOf, sandwich } from './graph.js';
import { FunctionTable } from './table.js';

/**
 * @typedef {import('./state.js').State} State
 * @typedef {import('./main.js').Context} Context
 */

/**
 * A search box whose matched share is shown beside it.
 * @param {string} initial
 * @param {(pattern: string) => string} onSearch returns the text to show
 */
export function searchBox(initial, onSearch) {
  const input = h('input', { type: 'search', class: 'search', value: initial, placeholder: 'Search (regex)', 'aria-label': 'search functions' });
  const matched = h('span', { class: 'matched', role: 'status' });
  input.addEventListener('input', () => {
    matched.textContent = onSearch(input.value);
  });
  return { el: h('span', { class: 'search-box' }, input, matched), input, matched };
}

/**
 * The orientation toggle (icicle: root at the top; flame: root at the bottom).
 * @param {State} state
 * @param {Context} ctx
 * @param {() => FlameGraph[]} graphs
 */
export function orientationToggle(state, ctx, graphs) {
  const b = h('button', { type: 'button', class: 'orient', title: 'flip the graph: root on top (icicle) or at the bottom (flame)' }, state.orient === 'icicle' ? 'Flame' : 'Icicle');
  b.addEventListener('click', () => {
    const next = ctx.state.orient === 'icicle' ? 'flame' : 'icicle';
    ctx.replace({ orient: next });
    for (const g of graphs()) g.setOrientation(next);
    b.textContent = next === 'icicle' ? 'Flame' : 'Icicle';
  });
  return b;
}

/**
 * The "by line" switch (pressed: on): one node per function (the default, as Grafana
 * shows trees) or one per function, file and line. The server regroups: the view reloads.
 * @param {State} state
 * @param {Context} ctx
 */
export function granularityToggle(state, ctx) {
  const on = state.by === 'line';
  return h(
    'button',
    {
      type: 'button',
      class: 'by-line',
      'aria-pressed': on ? 'true' : 'false',
      title: 'one node per function, or one per function, file and line',
      onclick: () => ctx.navigate({ by: on ? 'function' : 'line', zoom: '', fn: '' }),
    },
    'By line',
  );
}

/**
 * @param {HTMLElement} root
 * @param {State} state
 * @param {Context} ctx
 */
export async function mount(root, state, ctx) {
  const query = api.selector(state.type, state.app, state.q);
  const panel = selectionPanel({
    q: state.q,
    from: state.from,
    until: state.until,
    base: () => api.selector(state.type, state.app, ''),
    onChange: (q, from, until) => ctx.navigate({ q, from, until, zoom: '', fn: '' }),
  });
  const status = h('div', { class: 'status', role: 'status' }, 'Loading…');
  const tablePane = h('div', { class: 'pane table-pane' });
  const graphPane = h('div', { class: 'pane graph-pane' });
  const sandwichEl = h('section', { class: 'sandwich', hidden: true });
  const fg = new FlameGraph(graphPane, ctx.tooltip, {
    orientation: state.orient,
    title: query,
    onZoom: (id) => ctx.replace({ zoom: id ? pathOf(/** @type {any} */ (fg.graph), id).join(';') : '' }),
  });
  const table = new FunctionTable(tablePane, { onSelect: (name) => selectFunction(name) });
  /** @type {FlameGraph[]} */
  const sandwichGraphs = [];
  const search = searchBox(state.search, (pattern) => {
    ctx.replace({ search: pattern });
    const matched = fg.setSearch(pattern);
    for (const g of sandwichGraphs) g.setSearch(pattern);
    if (!pattern || !fg.graph) return '';
    return `Matched: ${percent(matched, fg.graph.numTicks)} (${value(matched, fg.graph.units, fg.graph.numTicks)})`;
  });
  const show = h(
    'select',
    { class: 'show', 'aria-label': 'show' },
    [
      ['both', 'Table and flame graph'],
      ['graph', 'Flame graph'],
      ['table', 'Table'],
    ].map(([v, label]) => h('option', { value: v, selected: v === state.show }, label)),
  );
  const panes = h('div', { class: 'panes' }, tablePane, graphPane);
  const applyShow = () => {
    tablePane.hidden = show.value === 'graph';
    graphPane.hidden = show.value === 'table';
    panes.className = `panes show-${show.value}`;
  };
  show.addEventListener('change', () => {
    ctx.replace({ show: /** @type {any} */ (show.value) });
    applyShow();
  });
  applyShow();
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    search.el,
    h('span', { class: 'spacer' }),
    granularityToggle(state, ctx),
    orientationToggle(state, ctx, () => [fg, ...sandwichGraphs]),
    show,
    exportMenu({
      query: () => ({ query, from: state.from, until: state.until, aggregation: api.aggregation(state) }),
      canvas: () => fg.canvas,
      name: () => state.app,
      empty: () => !fg.graph || fg.graph.numTicks === 0,
    }),
  );
  replace(root, panel.el, toolbar, status, panes, sandwichEl);
  ctx.expose({ view: 'single', graphs: { main: fg }, table });

  /** @param {number} name */
  function selectFunction(name) {
    const g = fg.graph;
    if (!g) return;
    fg.setHighlight(name);
    ctx.replace({ fn: name >= 0 ? g.names[name] : '' });
    sandwichGraphs.length = 0;
    if (name < 0) {
      sandwichEl.hidden = true;
      replace(sandwichEl);
      return;
    }
    const { callers, callees } = sandwich(g, name);
    const up = h('div', { class: 'pane' });
    const down = h('div', { class: 'pane' });
    replace(
      sandwichEl,
      h('h3', {}, 'Sandwich: ', h('code', {}, splitFrame(g.names[name]).fn), h('button', { type: 'button', class: 'close', onclick: () => (table.select(-1), selectFunction(-1)) }, 'Close')),
      h('div', { class: 'sandwich-label' }, 'Callers (outermost at the top)'),
      up,
      h('div', { class: 'sandwich-label' }, 'Callees'),
      down,
    );
    sandwichEl.hidden = false;
    const callersGraph = new FlameGraph(up, ctx.tooltip, { orientation: 'flame', title: 'callers' });
    const calleesGraph = new FlameGraph(down, ctx.tooltip, { orientation: 'icicle', title: 'callees' });
    callersGraph.setGraph(callers);
    calleesGraph.setGraph(callees);
    sandwichGraphs.push(callersGraph, calleesGraph);
    ctx.expose({ view: 'single', graphs: { main: fg, callers: callersGraph, callees: calleesGraph }, table });
  }

  let res;
  try {
    res = await api.render({ query, from: state.from, until: state.until, maxNodes: state.maxNodes, aggregation: api.aggregation(state) });
  } catch (e) {
    failed(status, e);
    return;
  }
  performance.mark('embers-data');
  const graph = fromFlamebearer(res.flamebearer, res.metadata);
  panel.timeline.set(timelineOf(res.timeline), null);
  fg.setGraph(graph, state.zoom ? findPath(graph, state.zoom.split(';')) : 0);
  performance.mark('embers-drawn');
  performance.measure('embers-first-draw', 'embers-data', 'embers-drawn');
  table.set(graph, functionTable(graph));
  status.textContent = graph.numTicks ? `${value(graph.numTicks, graph.units)} in total` : 'No profiles in this range for this selection.';
  if (state.search) search.matched.textContent = (() => {
    const m = fg.setSearch(state.search);
    return `Matched: ${percent(m, graph.numTicks)} (${value(m, graph.units, graph.numTicks)})`;
  })();
  if (state.fn) {
    const name = graph.names.indexOf(state.fn);
    if (name >= 0) {
      table.select(name);
      selectFunction(name);
    }
  }
  ctx.ready();
}
