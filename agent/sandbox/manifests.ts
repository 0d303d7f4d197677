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
}

export interface ManifestOptions {
  /** namespaces labelled weft.dev/mesh=enabled */
  meshNamespaces?: string[];
  /** appended as they are (Services, policies, routes, ...) */
  extra?: object[];
}

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
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: p.uid
      ? { name: p.name, namespace: p.namespace, uid: p.uid, labels: p.labels }
      : { name: p.name, namespace: p.namespace, labels: p.labels, annotations: { 'weft.dev/cgroup': p.cgroupPath } },
    spec: { nodeName: p.nodeName, serviceAccountName: p.serviceAccount },
    status: { phase: 'Running', hostIP: p.hostIp, podIP: p.ip, podIPs: ips.map((ip) => ({ ip })) },
  };
}

/** Namespaces (every pod's plus the mesh ones), Nodes, Pods, then `extra`. */
export function manifests(nodes: NodeFacts[], pods: PodFacts[], opts: ManifestOptions = {}): object[] {
  const mesh = new Set(opts.meshNamespaces ?? []);
  const names = [...new Set([...pods.map((p) => p.namespace), ...mesh])].sort();
  return [
    ...names.map((n) => namespaceObject(n, mesh.has(n))),
    ...nodes.map(nodeObject),
    ...pods.map(podObject),
    ...(opts.extra ?? []),
  ];
}

export function toYamlStream(objects: object[]): string {
  return objects.map((o) => stringify(o)).join('---\n');
}
