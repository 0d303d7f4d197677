/**
 * A synthetic Kubernetes cluster for the control-plane benchmark (controlplane.ts), as the API
 * server would list it: Namespaces, Nodes, Pods, Services, EndpointSlices (as the EndpointSlice
 * controller writes them) and the mesh's custom objects. Deterministic: the same size and seed give
 * the same objects. The Snapshot is built from them by the production converters the Kubernetes
 * source uses (agent/controlplane/discovery-kube-convert.ts), the way kube-source.ts builds one
 * after an informer event.
 *
 * Shape per 10,000 pods: 100 nodes (100 pods each), 200 application namespaces (all but every
 * twentieth meshed) of 10 Deployments x 5 replicas, one Service and one EndpointSlice per
 * Deployment (2,000), an AuthorizationPolicy per meshed namespace plus two mesh-wide ones, a
 * mesh-wide PeerAuthentication and a STRICT one per tenth namespace, an HTTPRoute and a
 * TrafficPolicy per tenth namespace. Smaller sizes scale the same (pods / 50 namespaces).
 */
import type { V1EndpointSlice, V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import {
  authorizationPolicyInfo, endpointSliceInfo, kindFragment, namespaceInfo, nodeInfo, peerAuthenticationInfo, podInfo, serviceInfo, type CustomObject,
} from '../../agent/controlplane/discovery-kube-convert';
import { ROOT_NAMESPACE, type Snapshot } from '../../agent/config/objects';

export const PODS_PER_NAMESPACE = 50;
export const REPLICAS = 5;
export const NODES = 100;
/** The AuthorizationPolicy the policy-change rounds replace: mesh-wide, so every agent needs it. */
export const CHANGE_POLICY_PREFIX = 'bench-change-';

export interface ClusterSize {
  pods: number;
  nodes?: number;
  seed?: number;
}

export interface Cluster {
  namespaces: V1Namespace[];
  nodes: V1Node[];
  pods: V1Pod[];
  services: V1Service[];
  endpointSlices: V1EndpointSlice[];
  /** AuthorizationPolicy, PeerAuthentication, HTTPRoute, TrafficPolicy. */
  customs: CustomObject[];
}

/** mulberry32: a small seeded generator, enough for names and hashes. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function word(next: () => number, length: number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += ALPHABET[Math.floor(next() * ALPHABET.length)];
  return s;
}

function uid(next: () => number): string {
  const hex = (n: number): string => Array.from({ length: n }, () => Math.floor(next() * 16).toString(16)).join('');
  return `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
}

const APPS = ['web', 'api', 'cart', 'checkout', 'search', 'auth', 'catalog', 'orders', 'payments', 'notify'];

/** Node n's pod CIDR is a /24 of 10.0.0.0/8 (as kube-controller-manager allocates them); pod k of the node gets .k+2. */
function podIp(node: number, k: number): string {
  return `10.${100 + (node >> 8)}.${node & 255}.${k + 2}`;
}

function serviceIp(i: number): string {
  return `10.96.${(i >> 8) & 255}.${(i & 255) + 1}`;
}

function validate(size: ClusterSize): { pods: number; nodes: number; seed: number } {
  const pods = size.pods;
  const nodes = size.nodes ?? NODES;
  if (!Number.isInteger(pods) || pods < PODS_PER_NAMESPACE || pods % PODS_PER_NAMESPACE !== 0) {
    throw new Error(`cluster size: pods is ${pods}; it must be a positive multiple of ${PODS_PER_NAMESPACE} (one namespace's worth)`);
  }
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 60_000) throw new Error(`cluster size: nodes is ${nodes}; it must be an integer from 1 to 60,000`);
  if (Math.ceil(pods / nodes) > 250) throw new Error(`cluster size: ${pods} pods on ${nodes} nodes is more than 250 per node (a node's /24 pod range)`);
  return { pods, nodes, seed: size.seed ?? 1 };
}

export function namespaceName(i: number): string {
  return `team-${String(i).padStart(3, '0')}`;
}

