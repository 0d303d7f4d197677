import {
  CoreV1Api, CustomObjectsApi, DiscoveryV1Api, KubeConfig, ListWatch,
  type Informer, type KubernetesListObject, type KubernetesObject, type ObjectCache, type V1EndpointSlice,
} from '@kubernetes/client-node';
import type { Snapshot } from '../config/objects';
import { operationalLogger } from '../core/log';
import type { Result } from '../core/result';
import {
  authorizationPolicyInfo, endpointSliceInfo, kindFragment, namespaceInfo, nodeInfo, peerAuthenticationInfo, podInfo, serviceInfo, type CustomObject,
} from './discovery-kube-convert';
import { boundedApiClient } from './kube-client';
import { BoundedWatch, DEFAULT_WATCH_TIMING, type WatchTiming } from './kube-watch';

/**
 * The Kubernetes source: list+watch informers on Namespaces, Pods, Nodes, Services and
 * EndpointSlices (`discovery.k8s.io/v1`), and on the policy and route kinds whose CRDs are
 * installed, and on the mesh's ProxyConfig (`config.weft.dev/v1`, cluster-scoped `default`; absent,
 * the proxies keep their defaults). A kind whose CRD is missing at start is checked again every CRD_POLL_MS (a list that
 * answers 404 until the CRD is installed) and followed from then on, without a restart. An informer relists
 * when its watch is too old (410 Gone) and restarts after any other error; every watch is bounded in
 * time (kube-watch.ts), so one that stalls ends as an error too. A burst of events
 * becomes one snapshot. Pods carry no cgroup path (see discovery-kube-convert.ts): the agent
 * resolves it from the pod UID.
 */

export interface KubeSource {
  current(): Snapshot;
  close(): void;
}

/**
 * What the status writer (status-writer.ts) reads after every build, whether or not the snapshot
 * changed (an invalid edit leaves the snapshot as it was, but not the object's status).
 */
export interface KubeObjectsView {
  snapshot: Snapshot;
  /** Per custom kind (HTTPRoute, GRPCRoute, TrafficPolicy, AuthorizationPolicy, PeerAuthentication, ProxyConfig): the objects as the API has them, status included. */
  objects: ReadonlyMap<string, readonly CustomObject[]>;
  /**
   * `Kind namespace/name` (`ProxyConfig /default`) → the field-level errors of an object that failed
   * conversion as it stands: the same verdict that kept it out of the snapshot (lastGood below).
   */
  invalid: ReadonlyMap<string, string>;
}

interface CustomKind {
  kind: string;
  group: string;
  version: string;
  plural: string;
}

const CUSTOM_KINDS: CustomKind[] = [
  { kind: 'PeerAuthentication', group: 'security.weft.dev', version: 'v1', plural: 'peerauthentications' },
  { kind: 'AuthorizationPolicy', group: 'security.weft.dev', version: 'v1', plural: 'authorizationpolicies' },
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes' },
  { kind: 'GRPCRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes' },
  { kind: 'TrafficPolicy', group: 'networking.weft.dev', version: 'v1', plural: 'trafficpolicies' },
  // Cluster-scoped, one object named `default` (the CRD refuses any other name; convertProxyConfig too).
  { kind: 'ProxyConfig', group: 'config.weft.dev', version: 'v1', plural: 'proxyconfigs' },
];

const DEBOUNCE_MS = 100;
const RETRY_MS = 5_000;
/** How often a kind whose CRD is missing is looked for again (a list that answers 404 until it exists). */
const CRD_POLL_MS = 2_000;

const log = operationalLogger('kube-source');

type Cache<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

/** `--kubeconfig FILE`, else in-cluster config or ~/.kube/config. */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path !== undefined) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

function statusOf(error: unknown): number | undefined {
  const { code, statusCode } = error as { code?: unknown; statusCode?: unknown };
  return typeof code === 'number' ? code : typeof statusCode === 'number' ? statusCode : undefined;
}

