// Opens an SVG flame graph in headless Chromium, searches it the way a person does (click
// "Search", type the regex into the prompt), and prints what the page shows as JSON:
//   node svg-search.mjs FILE.svg REGEX SCREENSHOT.png
// -> {"matched": "Matched: 75.0%", "highlighted": ["foo (app.py:22)", ...], "title": "..."}
import { pathToFileURL } from 'node:url';
import { launch } from './lib/browser.mjs';

const [svgPath, term, screenshot] = process.argv.slice(2);
if (!svgPath || !term) {
  console.error('usage: node svg-search.mjs FILE.svg REGEX [SCREENSHOT.png]');
  process.exit(2);
}

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 600 } });
  page.on('dialog', (dialog) => dialog.accept(term));
  await page.goto(pathToFileURL(svgPath).href);
  await page.click('#search');
  await page.waitForFunction(() => {
    const m = document.getElementById('matched');
    return m && !m.classList.contains('hide') && m.textContent.startsWith('Matched');
  });
  const result = await page.evaluate(() => {
    // The search colour is the one inferno assigned to matching frames.
    const highlighted = [];
    for (const g of document.querySelectorAll('#frames > g')) {
      const rect = g.querySelector('rect');
      const title = g.querySelector('title');
      if (rect && title && rect.getAttribute('fill') === searchcolor) {
        highlighted.push(title.textContent.replace(/ \([^()]*samples[^()]*\)$/, ''));
      }
    }
    return {
      matched: document.getElementById('matched').textContent,
      highlighted,
      title: document.getElementById('title')?.textContent ?? '',
    };
  });
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
