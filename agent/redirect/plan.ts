/**
 * Pure reconciliation decisions: given what should be enrolled and what the kernel holds, what
 * to add and remove. No I/O, so every edge (restart adoption, relabel, pod gone) is unit-tested.
 */
export interface DesiredPod {
  key: string;            // namespace/name
  cgroupId: bigint;
  strict: boolean;
  ifindex: number | null; // host-side interface, when known
  ips?: string[];         // the pod's addresses (canonical text)
}

export interface EnrollmentPlan {
  addCgroups: bigint[];
  removeCgroups: bigint[];
  strictIfindexes: number[];
}

export function planEnrollment(desired: DesiredPod[], inKernel: Iterable<bigint>, forbidden: bigint): EnrollmentPlan {
  const want = new Set(desired.filter((p) => p.cgroupId !== forbidden).map((p) => p.cgroupId));
  const have = new Set(inKernel);
  return {
    addCgroups: [...want].filter((id) => !have.has(id)).sort(),
    removeCgroups: [...have].filter((id) => !want.has(id)).sort(),
    strictIfindexes: [...new Set(desired.filter((p) => p.strict && p.ifindex !== null && p.cgroupId !== forbidden)
      .map((p) => p.ifindex as number))].sort((a, b) => a - b),
  };
}

/**
 * Addresses whose inbound plaintext the node proxy captures: those of enrolled pods that are not
 * STRICT (a STRICT pod admits only the proxy at tc egress, so plaintext never reaches it).
 */
export function captureAddresses(desired: DesiredPod[], forbidden: bigint): string[] {
  return [...new Set(desired.filter((p) => !p.strict && p.cgroupId !== forbidden).flatMap((p) => p.ips ?? []))].sort();
}

export interface SetPlan<T> { add: T[]; remove: T[] }

/** What to add to and remove from a kernel set so that it holds exactly `want`. */
export function planSet<T>(want: Iterable<T>, have: Iterable<T>): SetPlan<T> {
  const w = new Set(want), h = new Set(have);
  return { add: [...w].filter((x) => !h.has(x)), remove: [...h].filter((x) => !w.has(x)) };
}

/**
 * Interfaces the capture program watches at ingress: the node's uplinks (clients on other nodes
 * arrive there) and every pod's host-side interface (same-node clients, and the captured pods'
 * replies). None while nothing is captured.
 */
export function captureInterfaces(captured: string[], uplinks: Iterable<number>, podInterfaces: Iterable<number>): number[] {
  if (captured.length === 0) return [];
  return [...new Set([...uplinks, ...podInterfaces])].sort((a, b) => a - b);
}
