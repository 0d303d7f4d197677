import {
  CoreV1Api, CustomObjectsApi, KubeConfig, makeInformer,
  type Informer, type KubernetesListObject, type KubernetesObject, type ObjectCache,
} from '@kubernetes/client-node';
import type { Snapshot } from '../config/objects';
import { operationalLogger } from '../core/log';
import type { AuthorizationPolicyInfo } from '../policy/authorization-policy';
import {
  authorizationPolicyInfo, namespaceInfo, nodeInfo, peerAuthenticationInfo, podInfo, serviceInfo, type CustomObject,
} from './discovery-kube-convert';

/**
 * The Kubernetes source: list+watch informers on Namespaces, Pods, Nodes and Services, and on the
 * policy kinds whose CRDs are installed (a missing CRD is skipped with a warning, checked once at
 * start). A burst of events becomes one snapshot. Pods carry no cgroup path (see
 * discovery-kube-convert.ts): the agent resolves it from the pod UID.
 */

export interface KubeSource {
  current(): Snapshot;
  close(): void;
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
  { kind: 'TrafficPolicy', group: 'networking.weft.dev', version: 'v1', plural: 'trafficpolicies' },
];

const DEBOUNCE_MS = 100;
const RETRY_MS = 5_000;

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
export async function startKubeSource(kc: KubeConfig, onSnapshot: (s: Snapshot) => void): Promise<KubeSource> {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
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
    const cache = makeInformer<T>(kc, path, async () => {
      const result = await list();
      listed = true;
      return result;
    });
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
  const customs: { kind: CustomKind; cache: Cache<KubernetesObject> }[] = [];
  const synced = [namespaces.synced, pods.synced, nodes.synced, services.synced];
  for (const kind of CUSTOM_KINDS) {
    const list = (): Promise<KubernetesListObject<KubernetesObject>> => custom.listClusterCustomObject({ group: kind.group, version: kind.version, plural: kind.plural });
    try {
      await list();
    } catch (error) {
      if (statusOf(error) === 404) {
        log.warn({ kind: kind.kind, group: kind.group }, `no ${kind.plural}.${kind.group} CRD: ${kind.kind} objects are ignored until the control plane restarts after it is installed`);
        continue;
      }
    }
    const followed = follow(`${kind.plural}.${kind.group}`, `/apis/${kind.group}/${kind.version}/${kind.plural}`, list);
    customs.push({ kind, cache: followed.cache });
    synced.push(followed.synced);
  }

  const authorization = lastGoodAuthorization();
  // Kinds DESIGN.md names that this version does not carry out: said once per object version, never silently ignored.
  const warned = new Set<string>();
  const notInForce = (kind: string, obj: CustomObject): void => {
    const key = `${kind}/${obj.metadata?.namespace}/${obj.metadata?.name}@${obj.metadata?.resourceVersion}`;
    if (warned.has(key)) return;
    warned.add(key);
    log.error({ object: `${kind} ${obj.metadata?.namespace}/${obj.metadata?.name}` }, `${kind} is not carried out by this version of Weft yet: the object is NOT in force`);
  };

  function build(): Snapshot {
    const snapshot: Snapshot = {
      namespaces: namespaces.cache.list().map(namespaceInfo),
      pods: pods.cache.list().flatMap((p) => podInfo(p) ?? []),
      nodes: nodes.cache.list().map(nodeInfo),
      services: services.cache.list().map(serviceInfo),
      peerAuthentications: [],
      authorizationPolicies: [],
    };
    for (const { kind, cache } of customs) {
      if (kind.kind === 'AuthorizationPolicy') {
        snapshot.authorizationPolicies = authorization(cache.list() as CustomObject[]);
        continue;
      }
      for (const obj of cache.list() as CustomObject[]) {
        if (kind.kind !== 'PeerAuthentication') {
          notInForce(kind.kind, obj);
          continue;
        }
        const pa = peerAuthenticationInfo(obj);
        if (pa.ok) snapshot.peerAuthentications.push(pa.value);
        else log.warn({ object: `${obj.metadata?.namespace}/${obj.metadata?.name}`, reason: pa.error }, 'PeerAuthentication ignored: invalid spec');
      }
    }
    return snapshot;
  }

  await Promise.all(synced);
  const initial = build();
  current = initial;
  lastJson = JSON.stringify(initial);
  log.info({ server: kc.getCurrentCluster()?.server, pods: initial.pods.length, nodes: initial.nodes.length, policyKinds: customs.map((c) => c.kind.kind) }, 'kubernetes source synced');

  return {
    current: () => current ?? initial,
    close() {
      closed = true;
      if (debounce !== undefined) clearTimeout(debounce);
      for (const t of timers) clearTimeout(t);
      for (const { cache } of [namespaces, pods, nodes, services, ...customs]) void cache.stop();
    },
  };
}

/**
 * AuthorizationPolicy objects to their validated form. The API server checks only the CRD's
 * schema, so an edit can still be invalid (a bad CIDR, a CUSTOM action): then the last valid
 * version of that object stays in force, rather than the edit silently dropping the policy
 * (which would open what an ALLOW policy closed, or what a DENY policy denied). The problem is
 * logged once per resourceVersion. An object that was never valid is not in force.
 */
function lastGoodAuthorization(): (objects: CustomObject[]) => AuthorizationPolicyInfo[] {
  const lastGood = new Map<string, AuthorizationPolicyInfo>();
  const reported = new Map<string, string>();
  return (objects) => {
    const out: AuthorizationPolicyInfo[] = [];
    const seen = new Set<string>();
    for (const obj of objects) {
      const key = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
      seen.add(key);
      const info = authorizationPolicyInfo(obj);
      if (info.ok) {
        lastGood.set(key, info.value);
        reported.delete(key);
        out.push(info.value);
        continue;
      }
      const previous = lastGood.get(key);
      const version = obj.metadata?.resourceVersion ?? '';
      if (reported.get(key) !== version) {
        reported.set(key, version);
        log.error(
          { object: `AuthorizationPolicy ${key}`, resourceVersion: version, reason: info.error },
          previous !== undefined
            ? `AuthorizationPolicy ${key} is invalid; its last valid version stays in force until it is fixed`
            : `AuthorizationPolicy ${key} is invalid and has never been valid: it is not in force until it is fixed`,
        );
      }
      if (previous !== undefined) out.push(previous);
    }
    for (const key of [...lastGood.keys()]) if (!seen.has(key)) lastGood.delete(key);
    for (const key of [...reported.keys()]) if (!seen.has(key)) reported.delete(key);
    return out;
  };
}
