/**
 * Prometheus text exposition format 0.0.4, written the way prom-client 15 writes it (so that a
 * series moved out of prom-client reads byte for byte as before): `# HELP` / `# TYPE` once per
 * family, families parted by a blank line, labels in the label object's order, a histogram
 * bucket's `le` first, counts and sums as JavaScript prints numbers (`0.5`, `1`, `+Inf`). Pure
 * formatting: no registry, no I/O.
 */
import type { ExpositionWriter } from './exposition-writer';

/** A family's kind as its `# TYPE` line says it. */
export type FamilyType = 'counter' | 'gauge' | 'histogram';

/** A family's name, HELP text and type, as /metrics shows them. */
export interface Family { name: string; help: string; type: FamilyType }

/** prom-client's escaping of names and HELP text: backslash and newline. */
export function escapeText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A label value escaped for the text format: backslash, newline, double quote. */
export function escapeLabelValue(v: string): string {
  return escapeText(v).replace(/"/g, '\\"');
}

/** `a="x",b="y"` (no braces): the label pairs in the object's own key order, values escaped. */
export function labelPairs(labels: Readonly<Record<string, string>>): string {
  let out = '';
  for (const name of Object.keys(labels)) out += `${out === '' ? '' : ','}${name}="${escapeLabelValue(labels[name]!)}"`;
  return out;
}

/** A label set as written in a sample: the pairs UTF-8 encoded once, for copying at each scrape. */
export interface EncodedLabels {
  /** `a="x",b="y"` */
  readonly pairs: Buffer;
}

export function encodeLabels(labels: Readonly<Record<string, string>>): EncodedLabels {
  return { pairs: Buffer.from(labelPairs(labels), 'utf8') };
}

/** A sample value as prom-client writes it (`Nan`, `+Inf`, `-Inf`, else JavaScript's own number text). */
export function sampleValue(n: number): string {
  if (Number.isNaN(n)) return 'Nan';
  if (!Number.isFinite(n)) return n < 0 ? '-Inf' : '+Inf';
  return `${n}`;
}

/** The `# HELP` and `# TYPE` lines of a family, after a blank line unless it is the first thing written. */
export function writeHeader(w: ExpositionWriter, f: Family): void {
  const n = escapeText(f.name);
  w.text(`${w.empty ? '' : '\n'}# HELP ${n} ${escapeText(f.help)}\n# TYPE ${n} ${f.type}\n`);
}

/** One sample line: `name{pairs} value` (`name value` without labels). `open` is `name{`, made once per family. */
export function writeSample(w: ExpositionWriter, open: string, name: string, l: EncodedLabels, value: number): void {
  if (l.pairs.length === 0) {
    w.ascii(`${name} ${sampleValue(value)}\n`);
    return;
  }
  w.ascii(open);
  w.bytes(l.pairs);
  w.ascii(`} ${sampleValue(value)}\n`);
}

/** What a histogram family writes before each bucket's pairs (`name_bucket{le="0.5",`), made once per family. */
export interface HistogramOpen {
  readonly name: string;
  /** one per bound and one for +Inf, each ending in the comma the series' own pairs need */
  readonly buckets: readonly string[];
  readonly sum: string;
  readonly count: string;
}

export function histogramOpen(name: string, bounds: readonly number[]): HistogramOpen {
  return { name, buckets: [...bounds.map((b) => `${name}_bucket{le="${b}",`), `${name}_bucket{le="+Inf",`], sum: `${name}_sum{`, count: `${name}_count{` };
}

/**
 * One histogram series: `_bucket` lines (cumulative; `counts[offset + i]` is how many observations
 * fell in bucket i alone, the last slot above every bound), then `_sum` and `_count`, in
 * prom-client's order and label order (`le` first).
 */
export function writeHistogram(w: ExpositionWriter, h: HistogramOpen, l: EncodedLabels, counts: ArrayLike<number>, offset: number, sum: number, count: number): void {
  let acc = 0;
  const bare = l.pairs.length === 0;
  for (let i = 0; i < h.buckets.length; i++) {
    acc += counts[offset + i]!;
    if (bare) {
      w.ascii(`${h.buckets[i]!.slice(0, -1)}} ${sampleValue(acc)}\n`);
    } else {
      w.ascii(h.buckets[i]!);
      w.bytes(l.pairs);
      w.ascii(`} ${sampleValue(acc)}\n`);
    }
  }
  writeSample(w, h.sum, `${h.name}_sum`, l, sum);
  writeSample(w, h.count, `${h.name}_count`, l, count);
}
