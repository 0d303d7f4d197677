import { objectKey, type ServiceInfo } from '../config/objects';
import type { BackendObjectRef, RouteParentRef } from './route-info';

/**
 * What a route's references point at in one snapshot: the parent Service (and which of its ports)
 * and each backend Service. Shared by the status (route-status.ts) and the index (route-index.ts),
 * so what the status says is what the proxy does.
 */

export type ServicesByKey = ReadonlyMap<string, ServiceInfo>;

export function servicesByKey(services: readonly ServiceInfo[]): Map<string, ServiceInfo> {
  return new Map(services.map((s) => [objectKey(s), s]));
}

export type ParentResolution =
  | { ok: true; service: ServiceInfo; /** The Service ports the route applies to. */ ports: number[] }
  | { ok: false; reason: 'NoMatchingParent'; message: string };

export function resolveParent(ref: RouteParentRef, services: ServicesByKey): ParentResolution {
  const key = objectKey(ref);
  const service = services.get(key);
  const fail = (message: string): ParentResolution => ({ ok: false, reason: 'NoMatchingParent', message });
  if (service === undefined) return fail(`Service ${key} does not exist`);
  if (service.clusterIPs.length === 0) return fail(`Service ${key} is headless: there is no cluster IP whose traffic the route could apply to`);
  let ports = service.ports.filter((p) => p.protocol === 'TCP');
  if (ref.port !== undefined) {
    ports = ports.filter((p) => p.port === ref.port);
    if (ports.length === 0) return fail(`Service ${key} has no TCP port ${ref.port}`);
  }
  if (ref.sectionName !== undefined) {
    ports = ports.filter((p) => p.name === ref.sectionName);
    if (ports.length === 0) return fail(`Service ${key} has no TCP port named "${ref.sectionName}"${ref.port !== undefined ? ` with number ${ref.port}` : ''}`);
  }
  return { ok: true, service, ports: ports.map((p) => p.port) };
}

export type BackendResolution =
  | { ok: true; service: ServiceInfo }
  | { ok: false; reason: 'InvalidKind' | 'BackendNotFound'; message: string };

/** A backendRef resolves when it names a Service (core group) that exists and has that TCP port. */
export function resolveBackend(ref: BackendObjectRef, services: ServicesByKey): BackendResolution {
  if (ref.group !== '' || ref.kind !== 'Service') {
    return { ok: false, reason: 'InvalidKind', message: `${ref.group === '' ? 'core' : ref.group}/${ref.kind} ${ref.name}: Weft sends only to Services (group "", kind Service)` };
  }
  const key = objectKey(ref);
  const service = services.get(key);
  if (service === undefined) return { ok: false, reason: 'BackendNotFound', message: `Service ${key} does not exist` };
  if (!service.ports.some((p) => p.port === ref.port && p.protocol === 'TCP')) {
    return { ok: false, reason: 'BackendNotFound', message: `Service ${key} has no TCP port ${ref.port}` };
  }
  return { ok: true, service };
}
