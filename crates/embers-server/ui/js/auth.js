// @ts-check
// Signing in when the server asks for tokens (`embers server --auth-file`). The UI asks
// `auth/whoami` first: with auth off it answers `auth: false` and nothing here shows.
// With auth on, a missing or refused token (401) opens a small dialog asking for one;
// the token is checked against whoami before it is kept, in sessionStorage (gone when
// the tab closes, never in a cookie, so other sites cannot make the browser send it),
// and sent as `Authorization: Bearer …` by `authFetch`, the one way the UI calls the
// server. A 401 from any later call (the token was revoked) asks again.

import { h } from './dom.js';

const KEY = 'embers.token';

/**
 * What whoami says about the credentials sent.
 * @typedef {{ tenant: string, scopes: string[], auth: boolean }} Whoami
 */

/** The token kept for this tab, if any. */
export function token() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: ask every time
  }
}

/** Forgets the token. */
function forget() {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // nothing kept
  }
}

/** @type {(() => void) | null} */
let onExpired = null;
/**
 * The sign-in under way (whoami, maybe the dialog): later 401s join it.
 * @type {Promise<Whoami> | null}
 */
let pending = null;

/**
 * Calls the server with the kept token (or `candidate`, when checking one). A 401 to a
 * call made with the kept token means it no longer works: the registered handler asks
 * for another.
 * @param {string} input
 * @param {RequestInit} [init]
 * @param {string | null} [candidate]
 */
export async function authFetch(input, init = {}, candidate) {
  const t = candidate === undefined ? token() : candidate;
  const headers = new Headers(init.headers);
  if (t) headers.set('authorization', `Bearer ${t}`);
  // No cookies or cached HTTP credentials: the token is the credential, and with
  // credentials included a 401 carrying `WWW-Authenticate: Basic` makes the browser
  // open its own login prompt over the page.
  const res = await fetch(input, { ...init, headers, credentials: 'omit' });
  if (res.status === 401 && candidate === undefined && !pending) onExpired?.();
  return res;
}

/**
 * Whoami for a token: its answer, or `null` when the server refuses the token (401).
 * @param {string | null} t
 * @returns {Promise<Whoami | null>}
 */
async function whoami(t) {
  const res = await authFetch('auth/whoami', {}, t);
  if (res.status === 401) return null;
  if (!res.ok) throw new Error(`${res.status}: ${(await res.text()).trim()}`);
  return res.json();
}


/**
 * Resolves with whoami once the server accepts this tab's credentials: at once when auth
 * is off or the kept token works, else after the user gives a token the server accepts.
 * @param {string} [reason] shown in the dialog (why it asks again)
 * @returns {Promise<Whoami>}
 */
export function signIn(reason) {
  pending ??= (async () => {
    const kept = token();
    const who = await whoami(kept);
    if (who) return who;
    if (kept) forget();
    return ask(kept && !reason ? 'The saved token is no longer accepted; enter a token.' : reason ?? '');
  })().finally(() => {
    pending = null;
  });
  return pending;
}

/** Forgets the token and asks for one again. */
export function signOut() {
  forget();
  return signIn('Signed out. Enter a token to sign in again.');
}

/**
 * Registers what to do when the kept token stops working (the UI signs in again and
 * redraws).
 * @param {() => void} handler
 */
export function whenExpired(handler) {
  onExpired = () => {
    forget();
    handler();
  };
}

/**
 * The token dialog: a labelled password field (focused; Enter submits), the server's
 * verdict in an alert region, and no way to dismiss it without a working token (there is
 * nothing to show without one).
 * @param {string} message
 * @returns {Promise<Whoami>}
 */
function ask(message) {
  return new Promise((resolve) => {
    const input = h('input', {
      id: 'token-input',
      type: 'password',
      name: 'token',
      autocomplete: 'off',
      spellcheck: 'false',
      required: true,
      'aria-describedby': 'token-error',
    });
    const error = h('p', { id: 'token-error', class: 'token-error', role: 'alert' }, message);
    const submit = h('button', { type: 'submit' }, 'Sign in');
    const form = h(
      'form',
      {},
      h('h2', { id: 'token-title' }, 'Sign in'),
      h('p', {}, 'This server asks for an access token (one of its auth file, e.g. made by ', h('code', {}, 'embers token new'), ').'),
      h('label', { for: 'token-input' }, 'Access token'),
      input,
      error,
      submit,
    );
    const dialog = h('dialog', { id: 'token-dialog', class: 'token-dialog', 'aria-labelledby': 'token-title' }, form);
    dialog.addEventListener('cancel', (e) => e.preventDefault());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const t = input.value.trim();
      if (!t) return;
      submit.disabled = true;
      error.textContent = 'Checking…';
      try {
        const who = await whoami(t);
        if (who) {
          try {
            sessionStorage.setItem(KEY, t);
          } catch {
            // storage disabled: this page keeps working until it is reloaded
          }
          dialog.close();
          dialog.remove();
          resolve(who);
          return;
        }
        error.textContent = 'The server refused this token. Check it and try again.';
      } catch (err) {
        error.textContent = `Cannot check the token: ${err instanceof Error ? err.message : err}`;
      } finally {
        submit.disabled = false;
      }
      input.select();
      input.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}
