// Drives the web UI in headless Chromium the way a person does (mouse, keyboard) against a
// real `embers server`, and prints what the page showed as JSON; the Rust test
// (crates/embers-cli/tests/ui.rs) loads the known profiles and checks the numbers.
//   node ui.mjs BASE_URL FROM UNTIL SCREENSHOT_DIR
// Screenshots of every view are kept in SCREENSHOT_DIR.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './lib/browser.mjs';
import { painted } from './lib/canvas.mjs';

const [base, from, until, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node ui.mjs BASE_URL FROM UNTIL SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const TYPE = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';
const out = { errors: [], dialogs: [] };

const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
const page = await context.newPage();
page.on('pageerror', (e) => out.errors.push(e.message));
page.on('console', (m) => m.type() === 'error' && out.errors.push(m.text()));
page.on('dialog', async (d) => {
  out.dialogs.push(d.message());
  await d.dismiss();
});

const params = (p) => new URLSearchParams({ app: 'shop', type: TYPE, from, until, ...p }).toString();
const ready = () => page.waitForFunction(() => window.embers && window.embers.ready, null, { timeout: 30000 });
async function open(p) {
  await page.goto(`${base}/?${params(p)}`);
  await ready();
}
async function navigated(action) {
  await page.evaluate(() => (window.embers.ready = false));
  await action();
  await ready();
}
/** Centre of the widest node named `fn` in graph `g`, in page coordinates. */
const centre = (g, fn) =>
  page.evaluate(
    ([g, fn]) => {
      const graph = window.embers.graphs[g];
      const r = graph.rectOf(graph.find(fn));
      return { x: r.x + r.width / 2, y: r.y + r.height / 2, width: r.width };
    },
    [g, fn],
  );
async function hover(g, fn) {
  const c = await centre(g, fn);
  await page.mouse.move(c.x, c.y);
  await page.waitForSelector('#tooltip:not([hidden])');
  return page.locator('#tooltip').innerText();
}
/** The colour drawn at a node's centre (device pixels), as [r, g, b]. */
const colourAt = (g, fn) =>
  page.evaluate(
    ([g, fn]) => {
      const graph = window.embers.graphs[g];
      const r = graph.rectOf(graph.find(fn));
      const box = graph.canvas.getBoundingClientRect();
      const ratio = window.devicePixelRatio || 1;
      const x = Math.round((r.x - box.left + r.width / 2) * ratio);
      const y = Math.round((r.y - box.top + 4) * ratio);
      return Array.from(graph.canvas.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
    },
    [g, fn],
  );
const tableRows = () => page.$$eval('table.functions tbody tr', (rows) => rows.map((r) => Array.from(r.cells, (c) => c.innerText.trim())));

// Single view: the graph draws; hover, search, zoom, table sort, sandwich.
await open({});
out.single = {};
out.single.painted = await painted(page);
out.single.status = await page.locator('.status').innerText();
out.single.tooltipFoo = await hover('main', 'foo');
await page.fill('input.search', 'foo');
out.single.matched = await page.locator('.matched').innerText();
out.single.searchHighlight = await colourAt('main', 'foo');
out.single.searchDimmed = await colourAt('main', 'bar');
await page.fill('input.search', '');
await page.screenshot({ path: join(shots, 'single.png'), fullPage: true });
const fooBefore = await centre('main', 'foo');
await page.mouse.click(fooBefore.x, fooBefore.y);
const fooAfter = await centre('main', 'foo');
out.single.zoom = {
  before: fooBefore.width,
  after: fooAfter.width,
  canvas: await page.evaluate(() => window.embers.graphs.main.canvas.clientWidth),
  url: new URL(page.url()).searchParams.get('zoom'),
  crumbs: await page.locator('.crumbs').innerText(),
};
await page.screenshot({ path: join(shots, 'single-zoomed.png'), fullPage: true });
await page.click('.crumbs button.reset');
out.single.zoomReset = (await centre('main', 'foo')).width;
out.single.rowsBySelf = await tableRows();
await page.click('table.functions th[data-key="name"]');
out.single.rowsByNameAsc = await tableRows();
await page.click('table.functions th[data-key="total"]');
out.single.rowsByTotal = await tableRows();
await page.fill('input.table-filter', 'ba');
out.single.rowsFiltered = await tableRows();
await page.fill('input.table-filter', '');
await page.click('table.functions tbody tr:has(td.fn:text-matches("^bar"))');
await page.waitForSelector('.sandwich:not([hidden])');
out.single.sandwich = await page.evaluate(() => {
  const names = (g) => g.graph.nodes.map((n) => `${g.graph.names[n.name]}@${n.level}=${n.total}`);
  return { url: new URL(location.href).searchParams.get('fn'), callers: names(window.embers.graphs.callers), callees: names(window.embers.graphs.callees) };
});
out.single.highlightBar = await colourAt('main', 'bar');
await page.screenshot({ path: join(shots, 'single-sandwich.png'), fullPage: true });
// Orientation: flame puts the root at the bottom.
await page.click('button.orient');
out.single.flame = await page.evaluate(() => {
  const g = window.embers.graphs.main;
  return { url: new URL(location.href).searchParams.get('orient'), rootY: g.rectOf(0).y, fooY: g.rectOf(g.find('foo')).y };
});

// Tag selection through the autocompleting label input.
await page.click('input.labels-input');
await page.keyboard.type('reg');
await page.waitForSelector('.suggestions:not([hidden]) li');
out.tags = { names: await page.$$eval('.suggestions li', (l) => l.map((x) => x.textContent)) };
await page.keyboard.press('Tab');
await page.keyboard.type('"eu');
await page.waitForFunction(() => {
  const li = document.querySelectorAll('.suggestions:not([hidden]) li');
  return li.length > 0 && Array.from(li).every((x) => x.textContent.startsWith('eu'));
});
out.tags.values = await page.$$eval('.suggestions li', (l) => l.map((x) => x.textContent));
await navigated(() => page.keyboard.press('Enter'));
out.tags.url = new URL(page.url()).searchParams.get('q');
out.tags.status = await page.locator('.status').innerText();
out.tags.tooltipFoo = await hover('main', 'foo');
await page.screenshot({ path: join(shots, 'single-tag.png'), fullPage: true });

// A link reproduces the view: search and zoom come back from the URL.
await open({ search: 'ba', zoom: 'main' });
out.link = {
  matched: await page.locator('.matched').innerText(),
  crumbs: await page.locator('.crumbs').innerText(),
  searchValue: await page.inputValue('input.search'),
};

// Dragging over the timeline from 20 % to 70 % of its width selects that range.
await open({});
const tl = await page.locator('.selection canvas.timeline').boundingBox();
await navigated(async () => {
  await page.mouse.move(tl.x + tl.width * 0.2, tl.y + tl.height / 2);
  await page.mouse.down();
  await page.mouse.move(tl.x + tl.width * 0.5, tl.y + tl.height / 2, { steps: 5 });
  await page.mouse.move(tl.x + tl.width * 0.7, tl.y + tl.height / 2, { steps: 5 });
  await page.mouse.up();
});
const dragged = new URL(page.url()).searchParams;
out.drag = { from: Number(dragged.get('from')), until: Number(dragged.get('until')), status: await page.locator('.status').innerText() };

// Exports from the single view (of the dragged range).
out.exports = {};
for (const format of ['collapsed', 'svg', 'speedscope', 'json', 'pprof', 'dot', 'png']) {
  await page.click('button.export');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(`.menu button[data-format="${format}"]`)]);
  const path = join(shots, `export-${format}`);
  if (await download.failure()) throw new Error(`download of ${format} failed: ${await download.failure()} ${download.url()}`);
  await download.saveAs(path);
  const bytes = readFileSync(path);
  out.exports[format] = { name: download.suggestedFilename(), size: bytes.length, head: bytes.subarray(0, 40).toString('latin1') };
}

