/**
 * Prometheus text exposition format 0.0.4, written the way prom-client 15 writes it (so that a
 * series moved out of prom-client reads byte for byte as before): `# HELP` / `# TYPE` once per
 * family, labels in the label object's order, a histogram bucket's `le` first, counts and sums
 * as JavaScript prints numbers (`0.5`, `1`, `+Inf`). Pure: no registry, no I/O.
 */

/** A family's kind as its `# TYPE` line says it. */
export type FamilyType = 'counter' | 'gauge' | 'histogram';

/** prom-client's escaping of names and HELP text: backslash and newline. */
export function escapeText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A label value escaped for the text format: backslash, newline, double quote. */
export function escapeLabelValue(v: string): string {
  return escapeText(v).replace(/"/g, '\\"');
}

/** `a="x",b="y"` (no braces): the label pairs in the object's own key order, values escaped. Rendered once per series. */
export function labelPairs(labels: Readonly<Record<string, string>>): string {
  let out = '';
  for (const name of Object.keys(labels)) out += `${out === '' ? '' : ','}${name}="${escapeLabelValue(labels[name]!)}"`;
  return out;
}

/** A sample value as prom-client writes it (`Nan`, `+Inf`, `-Inf`, else JavaScript's own number text). */
export function sampleValue(n: number): string {
  if (Number.isNaN(n)) return 'Nan';
  if (!Number.isFinite(n)) return n < 0 ? '-Inf' : '+Inf';
  return `${n}`;
}

/** The `# HELP` and `# TYPE` lines of a family. */
export function familyHeader(name: string, help: string, type: FamilyType): string {
  const n = escapeText(name);
  return `# HELP ${n} ${escapeText(help)}\n# TYPE ${n} ${type}`;
}

/** One sample line: `name{pairs} value` (`name value` without labels). */
export function sampleLine(name: string, pairs: string, value: number): string {
  return pairs === '' ? `${name} ${sampleValue(value)}` : `${name}{${pairs}} ${sampleValue(value)}`;
}

/**
 * The `le` pair of every bucket of `bounds` and of `+Inf`, each with the separator the series'
 * own pairs need after it (`le="0.5",`), computed once per histogram family.
 */
export function bucketPrefixes(bounds: readonly number[]): string[] {
  return [...bounds.map((b) => `le="${b}",`), 'le="+Inf",'];
}

/**
 * Appends one histogram series to `out`: `_bucket` lines (cumulative; `counts[offset + i]` is how
 * many observations fell in bucket i alone, the last slot above every bound), then `_sum` and
 * `_count`, in prom-client's order and label order (`le` first).
 */
export function pushHistogram(out: string[], name: string, prefixes: readonly string[], pairs: string,
  counts: ArrayLike<number>, offset: number, sum: number, count: number): void {
  let acc = 0;
  const bucket = `${name}_bucket{`;
  for (let i = 0; i < prefixes.length; i++) {
    acc += counts[offset + i]!;
    const le = pairs === '' ? prefixes[i]!.slice(0, -1) : prefixes[i]!;
    out.push(`${bucket}${le}${pairs}} ${sampleValue(acc)}`);
  }
  out.push(sampleLine(`${name}_sum`, pairs, sum), sampleLine(`${name}_count`, pairs, count));
}
