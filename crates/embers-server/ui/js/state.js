// @ts-check
// Every view's state lives in the URL's query string, so a link reproduces what one sees.

/**
 * @typedef {'single' | 'compare' | 'diff' | 'explore' | 'upload'} ViewName
 * @typedef {{
 *   view: ViewName,
 *   app: string,
 *   type: string,
 *   q: string, from: string, until: string,
 *   rq: string, rfrom: string, runtil: string,
 *   search: string,
 *   show: 'both' | 'graph' | 'table',
 *   orient: 'icicle' | 'flame',
 *   zoom: string,
 *   fn: string,
 *   groupBy: string,
 *   maxNodes: string,
 *   by: 'function' | 'line',
 *   id: string, ptype: string, rid: string,
 * }} State
 */

/** @type {State} */
export const DEFAULTS = {
  view: 'single',
  app: '',
  type: '',
  q: '',
  from: 'now-1h',
  until: 'now',
  rq: '',
  rfrom: '',
  runtil: '',
  search: '',
  show: 'both',
  orient: 'icicle',
  zoom: '',
  fn: '',
  groupBy: '',
  maxNodes: '',
  by: 'function',
  // The Upload view: the upload shown, its profile type, the upload it is diffed with.
  id: '',
  ptype: '',
  rid: '',
};

const VIEWS = ['single', 'compare', 'diff', 'explore', 'upload'];

/**
 * The state in a URL's query string (unknown keys ignored, bad values defaulted).
 * @param {string} search `location.search`
 * @returns {State}
 */
export function parse(search) {
  const p = new URLSearchParams(search);
  /** @type {any} */
  const s = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    const v = p.get(key);
    if (v !== null) s[key] = v;
  }
  if (!VIEWS.includes(s.view)) s.view = 'single';
  if (!['both', 'graph', 'table'].includes(s.show)) s.show = 'both';
  if (!['icicle', 'flame'].includes(s.orient)) s.orient = 'icicle';
  if (!['function', 'line'].includes(s.by)) s.by = 'function';
  return s;
}

/**
 * The query string for a state (defaults left out, so links stay short).
 * @param {State} state
 */
export function serialize(state) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) {
    if (v !== /** @type {any} */ (DEFAULTS)[k]) p.set(k, v);
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}

/**
 * The right-hand selection of compare and diff views: the left one where not set.
 * @param {State} s
 */
export function right(s) {
  return { q: s.rq || s.q, from: s.rfrom || s.from, until: s.runtil || s.until };
}
