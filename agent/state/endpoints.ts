import { objectKey, type EndpointSliceInfo, type PodInfo, type ServiceInfo, type ServicePort } from '../config/objects';
import { selectorMatches } from './selector';
import type { WorkloadStore } from './store';

/**
 * Service → endpoints, as kube-proxy resolves them, for the source node proxy to pick from on every
 * new connection to a Service address. Pure: the answer depends on the store alone, and is
 * computed once per (store, Service, Service port) and then served from a cache that lives as long
 * as the store (a new snapshot makes a new store and so a new cache).
 *
 * - A Service with EndpointSlices (label `kubernetes.io/service-name`) takes its endpoints from
 *   them: the slice port with the Service port's name (and protocol), the first address of each
 *   endpoint (as kube-proxy: the EndpointSlice controller writes exactly one, and no meaning is
 *   defined for more), an endpoint listed by two slices counted once (the first slice by name
 *   wins). FQDN slices hold names, not addresses, and are not used (kube-proxy ignores them too).
 * - Without slices (`weft local`), the pods the Service's selector matches in its namespace: each
 *   address of each pod (both families of a dual-stack pod), at `targetPort` by number or by the
 *   name of a container port; a pod without that port name is no endpoint for that Service port.
 *   Conditions as the EndpointSlice controller sets them: serving = the pod's Ready condition,
 *   terminating = the pod is being deleted, ready = serving and not terminating.
 * - Neither (no slices and no selector): no endpoints.
 *
 * Every address family is returned: the caller keeps those of the family the client dialled.
 */

