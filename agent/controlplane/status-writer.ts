import { hostname } from 'node:os';
import { PatchStrategy, setHeaderOptions, type CoreV1Api, type CoreV1Event, type CustomObjectsApi } from '@kubernetes/client-node';
import { operationalLogger } from '../core/log';
import { apiFailure } from './kube-api-failure';
import type { KubeObjectsView } from './kube-source';
import { canonicalJson, CONTROLLER_NAME, kubeTime, truncate } from './status-conditions';
import { planStatus, type InvalidObject, type StatusWrite } from './status-plan';

/**
 * Writes what status-plan.ts decides back to the API server: a merge patch to the status
 * subresource of each HTTPRoute, GRPCRoute, TrafficPolicy, AuthorizationPolicy, PeerAuthentication
 * and ProxyConfig whose status changed, and a Warning
 * Event (reason Invalid) once per generation of an object that fails conversion.
 *
 * A write storm is ruled out three ways: nothing is written when the object already has the status
 * it should have; a status just written is not written again while the informer still shows the
 * version it was written against; and each object gets at most one write per `minIntervalMs`, the
 * changes in between coalesced into the last one. A 404 (the object is gone) or 409 (it changed
 * since it was read: the informer brings the new version, and with it another try) is expected and
 * only logged at debug; any other failure is logged and tried again after `retryMs` or at the next
 * change, whichever comes first.
 */

export interface StatusWriterOptions {
  custom: CustomObjectsApi;
  /** Where Events are created; without it no Events are sent. */
  core?: CoreV1Api;
  /** At most one status write per object per this many ms (default 1000). */
  minIntervalMs?: number;
  /** A failed write (other than 404/409) is tried again after this long (default 10 s). */
  retryMs?: number;
  /** Status writes in flight at once, over all objects (default 8). */
  maxInFlight?: number;
  /** Time and timers (default: the process's); tests step through the rate limit with their own. */
  clock?: Clock;
}

export interface Clock {
  /** ms since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface StatusWriterStats {
  /** Status patches the API server accepted. */
  written: number;
  /** Answered 404 or 409: the object went away or changed; nothing to do until the next change. */
  superseded: number;
  /** Failed otherwise (logged). */
  failed: number;
  /** Events created. */
  events: number;
}

interface Entry {
  /** The latest status the object should get, not written yet. */
  pending: StatusWrite | undefined;
  /** What was last written, and from which resourceVersion: the same write is not sent again from that version. */
  sent: { fromVersion: string | undefined; status: string } | undefined;
  inFlight: boolean;
  /** Queued in `ready`. */
  queued: boolean;
  /** When the last write started (ms). */
  lastStart: number;
  /** Not before this time (ms): a retry after a failure. */
  notBefore: number;
  timer: unknown;
}

const log = operationalLogger('status-writer');

/** core/v1 Event messages are cut at 1 KiB, as client-go's recorder does. */
const EVENT_MESSAGE_MAX = 1024;

export class StatusWriter {
  private readonly entries = new Map<string, Entry>();
  /** `Kind namespace/name` → what the last Event was about (generation, else the message). */
  private readonly reported = new Map<string, string>();
  private readonly ready: string[] = [];
  private running = 0;
  private closed = false;
  private active = true;
  /** The last view seen while not active, for when the writer becomes active. */
  private parked: KubeObjectsView | undefined;
  private eventSeq = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly minIntervalMs: number;
  private readonly retryMs: number;
  private readonly maxInFlight: number;
  private readonly clock: Clock;
  private readonly instance = hostname();
  readonly stats: StatusWriterStats = { written: 0, superseded: 0, failed: 0, events: 0 };

  constructor(private readonly options: StatusWriterOptions) {
    this.minIntervalMs = options.minIntervalMs ?? 1000;
    this.retryMs = options.retryMs ?? 10_000;
    this.maxInFlight = options.maxInFlight ?? 8;
    this.clock = options.clock ?? SYSTEM_CLOCK;
  }

