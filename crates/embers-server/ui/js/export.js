// @ts-check
// Export of the current view: the server writes SVG, folded, pprof, speedscope, JSON and DOT
// from the same query; PNG is the canvas as drawn.

import { url } from './api.js';
import { h } from './dom.js';

/**
 * @param {{ query: () => {query: string, from: string, until: string} | null,
 *   canvas: () => HTMLCanvasElement | null, name: () => string,
 *   diffJson?: () => string, empty: () => boolean, label?: string }} o
 */
export function exportMenu(o) {
  const formats = [
    ['svg', 'SVG (interactive)', 'svg'],
    ['collapsed', 'Folded stacks', 'folded.txt'],
    ['pprof', 'pprof', 'pb.gz'],
    ['speedscope', 'speedscope', 'speedscope.json'],
    ['json', 'JSON (flamebearer)', 'json'],
    ['dot', 'Call graph (Graphviz DOT)', 'dot'],
  ];
  const download = (/** @type {string} */ href, /** @type {string} */ file) => {
    const a = h('a', { href, download: file });
    document.body.append(a);
    a.click();
    a.remove();
  };
  const menu = h('div', { class: 'menu', hidden: true, role: 'menu' });
  const button = h('button', { type: 'button', class: 'export', 'aria-haspopup': 'menu' }, `${o.label ?? 'Export'} ▾`);
  const note = h('div', { class: 'menu-note', hidden: true }, 'Nothing to export: no samples in this selection.');
  button.addEventListener('click', () => {
    const empty = o.empty();
    note.hidden = !empty;
    for (const b of items) b.disabled = empty;
    menu.hidden = !menu.hidden;
  });
  const base = () => o.name().replace(/[^A-Za-z0-9_.-]+/g, '_') || 'profile';
  const items = [
    h(
      'button',
      {
        type: 'button',
        role: 'menuitem',
        dataset: { format: 'png' },
        onclick: () => {
          const c = o.canvas();
          if (c) c.toBlob((blob) => blob && download(URL.createObjectURL(blob), `${base()}.png`));
          menu.hidden = true;
        },
      },
      'PNG image',
    ),
  ];
  if (o.diffJson) {
    const diffJson = o.diffJson;
    items.push(
      h('button', { type: 'button', role: 'menuitem', dataset: { format: 'json' }, onclick: () => ((menu.hidden = true), download(diffJson(), `${base()}.diff.json`)) }, 'JSON (flamebearer diff)'),
    );
  } else {
    for (const [format, label, ext] of formats) {
      items.push(
        h(
          'button',
          {
            type: 'button',
            role: 'menuitem',
            dataset: { format },
            onclick: () => {
              menu.hidden = true;
              const q = o.query();
              if (q) download(url('render', { ...q, format }), `${base()}.${ext}`);
            },
          },
          label,
        ),
      );
    }
  }
  menu.append(note, ...items);
  return h('div', { class: 'export-menu' }, button, menu);
}
