import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { operationalLogger } from '../core/log';
import { apiFailure, type ApiFailure } from './kube-api-failure';
import { DEFAULT_TIMING, decideLease, observe, stillLeading, type LeaseView } from './leader-decision';

/**
 * Leader election on a coordination.k8s.io/v1 Lease, so that of several control-plane replicas one
 * writes status and Events (issue 10). Every replica serves certificates and discovery; only the
 * leader's StatusWriter is active.
 *
 * Every write to the Lease is a create or a replace carrying the resourceVersion just read, so two
 * replicas can never both believe their write won (optimistic concurrency: the loser gets 409).
 * A leader steps down at once when a renewal is refused (409: someone else holds it) or the Lease
 * shows another holder, and on its own when it has not renewed for renewDeadlineMs (shorter than
 * the lease, so it has stopped before a follower may take over, even when the API server is
 * unreachable). On close() a leader releases the Lease (empty holder), so a follower takes over at
 * its next look instead of after the lease expires.
 */

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  /** holderIdentity: the pod's name (POD_NAME), unique among the replicas. */
  identity: string;
  timing?: Partial<typeof DEFAULT_TIMING>;
}

export type LeasesApi = Pick<CoordinationV1Api, 'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'>;

const log = operationalLogger('leader');
/** How long close() waits for the API server (the step in flight, then the release). */
const CLOSE_BOUND_MS = 2_000;

function view(lease: V1Lease): LeaseView {
  const spec = lease.spec ?? {};
  return {
    resourceVersion: lease.metadata?.resourceVersion ?? '',
    ...(spec.holderIdentity !== undefined ? { holderIdentity: spec.holderIdentity } : {}),
    ...(spec.leaseDurationSeconds !== undefined ? { leaseDurationSeconds: spec.leaseDurationSeconds } : {}),
    ...(spec.leaseTransitions !== undefined ? { leaseTransitions: spec.leaseTransitions } : {}),
  };
}

export class LeaderElector {
  private readonly timing: typeof DEFAULT_TIMING;
  private leadingSince: number | undefined;
  private lastRenewedAt = 0;
  private observed: { resourceVersion: string; at: number } | undefined;
  /** The Lease as last read or written. */
  private last: V1Lease | undefined;
  private timer: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private closed = false;
  private running: Promise<void> | undefined;
  /** The last failure logged, so a lasting one is logged once, not every retry. */
  private lastProblem = '';

  constructor(
    private readonly api: LeasesApi,
    private readonly options: LeaderElectionOptions,
    private readonly onChange: (leading: boolean) => void,
  ) {
    this.timing = { ...DEFAULT_TIMING, ...options.timing };
    if (this.timing.renewDeadlineMs >= this.timing.leaseDurationMs) {
      throw new Error(`leader election: the renew deadline (${this.timing.renewDeadlineMs} ms) must be shorter than the lease (${this.timing.leaseDurationMs} ms)`);
    }
  }

  get leading(): boolean {
    return this.leadingSince !== undefined;
  }

  get lease(): string {
    return `Lease ${this.options.namespace}/${this.options.name}`;
  }

  start(): void {
    this.loop();
  }