  /** Called after every build of the Kubernetes source (startKubeSource's onBuilt). */
  observe(view: KubeObjectsView): void {
    if (this.closed) return;
    if (!this.active) {
      this.parked = view;
      return;
    }
    const plan = planStatus(view, kubeTime(new Date(this.clock.now())));
    for (const [id, entry] of this.entries) {
      if (plan.seen.has(id)) continue;
      if (entry.timer !== undefined) this.clock.clearTimeout(entry.timer);
      entry.timer = undefined;
      entry.pending = undefined;
      if (!entry.inFlight) this.entries.delete(id);
    }
    for (const id of [...this.reported.keys()]) if (!plan.seen.has(id)) this.reported.delete(id);
    for (const write of plan.writes) this.enqueue(write);
    const invalid = new Set(plan.invalid.map((o) => `${o.kind.kind} ${o.namespace}/${o.name}`));
    for (const id of [...this.reported.keys()]) if (!invalid.has(id)) this.reported.delete(id);
    for (const object of plan.invalid) this.report(object);
    this.settle();
  }

  /**
   * Only one control-plane replica should write (issue 10: the Lease holder). Inactive, the writer
   * keeps the latest view and writes nothing; made active, it plans from that view at once, so a
   * failover loses no status (what is already right is not written again).
   */
  setActive(active: boolean): void {
    if (this.active === active) return;
    this.active = active;
    if (!active) {
      for (const entry of this.entries.values()) {
        if (entry.timer !== undefined) this.clock.clearTimeout(entry.timer);
        entry.timer = undefined;
        entry.pending = undefined;
      }
      this.ready.length = 0;
      this.settle();
      return;
    }
    const view = this.parked;
    this.parked = undefined;
    if (view !== undefined) this.observe(view);
  }

