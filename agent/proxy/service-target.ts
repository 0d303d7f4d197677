/**
 * Which Service port a captured connection is for, and which of its endpoints may take it: pure
 * decisions over the state in force, tested without sockets.
 */
import type { ServiceInfo, ServicePort } from '../config/objects';
import { familyOf } from '../core/ip';
import type { WorkloadStore } from '../state/store';

export interface ServiceTarget {
  service: ServiceInfo;
  port: ServicePort;
  /** the cluster IP the client connected to */
  vip: string;
}

export type ServiceLookup =
  | { kind: 'none' }
  | { kind: 'service'; target: ServiceTarget }
  /** a cluster IP, but no TCP port of its Service is `port`: refused as kube-proxy would */
  | { kind: 'no-port'; service: ServiceInfo; reason: string };

export function serviceTarget(store: WorkloadStore, ip: string, port: number): ServiceLookup {
  const service = store.serviceByIp(ip);
  if (!service) return { kind: 'none' };
  const sp = service.ports.find((p) => p.port === port && p.protocol === 'TCP');
  if (!sp) {
    return { kind: 'no-port', service, reason: `Service ${service.namespace}/${service.name} has no TCP port ${port} (ports: ${service.ports.map((p) => `${p.port}/${p.protocol}`).join(', ') || 'none'})` };
  }
  return { kind: 'service', target: { service, port: sp, vip: ip } };
}

/** `name.namespace.svc.cluster.local`: how Istio's telemetry and the access log name a Service. */
export function serviceHost(s: { namespace: string; name: string }): string {
  return `${s.name}.${s.namespace}.svc.cluster.local`;
}

/** `namespace/name:port`: the key of a Service port's balancer, breaker and outlier state. */
export function servicePortKey(s: { namespace: string; name: string }, port: number): string {
  return `${s.namespace}/${s.name}:${port}`;
}

const portKeys = new WeakMap<object, Map<number, string>>();
/** servicePortKey, made once per Service object (a snapshot's) and port: the per-request path asks it for every request. */
export function servicePortKeyOf(s: { namespace: string; name: string }, port: number): string {
  let byPort = portKeys.get(s);
  if (byPort === undefined) portKeys.set(s, (byPort = new Map()));
  let k = byPort.get(port);
  if (k === undefined) byPort.set(port, (k = servicePortKey(s, port)));
  return k;
}

/**
 * The endpoint addresses a client of `family` can reach: the same family first (a dual-stack
 * Service's IPv6 clients get IPv6 endpoints); a single-stack endpoint set of the other family is
 * used as it is (the proxy connects on the client's behalf). Pure.
 */
export function sameFamilyFirst<T extends { ip: string }>(endpoints: readonly T[], vip: string): T[] {
  const family = familyOf(vip);
  const same = endpoints.filter((e) => familyOf(e.ip) === family);
  return same.length > 0 ? same : [...endpoints];
}
