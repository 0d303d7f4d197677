import type { Random } from './prng';

/**
 * One item drawn with probability weight / total (HTTPRoute backendRefs: a 90/10 split). Weights
 * that are 0, negative or not finite are never drawn; undefined when nothing has weight. O(n): a
 * route has a handful of backends. Exact in expectation: each item owns the slice of [0, total)
 * its weight spans.
 */
export function pickWeighted<T extends { weight: number }>(items: readonly T[], random: Random): T | undefined {
  let total = 0;
  for (const item of items) total += usable(item.weight);
  if (total <= 0) return undefined;
  let point = random() * total;
  let last: T | undefined;
  for (const item of items) {
    const w = usable(item.weight);
    if (w === 0) continue;
    if (point < w) return item;
    point -= w;
    last = item;
  }
  // Floating-point rounding left `point` a hair past the end: the last weighted item owns it.
  return last;
}

/** A weight that counts: finite and positive, else 0. */
export function usable(weight: number): number {
  return Number.isFinite(weight) && weight > 0 ? weight : 0;
}