export function generateCluster(size: ClusterSize): Cluster {
  const { pods: podCount, nodes: nodeCount, seed } = validate(size);
  const next = random(seed);
  const cluster: Cluster = { namespaces: [], nodes: [], pods: [], services: [], endpointSlices: [], customs: [] };
  const perNode = new Array<number>(nodeCount).fill(0);

  cluster.namespaces.push({ metadata: { name: ROOT_NAMESPACE, labels: { 'kubernetes.io/metadata.name': ROOT_NAMESPACE } } });
  cluster.namespaces.push({ metadata: { name: 'kube-system', labels: { 'kubernetes.io/metadata.name': 'kube-system' } } });
  for (let n = 0; n < nodeCount; n++) {
    const name = `node-${String(n).padStart(3, '0')}`;
    cluster.nodes.push({
      metadata: { name, uid: uid(next), labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'topology.kubernetes.io/zone': `zone-${n % 3}` } },
      status: { addresses: [{ type: 'InternalIP', address: `172.18.${n >> 8}.${(n & 255) + 2}` }, { type: 'Hostname', address: name }] },
    });
  }

  const namespaceCount = podCount / PODS_PER_NAMESPACE;
  let podIndex = 0;
  let serviceIndex = 0;
  for (let ns = 0; ns < namespaceCount; ns++) {
    const namespace = namespaceName(ns);
    const meshed = ns % 20 !== 19;
    cluster.namespaces.push({
      metadata: { name: namespace, uid: uid(next), labels: { 'kubernetes.io/metadata.name': namespace, team: `t${ns % 37}`, ...(meshed ? { 'weft.dev/mesh': 'enabled' } : {}) } },
    });
    for (let d = 0; d < PODS_PER_NAMESPACE / REPLICAS; d++) {
      const app = `${APPS[d % APPS.length]}${d >= APPS.length ? d : ''}`;
      const hash = word(next, 10);
      const endpoints: NonNullable<V1EndpointSlice['endpoints']> = [];
      for (let r = 0; r < REPLICAS; r++) {
        // Spread like a scheduler would: consecutive pods on different nodes.
        const node = (podIndex * 37) % nodeCount;
        const ip = podIp(node, perNode[node]!++);
        const name = `${app}-${hash}-${word(next, 5)}`;
        const nodeName = cluster.nodes[node]!.metadata!.name!;
        cluster.pods.push({
          metadata: {
            name, namespace, uid: uid(next),
            labels: { app, 'app.kubernetes.io/name': app, version: 'v1', 'pod-template-hash': hash },
            annotations: { 'kubectl.kubernetes.io/default-container': app, 'prometheus.io/port': '9102' },
          },
          spec: {
            nodeName, serviceAccountName: app,
            containers: [{ name: app, image: `registry.example/${app}:1.4.2`, ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { name: 'metrics', containerPort: 9102, protocol: 'TCP' }] }],
          },
          status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] },
        });
        endpoints.push({ addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, nodeName, targetRef: { kind: 'Pod', name, namespace } });
        podIndex++;
      }
      cluster.services.push({
        metadata: { name: app, namespace, uid: uid(next), labels: { 'app.kubernetes.io/name': app } },
        spec: {
          selector: { app }, clusterIP: serviceIp(serviceIndex), clusterIPs: [serviceIp(serviceIndex)],
          ports: [{ name: 'http', port: 80, targetPort: 'http' as never, protocol: 'TCP', appProtocol: 'http' }, { name: 'metrics', port: 9102, targetPort: 9102 as never, protocol: 'TCP' }],
        },
      });
      serviceIndex++;
      cluster.endpointSlices.push({
        addressType: 'IPv4',
        metadata: { name: `${app}-${word(next, 5)}`, namespace, labels: { 'kubernetes.io/service-name': app, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
        ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' }, { name: 'metrics', port: 9102, protocol: 'TCP' }],
        endpoints,
      });
    }
    if (!meshed) continue;
    cluster.customs.push(custom('security.weft.dev/v1', 'AuthorizationPolicy', namespace, 'allow-frontend', {
      selector: { matchLabels: { app: 'api' } },
      action: 'ALLOW',
      rules: [
        { from: [{ source: { principals: [`cluster.local/ns/${namespace}/sa/web`] } }], to: [{ operation: { methods: ['GET', 'POST'], paths: ['/api/*'] } }] },
        { from: [{ source: { namespaces: [namespaceName((ns + 1) % namespaceCount)] } }], to: [{ operation: { methods: ['GET'] } }] },
      ],
    }));
    if (ns % 10 === 0) {
      cluster.customs.push(custom('security.weft.dev/v1', 'PeerAuthentication', namespace, 'strict', { mtls: { mode: 'STRICT' } }));
      cluster.customs.push(custom('gateway.networking.k8s.io/v1', 'HTTPRoute', namespace, 'web-canary', {
        parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
        rules: [
          { matches: [{ path: { type: 'PathPrefix', value: '/beta' } }], backendRefs: [{ name: 'api', port: 80 }] },
          { backendRefs: [{ name: 'web', port: 80, weight: 90 }, { name: 'cart', port: 80, weight: 10 }], timeouts: { request: '5s' }, retry: { attempts: 2, codes: [503] } },
        ],
      }));
      cluster.customs.push(custom('networking.weft.dev/v1', 'TrafficPolicy', namespace, 'api-resilience', {
        targetRefs: [{ group: '', kind: 'Service', name: 'api' }],
        loadBalancer: { simple: 'LEAST_REQUEST' },
        outlierDetection: { consecutive5xxErrors: 5, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 50 },
      }));
    }
  }
  cluster.customs.push(custom('security.weft.dev/v1', 'PeerAuthentication', ROOT_NAMESPACE, 'default', { mtls: { mode: 'PERMISSIVE' } }));
  cluster.customs.push(custom('security.weft.dev/v1', 'AuthorizationPolicy', ROOT_NAMESPACE, 'deny-debug', {
    action: 'DENY', rules: [{ to: [{ operation: { paths: ['/debug/*'] } }] }],
  }));
  cluster.customs.push(custom('security.weft.dev/v1', 'AuthorizationPolicy', ROOT_NAMESPACE, 'audit-writes', {
    action: 'AUDIT', rules: [{ to: [{ operation: { methods: ['POST', 'PUT', 'DELETE'] } }] }],
  }));
  return cluster;
}

