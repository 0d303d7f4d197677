/**
 * Upstream's weighted-distribution rule (conformance/utils/weight/weight.go
 * TestWeightedDistributionBatch): one attempt is a batch of requests; it passes if every answer came
 * from a backend listed in the expected fractions (pod name minus its last two '-' parts), the
 * number of distinct backends equals the number with a fraction above 0, and each backend's share
 * is within the tolerance. The test retries up to max_attempts batches. Pure.
 */
import type { WeightedExpect } from './cases';
import type { Mismatch } from './judge';
import type { Observation } from './observation';

/** `echo-v1-6f8d9c7b5f-x2k4q` -> `echo-v1` (the Deployment name). */
export function backendOfPod(pod: string): string {
  const parts = pod.split('-');
  return parts.length > 2 ? parts.slice(0, -2).join('-') : pod;
}

export interface BatchResult {
  mismatches: Mismatch[];
  counts: Record<string, number>;
  total: number;
}

export function judgeBatch(expect: WeightedExpect, answers: readonly Observation[]): BatchResult {
  const counts: Record<string, number> = {};
  const mismatches: Mismatch[] = [];
  const total = answers.length;
  if (total !== expect.requests_per_attempt) {
    mismatches.push({ check: 'requests', expected: String(expect.requests_per_attempt), seen: `${total} answers` });
  }
  for (const [i, a] of answers.entries()) {
    if (!a.ok || a.status !== 200 || !a.echo) {
      const seen = a.ok ? `status ${a.status}${a.echo ? '' : ' without an echo answer'}` : a.error;
      mismatches.push({ check: `request ${i + 1}`, expected: 'status 200 from an echo backend', seen });
      return { mismatches, counts, total };
    }
    const backend = backendOfPod(a.echo.pod);
    if (!(backend in expect.fractions)) {
      mismatches.push({ check: `request ${i + 1}`, expected: `a pod of ${Object.keys(expect.fractions).join(' or ')}`, seen: `handled by an unexpected pod ${a.echo.pod}` });
      return { mismatches, counts, total };
    }
    counts[backend] = (counts[backend] ?? 0) + 1;
  }
  for (const [backend, want] of Object.entries(expect.fractions)) {
    const got = (counts[backend] ?? 0) / (total || 1);
    if (want === 0 && (counts[backend] ?? 0) > 0) {
      mismatches.push({ check: `share of ${backend}`, expected: '0 (weight 0)', seen: `${counts[backend]} requests` });
    } else if (Math.abs(got - want) > expect.tolerance + 1e-9) {
      mismatches.push({ check: `share of ${backend}`, expected: `${want} ± ${expect.tolerance}`, seen: got.toFixed(3) });
    }
  }
  const active = Object.values(expect.fractions).filter((f) => f > 0).length;
  const distinct = Object.keys(counts).length;
  if (distinct !== active) mismatches.push({ check: 'distinct backends', expected: String(active), seen: `${distinct} (${Object.keys(counts).join(', ') || 'none'})` });
  return { mismatches, counts, total };
}
