// @ts-check
// Inputs shared by the views: the label selector with autocomplete, the time range picker,
// and a "selection" panel (matchers + range + timeline) that compare and diff use twice.

import * as api from './api.js';
import { append, h, replace } from './dom.js';
import { Timeline } from './timeline.js';

export const PRESETS = [
  ['now-5m', 'Last 5 minutes'],
  ['now-15m', 'Last 15 minutes'],
  ['now-1h', 'Last hour'],
  ['now-6h', 'Last 6 hours'],
  ['now-24h', 'Last 24 hours'],
  ['now-7d', 'Last 7 days'],
  ['now-30d', 'Last 30 days'],
];

/**
 * A `{…}` label-selector input (`region="eu", vehicle=~"car|bike"`) that suggests label
 * names, then values of the label being typed, from the server.
 * @param {{ value: string, base: () => string, onChange: (v: string) => void, label?: string }} o
 */
export function labelInput(o) {
  const input = h('input', {
    type: 'text',
    class: 'labels-input',
    value: o.value,
    placeholder: 'region="us-east-1", vehicle=~"car|bike"',
    spellcheck: false,
    autocomplete: 'off',
    'aria-label': o.label ?? 'label selector',
  });
  const list = h('ul', { class: 'suggestions', hidden: true, role: 'listbox' });
  /** @type {string[]} */
  let items = [];
  let active = -1;
  /** @type {{ start: number, end: number, quoteValue: boolean }} */
  let slot = { start: 0, end: 0, quoteValue: false };

  const close = () => {
    list.hidden = true;
    active = -1;
  };
  const choose = (/** @type {string} */ item) => {
    const v = input.value;
    const text = slot.quoteValue ? `${item.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : `${item}=`;
    input.value = v.slice(0, slot.start) + text + v.slice(slot.end);
    const caret = slot.start + text.length;
    input.setSelectionRange(caret, caret);
    close();
    input.focus();
    if (slot.quoteValue) o.onChange(input.value.trim());
    else suggest();
  };
  const show = () => {
    replace(
      list,
      items.slice(0, 50).map((it, i) =>
        h('li', { class: i === active ? 'active' : '', role: 'option', onmousedown: (/** @type {Event} */ e) => (e.preventDefault(), choose(it)) }, it),
      ),
    );
    list.hidden = items.length === 0;
  };
  const suggest = async () => {
    const before = input.value.slice(0, input.selectionStart ?? input.value.length);
    const part = before.slice(Math.max(before.lastIndexOf(','), -1) + 1);
    const valueMatch = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!=|!~|=)\s*"([^"]*)$/.exec(part);
    try {
      if (valueMatch) {
        const [, name, , typed] = valueMatch;
        slot = { start: before.length - typed.length, end: before.length, quoteValue: true };
        const values = await api.labelValues(o.base(), name);
        items = values.filter((v) => v.toLowerCase().includes(typed.toLowerCase()));
      } else if (/^\s*[A-Za-z0-9_.]*$/.test(part)) {
        const typed = part.trim();
        slot = { start: before.length - typed.length, end: before.length, quoteValue: false };
        const names = await api.labels(o.base());
        items = names.filter((n) => !n.startsWith('__') && n.toLowerCase().startsWith(typed.toLowerCase()));
      } else {
        items = [];
      }
    } catch {
      items = [];
    }
    active = items.length ? 0 : -1;
    if (document.activeElement === input) show();
  };
  input.addEventListener('focus', suggest);
  input.addEventListener('input', suggest);
  input.addEventListener('blur', close);
  input.addEventListener('keydown', (e) => {
    if (!list.hidden && items.length) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        active = (active + (e.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length;
        show();
        e.preventDefault();
        return;
      }
      if ((e.key === 'Tab' || e.key === 'Enter') && active >= 0) {
        e.preventDefault();
        choose(items[active]);
        return;
      }
      if (e.key === 'Escape') {
        close();
        return;
      }
    }
    if (e.key === 'Enter') o.onChange(input.value.trim());
  });
  return h('div', { class: 'labels' }, h('span', { class: 'brace' }, '{'), input, h('span', { class: 'brace' }, '}'), list);
}

/** @param {string} t a time parameter: `now-1h` or Unix seconds */
function toLocalInput(t) {
  if (!/^\d+$/.test(t)) return '';
  const d = new Date(Number(t) * 1000);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Preset ranges and absolute from/until inputs.
 * @param {{ from: string, until: string, onChange: (from: string, until: string) => void }} o
 */
export function rangePicker(o) {
  const isPreset = o.until === 'now' && PRESETS.some(([v]) => v === o.from);
  const select = h(
    'select',
    { class: 'range-preset', 'aria-label': 'time range' },
    PRESETS.map(([v, label]) => h('option', { value: v, selected: isPreset && v === o.from }, label)),
    h('option', { value: 'custom', selected: !isPreset }, 'Custom range'),
  );
  const from = h('input', { type: 'datetime-local', step: 1, value: toLocalInput(o.from), 'aria-label': 'from' });
  const until = h('input', { type: 'datetime-local', step: 1, value: toLocalInput(o.until), 'aria-label': 'until' });
  const apply = h('button', { type: 'button' }, 'Apply');
  const custom = h('span', { class: 'range-custom', hidden: isPreset }, from, '–', until, apply);
  select.addEventListener('change', () => {
    if (select.value === 'custom') {
      custom.hidden = false;
      return;
    }
    o.onChange(select.value, 'now');
  });
  apply.addEventListener('click', () => {
    const f = Date.parse(from.value);
    const u = Date.parse(until.value);
    if (Number.isFinite(f) && Number.isFinite(u) && u > f) o.onChange(String(Math.floor(f / 1000)), String(Math.floor(u / 1000)));
  });
  return h('span', { class: 'range' }, select, custom);
}

/**
 * One selection: label matchers, a time range and its timeline (drag to narrow).
 * @param {{ title?: string, q: string, from: string, until: string, base: () => string,
 *   onChange: (q: string, from: string, until: string) => void }} o
 */
export function selectionPanel(o) {
  const el = h('section', { class: 'selection' });
  const tl = h('div', { class: 'timeline-box' });
  append(el, [
    o.title && h('h3', {}, o.title),
    h(
      'div',
      { class: 'selection-inputs' },
      labelInput({ value: o.q, base: o.base, onChange: (q) => o.onChange(q, o.from, o.until) }),
      rangePicker({ from: o.from, until: o.until, onChange: (f, u) => o.onChange(o.q, f, u) }),
    ),
    tl,
  ]);
  const timeline = new Timeline(tl, { onSelect: (f, u) => o.onChange(o.q, String(f), String(u)) });
  return { el, timeline };
}

/**
 * The timeline input for a render response, with the selected range shaded.
 * @param {import('./api.js').TimelineData} t
 * @param {string} colour
 */
export function timelineOf(t, colour = '#d9534f') {
  return { start: t.startTime, step: t.durationDelta, series: [{ label: 'samples', colour, samples: t.samples }] };
}

/**
 * Shows a failed query in a view's status line (the server's message, as text).
 * @param {HTMLElement} status
 * @param {unknown} e
 */
export function failed(status, e) {
  status.textContent = `Query failed: ${e instanceof Error ? e.message : e}`;
  status.classList.add('error');
}
