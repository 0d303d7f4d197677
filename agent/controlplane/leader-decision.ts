/**
 * Which control-plane replica writes status and Events: the holder of a coordination.k8s.io/v1
 * Lease. These are the elector's decisions, pure (no API calls, no clock of their own), so they are
 * table-tested; leader-elector.ts does the reads and writes.
 *
 * Expiry is judged on this replica's own clock, from when it first saw the Lease at its current
 * resourceVersion (as client-go does), never from the holder's renewTime: two machines' clocks need
 * not agree, and a renewTime from a skewed clock would otherwise let a follower take a live lease.
 */

/** What the elector needs of a Lease (the API object is converted at the edge, leader-elector.ts). */
export interface LeaseView {
  /** Empty or absent: released (a leader that stopped cleanly gives it up). */
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  leaseTransitions?: number;
  resourceVersion: string;
}

export interface LeaseTiming {
  /** How long a Lease not renewed stays the holder's (written into the Lease). */
  leaseDurationMs: number;
  /** A leader that has not renewed for this long stops writing, whether or not anyone took over (shorter than the lease). */
  renewDeadlineMs: number;
}

export const DEFAULT_TIMING: LeaseTiming & { renewPeriodMs: number; retryPeriodMs: number } = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  /** The leader renews this often. */
  renewPeriodMs: 5_000,
  /** A follower looks at the Lease this often. */
  retryPeriodMs: 2_000,
};

export interface LeaseInput {
  /** undefined: the Lease does not exist (404). */
  lease: LeaseView | undefined;
  /** When this replica first saw `lease` at its resourceVersion (ms, its own clock). */
  observedAt: number;
  now: number;
  me: string;
  timing: LeaseTiming;
}

export type LeaseDecision =
  /** No Lease yet: create it holding it (a 409 means another replica was first). */
  | { action: 'create' }
  /** Ours: renew it (replace with its resourceVersion). */
  | { action: 'renew' }
  /** Released or expired: take it (replace with its resourceVersion; a 409 means another replica was first). */
  | { action: 'acquire'; previous: string | undefined; transitions: number }
  /** Someone else's and alive: write nothing; look again later. */
  | { action: 'follow'; holder: string; expiresAt: number };

/** The holder's lease duration as written in the Lease, else ours; a nonsensical value counts as ours. */
function durationOf(lease: LeaseView, timing: LeaseTiming): number {
  const s = lease.leaseDurationSeconds;
  return s !== undefined && Number.isFinite(s) && s > 0 ? s * 1000 : timing.leaseDurationMs;
}

/** Should this replica create, renew, acquire, or leave the Lease alone? */
export function decideLease(input: LeaseInput): LeaseDecision {
  const { lease, observedAt, now, me, timing } = input;
  if (lease === undefined) return { action: 'create' };
  const holder = lease.holderIdentity ?? '';
  const transitions = lease.leaseTransitions ?? 0;
  if (holder === me) return { action: 'renew' };
  if (holder === '') return { action: 'acquire', previous: undefined, transitions: transitions + 1 };
  const expiresAt = observedAt + durationOf(lease, timing);
  if (now >= expiresAt) return { action: 'acquire', previous: holder, transitions: transitions + 1 };
  return { action: 'follow', holder, expiresAt };
}

/**
 * A leader stays a leader only while its last successful renewal is younger than the renew
 * deadline: past it, another replica may take the Lease soon (the lease is longer than the
 * deadline, so the old leader has stopped before the new one starts).
 */
export function stillLeading(lastRenewedAt: number, now: number, timing: LeaseTiming): boolean {
  return now - lastRenewedAt < timing.renewDeadlineMs;
}

/** When this replica saw `lease` first: a new resourceVersion is seen now, the same one keeps its time. */
export function observe(previous: { resourceVersion: string; at: number } | undefined, lease: LeaseView | undefined, now: number): { resourceVersion: string; at: number } | undefined {
  if (lease === undefined) return undefined;
  if (previous !== undefined && previous.resourceVersion === lease.resourceVersion) return previous;
  return { resourceVersion: lease.resourceVersion, at: now };
}

/** `--lease-name`: NAME (in `defaultNamespace`) or NAMESPACE/NAME, both DNS names. */
export function parseLeaseName(text: string, defaultNamespace: string): { ok: true; value: { namespace: string; name: string } } | { ok: false; error: string } {
  const parts = text.split('/');
  const [namespace, name] = parts.length === 1 ? [defaultNamespace, parts[0]!] : parts.length === 2 ? [parts[0]!, parts[1]!] : ['', ''];
  if (parts.length > 2) return { ok: false, error: `--lease-name ${JSON.stringify(text)} is not NAME or NAMESPACE/NAME` };
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace) || namespace.length > 63) {
    return { ok: false, error: `--lease-name ${JSON.stringify(text)}: ${JSON.stringify(namespace)} is not a namespace name (lower-case letters, digits and '-')` };
  }
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name) || name.length > 253) {
    return { ok: false, error: `--lease-name ${JSON.stringify(text)}: ${JSON.stringify(name)} is not a Lease name (lower-case letters, digits, '-' and '.')` };
  }
  return { ok: true, value: { namespace, name } };
}
