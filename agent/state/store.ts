import { isIP } from 'node:net';
import { canonicalIp, ipv4Value } from '../core/ip';
import { objectKey, type NamespaceInfo, type NodeInfo, type PodInfo, type ServiceInfo, type Snapshot } from '../config/objects';
import type { WorkloadRef } from '../core/workload';
import { selectorMatches } from './selector';
import { workloadName } from './workload-name';

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/**
 * Lookups over one Snapshot. Immutable: a new snapshot makes a new store, so a reader holding a
 * store sees one consistent view. Addresses are compared in canonical form (`fd00:0::1` is `fd00::1`).
 */
export class WorkloadStore {
  private readonly pods = new Map<string, PodInfo>();
  private readonly podsByIp = new Map<string, PodInfo>();
  private readonly namespaces = new Map<string, NamespaceInfo>();
  private readonly nodes = new Map<string, NodeInfo>();
  private readonly servicesByIp = new Map<string, ServiceInfo>();
  /**
   * What workloadRef and identityOf said of each pod of this snapshot: every connection asks for
   * them, and building them each time left two descriptions and a SPIFFE ID of five joined strings
   * per connection in the heap for as long as it lived (heap snapshot, docs/memory.md).
   */
  private readonly refs = new WeakMap<PodInfo, WorkloadRef>();
  private readonly identities = new WeakMap<PodInfo, string>();

  constructor(readonly snapshot: Snapshot) {
    const ambiguous = new Set<string>();
    for (const pod of snapshot.pods) {
      this.pods.set(objectKey(pod), pod);
      for (const ip of canonicalIps(pod.ips)) {
        // Only host-network pods share an address (their node's); it identifies none of them.
        if (this.podsByIp.has(ip)) ambiguous.add(ip);
        this.podsByIp.set(ip, pod);
      }
    }
    for (const ip of ambiguous) this.podsByIp.delete(ip);
    for (const ns of snapshot.namespaces) this.namespaces.set(ns.name, ns);
    for (const node of snapshot.nodes) this.nodes.set(node.name, node);
    for (const svc of snapshot.services) {
      for (const ip of canonicalIps(svc.clusterIPs)) this.servicesByIp.set(ip, svc);
    }
  }

  podByIp(ip: string): PodInfo | undefined {
    const canonical = canonicalOrUndefined(ip);
    return canonical === undefined ? undefined : this.podsByIp.get(canonical);
  }

  pod(namespace: string, name: string): PodInfo | undefined {
    return this.pods.get(objectKey({ namespace, name }));
  }

  namespace(name: string): NamespaceInfo | undefined {
    return this.namespaces.get(name);
  }

  node(name: string): NodeInfo | undefined {
    return this.nodes.get(name);
  }

  /** The first InternalIP of the node (or of the pod's node): where its node proxy is reached. */
  nodeIpFor(podOrNodeName: PodInfo | string): string | undefined {
    const nodeName = typeof podOrNodeName === 'string' ? podOrNodeName : podOrNodeName.nodeName;
    return this.nodes.get(nodeName)?.internalIPs[0];
  }

  /** Services in the pod's namespace whose (non-empty) selector matches its labels, by name. */
  servicesSelecting(pod: PodInfo): ServiceInfo[] {
    return this.snapshot.services
      .filter((svc) => svc.namespace === pod.namespace && Object.keys(svc.selector).length > 0 && selectorMatches(svc.selector, pod.labels))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  serviceByIp(ip: string): ServiceInfo | undefined {
    const canonical = canonicalOrUndefined(ip);
    return canonical === undefined ? undefined : this.servicesByIp.get(canonical);
  }

  workloadName(pod: PodInfo): string {
    return workloadName(pod);
  }

  /** What the proxy and telemetry say of a pod: one frozen object per pod of this snapshot, shared by its connections. */
  workloadRef(pod: PodInfo): WorkloadRef {
    let ref = this.refs.get(pod);
    if (!ref) {
      ref = Object.freeze({ namespace: pod.namespace, name: pod.name, workload: workloadName(pod), identity: this.identityOf(pod), node: pod.nodeName });
      this.refs.set(pod, ref);
    }
    return ref;
  }

  /** `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` (in the default trust domain, one string per pod of this snapshot) */
  identityOf(pod: PodInfo, trustDomain: string = DEFAULT_TRUST_DOMAIN): string {
    if (trustDomain !== DEFAULT_TRUST_DOMAIN) return spiffeOf(trustDomain, pod);
    let id = this.identities.get(pod);
    if (id === undefined) {
      id = spiffeOf(trustDomain, pod);
      this.identities.set(pod, id);
    }
    return id;
  }
}

function spiffeOf(trustDomain: string, pod: PodInfo): string {
  return `spiffe://${trustDomain}/ns/${pod.namespace}/sa/${pod.serviceAccount}`;
}

function canonicalIps(ips: string[]): string[] {
  return ips.map(canonicalOrUndefined).filter((ip): ip is string => ip !== undefined);
}

/** Lookups take addresses from anywhere (sockets, the admin API): text that is no address finds nothing. */
function canonicalOrUndefined(ip: string): string | undefined {
  if (ipv4Value(ip) >= 0) return ip; // already canonical
  return isIP(ip) === 0 ? undefined : canonicalIp(ip);
}