// Comparison: two selections side by side.
const sides = { q: 'region="us-east-1"', rq: 'region="eu-west-1"' };
await open({ view: 'compare', ...sides });
out.compare = { left: await hover('left', 'foo'), right: await hover('right', 'foo') };
await page.mouse.move(0, 0);
await page.screenshot({ path: join(shots, 'compare.png'), fullPage: true });

// Diff: colours, tooltip with both values, table sorted by change.
await open({ view: 'diff', ...sides });
out.diff = {
  tooltipFoo: await hover('main', 'foo'),
  colourFoo: await colourAt('main', 'foo'),
  colourBar: await colourAt('main', 'bar'),
  rows: await tableRows(),
  legend: await page.locator('.legend').innerText(),
};
await page.mouse.move(0, 0);
await page.screenshot({ path: join(shots, 'diff.png'), fullPage: true });

// Tag explorer: shares per region, then a jump to the diff view.
await open({ view: 'explore', groupBy: 'region' });
out.explore = {
  rows: await page.$$eval('table.explore tbody tr', (rows) => rows.map((r) => [r.dataset.value, r.querySelector('.share').textContent])),
};
await page.screenshot({ path: join(shots, 'explore.png'), fullPage: true });
await page.check('input[name="baseline"][value="us-east-1"]');
await page.check('input[name="comparison"][value="eu-west-1"]');
await navigated(() => page.click('button.go-diff'));
const u = new URL(page.url()).searchParams;
out.explore.jump = { view: u.get('view'), q: u.get('q'), rq: u.get('rq'), rows: await tableRows() };