export interface Endpoint {
  ip: string;
  port: number;
  /** The pod behind the address: by the slice's targetRef, else by address. */
  pod?: PodInfo;
  nodeName?: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export interface ResolvedEndpoints {
  endpoints: readonly Endpoint[];
  source: 'endpointslices' | 'selector' | 'none';
  /** The Service has no cluster IP (`clusterIP: None`): clients dial endpoints directly. */
  headless: boolean;
}

/** The TCP port of a Service a client connected to. */
export function servicePortFor(service: ServiceInfo, port: number): ServicePort | undefined {
  return service.ports.find((p) => p.port === port && p.protocol === 'TCP');
}

export function serviceEndpoints(store: WorkloadStore, service: ServiceInfo, servicePort: ServicePort): ResolvedEndpoints {
  const index = indexOf(store);
  let byPort = index.resolved.get(service);
  if (byPort === undefined) {
    byPort = new WeakMap();
    index.resolved.set(service, byPort);
  }
  let resolved = byPort.get(servicePort);
  if (resolved === undefined) {
    resolved = resolve(store, index, service, servicePort);
    byPort.set(servicePort, resolved);
  }
  return resolved;
}

/**
 * The endpoints that take NEW connections, as kube-proxy's ProxyTerminatingEndpoints rule: the
 * ready ones; when none is ready, the ones still serving while they terminate (so a rolling update
 * of the last pods drains instead of failing); else none.
 */
export function usable(endpoints: readonly Endpoint[]): readonly Endpoint[] {
  let chosen = usableCache.get(endpoints);
  if (chosen === undefined) {
    const ready = endpoints.filter((e) => e.ready);
    chosen = Object.freeze(ready.length > 0 ? ready : endpoints.filter((e) => e.serving && e.terminating));
    usableCache.set(endpoints, chosen);
  }
  return chosen;
}

/** The EndpointSlices of a Service, by slice name. */
export function endpointSlicesOf(store: WorkloadStore, service: { namespace: string; name: string }): readonly EndpointSliceInfo[] {
  return indexOf(store).slicesByService.get(objectKey(service)) ?? NONE;
}

const NONE: readonly EndpointSliceInfo[] = Object.freeze([]);

interface Index {
  slicesByService: Map<string, EndpointSliceInfo[]>;
  /** Pods by namespace, by name: built on the first selector lookup, so a Service's first resolution scans its namespace only. */
  podsByNamespace?: Map<string, PodInfo[]>;
  resolved: WeakMap<ServiceInfo, WeakMap<ServicePort, ResolvedEndpoints>>;
}

const indexes = new WeakMap<WorkloadStore, Index>();
const usableCache = new WeakMap<readonly Endpoint[], readonly Endpoint[]>();

function indexOf(store: WorkloadStore): Index {
  let index = indexes.get(store);
  if (index === undefined) {
    const slicesByService = new Map<string, EndpointSliceInfo[]>();
    for (const slice of store.snapshot.endpointSlices ?? []) {
      const key = objectKey({ namespace: slice.namespace, name: slice.service });
      const list = slicesByService.get(key);
      if (list === undefined) slicesByService.set(key, [slice]);
      else list.push(slice);
    }
    for (const list of slicesByService.values()) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    index = { slicesByService, resolved: new WeakMap() };
    indexes.set(store, index);
  }
  return index;
}

function resolve(store: WorkloadStore, index: Index, service: ServiceInfo, servicePort: ServicePort): ResolvedEndpoints {
  const headless = service.clusterIPs.length === 0;
  const slices = index.slicesByService.get(objectKey(service));
  if (slices !== undefined) return frozen({ endpoints: fromSlices(store, slices, servicePort), source: 'endpointslices', headless });
  if (Object.keys(service.selector).length > 0) return frozen({ endpoints: fromSelector(podsIn(store, index, service.namespace), service, servicePort), source: 'selector', headless });
  return frozen({ endpoints: [], source: 'none', headless });
}

function frozen(resolved: { endpoints: Endpoint[]; source: ResolvedEndpoints['source']; headless: boolean }): ResolvedEndpoints {
  for (const e of resolved.endpoints) Object.freeze(e);
  Object.freeze(resolved.endpoints);
  return Object.freeze(resolved);
}

function fromSlices(store: WorkloadStore, slices: EndpointSliceInfo[], servicePort: ServicePort): Endpoint[] {
  const wanted = servicePort.name ?? '';
  const seen = new Set<string>();
  const endpoints: Endpoint[] = [];
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    const port = slice.ports.find((p) => (p.name ?? '') === wanted && p.protocol === servicePort.protocol);
    if (port === undefined) continue;
    for (const e of slice.endpoints) {
      const ip = e.addresses[0];
      if (ip === undefined) continue;
      const key = `${ip}|${port.port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const pod = podOf(store, slice.namespace, e.pod, ip);
      const endpoint: Endpoint = { ip, port: port.port, ready: e.ready, serving: e.serving, terminating: e.terminating };
      if (pod !== undefined) endpoint.pod = pod;
      const nodeName = e.nodeName ?? pod?.nodeName;
      if (nodeName) endpoint.nodeName = nodeName;
      endpoints.push(endpoint);
    }
  }
  return endpoints;
}

/** The targetRef's pod when it still has the address (a stale ref is not trusted), else whichever pod has it. */
function podOf(store: WorkloadStore, namespace: string, name: string | undefined, ip: string): PodInfo | undefined {
  if (name !== undefined) {
    const pod = store.pod(namespace, name);
    if (pod !== undefined && pod.ips.includes(ip)) return pod;
  }
  return store.podByIp(ip);
}

function podsIn(store: WorkloadStore, index: Index, namespace: string): PodInfo[] {
  if (index.podsByNamespace === undefined) {
    index.podsByNamespace = new Map();
    for (const pod of store.snapshot.pods) {
      const list = index.podsByNamespace.get(pod.namespace);
      if (list === undefined) index.podsByNamespace.set(pod.namespace, [pod]);
      else list.push(pod);
    }
    for (const list of index.podsByNamespace.values()) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  return index.podsByNamespace.get(namespace) ?? [];
}

function fromSelector(pods: PodInfo[], service: ServiceInfo, servicePort: ServicePort): Endpoint[] {
  const endpoints: Endpoint[] = [];
  for (const pod of pods) {
    if (!selectorMatches(service.selector, pod.labels)) continue;
    const port = targetPortOf(pod, servicePort);
    if (port === undefined) continue;
    const serving = pod.ready !== false;
    const terminating = pod.terminating === true;
    for (const ip of pod.ips) {
      const endpoint: Endpoint = { ip, port, pod, ready: serving && !terminating, serving, terminating };
      if (pod.nodeName) endpoint.nodeName = pod.nodeName;
      endpoints.push(endpoint);
    }
  }
  return endpoints;
}

/** A numbered targetPort is the pod's port as is; a named one is the pod's container port of that name (TCP ports only are named here). */
function targetPortOf(pod: PodInfo, servicePort: ServicePort): number | undefined {
  if (typeof servicePort.targetPort === 'number') return servicePort.targetPort;
  if (servicePort.protocol !== 'TCP') return undefined;
  return pod.containerPorts?.[servicePort.targetPort];
}
