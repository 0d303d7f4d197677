/**
 * Kubernetes status conditions (metav1.Condition) as the API carries them, and the two rules every
 * status writer here follows: a condition keeps its `lastTransitionTime` while its `status` stays
 * the same (meta.SetStatusCondition's rule), and two documents are compared by their content, not
 * by key order (the API server may hand back keys in another order than they were sent).
 */

/** metav1.Condition on the wire. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** A condition as a decision states it; the writer adds the generation and the transition time. */
export interface ConditionDraft {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
}

/** The Gateway API's and metav1.Condition's limit on `message`. */
export const MESSAGE_MAX = 32_768;

/** The controller Weft's entries in a route's `status.parents` carry (the Gateway API: each controller owns its own). */
export const CONTROLLER_NAME = 'weft.dev/mesh-controller';

/** RFC 3339 at one-second precision, as metav1.Time serializes. */
export function kubeTime(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

export function truncate(message: string, max = MESSAGE_MAX): string {
  return message.length <= max ? message : `${message.slice(0, max - 15)} ... (truncated)`;
}

/**
 * `drafts` as full conditions: `observedGeneration` set, and `lastTransitionTime` taken from the
 * condition of the same type in `previous` when its status did not change, else `now`.
 */
export function settle(drafts: readonly ConditionDraft[], previous: readonly unknown[] | undefined, generation: number | undefined, now: string): Condition[] {
  return drafts.map((d) => {
    const before = (previous ?? []).find((p): p is Condition => isRecord(p) && p.type === d.type);
    const kept = before !== undefined && before.status === d.status && typeof before.lastTransitionTime === 'string' && before.lastTransitionTime !== '';
    return {
      type: d.type,
      status: d.status,
      reason: d.reason,
      message: truncate(d.message),
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
      lastTransitionTime: kept ? before.lastTransitionTime : now,
    };
  });
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Equal as JSON, whatever the key order (absent and undefined are the same); cheaper than comparing canonicalJson strings. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  if (!isRecord(a) || !isRecord(b)) return false;
  let count = 0;
  for (const k in a) {
    if (a[k] === undefined) continue;
    count++;
    if (!sameJson(a[k], b[k])) return false;
  }
  for (const k in b) if (b[k] !== undefined) count--;
  return count === 0;
}

/** JSON with object keys sorted, so equal content compares equal whatever the key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isRecord(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