// One function at two lines: one node by function (the default), two with "By line".
const spinNodes = () =>
  page.evaluate(() => {
    const g = window.embers.graphs.main.graph;
    return g.nodes.filter((n) => /^spin( |$)/.test(g.names[n.name])).map((n) => `${g.names[n.name]}=${n.total}`);
  });
await page.goto(`${base}/?${new URLSearchParams({ app: 'lines', type: TYPE, from, until })}`);
await ready();
out.byLine = { functionNodes: await spinNodes(), functionTip: await hover('main', 'spin'), button: await page.locator('button.by-line').innerText() };
await navigated(() => page.click('button.by-line'));
out.byLine.url = new URL(page.url()).searchParams.get('by');
out.byLine.lineNodes = await spinNodes();
out.byLine.lineTip = await hover('main', 'spin');
out.byLine.pressed = await page.locator('button.by-line').getAttribute('aria-pressed');
await page.screenshot({ path: join(shots, 'by-line.png'), fullPage: true });
await navigated(() => page.click('button.by-line'));
out.byLine.back = await spinNodes();

// Units: every profile type's totals and tooltips in seconds, bytes or counts.
out.units = {};
for (const [key, type, fn] of [
  ['wall', 'wall:wall:nanoseconds:wall:nanoseconds', 'sleep'],
  ['alloc_space', 'memory:alloc_space:bytes:space:bytes', 'grow'],
  ['goroutine', 'goroutines:goroutine:count:goroutine:count', 'wait'],
  ['contentions', 'mutex:contentions:count:contentions:count', 'lock'],
  ['block_contentions', 'block:contentions:count::', 'lock'],
  ['delay', 'mutex:delay:nanoseconds:contentions:count', 'lock'],
]) {
  await page.goto(`${base}/?${new URLSearchParams({ app: 'units', type, from, until })}`);
  await ready();
  out.units[key] = { status: await page.locator('.status').innerText(), tip: await hover('main', fn) };
  await page.mouse.move(0, 0);
}

// Untrusted names stay text.
await page.goto(`${base}/?${new URLSearchParams({ app: 'xss', type: TYPE, from, until })}`);
await ready();
out.xss = {
  cell: await page.locator('table.functions td.fn').first().innerText(),
  tooltip: await hover('main', '<img src=x onerror=alert(1)>'),
  images: await page.evaluate(() => document.querySelectorAll('img').length),
};
await page.screenshot({ path: join(shots, 'xss.png'), fullPage: true });

// A selector the server rejects: its message, in the status line (and the browser's
// console logs the 400, kept apart from the errors that must not happen).
const before = out.errors.length;
await page.goto(`${base}/?${params({ q: 'region=~"("' })}`);
await page.waitForSelector('.status.error');
out.badQuery = await page.locator('.status.error').innerText();
out.badQueryConsole = out.errors.splice(before);

await browser.close();
console.log(JSON.stringify(out));
