/**
 * Pure reconciliation decisions: given what should be enrolled and what the kernel holds, what
 * to add and remove. No I/O, so every edge (restart adoption, relabel, pod gone) is unit-tested.
 */
export interface DesiredPod {
  key: string;            // namespace/name
  cgroupId: bigint;
  strict: boolean;
  ifindex: number | null; // host-side interface, when known
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
