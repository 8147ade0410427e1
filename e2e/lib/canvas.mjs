// What the page drew: the number of non-blank pixels of the main flame graph's canvas
// (window.embers.graphs.main), for scripts that check a graph was painted at all.
export const painted = (page) =>
  page.evaluate(() => {
    const c = window.embers.graphs.main.canvas;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250)) n++;
    return n;
  });
