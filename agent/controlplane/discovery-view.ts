import { ROOT_NAMESPACE, type PodInfo, type Snapshot } from '../config/objects';
import { canonicalSnapshot, resourcesOf, snapshotOf, type Resource } from './discovery-resources';

/**
 * What one node's agent needs of the cluster: the node projection discovery v2 sends. Pure.
 *
 * - Its own pods (spec.nodeName is the node) in full.
 * - Pods of other nodes without what only their own node reads: the cgroup path and the UID the
 *   cgroup is found by (agent/state/enrollment.ts, for local pods only) and the annotations (read
 *   by nothing past the config edge; the cgroup annotation is already `cgroupPath`). Kept: name and
 *   namespace, labels (Service selectors, the workload name, the mesh opt-out), node (routing to its
 *   proxy), service account (its SPIFFE identity: HBONE peer check, the source check of
 *   `Forwarded`, telemetry), addresses, readiness, terminating and named container ports
 *   (endpoints by selector, agent/state/endpoints.ts).
 * - PeerAuthentications and AuthorizationPolicies of the root namespace and of the namespaces that
 *   have a pod on the node. Only the destination's node reads them (mtlsModeFor for its enrolled
 *   pods; PolicySet.decide in deliver.ts for arrivals at its pods); the source side reads neither.
 *   One consequence: the running agent's `weft explain` answers for a destination pod on its own
 *   node (where the decision is made); for others use `--config` or ask that pod's node.
 * - Everything else (namespaces, nodes, services, EndpointSlices, routes, TrafficPolicies, the
 *   ProxyConfig) as it is: the source side reads all of it for any destination.
 */

/** A pod as another node's agent sees it. */
export function remotePod(pod: PodInfo): PodInfo {
  const out: PodInfo = {
    namespace: pod.namespace, name: pod.name, labels: pod.labels, annotations: {},
    nodeName: pod.nodeName, serviceAccount: pod.serviceAccount, ips: pod.ips,
  };
  if (pod.ready !== undefined) out.ready = pod.ready;
  if (pod.terminating !== undefined) out.terminating = pod.terminating;
  if (pod.containerPorts !== undefined) out.containerPorts = pod.containerPorts;
  return out;
}

/** Kinds whose relevance to a node follows their namespace. */
export function isNamespacePolicy(kind: Resource['kind']): boolean {
  return kind === 'AuthorizationPolicy' || kind === 'PeerAuthentication';
}

/** Namespaces with at least one pod on the node. */
export function localNamespaces(snapshot: Snapshot, node: string): Set<string> {
  const out = new Set<string>();
  for (const pod of snapshot.pods) if (pod.nodeName === node) out.add(pod.namespace);
  return out;
}

/**
 * The resource as the node sees it, or undefined when the node does not need it. `local` is the
 * set of namespaces with a pod on the node (localNamespaces).
 */
export function viewOf(r: Resource, node: string, local: ReadonlySet<string>): Resource | undefined {
  if (r.kind === 'Pod') {
    const pod = r.value as PodInfo;
    return pod.nodeName === node ? r : { kind: 'Pod', key: r.key, value: remotePod(pod) };
  }
  if (isNamespacePolicy(r.kind)) {
    const namespace = (r.value as { namespace: string }).namespace;
    return namespace === ROOT_NAMESPACE || local.has(namespace) ? r : undefined;
  }
  return r;
}

/** The node's projection of the snapshot, in canonical form (each kind in key order). */
export function nodeView(snapshot: Snapshot, node: string): Snapshot {
  const canonical = canonicalSnapshot(snapshot);
  const local = localNamespaces(canonical, node);
  const out: Resource[] = [];
  for (const r of resourcesOf(canonical)) {
    const v = viewOf(r, node, local);
    if (v !== undefined) out.push(v);
  }
  return snapshotOf(out);
}
