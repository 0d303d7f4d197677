import { join, type Checker, type Fields } from './checker';
import type { Metadata } from './metadata';
import type { NodeInfo } from './objects';

/** Standard NodeSpec and NodeStatus fields; Weft reads only `status.addresses`. */
const SPEC = new Set(['podCIDR', 'podCIDRs', 'providerID', 'unschedulable', 'taints', 'configSource', 'externalID']);
const STATUS = new Set([
  'addresses', 'capacity', 'allocatable', 'conditions', 'nodeInfo', 'daemonEndpoints', 'images',
  'volumesInUse', 'volumesAttached', 'phase', 'config', 'runtimeHandlers', 'features',
]);
const ADDRESS = new Set(['type', 'address']);
const ADDRESS_TYPES = ['InternalIP', 'ExternalIP', 'Hostname', 'InternalDNS', 'ExternalDNS'] as const;

export function convertNode(c: Checker, obj: Fields, meta: Metadata): NodeInfo {
  c.allowOnly(c.optionalMapping(obj.spec, 'spec'), 'spec', SPEC);
  const status = c.optionalMapping(obj.status, 'status');
  c.allowOnly(status, 'status', STATUS);
  const internalIPs: string[] = [];
  const addresses = status.addresses === undefined ? [] : (c.list(status.addresses, 'status.addresses') ?? []);
  addresses.forEach((entry, i) => {
    const field = join('status.addresses', i);
    const address = c.mapping(entry, field);
    if (!address) return;
    c.allowOnly(address, field, ADDRESS);
    const type = c.oneOf(address.type, `${field}.type`, ADDRESS_TYPES);
    if (type === 'InternalIP' || type === 'ExternalIP') {
      const ip = c.ip(address.address, `${field}.address`);
      if (ip !== undefined && type === 'InternalIP' && !internalIPs.includes(ip)) internalIPs.push(ip);
    } else {
      c.string(address.address, `${field}.address`);
    }
  });
  return { name: meta.name, internalIPs };
}
