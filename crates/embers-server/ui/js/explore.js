// @ts-check
// The tag explorer: the selected app grouped by one tag, each value's share of the total
// and its timeline, with jumps to the single, comparison and diff views.

import * as api from './api.js';
import { failed, selectionPanel } from './controls.js';
import { h, replace } from './dom.js';
import { percent, value } from './format.js';
import { Timeline } from './timeline.js';

/** The most tag values shown (the heaviest are kept). */
const MAX_VALUES = 30;
const PALETTE = ['#d9534f', '#5b7fd6', '#5cb85c', '#f0ad4e', '#8e6cc4', '#2bb0b0', '#c4609a', '#7f8c4d', '#b0703c', '#4d6a8c'];

/**
 * @typedef {import('./state.js').State} State
 * @typedef {import('./main.js').Context} Context
 */

/** @param {string} q @param {string} tag @param {string} v */
function narrowed(q, tag, v) {
  const m = `${tag}=${api.quote(v)}`;
  return q.trim() ? `${q.trim()}, ${m}` : m;
}

/**
 * @param {HTMLElement} root
 * @param {State} state
 * @param {Context} ctx
 */
export async function mount(root, state, ctx) {
  const base = api.selector(state.type, state.app, state.q);
  const panel = selectionPanel({
    q: state.q,
    from: state.from,
    until: state.until,
    base: () => api.selector(state.type, state.app, ''),
    onChange: (q, from, until) => ctx.navigate({ q, from, until }),
  });
  const status = h('div', { class: 'status', role: 'status' }, 'Loading…');
  const picker = h('select', { class: 'group-by', 'aria-label': 'group by tag' });
  const body = h('div', { class: 'explore-body' });
  replace(root, panel.el, h('div', { class: 'toolbar' }, h('label', {}, 'Group by tag ', picker)), status, body);
  ctx.expose({ view: 'explore' });

  let names;
  try {
    names = (await api.labels(base)).filter((n) => !n.startsWith('__') && n !== 'service_name');
  } catch (e) {
    failed(status, e);
    return;
  }
  const groupBy = state.groupBy && names.includes(state.groupBy) ? state.groupBy : names[0] ?? '';
  replace(picker, names.map((n) => h('option', { value: n, selected: n === groupBy }, n)));
  picker.addEventListener('change', () => ctx.navigate({ groupBy: picker.value }));
  if (!groupBy) {
    status.textContent = 'This app has no tags to group by.';
    ctx.ready();
    return;
  }

  let rows;
  try {
    const values = await api.labelValues(base, groupBy);
    rows = await Promise.all(
      values.map(async (v) => {
        const r = await api.render({ query: api.selector(state.type, state.app, narrowed(state.q, groupBy, v)), from: state.from, until: state.until, maxNodes: 1 });
        return { value: v, total: r.flamebearer.numTicks, timeline: r.timeline, units: r.metadata };
      }),
    );
  } catch (e) {
    failed(status, e);
    return;
  }
  rows.sort((a, b) => b.total - a.total);
  const shown = rows.slice(0, MAX_VALUES);
  const all = rows.reduce((s, r) => s + r.total, 0);
  const units = rows[0]?.units ?? { units: 'samples', sampleRate: 100 };
  const colour = (/** @type {number} */ i) => PALETTE[i % PALETTE.length];

  // The selection's timeline shows one line per value.
  const t0 = shown[0]?.timeline;
  panel.timeline.set({ start: t0?.startTime ?? 0, step: t0?.durationDelta ?? 10, series: shown.map((r, i) => ({ label: r.value, colour: colour(i), samples: r.timeline.samples })) });

  let baseline = shown[0]?.value ?? '';
  let comparison = shown[1]?.value ?? baseline;
  const go = (/** @type {'compare' | 'diff'} */ view) =>
    ctx.navigate({
      view,
      q: narrowed(state.q, groupBy, baseline),
      rq: narrowed(state.q, groupBy, comparison),
      rfrom: '',
      runtil: '',
      zoom: '',
    });
  const radio = (/** @type {string} */ group, /** @type {string} */ v, /** @type {boolean} */ checked, /** @type {(v: string) => void} */ set) =>
    h('input', { type: 'radio', name: group, value: v, checked, 'aria-label': `${group} ${v}`, onchange: () => set(v) });
  const table = h(
    'table',
    { class: 'explore' },
    h('thead', {}, h('tr', {}, ['', groupBy, 'Total', 'Share', 'Over time', 'Baseline', 'Comparison', ''].map((c) => h('th', {}, c)))),
    h(
      'tbody',
      {},
      shown.map((r, i) => {
        const spark = h('td', { class: 'spark' });
        const swatch = h('span', { class: 'swatch' });
        swatch.style.background = colour(i);
        const tr = h(
          'tr',
          { dataset: { value: r.value } },
          h('td', {}, swatch),
          h('td', { class: 'tag-value' }, r.value),
          h('td', { class: 'num' }, value(r.total, units, all)),
          h('td', { class: 'num share' }, percent(r.total, all)),
          spark,
          h('td', {}, radio('baseline', r.value, r.value === baseline, (v) => (baseline = v))),
          h('td', {}, radio('comparison', r.value, r.value === comparison, (v) => (comparison = v))),
          h('td', {}, h('a', { href: ctx.link({ view: 'single', q: narrowed(state.q, groupBy, r.value), zoom: '', fn: '' }), class: 'open' }, 'Flame graph')),
        );
        new Timeline(spark, { height: 26 }).set({ start: r.timeline.startTime, step: r.timeline.durationDelta, series: [{ label: r.value, colour: colour(i), samples: r.timeline.samples }] });
        return tr;
      }),
    ),
  );
  replace(
    body,
    table,
    h(
      'div',
      { class: 'toolbar' },
      h('button', { type: 'button', class: 'go-compare', onclick: () => go('compare') }, 'Compare baseline and comparison'),
      h('button', { type: 'button', class: 'go-diff', onclick: () => go('diff') }, 'Diff baseline → comparison'),
    ),
  );
  status.textContent = `${rows.length} values of ${groupBy}, ${value(all, units)} in total${rows.length > MAX_VALUES ? `; the ${MAX_VALUES} heaviest shown` : ''}`;
  ctx.ready();
}
