// Drives the UI's sign-in in headless Chromium against a real `embers server --auth-file`:
// the token prompt, a wrong token refused, the right one showing its tenant's flame graph,
// a same-origin upload (a POST the Origin check must let through), a token revoked in the
// auth file bringing the prompt back on the next page load and on the next call in a
// page already open, another tenant's token, and sign out. Prints what the page showed
// as JSON for crates/embers-cli/tests/ui_auth.rs.
//   node auth.mjs BASE_URL SETUP_JSON SCREENSHOT_DIR
// SETUP_JSON: {"authFile", "tokens": {"a", "b", "c"}, "revokeA", "revokeB", "folded"}:
// revokeA and revokeB are the auth file's texts without token a, then without b too (the
// server reloads the file on change); folded is a file to upload.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './lib/browser.mjs';
import { painted } from './lib/canvas.mjs';

const [base, setupJson, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node auth.mjs BASE_URL SETUP_JSON SCREENSHOT_DIR');
  process.exit(2);
}
const setup = JSON.parse(setupJson);
const { a: tokenA, b: tokenB, c: tokenC } = setup.tokens;
mkdirSync(shots, { recursive: true });
const out = { errors: [], dialogs: [], requests: [] };

const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
page.on('pageerror', (e) => out.errors.push(e.message));
// 401s are expected here (that is how the page learns to ask); other console errors are not.
page.on('console', (m) => m.type() === 'error' && !m.text().includes('401') && out.errors.push(m.text()));
// A native dialog (the browser's own Basic-auth prompt, an alert) must never open.
page.on('dialog', async (d) => {
  out.dialogs.push(d.message());
  await d.dismiss();
});
// What the page sent: the Authorization header of each API call.
page.on('request', (r) => {
  const path = new URL(r.url()).pathname;
  if (!path.startsWith('/ui/') && path !== '/') out.requests.push({ path, method: r.method(), authorization: r.headers().authorization ?? null });
});

const ready = () => page.waitForFunction(() => window.embers && window.embers.ready, null, { timeout: 30000 });
const prompt = () => page.waitForSelector('#token-dialog[open]', { timeout: 30000 });
const stored = () => page.evaluate(() => sessionStorage.getItem('embers.token'));
/** What the prompt shows: focus, label, message. */
const dialogState = () =>
  page.evaluate(() => ({
    open: document.querySelector('#token-dialog')?.hasAttribute('open') ?? false,
    focused: document.activeElement?.id ?? null,
    label: document.querySelector('label[for="token-input"]')?.textContent ?? null,
    error: document.querySelector('#token-error')?.textContent ?? null,
    session: document.querySelector('#session')?.textContent ?? null,
  }));
async function enter(token) {
  await page.locator('#token-input').fill(token);
  await page.keyboard.press('Enter');
}
const session = () =>
  page.evaluate(() => ({
    tenant: document.querySelector('#tenant')?.textContent ?? null,
    signOut: document.querySelector('#sign-out') !== null,
    apps: Array.from(document.querySelectorAll('#app-picker option'), (o) => JSON.parse(o.value)[0]),
  }));

// 1. No token: the prompt, focused on the token field.
await page.goto(`${base}/?from=now-1h`);
await prompt();
out.first = await dialogState();
out.first.stored = await stored();
await page.screenshot({ path: join(shots, 'prompt.png') });

// 2. A wrong token: refused, the prompt stays with the error, nothing kept.
await enter('not-a-token-the-server-knows');
await page.waitForFunction(() => /refused/.test(document.querySelector('#token-error')?.textContent ?? ''), null, { timeout: 30000 });
out.wrong = await dialogState();
out.wrong.stored = await stored();
await page.screenshot({ path: join(shots, 'wrong-token.png') });

// 3. The right token: the tenant's flame graph and its name in the header.
await enter(tokenA);
await ready();
out.signedIn = { ...(await session()), stored: await stored(), dialog: (await dialogState()).open, painted: await painted(page) };
out.signedIn.numTicks = await page.evaluate(() => window.embers.graphs.main.graph.numTicks);
await page.screenshot({ path: join(shots, 'signed-in.png') });

// 4. A same-origin POST with the token: an upload in the Upload view.
await page.evaluate(() => (window.embers.ready = false));
await page.goto(`${base}/?view=upload`);
await ready();
await page.evaluate(() => (window.embers.ready = false));
await page.setInputFiles('#upload-file', setup.folded);
await ready();
out.upload = { numTicks: await page.evaluate(() => window.embers.graphs.main.graph.numTicks), id: new URL(page.url()).searchParams.get('id') };

/** Rewrites the auth file and waits until the server refuses `token`. */
async function revoke(text, token) {
  writeFileSync(setup.authFile, text);
  const deadline = Date.now() + 60000;
  for (;;) {
    const res = await fetch(`${base}/auth/whoami`, { headers: { authorization: `Bearer ${token}` } });
    if (res.status === 401) return;
    if (Date.now() > deadline) throw new Error(`the server still accepts a revoked token (${res.status})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// 5. Token A revoked in the auth file: loading the page again asks again and says why.
await revoke(setup.revokeA, tokenA);
await page.goto(`${base}/?from=now-1h`);
await prompt();
out.revoked = await dialogState();
out.revoked.stored = await stored();
await page.screenshot({ path: join(shots, 'revoked.png') });

// 6. Another tenant's token: only its apps.
await enter(tokenB);
await ready();
out.tenantB = { ...(await session()), stored: await stored() };

// 7. Token B revoked while its page is open: the next call (the "By line" switch, which
// queries again without loading the page) asks again.
await revoke(setup.revokeB, tokenB);
await page.click('button.by-line');
await prompt();
out.revokedInPage = await dialogState();
out.revokedInPage.stored = await stored();

// 8. Token C (team-b's too) carries on where the page was.
await page.evaluate(() => (window.embers.ready = false));
await enter(tokenC);
await ready();
out.tenantC = {
  ...(await session()),
  stored: await stored(),
  by: new URL(page.url()).searchParams.get('by'),
  numTicks: await page.evaluate(() => window.embers.graphs.main.graph.numTicks),
};

// 9. Sign out: the token forgotten, the prompt again, no tenant shown.
await page.click('#sign-out');
await prompt();
out.signedOut = await dialogState();
out.signedOut.stored = await stored();
await page.screenshot({ path: join(shots, 'signed-out.png') });

await browser.close();
console.log(JSON.stringify(out));