/** Resolves once every informer has listed once; the source keeps following changes until close(). */
export async function startKubeSource(
  kc: KubeConfig, onSnapshot: (s: Snapshot) => void, onBuilt?: (view: KubeObjectsView) => void, watchTiming: WatchTiming = DEFAULT_WATCH_TIMING,
): Promise<KubeSource> {
  const core = boundedApiClient(kc, CoreV1Api);
  const custom = boundedApiClient(kc, CustomObjectsApi);
  const discovery = boundedApiClient(kc, DiscoveryV1Api);
  let closed = false;
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
    timers.add(t);
  };

  let debounce: NodeJS.Timeout | undefined;
  let lastJson = '';
  /** Until every informer has listed, changes wait: build() after the sync sees them all. */
  let current: Snapshot | undefined;
  const changed = (): void => {
    if (closed || current === undefined || debounce !== undefined) return;
    debounce = setTimeout(() => {
      debounce = undefined;
      if (closed) return;
      const snapshot = build();
      observe(snapshot);
      const json = JSON.stringify(snapshot);
      if (json === lastJson) return;
      lastJson = json;
      current = snapshot;
      onSnapshot(snapshot);
    }, DEBOUNCE_MS);
  };

  /** Starts an informer and restarts it after every error; resolves after its first successful list. */
  function follow<T extends KubernetesObject>(name: string, path: string, list: () => Promise<KubernetesListObject<T>>): { cache: Cache<T>; synced: Promise<void> } {
    let listed = false;
    const cache = new ListWatch<T>(path, new BoundedWatch(kc, watchTiming), async () => {
      const result = await list();
      listed = true;
      return result;
    }, false);
    cache.on('change', changed);
    const synced = new Promise<void>((resolve) => {
      const start = (): void => {
        if (closed) return;
        cache.start().then(() => { if (listed) resolve(); }, retry);
      };
      const retry = (error: unknown): void => {
        if (closed) return;
        log.warn({ resource: name, error: (error as Error)?.message ?? String(error) }, `watching ${name} failed; retrying in ${RETRY_MS / 1000} s, the last state stays in force`);
        later(RETRY_MS, start);
      };
      cache.on('error', retry);
      start();
    });
    return { cache, synced };
  }

  const namespaces = follow('namespaces', '/api/v1/namespaces', () => core.listNamespace());
  const pods = follow('pods', '/api/v1/pods', () => core.listPodForAllNamespaces());
  const nodes = follow('nodes', '/api/v1/nodes', () => core.listNode());
  const services = follow('services', '/api/v1/services', () => core.listServiceForAllNamespaces());
  const slices = follow<V1EndpointSlice>('endpointslices.discovery.k8s.io', '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces());
  const customs: { kind: CustomKind; cache: Cache<KubernetesObject> }[] = [];
  const synced = [namespaces.synced, pods.synced, nodes.synced, services.synced, slices.synced];
  const problems = new Map<string, string>();
  const authorization = lastGood('AuthorizationPolicy', authorizationPolicyInfo, problems);
  const peerAuthentication = lastGood('PeerAuthentication', peerAuthenticationInfo, problems);
  // Routes and traffic policies go through the config file's kind registry (agent/config/kinds.ts):
  // a kind this version does not carry out yet is refused there, and so logged as not in force.
  const fragments = new Map<string, (objects: CustomObject[]) => Partial<Snapshot>[]>();
  const listOf = (kind: CustomKind) => (): Promise<KubernetesListObject<KubernetesObject>> =>
    custom.listClusterCustomObject({ group: kind.group, version: kind.version, plural: kind.plural });
  const followCustom = (kind: CustomKind): Promise<void> => {
    const followed = follow(`${kind.plural}.${kind.group}`, `/apis/${kind.group}/${kind.version}/${kind.plural}`, listOf(kind));
    customs.push({ kind, cache: followed.cache });
    if (kind.kind !== 'AuthorizationPolicy' && kind.kind !== 'PeerAuthentication') fragments.set(kind.kind, lastGood(kind.kind, (obj) => kindFragment(kind.kind, obj), problems));
    return followed.synced;
  };
  /** Looks for a missing kind's CRD every CRD_POLL_MS; once it lists, follows it and rebuilds. */
  const awaitCrd = (kind: CustomKind): void => {
    later(CRD_POLL_MS, () => {
      listOf(kind)().then(
        () => {
          if (closed) return;
          log.info({ kind: kind.kind, group: kind.group }, `${kind.plural}.${kind.group} CRD installed: following ${kind.kind} objects`);
          void followCustom(kind).then(changed);
        },
        (error: unknown) => {
          if (closed) return;
          if (statusOf(error) !== 404) log.warn({ kind: kind.kind, error: (error as Error)?.message ?? String(error) }, `looking for the ${kind.plural}.${kind.group} CRD failed; trying again`);
          awaitCrd(kind);
        },
      );
    });
  };
  for (const kind of CUSTOM_KINDS) {
    try {
      await listOf(kind)();
    } catch (error) {
      if (statusOf(error) === 404) {
        log.warn({ kind: kind.kind, group: kind.group }, `no ${kind.plural}.${kind.group} CRD: ${kind.kind} objects are ignored until it is installed (looked for every ${CRD_POLL_MS / 1000} s)`);
        awaitCrd(kind);
        continue;
      }
    }
    synced.push(followCustom(kind));
  }

  function build(): Snapshot {
    const snapshot: Snapshot = {
      namespaces: namespaces.cache.list().map(namespaceInfo),
      pods: pods.cache.list().flatMap((p) => podInfo(p) ?? []),
      nodes: nodes.cache.list().map(nodeInfo),
      services: services.cache.list().map(serviceInfo),
      peerAuthentications: [],
      authorizationPolicies: [],
      endpointSlices: slices.cache.list().flatMap((s) => endpointSliceInfo(s) ?? []),
    };
    for (const { kind, cache } of customs) {
      const objects = cache.list() as CustomObject[];
      if (kind.kind === 'AuthorizationPolicy') {
        snapshot.authorizationPolicies = authorization(objects);
      } else if (kind.kind === 'PeerAuthentication') {
        snapshot.peerAuthentications = peerAuthentication(objects);
      } else {
        for (const fragment of fragments.get(kind.kind)!(objects)) merge(snapshot, fragment);
      }
    }
    return snapshot;
  }

  function observe(snapshot: Snapshot): void {
    if (onBuilt === undefined) return;
    try {
      onBuilt({ snapshot, objects: new Map(customs.map(({ kind, cache }) => [kind.kind, cache.list() as CustomObject[]])), invalid: new Map(problems) });
    } catch (error) {
      log.error({ error: (error as Error)?.message ?? String(error) }, 'status of the custom objects not computed');
    }
  }

  await Promise.all(synced);
  const initial = build();
  current = initial;
  lastJson = JSON.stringify(initial);
  observe(initial);
  log.info({ server: kc.getCurrentCluster()?.server, pods: initial.pods.length, nodes: initial.nodes.length, policyKinds: customs.map((c) => c.kind.kind) }, 'kubernetes source synced');

  return {
    current: () => current ?? initial,
    close() {
      closed = true;
      if (debounce !== undefined) clearTimeout(debounce);
      for (const t of timers) clearTimeout(t);
      for (const { cache } of [namespaces, pods, nodes, services, slices, ...customs]) void cache.stop();
    },
  };
}

