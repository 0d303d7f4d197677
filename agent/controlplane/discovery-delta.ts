import { randomUUID } from 'node:crypto';
import { ROOT_NAMESPACE, type PodInfo } from '../config/objects';
import { encodeResource, frameResource, type DeltaResponse, type ResourceName } from './discovery-proto';
import { resourceId, resourcesOf, type Resource } from './discovery-resources';
import { isNamespacePolicy, remotePod } from './discovery-view';
import type { VersionedSnapshot } from './discovery-wire';

/**
 * The control plane's side of discovery v2: every published snapshot is diffed against the
 * previous one ONCE (by resource id and content, sameContent), and the diff is kept in a bounded
 * history. A stream then asks what its node needs to go from the version it last sent to the
 * latest: the work is proportional to the resources that changed in between, whatever the
 * cluster's size, and nothing is kept per stream but that version. A version older than the
 * history (or of another epoch) gets the full state instead.
 *
 * No I/O: discovery-delta-stream.ts writes what this computes.
 */

/** A resource as published. */
interface Entry {
  resource: Resource;
}

/** One publish: for every resource it changed, the entry before it (undefined: it was added). */
interface Change {
  from: number;
  version: number;
  before: Map<string, Entry | undefined>;
}

/** What a stream sends next. */
export type NodeMessage =
  /**
   * `entries`: the resources upserted, each encoded and framed (discovery-proto.ts frameResource);
   * for a full state produced lazily, as they are iterated (the view is still the one of the
   * version in the header: a publish replaces the index's maps, it never changes them).
   */
  | { kind: 'send'; header: Omit<DeltaResponse, 'resources'>; entries: Iterable<Uint8Array> }
  /** nothing of the node's view changed since that version: send nothing */
  | { kind: 'unchanged' };

export interface DeltaIndexOptions {
  /** The control plane process' epoch; default a random UUID. */
  epoch?: string;
  /** Most publishes kept to compute deltas from (default 1024). */
  maxVersions?: number;
  /** Most changed resources kept over all kept publishes (default 200,000). */
  maxChanges?: number;
}

export type IndexListener = (version: number) => void;

/**
 * Caches by object: a published Snapshot is never changed in place (the feed's sources build new
 * objects for what changed), so an object's encoding and its remote view are fixed.
 */
const encoded = new WeakMap<object, Uint8Array>();
const remoteViews = new WeakMap<PodInfo, { value: PodInfo; bytes?: Uint8Array }>();

/**
 * Whether two values of a Snapshot have the same content, as their JSON would (a property whose
 * value is undefined counts as absent). The same object is the same content at once; otherwise a
 * walk that allocates nothing: the Kubernetes source builds new objects on every publish, and
 * serializing 16,000 of them to compare the text cost more than the rest of the diff.
 */
export function sameContent(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameContent(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    const v = x[k];
    if (v === undefined) continue;
    n++;
    if (!sameContent(v, y[k])) return false;
  }
  for (const k in y) if (y[k] !== undefined) n--;
  return n === 0;
}

function bytesOf(r: Resource): Uint8Array {
  let b = encoded.get(r.value);
  if (b === undefined) {
    b = frameResource(encodeResource(r));
    encoded.set(r.value, b);
  }
  return b;
}

/** The reduced pod other nodes see (discovery-view.ts remotePod), made once per pod object. */
function remoteOf(pod: PodInfo): { value: PodInfo; bytes?: Uint8Array } {
  let v = remoteViews.get(pod);
  if (v === undefined) {
    v = { value: remotePod(pod) };
    remoteViews.set(pod, v);
  }
  return v;
}

/**
 * The node's view of an entry: discovery-view.ts viewOf with the encodings cached (the delta tests
 * hold the agent's state built from these to nodeView).
 */
interface View {
  value: object;
  bytes(): Uint8Array;
}

