// @ts-check
// The UI's entry point: reads the state from the URL, draws the header (app and profile
// type picker, view tabs) and mounts the view. Views change the URL through the context:
// `navigate` for a new view state (a history entry, the view is re-mounted), `replace` for
// small changes a view applies itself (search, zoom, orientation).

import * as api from './api.js';
import * as auth from './auth.js';
import { byId, h, replace } from './dom.js';
import * as state from './state.js';
import * as single from './single.js';
import * as compare from './compare.js';
import * as diff from './diff.js';
import * as explore from './explore.js';
import * as upload from './upload.js';

/**
 * @typedef {import('./state.js').State} State
 * @typedef {{
 *   state: State,
 *   tooltip: HTMLElement,
 *   navigate: (patch: Partial<State>) => void,
 *   replace: (patch: Partial<State>) => void,
 *   link: (patch: Partial<State>) => string,
 *   expose: (hooks: Record<string, any>) => void,
 *   ready: () => void,
 * }} Context
 */

const VIEWS = { single, compare, diff, explore, upload };
const TABS = /** @type {const} */ ([
  ['single', 'Single'],
  ['compare', 'Comparison'],
  ['diff', 'Diff'],
  ['explore', 'Tag explorer'],
  ['upload', 'Upload'],
]);

/** The hooks the views expose (the end-to-end tests read them; so can a console user). */
const hooks = /** @type {any} */ (window).embers = { ready: false };

/** @type {api.App[]} */
let apps = [];
let mountCount = 0;

/**
 * The profile type a picker shows first: CPU where there is one.
 * @param {api.App} app
 */
function defaultType(app) {
  return app.profileTypes.find((t) => t.startsWith('process_cpu')) ?? app.profileTypes[0] ?? '';
}

/** @param {string} type e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds` */
function typeLabel(type) {
  const [name, sample] = type.split(':');
  return name === sample || !sample ? name : `${name} (${sample})`;
}

/** @param {State} s */
function header(s) {
  const picker = h(
    'select',
    { id: 'app-picker', 'aria-label': 'application and profile type' },
    apps.flatMap((a) => a.profileTypes.map((t) => h('option', { value: JSON.stringify([a.name, t]), selected: a.name === s.app && t === s.type }, `${a.name} · ${typeLabel(t)}`))),
  );
  picker.addEventListener('change', () => {
    const [app, type] = JSON.parse(picker.value);
    navigate({ app, type, q: '', rq: '', zoom: '', fn: '', groupBy: '' });
  });
  const tabs = TABS.map(([view, label]) => h('a', { href: link({ view, zoom: '' }), class: view === s.view ? 'tab active' : 'tab', dataset: { view } }, label));
  replace(byId('header-controls'), picker, h('nav', { class: 'tabs' }, tabs));
}

/** @param {Partial<State>} patch */
function link(patch) {
  return state.serialize({ ...current(), ...patch }) || '?';
}

function current() {
  return state.parse(location.search);
}

/** @param {Partial<State>} patch */
function navigate(patch) {
  history.pushState(null, '', link(patch));
  mount();
}

/** @param {Partial<State>} patch */
function replaceState(patch) {
  history.replaceState(null, '', link(patch));
}

function emptyState() {
  replace(
    byId('view'),
    h(
      'section',
      { class: 'empty' },
      h('h2', {}, 'No profiles yet'),
      h('p', {}, 'Send some: profile a running Python or Ruby process with the agent,'),
      h('pre', {}, 'embers agent --server http://localhost:4040 --app my-app --tag region=us-east-1 --pid PID'),
      h('p', {}, 'or point a Pyroscope client (pyroscope-io, @pyroscope/nodejs, the pyroscope crate) at this server. This page lists the apps seen in the last 30 days.'),
    ),
  );
}

async function mount() {
  const mine = ++mountCount;
  hooks.ready = false;
  const s = current();
  if (!apps.length) {
    try {
      apps = await api.apps();
    } catch (e) {
      replace(byId('view'), h('div', { class: 'status error' }, `Cannot list apps: ${e instanceof Error ? e.message : e}`));
      return;
    }
  }
  if (s.view !== 'upload' && (!s.app || !s.type)) {
    const app = apps.find((a) => a.name === s.app) ?? apps[0];
    if (!app) {
      header(s);
      emptyState();
      hooks.ready = true;
      return;
    }
    s.app = app.name;
    s.type = defaultType(app);
    history.replaceState(null, '', state.serialize(s) || '?');
  }
  header(s);
  document.title = s.view === 'upload' ? 'Upload · Embers' : `${s.app} · Embers`;
  /** @type {Context} */
  const ctx = {
    state: s,
    tooltip: byId('tooltip'),
    navigate,
    replace: (patch) => {
      Object.assign(s, patch);
      replaceState(patch);
    },
    link,
    expose: (extra) => {
      if (mine === mountCount) Object.assign(hooks, { state: s }, extra);
    },
    ready: () => {
      if (mine === mountCount) hooks.ready = true;
    },
  };
  byId('tooltip').hidden = true;
  await VIEWS[s.view].mount(byId('view'), s, ctx);
}

/**
 * The signed-in tenant and a "Sign out" button, when the server asks for tokens.
 * @param {auth.Whoami} who
 */
function session(who) {
  const el = byId('session');
  if (!who.auth) {
    replace(el);
    return;
  }
  const out = h('button', { type: 'button', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', async () => {
    apps = [];
    replace(el);
    replace(byId('view'), h('div', { class: 'status' }, 'Signed out.'));
    hooks.ready = false;
    await signedIn(auth.signOut());
  });
  replace(el, h('span', { class: 'tenant', title: 'the tenant this token reads and writes' }, 'Tenant ', h('strong', { id: 'tenant' }, who.tenant)), out);
}

/**
 * Shows the session once signed in, then draws the view (again: another token may see
 * another tenant's apps).
 * @param {Promise<auth.Whoami>} signing
 */
async function signedIn(signing) {
  let who;
  try {
    who = await signing;
  } catch (e) {
    replace(byId('view'), h('div', { class: 'status error' }, `Cannot reach the server: ${e instanceof Error ? e.message : e}`));
    return;
  }
  apps = [];
  session(who);
  await mount();
}

auth.whenExpired(() => {
  replace(byId('session'));
  signedIn(auth.signIn('The server no longer accepts this token; enter a token.'));
});
window.addEventListener('popstate', () => mount());
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') byId('tooltip').hidden = true;
});
signedIn(auth.signIn());
