// @ts-check
// The comparison view: two selections (tags and/or time ranges, each on its own timeline)
// and their flame graphs side by side. `sides` is shared with the diff view.

import * as api from './api.js';
import { failed, selectionPanel, timelineOf } from './controls.js';
import { h, replace } from './dom.js';
import { exportMenu } from './export.js';
import { FlameGraph } from './flamegraph.js';
import { percent, value } from './format.js';
import { fromFlamebearer } from './graph.js';
import { right } from './state.js';
import { granularityToggle, orientationToggle, searchBox } from './single.js';

/**
 * @typedef {import('./state.js').State} State
 * @typedef {import('./main.js').Context} Context
 */

/**
 * The baseline (left) and comparison (right) selection panels, and each side's query.
 * @param {State} state
 * @param {Context} ctx
 */
export function sides(state, ctx) {
  const r = right(state);
  const base = () => api.selector(state.type, state.app, '');
  const left = selectionPanel({
    title: 'Baseline',
    q: state.q,
    from: state.from,
    until: state.until,
    base,
    onChange: (q, from, until) => ctx.navigate({ q, from, until }),
  });
  const rightPanel = selectionPanel({
    title: 'Comparison',
    q: r.q,
    from: r.from,
    until: r.until,
    base,
    onChange: (q, from, until) => ctx.navigate({ rq: q, rfrom: from, runtil: until }),
  });
  left.el.classList.add('left');
  rightPanel.el.classList.add('right');
  return {
    left,
    right: rightPanel,
    leftQuery: { query: api.selector(state.type, state.app, state.q), from: state.from, until: state.until },
    rightQuery: { query: api.selector(state.type, state.app, r.q), from: r.from, until: r.until },
    el: h('div', { class: 'sides' }, left.el, rightPanel.el),
  };
}

/**
 * @param {HTMLElement} root
 * @param {State} state
 * @param {Context} ctx
 */
export async function mount(root, state, ctx) {
  const s = sides(state, ctx);
  const status = h('div', { class: 'status', role: 'status' }, 'Loading…');
  const leftPane = h('div', { class: 'pane' });
  const rightPane = h('div', { class: 'pane' });
  const lg = new FlameGraph(leftPane, ctx.tooltip, { orientation: state.orient, title: 'baseline' });
  const rg = new FlameGraph(rightPane, ctx.tooltip, { orientation: state.orient, title: 'comparison' });
  const leftMatched = h('span', { class: 'matched left' });
  const rightMatched = h('span', { class: 'matched right' });
  const describe = (/** @type {FlameGraph} */ g, /** @type {number} */ m) =>
    g.graph ? `${percent(m, g.graph.numTicks)} (${value(m, g.graph.units, g.graph.numTicks)})` : '';
  const search = searchBox(state.search, (pattern) => {
    ctx.replace({ search: pattern });
    const lm = lg.setSearch(pattern);
    const rm = rg.setSearch(pattern);
    leftMatched.textContent = pattern ? `Baseline: ${describe(lg, lm)}` : '';
    rightMatched.textContent = pattern ? `Comparison: ${describe(rg, rm)}` : '';
    return '';
  });
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    search.el,
    leftMatched,
    rightMatched,
    h('span', { class: 'spacer' }),
    granularityToggle(state, ctx),
    orientationToggle(state, ctx, () => [lg, rg]),
    exportMenu({ query: () => ({ ...s.leftQuery, aggregation: api.aggregation(state) }), canvas: () => lg.canvas, name: () => `${state.app}-baseline`, label: 'Export baseline', empty: () => !lg.graph || lg.graph.numTicks === 0 }),
    exportMenu({ query: () => ({ ...s.rightQuery, aggregation: api.aggregation(state) }), canvas: () => rg.canvas, name: () => `${state.app}-comparison`, label: 'Export comparison', empty: () => !rg.graph || rg.graph.numTicks === 0 }),
  );
  replace(
    root,
    s.el,
    toolbar,
    status,
    h('div', { class: 'panes compare' }, h('div', { class: 'side' }, h('h3', {}, 'Baseline'), leftPane), h('div', { class: 'side' }, h('h3', {}, 'Comparison'), rightPane)),
  );
  ctx.expose({ view: 'compare', graphs: { left: lg, right: rg } });
  let l;
  let r;
  try {
    const aggregation = api.aggregation(state);
    [l, r] = await Promise.all([api.render({ ...s.leftQuery, maxNodes: state.maxNodes, aggregation }), api.render({ ...s.rightQuery, maxNodes: state.maxNodes, aggregation })]);
  } catch (e) {
    failed(status, e);
    return;
  }
  s.left.timeline.set(timelineOf(l.timeline, '#5b7fd6'));
  s.right.timeline.set(timelineOf(r.timeline, '#d9534f'));
  lg.setGraph(fromFlamebearer(l.flamebearer, l.metadata));
  rg.setGraph(fromFlamebearer(r.flamebearer, r.metadata));
  status.textContent = `Baseline ${value(l.flamebearer.numTicks, l.metadata)}, comparison ${value(r.flamebearer.numTicks, r.metadata)}`;
  if (state.search) search.input.dispatchEvent(new Event('input'));
  ctx.ready();
}