function viewOf(e: Entry | undefined, node: string, local: ReadonlySet<string>): View | undefined {
  if (e === undefined) return undefined;
  const r = e.resource;
  if (r.kind === 'Pod') {
    const pod = r.value as PodInfo;
    if (pod.nodeName !== node) {
      const remote = remoteOf(pod);
      return {
        value: remote.value,
        bytes: () => (remote.bytes ??= frameResource(encodeResource({ kind: 'Pod', key: r.key, value: remote.value }))),
      };
    }
  } else if (isNamespacePolicy(r.kind) && !isRelevantNamespace((r.value as { namespace: string }).namespace, local)) {
    return undefined;
  }
  return { value: r.value, bytes: () => bytesOf(r) };
}

function isRelevantNamespace(namespace: string, local: ReadonlySet<string>): boolean {
  return namespace === ROOT_NAMESPACE || local.has(namespace);
}

export class DeltaIndex {
  readonly epoch: string;
  private version: number;
  private entries = new Map<string, Entry>();
  /** node → namespace → pods of that namespace on that node */
  private podNamespaces = new Map<string, Map<string, number>>();
  /** namespace → ids of its AuthorizationPolicies and PeerAuthentications */
  private policies = new Map<string, Set<string>>();
  private history: Change[] = [];
  private historyChanges = 0;
  private readonly maxVersions: number;
  private readonly maxChanges: number;
  private readonly listeners = new Set<IndexListener>();

  constructor(initial: VersionedSnapshot, options: DeltaIndexOptions = {}) {
    this.epoch = options.epoch ?? randomUUID();
    this.maxVersions = options.maxVersions ?? 1024;
    this.maxChanges = options.maxChanges ?? 200_000;
    this.version = initial.version;
    this.load(initial);
  }

  currentVersion(): number {
    return this.version;
  }

  /** Diffs the snapshot against the current one, records the change, then tells the listeners. */
  publish(next: VersionedSnapshot): void {
    if (next.version <= this.version) throw new Error(`discovery: version ${next.version} published after ${this.version}; versions must increase`);
    const previous = this.entries;
    const from = this.version;
    this.load(next);
    const before = new Map<string, Entry | undefined>();
    for (const [id, e] of this.entries) {
      const old = previous.get(id);
      if (old === undefined || !sameContent(old.resource.value, e.resource.value)) before.set(id, old);
    }
    for (const [id, old] of previous) if (!this.entries.has(id)) before.set(id, old);
    this.history.push({ from, version: next.version, before });
    this.historyChanges += before.size;
    while (this.history.length > this.maxVersions || (this.historyChanges > this.maxChanges && this.history.length > 0)) {
      this.historyChanges -= this.history.shift()!.before.size;
    }
    for (const listener of [...this.listeners]) listener(this.version);
  }

