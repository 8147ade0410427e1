// @ts-check
// Samples over time as an area chart; dragging selects a time range.

import { h, sizeCanvas } from './dom.js';
import { time } from './format.js';

/**
 * @typedef {{ label: string, colour: string, samples: number[] }} Series
 * @typedef {{ start: number, step: number, series: Series[] }} TimelineInput
 */

export class Timeline {
  /**
   * @param {HTMLElement} container
   * @param {{ height?: number, onSelect?: (from: number, until: number) => void }} [options]
   */
  constructor(container, options = {}) {
    this.options = options;
    this.heightPx = options.height ?? 70;
    this.container = container;
    this.canvas = h('canvas', { class: 'timeline', title: options.onSelect ? 'drag to select a time range' : '' });
    this.caption = h('div', { class: 'timeline-caption' });
    container.append(this.canvas, this.caption);
    /** @type {TimelineInput} */
    this.data = { start: 0, step: 10, series: [] };
    /** @type {[number, number] | null} */
    this.selection = null;
    /** @type {number | null} */
    this.dragFrom = null;
    this.dragTo = 0;
    // Pointer capture keeps the drag ours until the button is released, even outside
    // the canvas, without a listener on the window.
    this.canvas.addEventListener('pointerdown', (e) => {
      if (!options.onSelect) return;
      this.canvas.setPointerCapture(e.pointerId);
      this.dragFrom = this.clampX(e.offsetX);
      this.dragTo = this.dragFrom;
    });
    this.canvas.addEventListener('pointermove', (e) => {
      if (this.dragFrom === null) return;
      this.dragTo = this.clampX(e.offsetX);
      this.draw();
    });
    this.canvas.addEventListener('pointerup', () => this.finishDrag());
    this.canvas.addEventListener('pointercancel', () => {
      this.dragFrom = null;
      this.draw();
    });
    this.drawnWidth = 0;
    new ResizeObserver(() => {
      if (this.contentWidth() !== this.drawnWidth) this.draw();
    }).observe(container);
  }

  /** The container's width inside its padding (the canvas must not push it wider). */
  contentWidth() {
    const style = getComputedStyle(this.container);
    const pad = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    return Math.max(50, Math.floor(this.container.clientWidth - pad)) || 600;
  }

  /** @param {TimelineInput} data @param {[number, number] | null} [selection] */
  set(data, selection = null) {
    this.data = data;
    this.selection = selection;
    this.draw();
  }

  get end() {
    const n = Math.max(0, ...this.data.series.map((s) => s.samples.length));
    return this.data.start + n * this.data.step;
  }

  /** @param {number} px */
  clampX(px) {
    return Math.max(0, Math.min(this.drawnWidth, px));
  }

  /** @param {number} px */
  timeAt(px) {
    const w = this.canvas.clientWidth || 1;
    return Math.round(this.data.start + (px / w) * (this.end - this.data.start));
  }

  finishDrag() {
    if (this.dragFrom === null) return;
    const a = Math.min(this.dragFrom, this.dragTo);
    const b = Math.max(this.dragFrom, this.dragTo);
    this.dragFrom = null;
    if (b - a < 3) {
      this.draw();
      return;
    }
    const from = this.timeAt(a);
    const until = Math.max(this.timeAt(b), from + 1);
    this.selection = [from, until];
    this.draw();
    this.options.onSelect?.(from, until);
  }

  draw() {
    const width = this.contentWidth();
    this.drawnWidth = width;
    const height = this.heightPx;
    const ctx = sizeCanvas(this.canvas, width, height);
    const { start, step, series } = this.data;
    const n = Math.max(0, ...series.map((s) => s.samples.length));
    const max = Math.max(1, ...series.flatMap((s) => s.samples));
    ctx.fillStyle = '#fafafa';
    ctx.fillRect(0, 0, width, height);
    const x = (/** @type {number} */ i) => (n ? (i / n) * width : 0);
    for (const s of series) {
      ctx.beginPath();
      ctx.moveTo(0, height);
      s.samples.forEach((v, i) => {
        const y = height - 2 - (v / max) * (height - 6);
        ctx.lineTo(x(i), y);
        ctx.lineTo(x(i + 1), y);
      });
      ctx.lineTo(x(s.samples.length), height);
      ctx.closePath();
      ctx.globalAlpha = series.length > 1 ? 0.25 : 0.5;
      ctx.fillStyle = s.colour;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.strokeStyle = s.colour;
      ctx.stroke();
    }
    const end = start + n * step;
    const shade = (/** @type {number} */ a, /** @type {number} */ b) => {
      ctx.fillStyle = 'rgba(60, 110, 220, 0.18)';
      ctx.fillRect(a, 0, b - a, height);
    };
    if (this.dragFrom !== null) {
      shade(Math.min(this.dragFrom, this.dragTo), Math.max(this.dragFrom, this.dragTo));
    } else if (this.selection && end > start) {
      const [a, b] = this.selection;
      shade(((a - start) / (end - start)) * width, ((b - start) / (end - start)) * width);
    }
    this.caption.hidden = height < 40;
    this.caption.textContent = n ? `${time(start)} — ${time(end)}` : 'no data in this range';
  }
}
