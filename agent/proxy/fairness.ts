/**
 * Fairness between the pods that share this node's proxy (docs/fairness.md): the decisions, pure and
 * tested without sockets. fairness-share.ts applies them to live connections.
 *
 * A connection is charged to one account, the party that opened it: the source pod on the outbound
 * listener (15001, by the cgroup the kernel recorded), the verified peer (source pod, else the
 * peer's identity) on the tunnel (15008), the client address on plaintext capture (15006). Both
 * directions of a connection are charged to it, so a pod downloading in bulk pays for its
 * download, not its server.
 */

/** `ProxyConfig spec.fairness` with the defaults filled in. */
export interface FairnessConfig {
  /** connections one account may hold open at once; the next is refused (reset). */
  maxConnectionsPerPod: number;
  /** connections of one account still being set up (redirect lookup, upstream connect or tunnel handshake) */
  maxPendingPerPod: number;
  /** bytes read for one account in one turn of the event loop before its sockets wait for the next turn */
  readBudgetBytes: number;
  /** event-loop lag (ms) above which the proxy is overloaded and sheds the noisiest account */
  overloadLagMs: number;
  /** how long a shed account's new connections are refused and its reads held (ms) */
  shedMs: number;
}

/**
 * Defaults that protect without getting in the way of a normal pod: a thousand connections and
 * 128 being set up at once is more than an ordinary workload holds, and bounds what one pod can
 * pin; 256 KiB per turn is four socket reads (the bulk path reads 64 KiB at a time), so a bulk
 * stream still moves ~10 Gb/s at a turn every 200 us; a lag of 20 ms is several times the proxy's own latency.
 */
export const DEFAULT_FAIRNESS: Readonly<FairnessConfig> = Object.freeze({
  maxConnectionsPerPod: 1024,
  maxPendingPerPod: 128,
  readBudgetBytes: 256 * 1024,
  overloadLagMs: 20,
  shedMs: 200,
});

/** The bounds each field is checked against (ProxyConfig validation and tests share them). */
export const FAIRNESS_BOUNDS: Readonly<Record<keyof FairnessConfig, readonly [number, number]>> = Object.freeze({
  maxConnectionsPerPod: [1, 1_000_000],
  maxPendingPerPod: [1, 1_000_000],
  readBudgetBytes: [4096, 1 << 30],
  overloadLagMs: [1, 60_000],
  shedMs: [1, 60_000],
});

/** Why a connection was refused or an account shed: the `reason` label of `weft_overload_shed_total`. */
export type ShedReason = 'max_connections' | 'max_pending' | 'overload';

/** What the proxy knows of one account when a new connection of it arrives. */
export interface AccountLoad {
  open: number;
  pending: number;
  /** the account is shed now (overload) */
  shed: boolean;
  /** the account is on probation after a shed and has used this sample's budget (bytes or a new connection) */
  throttled?: boolean;
}

export type Admission = { admit: true } | { admit: false; reason: ShedReason; detail: string };

/**
 * Whether a new connection of `account` is taken on. A shed account is refused first (the overload
 * is what the operator must see), then the pending limit, then the open one. Pure.
 */
export function admitConnection(account: string, load: AccountLoad, c: FairnessConfig): Admission {
  if (load.shed) {
    return { admit: false, reason: 'overload', detail: `proxy overloaded (event-loop lag above spec.fairness.overloadLagMs ${c.overloadLagMs} ms): ${account} is the noisiest and is shed for ${c.shedMs} ms` };
  }
  if (load.throttled === true) {
    return { admit: false, reason: 'overload', detail: `proxy overloaded: ${account} was shed and may open one connection or read spec.fairness.readBudgetBytes ${c.readBudgetBytes} per 10 ms until it has been calm for a while` };
  }
  if (load.pending >= c.maxPendingPerPod) {
    return { admit: false, reason: 'max_pending', detail: `${account} has ${load.pending} connections being set up (spec.fairness.maxPendingPerPod ${c.maxPendingPerPod})` };
  }
  if (load.open >= c.maxConnectionsPerPod) {
    return { admit: false, reason: 'max_connections', detail: `${account} holds ${load.open} connections (spec.fairness.maxConnectionsPerPod ${c.maxConnectionsPerPod})` };
  }
  return { admit: true };
}

/**
 * What one account costs the proxy recently: bytes moved plus a weight per new connection, decayed
 * with a half-life (an exponentially weighted sum), so a pod that went quiet stops being noisy.
 */
export interface Noise {
  score: number;
  /** when `score` was last brought up to date (ms) */
  at: number;
}

/** The half-life of an account's noise score (ms). */
export const NOISE_HALF_LIFE_MS = 1000;
/** A new connection costs the proxy about what moving this many bytes does (accept, lookup, policy, upstream connect, logs). */
export const CONNECTION_COST_BYTES = 64 * 1024;

