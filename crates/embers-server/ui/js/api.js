// @ts-check
// The server's query API (the same one Grafana and the CLI use). Paths are relative, so
// the UI also works behind a reverse proxy under a prefix. Every call goes through
// `authFetch` (auth.js), which sends the token when the server asks for one.

import { authFetch } from './auth.js';

/**
 * @typedef {{ name: string, profileTypes: string[], legacyNames: string[] }} App
 * @typedef {{ names: string[], levels: number[][], numTicks: number, maxSelf: number }} Flamebearer
 * @typedef {{ startTime: number, samples: number[], durationDelta: number }} TimelineData
 * @typedef {{ flamebearer: Flamebearer, metadata: { units: string, sampleRate: number, format: string },
 *   timeline: TimelineData }} Render
 * @typedef {{ flamebearer: Flamebearer, metadata: { units: string, sampleRate: number },
 *   leftTicks: number, rightTicks: number }} RenderDiff
 */

/** A query error the server explained (HTTP 4xx/5xx with a message). */
export class ApiError extends Error {}

/**
 * @param {string} path
 * @param {Record<string, string | number | undefined>} params
 */
export function url(path, params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') p.set(k, String(v));
  return `${path}?${p}`;
}

/**
 * @param {string} path
 * @param {Record<string, string | number | undefined>} params
 * @param {AbortSignal} [signal]
 */
async function getJson(path, params, signal) {
  return answer(await authFetch(url(path, params), { signal }));
}

/**
 * A response's JSON, or an {@link ApiError} with the server's message (`error` in our
 * APIs, `message` in Connect's error shape).
 * @param {Response} res
 */
export async function answer(res) {
  const text = await res.text();
  if (!res.ok) {
    let message = text;
    try {
      const e = JSON.parse(text);
      message = e.error ?? e.message ?? text;
    } catch {
      // not JSON: the text is the message
    }
    throw new ApiError(`${res.status}: ${message}`);
  }
  return JSON.parse(text);
}

/** Quotes a label value for a selector. @param {string} v */
export function quote(v) {
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * The selector for an app's profile type narrowed by label matchers (`region="eu"`).
 * @param {string} type profile type id
 * @param {string} app service name
 * @param {string} matchers
 */
export function selector(type, app, matchers) {
  const m = [`service_name=${quote(app)}`];
  if (matchers.trim()) m.push(matchers.trim());
  return `${type}{${m.join(', ')}}`;
}

/**
 * The `aggregation` parameter for a view's state: nodes per function unless the "by
 * line" switch is on.
 * @param {{by: string}} state
 */
export function aggregation(state) {
  return state.by === 'line' ? 'line' : undefined;
}

/** @returns {Promise<App[]>} */
export function apps() {
  return getJson('apps', { from: 'now-30d' });
}

/** @param {string} query @returns {Promise<string[]>} */
export function labels(query) {
  return getJson('labels', { query, from: 'now-30d' });
}

/** @param {string} query @param {string} label @returns {Promise<string[]>} */
export function labelValues(query, label) {
  return getJson('label-values', { query, label, from: 'now-30d' });
}

/**
 * @param {{query: string, from: string, until: string, maxNodes?: string | number, aggregation?: string}} p
 * @param {AbortSignal} [signal]
 * @returns {Promise<Render>}
 */
export function render(p, signal) {
  return getJson('render', { ...p, format: 'json' }, signal);
}

/**
 * @param {{leftQuery: string, leftFrom: string, leftUntil: string,
 *   rightQuery: string, rightFrom: string, rightUntil: string, maxNodes?: string, aggregation?: string}} p
 * @param {AbortSignal} [signal]
 * @returns {Promise<RenderDiff>}
 */
export function renderDiff(p, signal) {
  return getJson('render-diff', p, signal);
}
