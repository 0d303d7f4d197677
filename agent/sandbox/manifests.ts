// The Kubernetes-shaped objects `weft local` reads (DESIGN.md), built from what a lab made.
import { stringify } from 'yaml';

export interface NodeFacts {
  name: string;
  ip: string;
  ip6: string;
  podCidr: string;
  podCidr6: string;
}

export interface PodFacts {
  name: string;
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
  nodeName: string;
  hostIp: string;
  ip: string;
  ip6: string | undefined;
  cgroupPath: string;
  /** set for a kubelet-style pod: its manifest carries metadata.uid instead of the cgroup annotation */
  uid?: string;
  /** the pod's Ready condition; absent: no conditions (a Running pod without them reads as ready) */
  ready?: boolean;
  /** being deleted (metadata.deletionTimestamp): its endpoints are terminating */
  terminating?: boolean;
  /** named TCP container ports, what a Service's named targetPort resolves by */
  containerPorts?: Record<string, number>;
}

/** What a test changes about a lab pod's state in the manifests, e.g. to make it not ready. */
export type PodState = Pick<PodFacts, 'ready' | 'terminating' | 'containerPorts'>;

export interface ManifestOptions {
  /** namespaces labelled weft.dev/mesh=enabled */
  meshNamespaces?: string[];
  /** appended as they are (Services, policies, routes, ...) */
  extra?: object[];
  /** per pod (`namespace/name`): readiness, termination, container ports */
  podStates?: Record<string, PodState>;
}

/** When a terminating lab pod was deleted: fixed, so the same lab state always gives the same manifests. */
const DELETED_AT = '2000-01-01T00:00:00Z';

type Obj = Record<string, unknown>;

function namespaceObject(name: string, mesh: boolean): Obj {
  const labels = mesh ? { 'weft.dev/mesh': 'enabled' } : {};
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

function nodeObject(n: NodeFacts): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: n.name },
    spec: { podCIDR: n.podCidr, podCIDRs: [n.podCidr, n.podCidr6] },
    status: { addresses: [{ type: 'InternalIP', address: n.ip }, { type: 'InternalIP', address: n.ip6 }] },
  };
}

function podObject(p: PodFacts): Obj {
  const ips = p.ip6 ? [p.ip, p.ip6] : [p.ip];
  const metadata: Obj = p.uid
    ? { name: p.name, namespace: p.namespace, uid: p.uid, labels: p.labels }
    : { name: p.name, namespace: p.namespace, labels: p.labels, annotations: { 'weft.dev/cgroup': p.cgroupPath } };
  if (p.terminating) metadata.deletionTimestamp = DELETED_AT;
  const spec: Obj = { nodeName: p.nodeName, serviceAccountName: p.serviceAccount };
  const ports = Object.entries(p.containerPorts ?? {});
  if (ports.length > 0) spec.containers = [{ name: 'app', image: 'weft-lab', ports: ports.map(([name, containerPort]) => ({ name, containerPort })) }];
  const status: Obj = { phase: 'Running', hostIP: p.hostIp, podIP: p.ip, podIPs: ips.map((ip) => ({ ip })) };
  if (p.ready !== undefined) status.conditions = [{ type: 'Ready', status: p.ready ? 'True' : 'False' }];
  return { apiVersion: 'v1', kind: 'Pod', metadata, spec, status };
}

/** Namespaces (every pod's plus the mesh ones), Nodes, Pods, then `extra`. */
export function manifests(nodes: NodeFacts[], pods: PodFacts[], opts: ManifestOptions = {}): object[] {
  const mesh = new Set(opts.meshNamespaces ?? []);
  const names = [...new Set([...pods.map((p) => p.namespace), ...mesh])].sort();
  return [
    ...names.map((n) => namespaceObject(n, mesh.has(n))),
    ...nodes.map(nodeObject),
    ...pods.map((p) => podObject({ ...p, ...opts.podStates?.[`${p.namespace}/${p.name}`] })),
    ...(opts.extra ?? []),
  ];
}

export function toYamlStream(objects: object[]): string {
  return objects.map((o) => stringify(o)).join('---\n');
}