function custom(apiVersion: string, kind: string, namespace: string, name: string, spec: unknown): CustomObject {
  return { apiVersion, kind, metadata: { name, namespace, resourceVersion: '1' }, spec };
}

/** The mesh-wide DENY policy of change round `round`: what policyChange() puts in place. */
export function changePolicy(round: number): CustomObject {
  return custom('security.weft.dev/v1', 'AuthorizationPolicy', ROOT_NAMESPACE, `${CHANGE_POLICY_PREFIX}${round}`, {
    action: 'DENY', rules: [{ to: [{ operation: { paths: [`/bench-change-${round}/*`] } }] }],
  });
}

/** Replaces the previous round's change policy with round `round`'s (one object changes, as one `kubectl apply` of a renamed policy does twice). */
export function policyChange(cluster: Cluster, round: number): void {
  cluster.customs = cluster.customs.filter((o) => !o.metadata?.name?.startsWith(CHANGE_POLICY_PREFIX));
  cluster.customs.push(changePolicy(round));
}

/**
 * One pod's readiness flips, as the kubelet reports it (the pod's Ready condition) and the
 * EndpointSlice controller follows (its endpoint's ready/serving). Returns the pod's namespace/name.
 */
export function podReadinessChange(cluster: Cluster, index: number, ready: boolean): { namespace: string; name: string } {
  const pod = cluster.pods[index];
  if (pod === undefined) throw new Error(`pod change: index ${index} is outside the ${cluster.pods.length} pods`);
  const namespace = pod.metadata!.namespace!;
  const name = pod.metadata!.name!;
  pod.status!.conditions = [{ type: 'Ready', status: ready ? 'True' : 'False' }];
  const slice = cluster.endpointSlices.find((s) => s.metadata?.namespace === namespace && (s.endpoints ?? []).some((e) => e.targetRef?.name === name));
  if (slice === undefined) throw new Error(`pod change: no EndpointSlice lists pod ${namespace}/${name}`);
  for (const e of slice.endpoints!) {
    if (e.targetRef?.name === name) e.conditions = { ready, serving: ready, terminating: false };
  }
  return { namespace, name };
}

/** What kube-source.ts's build() makes of the informers' caches: every object through its production converter. */
export function buildSnapshot(cluster: Cluster): Snapshot {
  const snapshot: Snapshot = {
    namespaces: cluster.namespaces.map(namespaceInfo),
    pods: cluster.pods.flatMap((p) => podInfo(p) ?? []),
    nodes: cluster.nodes.map(nodeInfo),
    services: cluster.services.map(serviceInfo),
    peerAuthentications: [],
    authorizationPolicies: [],
    endpointSlices: cluster.endpointSlices.flatMap((s) => endpointSliceInfo(s) ?? []),
  };
  const into = snapshot as unknown as Record<string, unknown[]>;
  for (const obj of cluster.customs) {
    const where = `${obj.kind} ${obj.metadata?.namespace}/${obj.metadata?.name}`;
    if (obj.kind === 'AuthorizationPolicy') {
      const ap = authorizationPolicyInfo(obj);
      if (!ap.ok) throw new Error(`bench cluster: ${where} does not convert: ${ap.error}`);
      snapshot.authorizationPolicies.push(ap.value);
    } else if (obj.kind === 'PeerAuthentication') {
      const pa = peerAuthenticationInfo(obj);
      if (!pa.ok) throw new Error(`bench cluster: ${where} does not convert: ${pa.error}`);
      snapshot.peerAuthentications.push(pa.value);
    } else {
      const fragment = kindFragment(obj.kind ?? '', obj);
      if (!fragment.ok) throw new Error(`bench cluster: ${where} does not convert: ${fragment.error}`);
      for (const [key, value] of Object.entries(fragment.value)) into[key] = [...(into[key] ?? []), ...(value as unknown[])];
    }
  }
  return snapshot;
}

/** Whether `snapshot` carries change round `round`'s policy: how an agent is seen to have it. */
export function hasChangePolicy(snapshot: Snapshot, round: number): boolean {
  const name = `${CHANGE_POLICY_PREFIX}${round}`;
  return snapshot.authorizationPolicies.some((p) => p.namespace === ROOT_NAMESPACE && p.name === name);
}

/** Whether `snapshot`'s EndpointSlices say pod namespace/name is ready as `ready`: how an agent is seen to have a pod change. */
export function hasPodReadiness(snapshot: Snapshot, pod: { namespace: string; name: string }, ready: boolean): boolean {
  for (const slice of snapshot.endpointSlices ?? []) {
    if (slice.namespace !== pod.namespace) continue;
    for (const e of slice.endpoints) if (e.pod === pod.name) return e.ready === ready;
  }
  return false;
}