  /** Resolves when no write is in flight or waiting for its slot (a retry after a failure is not waited for). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    for (const entry of this.entries.values()) if (entry.timer !== undefined) this.clock.clearTimeout(entry.timer);
    this.entries.clear();
    this.ready.length = 0;
    this.settle();
  }

  private enqueue(write: StatusWrite): void {
    const id = `${write.kind.kind} ${write.namespace}/${write.name}`;
    let entry = this.entries.get(id);
    if (entry === undefined) {
      entry = { pending: undefined, sent: undefined, inFlight: false, queued: false, lastStart: -Infinity, notBefore: 0, timer: undefined };
      this.entries.set(id, entry);
    }
    const status = canonicalJson(write.body.status);
    // Written already from this very version: the informer has not shown the result yet.
    if (entry.sent !== undefined && entry.sent.fromVersion === write.resourceVersion && entry.sent.status === status) {
      entry.pending = undefined;
      return;
    }
    entry.pending = write;
    this.schedule(id, entry);
  }

  private schedule(id: string, entry: Entry): void {
    if (this.closed || !this.active || entry.inFlight || entry.queued || entry.timer !== undefined || entry.pending === undefined) return;
    const wait = Math.max(entry.lastStart + this.minIntervalMs, entry.notBefore) - this.clock.now();
    if (wait > 0) {
      entry.timer = this.clock.setTimeout(() => {
        entry.timer = undefined;
        this.schedule(id, entry);
      }, wait);
      return;
    }
    entry.queued = true;
    this.ready.push(id);
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.running < this.maxInFlight && this.ready.length > 0) {
      const id = this.ready.shift()!;
      const entry = this.entries.get(id);
      if (entry === undefined) continue;
      entry.queued = false;
      const write = entry.pending;
      if (write === undefined) continue;
      entry.pending = undefined;
      entry.inFlight = true;
      entry.lastStart = this.clock.now();
      entry.sent = { fromVersion: write.resourceVersion, status: canonicalJson(write.body.status) };
      this.running++;
      void this.patch(write).then((outcome) => {
        this.running--;
        entry.inFlight = false;
        if (outcome !== 'written') entry.sent = undefined;
        if (outcome === 'written' && entry.pending?.resourceVersion === write.resourceVersion) {
          // Computed from the version just replaced: the informer brings the new one and a fresh plan.
          entry.pending = undefined;
        }
        if (outcome === 'failed') {
          entry.notBefore = this.clock.now() + this.retryMs;
          entry.pending ??= write;
        }
        if (this.closed || !this.entries.has(id)) this.entries.delete(id);
        else this.schedule(id, entry);
        this.pump();
        this.settle();
      });
    }
  }

  private async patch(write: StatusWrite): Promise<'written' | 'superseded' | 'failed'> {
    const { kind, namespace, name } = write;
    try {
      const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
      const target = { group: kind.group, version: kind.version, plural: kind.plural, name, body: write.body, fieldManager: 'weft-controlplane' };
      if (kind.namespaced) await this.options.custom.patchNamespacedCustomObjectStatus({ ...target, namespace }, merge);
      else await this.options.custom.patchClusterCustomObjectStatus(target, merge);
      this.stats.written++;
      log.debug({ object: `${kind.kind} ${namespace}/${name}` }, 'status written');
      return 'written';
    } catch (error) {
      const failure = apiFailure(error);
      if (failure.code === 404 || failure.code === 409) {
        this.stats.superseded++;
        log.debug({ object: `${kind.kind} ${namespace}/${name}`, reason: failure.message }, 'status not written: the object is gone or changed since it was read');
        return 'superseded';
      }
      this.stats.failed++;
      const advice = failure.code === 401 || failure.code === 403
        ? `: the control plane's ServiceAccount needs patch on ${kind.plural}/status in API group ${kind.group} (the ClusterRole weft-controlplane in daemonset/rbac.yaml)`
        : failure.code === undefined ? ': the request did not reach the API server; check that it is reachable from here' : '';
      log.warn(
        { object: `${kind.kind} ${namespace}/${name}`, reason: failure.message },
        `cannot write the status of ${kind.kind} ${namespace}/${name} (${failure.message})${advice}; trying again in ${this.retryMs / 1000} s or at the next change`,
      );
      return 'failed';
    }
  }

  /** A Warning Event, once per generation (or, without one, per message) of an invalid object. */
  private report(object: InvalidObject): void {
    const core = this.options.core;
    if (core === undefined) return;
    const id = `${object.kind.kind} ${object.namespace}/${object.name}`;
    const about = object.generation !== undefined ? `generation ${object.generation}` : object.message;
    if (this.reported.get(id) === about) return;
    this.reported.set(id, about);
    const now = new Date(this.clock.now());
    const unique = (BigInt(now.getTime()) * 1_000_000n + BigInt(this.eventSeq++ % 1_000_000)).toString(16);
    // A cluster-scoped object's Events go to `default`, as client-go's recorder puts them.
    const namespace = object.kind.namespaced ? object.namespace : 'default';
    const event: CoreV1Event = {
      metadata: { name: `${object.name}.${unique}`, namespace },
      involvedObject: {
        apiVersion: `${object.kind.group}/${object.kind.version}`, kind: object.kind.kind, name: object.name,
        ...(object.kind.namespaced ? { namespace: object.namespace } : {}),
        ...(object.uid !== undefined ? { uid: object.uid } : {}),
        ...(object.resourceVersion !== undefined ? { resourceVersion: object.resourceVersion } : {}),
      },
      type: 'Warning',
      reason: 'Invalid',
      message: truncate(object.message, EVENT_MESSAGE_MAX),
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      source: { component: 'weft-controlplane' },
      reportingComponent: CONTROLLER_NAME,
      reportingInstance: this.instance,
    };
    core.createNamespacedEvent({ namespace, body: event }).then(
      () => { this.stats.events++; },
      (error: unknown) => {
        const failure = apiFailure(error);
        log.warn(
          { object: id, reason: failure.message },
          `cannot create an Event for the invalid ${id} (${failure.message})${failure.code === 403 ? ': the control plane\'s ServiceAccount needs create on events (the ClusterRole weft-controlplane in daemonset/rbac.yaml)' : ''}; the problem is in the log above`,
        );
      },
    );
  }

  private isIdle(): boolean {
    if (this.running > 0 || this.ready.length > 0) return false;
    for (const entry of this.entries.values()) {
      if (entry.pending !== undefined && entry.notBefore <= this.clock.now()) return false;
    }
    return true;
  }

  private settle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
