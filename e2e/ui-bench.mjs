// Measures the flame graph in headless Chromium (Performance API): time from the render
// data's arrival to the first drawn graph, and redraw time on zoom, for the profile the
// URL selects. Prints JSON.   node ui-bench.mjs URL ROUNDS
import { launch } from './lib/browser.mjs';

const [url, rounds = '5'] = process.argv.slice(2);
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const firstDraw = [];
let nodes = 0;
for (let i = 0; i < Number(rounds); i++) {
  await page.goto(url);
  await page.waitForFunction(() => window.embers && window.embers.ready, null, { timeout: 60000 });
  const m = await page.evaluate(() => ({
    ms: performance.getEntriesByName('embers-first-draw')[0].duration,
    nodes: window.embers.graphs.main.graph.nodes.length,
  }));
  firstDraw.push(m.ms);
  nodes = m.nodes;
}
// Redraws: zoom into each of the widest nodes of levels 1..20 and back, as clicks do.
const redraw = await page.evaluate(() => {
  const g = window.embers.graphs.main;
  const zoomIn = [];
  const reset = [];
  for (let level = 1; level < Math.min(g.graph.levels.length, 21); level++) {
    const row = g.graph.levels[level];
    const widest = row.reduce((a, b) => (g.graph.nodes[b].total > g.graph.nodes[a].total ? b : a), row[0]);
    g.zoomTo(widest);
    zoomIn.push(g.lastDrawMs);
    g.resetZoom();
    reset.push(g.lastDrawMs);
  }
  // Baseline, same page and canvas: one fillRect per node in a single colour, no text:
  // the least any canvas flame graph of this size pays for a full redraw.
  const ctx = g.canvas.getContext('2d');
  const floor = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    ctx.clearRect(0, 0, g.canvas.width, g.canvas.height);
    ctx.fillStyle = '#e0a040';
    const w = g.canvas.clientWidth / g.graph.numTicks;
    for (const n of g.graph.nodes) ctx.fillRect(n.x * w, n.level * 18, n.total * w, 17);
    floor.push(performance.now() - t);
  }
  g.draw();
  return { zoomIn, reset, floor };
});
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const all = [...redraw.zoomIn, ...redraw.reset];
console.log(
  JSON.stringify({
    nodes,
    firstDrawMs: firstDraw,
    firstDrawMedianMs: median(firstDraw),
    redrawMedianMs: median(all),
    redrawMaxMs: Math.max(...all),
    floorMedianMs: median(redraw.floor),
    zoomInMs: redraw.zoomIn,
    resetMs: redraw.reset,
  }),
);
await browser.close();
