// The UI's own state-changing request (an upload in the Upload view) from headless
// Chromium, against a real `embers server` (HTTPS here: HTTP/2 by ALPN, where the request
// names its scheme and authority instead of a Host header). Prints the Origin Chromium
// sent, the answer's status, the protocol and what the page drew, as JSON for
// crates/embers-cli/tests/cross_site.rs. The test's certificate is self-signed: the
// context ignores certificate errors (what is checked is the Origin, not the chain).
//   node same-origin.mjs BASE_URL FOLDED_FILE
import { launch } from './lib/browser.mjs';

const [base, folded] = process.argv.slice(2);
if (!folded) {
  console.error('usage: node same-origin.mjs BASE_URL FOLDED_FILE');
  process.exit(2);
}
const out = { errors: [] };
const browser = await launch();
const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
page.on('pageerror', (e) => out.errors.push(e.message));
page.on('console', (m) => m.type() === 'error' && out.errors.push(m.text()));

await page.goto(`${base}/?view=upload`);
await page.waitForFunction(() => window.embers && window.embers.ready, null, { timeout: 30000 });
await page.evaluate(() => (window.embers.ready = false));
const upload = page.waitForResponse((r) => r.url().endsWith('.AdHocProfileService/Upload'), { timeout: 30000 });
await page.setInputFiles('#upload-file', folded);
const response = await upload;
out.status = response.status();
out.origin = (await response.request().allHeaders()).origin ?? null;
await page.waitForFunction(() => window.embers.ready, null, { timeout: 30000 });
out.numTicks = await page.evaluate(() => window.embers.graphs.main.graph.numTicks);
out.protocol = await page.evaluate(
  () => performance.getEntriesByType('resource').find((e) => e.name.endsWith('.AdHocProfileService/Upload'))?.nextHopProtocol ?? null,
);
await browser.close();
console.log(JSON.stringify(out));
