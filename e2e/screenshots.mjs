// Screenshots of every UI view over the rideshare demo's data, for the README:
//   node screenshots.mjs BASE_URL FROM UNTIL OUT_DIR
// The demo test (crates/embers-cli/tests/demo.rs) runs it while `embers demo` runs.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './lib/browser.mjs';

const [base, from, until, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: node screenshots.mjs BASE_URL FROM UNTIL OUT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const common = { app: 'ride-sharing-app', type: 'process_cpu:cpu:nanoseconds:cpu:nanoseconds', from, until };
const views = {
  single: { search: 'mutex_lock' },
  explore: { view: 'explore', groupBy: 'region' },
  compare: { view: 'compare', q: 'region="us-east-1"', rq: 'region="us-west-1"' },
  diff: { view: 'diff', q: 'region="us-east-1"', rq: 'region="us-west-1"' },
};
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
  for (const [name, state] of Object.entries(views)) {
    await page.goto(`${base}/?${new URLSearchParams({ ...common, ...state })}`);
    await page.waitForFunction(() => window.embers && window.embers.ready, null, { timeout: 30000 });
    await page.screenshot({ path: join(outDir, `${name}.png`) });
  }
} finally {
  await browser.close();
}
console.log('ok');