/** Adds what one object contributes: lists are appended to, single values (ProxyConfig) set. */
function merge(snapshot: Snapshot, fragment: Partial<Snapshot>): void {
  const into = snapshot as unknown as Record<string, unknown>;
  for (const [key, value] of Object.entries(fragment)) {
    if (Array.isArray(value)) into[key] = [...((into[key] as unknown[] | undefined) ?? []), ...value];
    else into[key] = value;
  }
}

/**
 * Custom objects of one kind to their validated form. The API server checks only the CRD's
 * schema, so an edit can still be invalid (a bad CIDR, a CUSTOM action, a bad route regex): then
 * the last valid version of that object stays in force, rather than the edit silently dropping it
 * (which would open what an ALLOW policy closed, or what a DENY policy denied, turn a STRICT
 * PeerAuthentication back to PERMISSIVE, or send a route's traffic elsewhere). The problem is
 * logged once per resourceVersion, and reported on the object's status (status-plan.ts). An object
 * that was never valid is not in force.
 */
function lastGood<T>(kind: string, convert: (obj: CustomObject) => Result<T, string>, problems: Map<string, string>): (objects: CustomObject[]) => T[] {
  const lastGood = new Map<string, T>();
  const reported = new Map<string, string>();
  return (objects) => {
    const out: T[] = [];
    const seen = new Set<string>();
    for (const obj of objects) {
      const key = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
      seen.add(key);
      const info = convert(obj);
      if (info.ok) {
        lastGood.set(key, info.value);
        reported.delete(key);
        problems.delete(`${kind} ${key}`);
        out.push(info.value);
        continue;
      }
      const previous = lastGood.get(key);
      problems.set(`${kind} ${key}`, info.error);
      const version = obj.metadata?.resourceVersion ?? '';
      if (reported.get(key) !== version) {
        reported.set(key, version);
        log.error(
          { object: `${kind} ${key}`, resourceVersion: version, reason: info.error },
          previous !== undefined
            ? `${kind} ${key} is invalid; its last valid version stays in force until it is fixed`
            : `${kind} ${key} is invalid and has never been valid: it is not in force until it is fixed`,
        );
      }
      if (previous !== undefined) out.push(previous);
    }
    for (const key of [...lastGood.keys()]) if (!seen.has(key)) lastGood.delete(key);
    for (const key of [...reported.keys()]) if (!seen.has(key)) reported.delete(key);
    for (const key of [...problems.keys()]) if (key.startsWith(`${kind} `) && !seen.has(key.slice(kind.length + 1))) problems.delete(key);
    return out;
  };
}
