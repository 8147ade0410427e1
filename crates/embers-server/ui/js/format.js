// @ts-check
// Numbers, units, times and colours as the views show them.

/**
 * A flame graph's units as the server's flamebearer metadata gives them (Grafana
 * Pyroscope's convention): `samples` are ticks at `sampleRate` per second (CPU
 * nanoseconds come as `samples` at 1e9), `objects` and `count` are counts, `bytes`
 * bytes, and time units pass through (wall and lock time in `nanoseconds`).
 * @typedef {{ units: string, sampleRate: number }} Units
 */

/**
 * A value in the profile's units: time for samples and time units, bytes, or a count.
 * @param {number} v
 * @param {Units} u
 * @param {number} [max] the largest value shown beside it (the graph's total): counted
 *   units are scaled once for the whole graph, as Pyroscope's formatters are
 */
export function value(v, u, max = v) {
  switch (u.units) {
    case 'samples':
      return duration(v / (u.sampleRate > 0 ? u.sampleRate : 100));
    case 'nanoseconds':
    case 'lock_nanoseconds':
      return duration(v / 1e9);
    case 'microseconds':
      return duration(v / 1e6);
    case 'milliseconds':
      return duration(v / 1e3);
    case 'seconds':
      return duration(v);
    case 'bytes':
      return bytes(v);
    case 'objects':
      return `${count(v)} objects`;
    case 'goroutines':
      return `${count(v)} goroutines`;
    case 'count':
    case 'lock_samples':
      return scaledCount(v, max);
    default:
      return count(v);
  }
}

/** @param {number} s seconds */
export function duration(s) {
  if (s === 0) return '0 s';
  if (s >= 3600) return `${(s / 3600).toFixed(2)} h`;
  if (s >= 60) return `${(s / 60).toFixed(2)} min`;
  if (s >= 1) return `${s.toFixed(2)} s`;
  if (s >= 1e-3) return `${(s * 1e3).toFixed(1)} ms`;
  return `${(s * 1e6).toFixed(0)} µs`;
}

/** @param {number} b */
export function bytes(b) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) {
    b /= 1024;
    i++;
  }
  return `${b.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/**
 * A count (contentions, exceptions: the `count` sample unit) as Pyroscope's
 * `ObjectsFormatter` shows counts (its formatter for `objects`, `goroutines` and
 * `lock_samples`, in `packages/pyroscope-flamegraph/src/format/format.ts`): two decimals,
 * in thousands (K), millions (M), … chosen once from `max`, so one graph shares one
 * scale, and `< 0.01` below that. Unlike it, 0 is `0.00` and there is no trailing space
 * when there is no suffix. (Pyroscope has no case for the unit `count` itself; its
 * fallback, a duration of `v / sampleRate`, would show 250 contentions as "2.50".)
 * @param {number} v
 * @param {number} max
 */
export function scaledCount(v, max) {
  const suffixes = ['', 'K', 'M', 'G', 'T', 'P'];
  let i = 0;
  let divider = 1;
  while (i < suffixes.length - 1 && Math.abs(max) / divider >= 1000) {
    divider *= 1000;
    i++;
  }
  const n = v / divider;
  const s = n === 0 ? '0.00' : Math.abs(n) < 0.01 ? '< 0.01' : n.toFixed(2);
  return suffixes[i] ? `${s} ${suffixes[i]}` : s;
}

/** @param {number} n */
export function count(n) {
  return Math.round(n).toLocaleString('en-US');
}

/**
 * A share as a percentage with two decimals (`75.00 %`).
 * @param {number} part
 * @param {number} whole
 */
export function percent(part, whole) {
  return `${whole > 0 ? ((part / whole) * 100).toFixed(2) : '0.00'} %`;
}

/** @param {number} unix seconds */
export function time(unix) {
  const d = new Date(unix * 1000);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Splits a frame name as the server writes it, `function (file:line)`, into its parts.
 * @param {string} name
 * @returns {{fn: string, location: string}}
 */
export function splitFrame(name) {
  const m = /^(.*) \(([^()]*)\)$/.exec(name);
  return m ? { fn: m[1], location: m[2] } : { fn: name, location: '' };
}

/**
 * The package or module a frame belongs to, for colouring: the file's directory (or file)
 * when there is one, else the name's prefix before its last `.` or `::`.
 * @param {string} name
 */
export function packageOf(name) {
  const { fn, location } = splitFrame(name);
  if (location) {
    const file = location.replace(/:\d+$/, '');
    const slash = file.lastIndexOf('/');
    return slash > 0 ? file.slice(0, slash) : file;
  }
  const sep = Math.max(fn.lastIndexOf('.'), fn.lastIndexOf('::'));
  return sep > 0 ? fn.slice(0, sep) : fn;
}

/** @param {string} s */
function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

/**
 * A warm colour that is the same for every frame of a package, in every view and session.
 * @param {string} name
 */
export function frameColour(name) {
  // Hue and saturation from the package, a little lightness from the function, so that
  // neighbours of one package stay apart.
  const h = hash(packageOf(name));
  const hue = 8 + (h % 45); // red .. orange-yellow
  const sat = 70 + ((h >>> 8) % 20);
  const light = 56 + (hash(splitFrame(name).fn) % 16);
  return `hsl(${hue} ${sat}% ${light}%)`;
}

/**
 * Diff colour: red for growth, green for shrinkage, grey for no change; `change` is the
 * relative change of the node's share, clamped to [-1, 1] for the scale.
 * @param {number} change
 */
export function diffColour(change) {
  const c = Math.max(-1, Math.min(1, change));
  const strength = Math.round(Math.sqrt(Math.abs(c)) * 100);
  if (Math.abs(c) < 0.01) return 'hsl(0 0% 78%)';
  return c > 0 ? `hsl(0 ${strength}% ${85 - strength * 0.3}%)` : `hsl(120 ${strength * 0.7}% ${85 - strength * 0.3}%)`;
}