  /** Returns the unsubscribe function. */
  subscribe(listener: IndexListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Whether a delta from this version (of this epoch) can be computed. */
  canResumeFrom(version: number): boolean {
    return version === this.version || this.changeIndexFrom(version) >= 0;
  }

  /**
   * The node's whole view at the current version, its entries encoded (or taken from the cache)
   * only as they are iterated: a stream sending it in chunks holds no more than a chunk.
   */
  full(node: string): NodeMessage & { kind: 'send' } {
    const local = this.localNamespaces(node);
    const all = this.entries;
    function* entries(): Generator<Uint8Array> {
      for (const e of all.values()) {
        const v = viewOf(e, node, local);
        if (v !== undefined) yield v.bytes();
      }
    }
    return { kind: 'send', header: { systemVersion: this.version, epoch: this.epoch, fullState: true, baseVersion: 0, removed: [] }, entries: entries() };
  }

  /**
   * What takes the node's view from `from` to the current version: a delta, `unchanged`, or the
   * full state when `from` is no longer (or never was) in the history.
   */
  next(node: string, from: number): NodeMessage & { kind: 'send' } | { kind: 'unchanged' } {
    if (from === this.version) return { kind: 'unchanged' };
    const start = this.changeIndexFrom(from);
    if (start < 0) return this.full(node);
    /** every resource changed since `from`, with its entry at `from` */
    const atFrom = new Map<string, Entry | undefined>();
    for (let i = start; i < this.history.length; i++) {
      for (const [id, e] of this.history[i]!.before) if (!atFrom.has(id)) atFrom.set(id, e);
    }
    const localNow = this.localNamespaces(node);
    const localThen = this.localNamespacesAt(node, atFrom);
    const candidates = new Set(atFrom.keys());
    for (const ns of localNow) if (!localThen.has(ns)) for (const id of this.policies.get(ns) ?? []) candidates.add(id);
    for (const ns of localThen) if (!localNow.has(ns)) for (const id of this.policies.get(ns) ?? []) candidates.add(id);
    const entries: Uint8Array[] = [];
    const removed: ResourceName[] = [];
    for (const id of candidates) {
      const then = viewOf(atFrom.has(id) ? atFrom.get(id) : this.entries.get(id), node, localThen);
      const now = viewOf(this.entries.get(id), node, localNow);
      if (then === undefined ? now === undefined : now !== undefined && sameContent(then.value, now.value)) continue;
      if (now !== undefined) entries.push(now.bytes());
      else {
        const r = (atFrom.has(id) ? atFrom.get(id) : this.entries.get(id))!.resource;
        removed.push({ kind: r.kind, key: r.key });
      }
    }
    if (entries.length === 0 && removed.length === 0) return { kind: 'unchanged' };
    return { kind: 'send', header: { systemVersion: this.version, epoch: this.epoch, fullState: false, baseVersion: from, removed }, entries };
  }

  /** Versions a delta can still be computed from, oldest first (for tests and logs). */
  oldestResumable(): number {
    return this.history[0]?.from ?? this.version;
  }

  private changeIndexFrom(version: number): number {
    let lo = 0;
    let hi = this.history.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const f = this.history[mid]!.from;
      if (f === version) return mid;
      if (f < version) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private load(v: VersionedSnapshot): void {
    this.version = v.version;
    const entries = new Map<string, Entry>();
    for (const r of resourcesOf(v.snapshot)) entries.set(resourceId(r.kind, r.key), { resource: r });
    const podNamespaces = new Map<string, Map<string, number>>();
    const policies = new Map<string, Set<string>>();
    for (const [id, e] of entries) {
      const r = e.resource;
      if (r.kind === 'Pod') {
        const pod = r.value as PodInfo;
        let counts = podNamespaces.get(pod.nodeName);
        if (counts === undefined) podNamespaces.set(pod.nodeName, (counts = new Map()));
        counts.set(pod.namespace, (counts.get(pod.namespace) ?? 0) + 1);
      } else if (isNamespacePolicy(r.kind)) {
        const ns = (r.value as { namespace: string }).namespace;
        let ids = policies.get(ns);
        if (ids === undefined) policies.set(ns, (ids = new Set()));
        ids.add(id);
      }
    }
    this.entries = entries;
    this.podNamespaces = podNamespaces;
    this.policies = policies;
  }

  private localNamespaces(node: string): Set<string> {
    return new Set(this.podNamespaces.get(node)?.keys() ?? []);
  }

  /** The node's namespaces at an earlier version: today's counts with the pod changes since undone. */
  private localNamespacesAt(node: string, atFrom: ReadonlyMap<string, Entry | undefined>): Set<string> {
    const counts = new Map(this.podNamespaces.get(node) ?? []);
    const add = (e: Entry | undefined, by: number): void => {
      if (e === undefined || e.resource.kind !== 'Pod') return;
      const pod = e.resource.value as PodInfo;
      if (pod.nodeName === node) counts.set(pod.namespace, (counts.get(pod.namespace) ?? 0) + by);
    };
    for (const [id, then] of atFrom) {
      if (!id.startsWith('Pod/')) continue;
      add(this.entries.get(id), -1);
      add(then, +1);
    }
    return new Set([...counts].filter(([, n]) => n > 0).map(([ns]) => ns));
  }
}
