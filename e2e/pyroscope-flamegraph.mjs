// Checks a server's /render answer with Pyroscope's own published frontend packages:
// the flamebearer schema of @pyroscope/models, then @pyroscope/flamegraph drawing it in
// headless Chromium (Debian's, through playwright-core); hovers the widest node of one
// function and prints what the component's tooltip says, as JSON.
//   node pyroscope-flamegraph.mjs RENDER_URL FUNCTION SCREENSHOT
// The page is bundled here with esbuild (both packages are CommonJS/UMD builds for
// bundlers), so nothing is fetched but the server's answer.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { launch } from './lib/browser.mjs';

const require = createRequire(import.meta.url);
const { FlamebearerProfileSchema } = require('@pyroscope/models');

const [renderUrl, fn, shot] = process.argv.slice(2);
if (!shot) {
  console.error('usage: node pyroscope-flamegraph.mjs RENDER_URL FUNCTION SCREENSHOT');
  process.exit(2);
}
const res = await fetch(renderUrl);
if (!res.ok) throw new Error(`${renderUrl}: ${res.status} ${await res.text()}`);
const json = await res.json();
const out = { errors: [] };

// 1. The schema: a strict reading of what the published model's zod schema accepts.
const parsed = FlamebearerProfileSchema.safeParse(json);
out.schema = parsed.success ? 'valid' : parsed.error.issues;
if (!parsed.success) {
  console.log(JSON.stringify(out));
  process.exit(0);
}
out.parsedUnits = parsed.data.metadata.units;
out.parsedSampleRate = parsed.data.metadata.sampleRate;

// 2. The component, bundled with its peers (React 18) into one page.
const here = dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'embers-flamegraph-'));
try {
  await esbuild.build({
    entryPoints: [join(here, 'flamegraph/entry.mjs')],
    bundle: true,
    outdir: dir,
    format: 'iife',
    platform: 'browser',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'error',
  });
  writeFileSync(
    join(dir, 'index.html'),
    '<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="entry.css"></head>' +
      '<body style="width:1200px"><div id="root"></div><script src="entry.js"></script></body></html>',
  );
  const browser = await launch();
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => out.errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && out.errors.push(m.text()));
  await page.goto(pathToFileURL(join(dir, 'index.html')).href);
  out.drawn = await page.evaluate((j) => window.drawProfile(j), json);
  const canvas = page.locator('[data-testid="flamegraph-canvas"]');
  await canvas.waitFor();
  const box = await canvas.boundingBox();

  // The widest node named `fn`, from the levels (offsets delta-encoded per row).
  const fb = json.flamebearer;
  let best = null;
  fb.levels.forEach((row, level) => {
    let x = 0;
    for (let i = 0; i < row.length; i += 4) {
      x += row[i];
      if (fb.names[row[i + 3]] === fn && (!best || row[i + 1] > best.total)) best = { level, x, total: row[i + 1] };
      x += row[i + 1];
    }
  });
  if (!best) throw new Error(`no node named ${fn}`);
  out.node = best;
  // Hover the node's middle column from the top down until the tooltip names it: the
  // component's row height is its own business.
  const px = box.x + ((best.x + best.total / 2) / fb.numTicks) * box.width;
  for (let y = box.y + 2; y < box.y + box.height && !out.tooltip; y += 3) {
    await page.mouse.move(px, y);
    const tip = page.locator('[data-testid="tooltip"]');
    if ((await tip.count()) > 0 && (await tip.isVisible())) {
      const title = await page.locator('[data-testid="tooltip-function-name"]').innerText().catch(() => '');
      if (title === fn) out.tooltip = { title, table: await page.locator('[data-testid="tooltip-table"]').innerText() };
    }
  }
  await page.screenshot({ path: shot, fullPage: true });
  await browser.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
