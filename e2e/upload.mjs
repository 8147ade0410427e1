// Drives the UI's Upload view in headless Chromium against a real `embers server`: uploads
// a pprof file through the file picker, picks its CPU type, uploads a folded file, diffs
// the two, and prints what the page showed as JSON for crates/embers-cli/tests/adhoc.rs.
//   node upload.mjs BASE_URL PPROF_FILE FOLDED_FILE SCREENSHOT_DIR
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './lib/browser.mjs';
import { painted } from './lib/canvas.mjs';

const [base, pprof, folded, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node upload.mjs BASE_URL PPROF_FILE FOLDED_FILE SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const out = { errors: [] };

const browser = await launch();
const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
page.on('pageerror', (e) => out.errors.push(e.message));
page.on('console', (m) => m.type() === 'error' && out.errors.push(m.text()));

const ready = () => page.waitForFunction(() => window.embers && window.embers.ready, null, { timeout: 30000 });
async function navigated(action) {
  await page.evaluate(() => (window.embers.ready = false));
  await action();
  await ready();
}
async function hover(fn) {
  const c = await page.evaluate((fn) => {
    const g = window.embers.graphs.main;
    const r = g.rectOf(g.find(fn));
    return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
  }, fn);
  await page.mouse.move(c.x, c.y);
  await page.waitForSelector('#tooltip:not([hidden])');
  const text = await page.locator('#tooltip').innerText();
  await page.mouse.move(0, 0);
  return text;
}
const graph = () => page.evaluate(() => window.embers.graphs.main.graph);

await page.goto(`${base}/?view=upload`);
await ready();

// The pprof file, through the file picker; then its CPU type.
await navigated(() => page.setInputFiles('#upload-file', pprof));
const types = await page.$$eval('#upload-type option', (o) => o.map((x) => x.value));
await navigated(() => page.selectOption('#upload-type', 'cpu'));
const pprofId = new URL(page.url()).searchParams.get('id');
out.pprof = {
  types,
  numTicks: (await graph()).numTicks,
  painted: await painted(page),
  status: await page.locator('.status').innerText(),
  tooltip: await hover('main.work'),
};
await page.screenshot({ path: join(shots, 'pprof.png'), fullPage: true });

// The folded file.
await navigated(() => page.setInputFiles('#upload-file', folded));
out.folded = {
  numTicks: (await graph()).numTicks,
  tooltip: await hover('main.work'),
};
await page.screenshot({ path: join(shots, 'folded.png'), fullPage: true });

// Diff: the pprof upload against the folded one (picked in the "Diff with" list).
await navigated(() => page.selectOption('select[aria-label="Profile"]', pprofId));
await navigated(() => page.selectOption('#upload-type', 'cpu'));
const foldedId = await page.evaluate(() => window.embers.uploads.find((u) => u.name === 'stacks.txt').id);
await navigated(() => page.selectOption('select[aria-label="Diff with"]', foldedId));
out.diff = await page.evaluate(() => {
  const g = window.embers.graphs.main.graph;
  const work = g.names.indexOf('main.work');
  let lt = 0;
  let rt = 0;
  for (const n of g.nodes) if (n.name === work) (lt += n.lt), (rt += n.rt);
  return { leftTicks: g.diff.leftTicks, rightTicks: g.diff.rightTicks, work: [lt, rt], legend: !!document.querySelector('.legend') };
});
out.diff.painted = await painted(page);
out.diff.status = await page.locator('.status').innerText();
await page.screenshot({ path: join(shots, 'diff.png'), fullPage: true });

await browser.close();
console.log(JSON.stringify(out));
