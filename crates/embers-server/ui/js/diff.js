// @ts-check
// The diff view: one flame graph of both selections coloured by the relative change of each
// node's share (red grew, green shrank), a legend, and the function table sorted by change.

import * as api from './api.js';
import { failed, timelineOf } from './controls.js';
import { h, replace } from './dom.js';
import { exportMenu } from './export.js';
import { FlameGraph } from './flamegraph.js';
import { diffColour, value } from './format.js';
import { findPath, fromFlamebearer, functionTable, pathOf } from './graph.js';
import { FunctionTable } from './table.js';
import { sides } from './compare.js';
import { granularityToggle, orientationToggle, searchBox } from './single.js';

/**
 * @typedef {import('./state.js').State} State
 * @typedef {import('./main.js').Context} Context
 */

export function legend() {
  const stops = [-1, -0.5, -0.2, 0, 0.2, 0.5, 1];
  return h(
    'div',
    { class: 'legend', 'aria-label': 'diff legend' },
    h('span', {}, 'shrank'),
    stops.map((c) => {
      const swatch = h('span', { class: 'swatch', title: `${c > 0 ? '+' : ''}${c * 100} %` }, `${c > 0 ? '+' : ''}${c * 100}%`);
      swatch.style.background = diffColour(c);
      return swatch;
    }),
    h('span', {}, 'grew'),
  );
}

/**
 * @param {HTMLElement} root
 * @param {State} state
 * @param {Context} ctx
 */
export async function mount(root, state, ctx) {
  const s = sides(state, ctx);
  const status = h('div', { class: 'status', role: 'status' }, 'Loading…');
  const graphPane = h('div', { class: 'pane graph-pane' });
  const tablePane = h('div', { class: 'pane table-pane' });
  const fg = new FlameGraph(graphPane, ctx.tooltip, {
    orientation: state.orient,
    title: 'diff',
    onZoom: (id) => ctx.replace({ zoom: id ? pathOf(/** @type {any} */ (fg.graph), id).join(';') : '' }),
  });
  const table = new FunctionTable(tablePane, { onSelect: (name) => fg.setHighlight(name) });
  const search = searchBox(state.search, (pattern) => {
    ctx.replace({ search: pattern });
    fg.setSearch(pattern);
    return '';
  });
  const params = {
    leftQuery: s.leftQuery.query,
    leftFrom: s.leftQuery.from,
    leftUntil: s.leftQuery.until,
    rightQuery: s.rightQuery.query,
    rightFrom: s.rightQuery.from,
    rightUntil: s.rightQuery.until,
    maxNodes: state.maxNodes,
    aggregation: api.aggregation(state),
  };
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    search.el,
    legend(),
    h('span', { class: 'spacer' }),
    granularityToggle(state, ctx),
    orientationToggle(state, ctx, () => [fg]),
    exportMenu({ query: () => null, canvas: () => fg.canvas, name: () => `${state.app}-diff`, diffJson: () => api.url('render-diff', params), empty: () => !fg.graph || fg.graph.numTicks === 0 }),
  );
  replace(root, s.el, toolbar, status, h('div', { class: 'panes diff' }, tablePane, graphPane));
  ctx.expose({ view: 'diff', graphs: { main: fg }, table });
  let d;
  let l;
  let r;
  try {
    [d, l, r] = await Promise.all([api.renderDiff(params), api.render({ ...s.leftQuery, maxNodes: 1 }), api.render({ ...s.rightQuery, maxNodes: 1 })]);
  } catch (e) {
    failed(status, e);
    return;
  }
  s.left.timeline.set(timelineOf(l.timeline, '#5b7fd6'));
  s.right.timeline.set(timelineOf(r.timeline, '#d9534f'));
  const graph = fromFlamebearer(d.flamebearer, d.metadata, { leftTicks: d.leftTicks, rightTicks: d.rightTicks });
  fg.setGraph(graph, state.zoom ? findPath(graph, state.zoom.split(';')) : 0);
  table.set(graph, functionTable(graph));
  status.textContent = `Baseline ${value(d.leftTicks, graph.units)}, comparison ${value(d.rightTicks, graph.units)}; colour: change of each node's share`;
  if (state.search) fg.setSearch(state.search);
  ctx.ready();
}