  /** Stops; a leader releases the Lease (the holder is emptied with the resourceVersion it holds). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    // An API server that does not answer must not hold up a stop: past the bound the Lease simply expires.
    const bounded = <T>(p: Promise<T> | undefined): Promise<T | 'timeout' | undefined> =>
      Promise.race([p, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), CLOSE_BOUND_MS).unref())]);
    await bounded(this.running);
    const wasLeading = this.leading;
    this.stepDown('stopping');
    if (!wasLeading || this.last === undefined) return;
    const spec = this.last.spec ?? {};
    const release = this.api.replaceNamespacedLease({
      namespace: this.options.namespace, name: this.options.name,
      body: { ...this.last, spec: { ...spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: new V1MicroTime(Date.now()) } },
    }).then(() => 'released' as const, (error: unknown) => apiFailure(error).message);
    const outcome = await bounded(release);
    if (outcome === 'released') log.info({ lease: this.lease, identity: this.options.identity }, 'released the Lease');
    else log.info({ lease: this.lease, reason: outcome === 'timeout' ? `no answer in ${CLOSE_BOUND_MS / 1000} s` : outcome }, 'could not release the Lease; another replica takes it when it expires');
  }

  private loop(): void {
    if (this.closed) return;
    this.running = this.tick().catch((error: unknown) => {
      log.warn({ lease: this.lease, error: (error as Error).message }, 'leader election step failed');
    }).finally(() => {
      this.running = undefined;
      if (this.closed) return;
      this.timer = setTimeout(() => this.loop(), this.leading ? this.timing.renewPeriodMs : this.timing.retryPeriodMs);
    });
  }

  private async tick(): Promise<void> {
    const { namespace, name, identity } = this.options;
    const started = Date.now();
    let current: V1Lease | undefined;
    try {
      current = await this.api.readNamespacedLease({ namespace, name });
    } catch (error) {
      const failure = apiFailure(error);
      if (failure.code !== 404) return this.problem('read', failure);
      current = undefined;
    }
    if (this.closed) return;
    this.last = current;
    const leaseView = current && view(current);
    const now = Date.now();
    this.observed = observe(this.observed, leaseView, now);
    const decision = decideLease({ lease: leaseView, observedAt: this.observed?.at ?? now, now, me: identity, timing: this.timing });
    if (decision.action === 'follow') {
      if (this.leading) this.stepDown(`${decision.holder} holds the Lease`);
      this.lastProblem = '';
      return;
    }
    const micro = new V1MicroTime(started);
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.timing.leaseDurationMs / 1000),
      renewTime: micro,
      acquireTime: decision.action === 'renew' && current?.spec?.acquireTime !== undefined ? new V1MicroTime(current.spec.acquireTime) : micro,
      leaseTransitions: decision.action === 'acquire' ? decision.transitions : current?.spec?.leaseTransitions ?? 0,
    };
    try {
      this.last = decision.action === 'create'
        ? await this.api.createNamespacedLease({ namespace, body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'weft' } }, spec } })
        : await this.api.replaceNamespacedLease({ namespace, name, body: { ...current!, spec: { ...current!.spec, ...spec } } });
    } catch (error) {
      const failure = apiFailure(error);
      if (failure.code === 409) {
        // Another replica wrote the Lease since it was read: it is theirs now.
        if (this.leading) this.stepDown('the Lease was changed by another replica (409 Conflict)');
        this.lastProblem = '';
        return;
      }
      return this.problem(decision.action === 'create' ? 'create' : 'update', failure);
    }
    this.observed = observe(this.observed, view(this.last), Date.now());
    this.lastProblem = '';
    // Counted from before the write was sent: a follower's count starts when it reads the result, later.
    this.renewed(started, decision.action === 'acquire' ? decision.previous : undefined);
  }

  private renewed(at: number, previous: string | undefined): void {
    if (this.closed) return;
    this.lastRenewedAt = at;
    this.armDeadline();
    if (this.leadingSince === undefined) {
      this.leadingSince = at;
      log.info({ lease: this.lease, identity: this.options.identity, ...(previous ? { previous } : {}) }, 'leading: this replica writes status and Events');
      this.onChange(true);
    }
  }

  /**
   * Steps down at the renew deadline unless renewed before. A timer can fire up to a millisecond
   * before Date.now() says it is due (libuv arms it against the loop's cached clock): then it is
   * armed again for what is left, or a leader cut off from the API server would lead on forever
   * (CI saw exactly that: the deadline timer fired at 999 ms of 1,000, and nothing re-checked).
   */
  private armDeadline(): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = setTimeout(() => {
      if (stillLeading(this.lastRenewedAt, Date.now(), this.timing)) this.armDeadline();
      else this.stepDown(`not renewed for ${this.timing.renewDeadlineMs / 1000} s`);
    }, Math.max(1, this.lastRenewedAt + this.timing.renewDeadlineMs - Date.now()));
  }

  private stepDown(why: string): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = undefined;
    if (this.leadingSince === undefined) return;
    this.leadingSince = undefined;
    log.warn({ lease: this.lease, identity: this.options.identity, reason: why }, `stopped leading (${why}): status and Events are left to the replica holding ${this.lease}`);
    this.onChange(false);
  }

  private problem(verb: 'read' | 'create' | 'update', failure: ApiFailure): void {
    const advice = failure.code === 401 || failure.code === 403
      ? `: the control plane's ServiceAccount needs get, create and update on leases in API group coordination.k8s.io in namespace ${this.options.namespace} (the Role weft-controlplane-leader in daemonset/rbac.yaml)`
      : failure.code === undefined ? ': the request did not reach the API server; check that it is reachable from here' : '';
    const message = `cannot ${verb} ${this.lease} (${failure.message})${advice}`;
    if (message !== this.lastProblem) log.warn({ lease: this.lease, reason: failure.message }, `${message}; trying again`);
    this.lastProblem = message;
    // A leader that cannot renew keeps writing only until its renew deadline (the timer set at its last renewal).
  }
}