/**
 * The least noise an account must have to be shed: about 22 MiB/s moved or 350 new connections a
 * second, sustained (a steady rate r scores r / ln 2 with a 1 s half-life). Below it a pod is not
 * what overloads the proxy: the lag comes from the proxy's own work (applying a new snapshot, a GC)
 * or from other processes, and shedding the busiest of a few quiet pods refused a lab test's one
 * curl after a config edit stalled the loop 29 ms (redirect.test.ts).
 */
export const MIN_SHED_NOISE = 32 * 1024 * 1024;

/**
 * Busy now (chooseShed's `recent`): charged at least BUSY_MIN_BYTES (bytes, and a new connection's
 * CONNECTION_COST_BYTES) within one window of BUSY_WITHIN_MS that began no longer ago than two of
 * them. Any charge at all was not enough: a pod that had moved 1 GiB a few seconds earlier still
 * scored above MIN_SHED_NOISE while it sent 5 bytes every 200 ms, so a machine-wide stall shed it
 * and reset that connection (mesh-tunnel's control-plane-away test, with other tests loading the
 * host). 1 MiB in 250 ms is 4 MiB/s, a fifth of the rate that keeps a score at MIN_SHED_NOISE.
 */
export const BUSY_WITHIN_MS = 250;
export const BUSY_MIN_BYTES = 1024 * 1024;

/** Charges within the current busy window. */
export interface BusyWindow {
  /** when the window began */
  since: number;
  bytes: number;
}

/** `w` after charging `n` at `now`: a new window once the current one is BUSY_WITHIN_MS old. Pure. */
export function chargeWindow(w: BusyWindow, now: number, n: number): BusyWindow {
  return now - w.since >= BUSY_WITHIN_MS ? { since: now, bytes: n } : { since: w.since, bytes: w.bytes + n };
}

/** Whether the window says busy at `now` (see BUSY_MIN_BYTES). Pure. */
export function isBusy(w: BusyWindow, now: number): boolean {
  return now - w.since <= 2 * BUSY_WITHIN_MS && w.bytes >= BUSY_MIN_BYTES;
}

/** `n` decayed to `now`, plus `add`. Pure. */
export function addNoise(n: Noise, now: number, add: number): Noise {
  const dt = Math.max(0, now - n.at);
  return { score: n.score * Math.pow(2, -dt / NOISE_HALF_LIFE_MS) + add, at: now };
}

/** `n`'s score as of `now`. Pure. */
export function noiseAt(n: Noise, now: number): number {
  return addNoise(n, now, 0).score;
}

/**
 * The account to shed when the proxy is overloaded: the noisiest, when it is noisier than every
 * other by at least `margin` times, noisy enough to be the cause (`floor`; an account still on
 * probation after a shed, `proven`, was the cause already: its noise fell because it was shed) and
 * some other account is active (shedding the only pod being
 * served protects nobody; two equally busy pods are not one starving the other). Pure.
 */
export function chooseShed(scores: ReadonlyMap<string, number>, margin = 2, floor = MIN_SHED_NOISE, proven: ReadonlySet<string> = new Set(), recent?: ReadonlySet<string>): string | undefined {
  let top: string | undefined;
  let best = 0;
  let second = 0;
  let active = 0;
  for (const [account, score] of scores) {
    if (score <= 0) continue;
    active++;
    if (score > best) { second = best; best = score; top = account; } else if (score > second) second = score;
  }
  if (active < 2 || top === undefined || (best < floor && !proven.has(top))) return undefined;
  // The noisiest must be busy now: a pod whose bulk ended seconds ago still scores high, but the lag is not its doing.
  if (recent !== undefined && !recent.has(top)) return undefined;
  return best >= margin * second ? top : undefined;
}

/** A shed account shed again this soon after its last shed ended is shed for twice as long, up to this many times shedMs. */
export const MAX_SHED_FACTOR = 8;

/**
 * How long an account is shed now, given how long its last shed lasted and when its restriction
 * (the shed and the probation after it) ended or ends: shedMs the first time; twice the last when
 * the overload came back before or within shedMs of that end (the noisy pod brought it back), up to
 * MAX_SHED_FACTOR x shedMs. Under a lasting overload the
 * noisy pod then runs in short bursts between long pauses, and each burst is what its neighbours
 * wait behind. Pure.
 */
export function shedDuration(last: { ms: number; endedAt: number } | undefined, now: number, c: FairnessConfig): number {
  if (last === undefined || now - last.endedAt > c.shedMs) return c.shedMs;
  return Math.min(last.ms * 2, MAX_SHED_FACTOR * c.shedMs);
}

/** Whether an event-loop lag sample means overload. Pure. */
export function isOverloaded(lagMs: number, c: FairnessConfig): boolean {
  return lagMs > c.overloadLagMs;
}
