import { objectKey, type Snapshot } from '../config/objects';

/**
 * A Snapshot as a set of keyed resources, the unit discovery v2 sends and removes
 * (discovery-proto.ts). Every kind of the Snapshot is one resource kind; a resource's key is its
 * `namespace/name` (`name` for cluster-scoped kinds, `default` for the ProxyConfig). Keys are
 * unique per kind: the sources (config/parse.ts, kube-source.ts) keep one object per name.
 *
 * A Snapshot rebuilt from resources lists each kind in key order. Nothing in the agent reads
 * meaning into the order of a Snapshot's lists (stores index by key, policies and routes sort by
 * their own precedence), so that order is as good as the source's.
 */

export const RESOURCE_KINDS = [
  'Namespace', 'Node', 'Pod', 'Service', 'EndpointSlice', 'PeerAuthentication', 'AuthorizationPolicy',
  'HTTPRoute', 'GRPCRoute', 'TrafficPolicy', 'ProxyConfig',
] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

export interface Resource {
  kind: ResourceKind;
  key: string;
  /** The Snapshot's own object (PodInfo, ServiceInfo, ...). */
  value: object;
}

/** `Kind/key`: unique over all kinds. */
export function resourceId(kind: ResourceKind, key: string): string {
  return `${kind}/${key}`;
}

type ListField = Exclude<keyof Snapshot, 'proxyConfig'>;

/** Where each list kind lives in a Snapshot, and whether the field is optional there. */
const LIST_FIELDS: ReadonlyArray<{ kind: Exclude<ResourceKind, 'ProxyConfig'>; field: ListField; optional: boolean; clusterScoped: boolean }> = [
  { kind: 'Namespace', field: 'namespaces', optional: false, clusterScoped: true },
  { kind: 'Node', field: 'nodes', optional: false, clusterScoped: true },
  { kind: 'Pod', field: 'pods', optional: false, clusterScoped: false },
  { kind: 'Service', field: 'services', optional: false, clusterScoped: false },
  { kind: 'EndpointSlice', field: 'endpointSlices', optional: true, clusterScoped: false },
  { kind: 'PeerAuthentication', field: 'peerAuthentications', optional: false, clusterScoped: false },
  { kind: 'AuthorizationPolicy', field: 'authorizationPolicies', optional: false, clusterScoped: false },
  { kind: 'HTTPRoute', field: 'httpRoutes', optional: true, clusterScoped: false },
  { kind: 'GRPCRoute', field: 'grpcRoutes', optional: true, clusterScoped: false },
  { kind: 'TrafficPolicy', field: 'trafficPolicies', optional: true, clusterScoped: false },
];

export const PROXY_CONFIG_KEY = 'default';

const CLUSTER_SCOPED = new Set<ResourceKind>(LIST_FIELDS.filter((f) => f.clusterScoped).map((f) => f.kind));

/** The key a resource of this kind must carry, read from its own value; undefined when the value has no name. */
export function keyOf(kind: ResourceKind, value: object): string | undefined {
  if (kind === 'ProxyConfig') return PROXY_CONFIG_KEY;
  const v = value as { namespace?: unknown; name?: unknown };
  if (typeof v.name !== 'string') return undefined;
  if (CLUSTER_SCOPED.has(kind)) return v.name;
  return typeof v.namespace === 'string' ? objectKey({ namespace: v.namespace, name: v.name }) : undefined;
}

/** Every resource of the snapshot, in the snapshot's order. */
export function* resourcesOf(snapshot: Snapshot): Generator<Resource> {
  for (const { kind, field } of LIST_FIELDS) {
    const list = (snapshot[field] ?? []) as object[];
    for (const value of list) yield { kind, key: keyOf(kind, value) ?? '', value };
  }
  if (snapshot.proxyConfig !== undefined) yield { kind: 'ProxyConfig', key: PROXY_CONFIG_KEY, value: snapshot.proxyConfig };
}

/** The Snapshot holding exactly these resources, each kind in key order; optional kinds absent when empty. */
export function snapshotOf(resources: Iterable<Resource>): Snapshot {
  const byKind = new Map<ResourceKind, Resource[]>();
  for (const r of resources) {
    const list = byKind.get(r.kind);
    if (list === undefined) byKind.set(r.kind, [r]);
    else list.push(r);
  }
  const snapshot: Snapshot = { namespaces: [], pods: [], nodes: [], services: [], peerAuthentications: [], authorizationPolicies: [] };
  const target = snapshot as unknown as Record<string, object[]>;
  for (const { kind, field, optional } of LIST_FIELDS) {
    const list = byKind.get(kind);
    if (list === undefined || list.length === 0) {
      if (!optional) target[field] = [];
      continue;
    }
    list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    target[field] = list.map((r) => r.value);
  }
  const proxyConfig = byKind.get('ProxyConfig')?.[0];
  if (proxyConfig !== undefined) snapshot.proxyConfig = proxyConfig.value as Snapshot['proxyConfig'];
  return snapshot;
}

/**
 * The same snapshot in the canonical form snapshotOf gives (each kind in key order, optional kinds
 * absent when empty, a later duplicate key replacing an earlier one): what a client rebuilding it
 * from resources holds.
 */
export function canonicalSnapshot(snapshot: Snapshot): Snapshot {
  const byId = new Map<string, Resource>();
  for (const r of resourcesOf(snapshot)) byId.set(resourceId(r.kind, r.key), r);
  return snapshotOf(byId.values());
}

/**
 * Keyed resources that give the same Snapshot as snapshotOf, kept up to date change by change: a
 * kind is re-sorted only when its set of keys changed, and its list rebuilt only when it changed,
 * so one pod's update costs a pass over the pods, not a sort of everything (the agent rebuilds
 * its Snapshot after every delta).
 */
export class ResourceSet {
  private kinds = new Map<ResourceKind, { byKey: Map<string, object>; order?: string[]; list?: object[] }>();

  replace(resources: Iterable<Resource>): void {
    this.kinds.clear();
    for (const r of resources) this.upsert(r);
  }

  upsert(r: Resource): void {
    let k = this.kinds.get(r.kind);
    if (k === undefined) this.kinds.set(r.kind, (k = { byKey: new Map() }));
    if (!k.byKey.has(r.key)) k.order = undefined;
    k.byKey.set(r.key, r.value);
    k.list = undefined;
  }

  remove(kind: ResourceKind, key: string): void {
    const k = this.kinds.get(kind);
    if (k === undefined || !k.byKey.delete(key)) return;
    k.order = undefined;
    k.list = undefined;
  }

  snapshot(): Snapshot {
    const snapshot: Snapshot = { namespaces: [], pods: [], nodes: [], services: [], peerAuthentications: [], authorizationPolicies: [] };
    const target = snapshot as unknown as Record<string, object[]>;
    for (const { kind, field, optional } of LIST_FIELDS) {
      const list = this.list(kind);
      if (list.length > 0) target[field] = list;
      else if (!optional) target[field] = [];
    }
    const proxyConfig = this.kinds.get('ProxyConfig')?.byKey.get(PROXY_CONFIG_KEY);
    if (proxyConfig !== undefined) snapshot.proxyConfig = proxyConfig as Snapshot['proxyConfig'];
    return snapshot;
  }

  private list(kind: ResourceKind): object[] {
    const k = this.kinds.get(kind);
    if (k === undefined) return [];
    if (k.list === undefined) {
      k.order ??= [...k.byKey.keys()].sort();
      k.list = k.order.map((key) => k.byKey.get(key)!);
    }
    // A copy: the Snapshot handed out must not change when the set does.
    return k.list.slice();
  }
}
