/**
 * Where a captured connection goes: a pure decision from the original destination and the state
 * store, tested without sockets. The proxy only carries it out.
 */
import type { PodInfo } from '../config/objects';
import { familyOf } from '../core/ip';
import { isEnrolled } from '../state/enrollment';
import type { WorkloadStore } from '../state/store';

export const HBONE_PORT = 15008;

export type OutboundRoute =
  /** not a meshed pod: connect directly, in plaintext, as the application asked */
  | { kind: 'passthrough'; reason: string }
  /** a meshed pod on this node: delivered by this proxy, no TLS hop */
  | { kind: 'local'; pod: PodInfo }
  /** a meshed pod on another node: an HBONE tunnel to that node's proxy */
  | { kind: 'hbone'; pod: PodInfo; node: string; nodeAddress: string; port: number; identity: string }
  /** a meshed pod the mesh cannot reach: refused rather than sent in plaintext */
  | { kind: 'unreachable'; pod: PodInfo; reason: string };

export function routeOutbound(dstIp: string, localNode: string, store: WorkloadStore): OutboundRoute {
  const pod = store.podByIp(dstIp);
  if (!pod) return { kind: 'passthrough', reason: 'destination is not a known pod' };
  if (!isEnrolled(pod, store.namespace(pod.namespace))) return { kind: 'passthrough', reason: `pod ${pod.namespace}/${pod.name} is not in the mesh` };
  if (pod.nodeName === localNode) return { kind: 'local', pod };
  const node = store.node(pod.nodeName);
  if (!node) return { kind: 'unreachable', pod, reason: `node ${pod.nodeName} of pod ${pod.namespace}/${pod.name} is unknown (no Node object)` };
  const family = familyOf(dstIp);
  const nodeAddress = node.internalIPs.find((ip) => familyOf(ip) === family) ?? node.internalIPs[0];
  if (!nodeAddress) return { kind: 'unreachable', pod, reason: `node ${node.name} has no InternalIP to reach its proxy on port ${HBONE_PORT}` };
  return { kind: 'hbone', pod, node: node.name, nodeAddress, port: HBONE_PORT, identity: store.identityOf(pod) };
}
