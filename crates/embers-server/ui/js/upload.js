// @ts-check
// The Upload view: look at one profile file without sending it into the time series.
// Drop or choose a file (pprof, JFR, speedscope or folded stacks); the server keeps it
// (adhocprofiles.v1, the API Grafana's ad-hoc view calls) and answers its flame graph,
// drawn here with the table as the Single view draws them. Files with several profile
// types get a type picker; any two uploads can be diffed, drawn as the Diff view draws.
// The URL holds the upload (`id`), its type (`ptype`) and the diff's other side (`rid`).

import { answer } from './api.js';
import { authFetch } from './auth.js';
import { failed } from './controls.js';
import { h, replace } from './dom.js';
import { legend } from './diff.js';
import { FlameGraph } from './flamegraph.js';
import { value } from './format.js';
import { findPath, fromFlamebearer, functionTable, pathOf } from './graph.js';
import { FunctionTable } from './table.js';
import { orientationToggle, searchBox } from './single.js';

/**
 * @typedef {import('./state.js').State} State
 * @typedef {import('./main.js').Context} Context
 * @typedef {{ id: string, name: string, uploadedAt: string }} Meta
 * @typedef {{ id: string, name: string, uploadedAt: string, profileType: string,
 *   profileTypes: string[], flamebearerProfile: string }} Profile
 */

const SERVICE = 'adhocprofiles.v1.AdHocProfileService';

/**
 * Calls a method of the ad-hoc service in Connect's JSON encoding.
 * @param {string} method
 * @param {Record<string, unknown>} body
 */
async function call(method, body) {
  const res = await authFetch(`${SERVICE}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return answer(res);
}

/** @param {ArrayBuffer} buf */
function base64(buf) {
  const bytes = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** @param {string} ms */
function when(ms) {
  return new Date(Number(ms)).toLocaleString();
}

/**
 * The drop zone and file picker; `onFile` gets the chosen file.
 * @param {(f: File) => void} onFile
 */
function dropZone(onFile) {
  const input = /** @type {HTMLInputElement} */ (h('input', { type: 'file', id: 'upload-file', 'aria-label': 'profile file' }));
  input.addEventListener('change', () => input.files?.[0] && onFile(input.files[0]));
  const zone = h('label', { class: 'dropzone', for: 'upload-file' }, 'Drop a profile file here or ', h('u', {}, 'choose one'), ' (pprof, JFR, speedscope, folded stacks)', input);
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const f = e.dataTransfer?.files?.[0];
    if (f) onFile(f);
  });
  return zone;
}

/**
 * A picker of uploads.
 * @param {string} label
 * @param {Meta[]} uploads
 * @param {string} selected
 * @param {string} none what the empty choice says
 * @param {(id: string) => void} onPick
 */
function picker(label, uploads, selected, none, onPick) {
  const el = /** @type {HTMLSelectElement} */ (
    h(
      'select',
      { 'aria-label': label, class: 'upload-pick' },
      h('option', { value: '' }, none),
      uploads.map((u) => h('option', { value: u.id, selected: u.id === selected }, `${u.name} · ${when(u.uploadedAt)}`)),
    )
  );
  el.addEventListener('change', () => onPick(el.value));
  return h('label', {}, `${label} `, el);
}

/**
 * @param {HTMLElement} root
 * @param {State} state
 * @param {Context} ctx
 */
export async function mount(root, state, ctx) {
  const status = h('div', { class: 'status', role: 'status' });
  const graphPane = h('div', { class: 'pane graph-pane' });
  const tablePane = h('div', { class: 'pane table-pane' });
  const fg = new FlameGraph(graphPane, ctx.tooltip, {
    orientation: state.orient,
    title: 'upload',
    onZoom: (id) => ctx.replace({ zoom: id ? pathOf(/** @type {any} */ (fg.graph), id).join(';') : '' }),
  });
  const table = new FunctionTable(tablePane, { onSelect: (name) => fg.setHighlight(name) });
  const search = searchBox(state.search, (pattern) => {
    ctx.replace({ search: pattern });
    fg.setSearch(pattern);
    return '';
  });
  const upload = async (/** @type {File} */ file) => {
    status.classList.remove('error');
    status.textContent = `Uploading ${file.name}…`;
    try {
      const res = await call('Upload', { name: file.name, profile: base64(await file.arrayBuffer()) });
      ctx.navigate({ id: res.id, ptype: '', rid: '', zoom: '', search: '' });
    } catch (e) {
      status.textContent = `Upload failed: ${e instanceof Error ? e.message : e}`;
      status.classList.add('error');
    }
  };
  /** @type {Meta[]} */
  let uploads = [];
  try {
    uploads = (await call('List', {})).profiles ?? [];
  } catch (e) {
    replace(root, dropZone(upload), status);
    failed(status, e);
    return;
  }
  const controls = h('div', { class: 'toolbar upload-controls' }, picker('Profile', uploads, state.id, 'Pick an upload…', (id) => ctx.navigate({ id, ptype: '', rid: '', zoom: '' })));
  const toolbar = h('div', { class: 'toolbar' }, search.el, h('span', { class: 'spacer' }), orientationToggle(state, ctx, () => [fg]));
  const panes = h('div', { class: state.rid ? 'panes diff' : 'panes' }, tablePane, graphPane);
  replace(root, dropZone(upload), controls, toolbar, status, panes);
  ctx.expose({ view: 'upload', graphs: { main: fg }, table, uploads });
  if (!state.id) {
    status.textContent = uploads.length ? 'Pick an upload, or upload a file.' : 'No uploads yet.';
    graphPane.hidden = tablePane.hidden = true;
    ctx.ready();
    return;
  }
  status.textContent = 'Loading…';
  /** @type {Profile} */
  let shown;
  try {
    shown = await call('Get', { id: state.id, profileType: state.ptype || undefined });
  } catch (e) {
    failed(status, e);
    ctx.ready();
    return;
  }
  if (shown.profileTypes.length > 1) {
    const types = /** @type {HTMLSelectElement} */ (
      h('select', { 'aria-label': 'profile type', id: 'upload-type' }, shown.profileTypes.map((t) => h('option', { value: t, selected: t === shown.profileType }, t)))
    );
    types.addEventListener('change', () => ctx.navigate({ ptype: types.value, zoom: '' }));
    controls.append(h('label', {}, 'Type ', types));
  }
  const others = uploads.filter((u) => u.id !== state.id);
  controls.append(picker('Diff with', others, state.rid, 'No diff', (rid) => ctx.navigate({ rid, zoom: '' })));
  let graph;
  try {
    if (state.rid) {
      const d = await call('Diff', { leftId: state.id, rightId: state.rid, profileType: shown.profileType });
      const fb = JSON.parse(d.flamebearerProfile);
      graph = fromFlamebearer(fb.flamebearer, fb.metadata, { leftTicks: fb.leftTicks, rightTicks: fb.rightTicks });
      toolbar.insertBefore(legend(), toolbar.children[1]);
      status.textContent = `Baseline ${value(fb.leftTicks, graph.units)}, comparison ${value(fb.rightTicks, graph.units)}; colour: change of each node's share`;
    } else {
      const fb = JSON.parse(shown.flamebearerProfile);
      graph = fromFlamebearer(fb.flamebearer, fb.metadata);
      status.textContent = `${shown.name} · ${shown.profileType}: ${value(graph.numTicks, graph.units)} in total`;
    }
  } catch (e) {
    failed(status, e);
    ctx.ready();
    return;
  }
  fg.setGraph(graph, state.zoom ? findPath(graph, state.zoom.split(';')) : 0);
  table.set(graph, functionTable(graph));
  if (state.search) fg.setSearch(state.search);
  ctx.expose({ view: 'upload', graphs: { main: fg }, table, uploads, shown });
  ctx.ready();
}
