import { join, type Checker, type Fields } from './checker';
import type { Metadata } from './metadata';
import type { ServiceInfo, ServicePort } from './objects';

/** ServiceSpec fields Weft reads, then the standard ones accepted but not read. */
const SPEC = new Set([
  'selector', 'clusterIP', 'clusterIPs', 'ports',
  'type', 'sessionAffinity', 'sessionAffinityConfig', 'externalIPs', 'externalName', 'externalTrafficPolicy',
  'internalTrafficPolicy', 'ipFamilies', 'ipFamilyPolicy', 'loadBalancerIP', 'loadBalancerSourceRanges',
  'loadBalancerClass', 'allocateLoadBalancerNodePorts', 'healthCheckNodePort', 'publishNotReadyAddresses',
  'trafficDistribution',
]);
const STATUS = new Set(['loadBalancer', 'conditions']);
const PORT = new Set(['name', 'port', 'targetPort', 'protocol', 'appProtocol', 'nodePort']);
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
/** `clusterIP: None` marks a headless Service. */
const HEADLESS = 'None';

export function convertService(c: Checker, obj: Fields, meta: Metadata): ServiceInfo {
  const spec = c.mapping(obj.spec, 'spec') ?? {};
  c.allowOnly(spec, 'spec', SPEC);
  c.allowOnly(c.optionalMapping(obj.status, 'status'), 'status', STATUS);
  return {
    namespace: meta.namespace,
    name: meta.name,
    labels: meta.labels,
    selector: c.stringMap(spec.selector, 'spec.selector'),
    clusterIPs: clusterIps(c, spec),
    ports: ports(c, spec.ports),
  };
}

function clusterIps(c: Checker, spec: Fields): string[] {
  const ips: string[] = [];
  const read = (value: unknown, field: string): void => {
    if (value === HEADLESS || value === '') return;
    const ip = c.ip(value, field);
    if (ip !== undefined && !ips.includes(ip)) ips.push(ip);
  };
  if (spec.clusterIP !== undefined) read(spec.clusterIP, 'spec.clusterIP');
  if (spec.clusterIPs !== undefined) (c.list(spec.clusterIPs, 'spec.clusterIPs') ?? []).forEach((v, i) => read(v, join('spec.clusterIPs', i)));
  return ips;
}

function ports(c: Checker, value: unknown): ServicePort[] {
  if (value === undefined) return [];
  const entries = c.list(value, 'spec.ports') ?? [];
  const result: ServicePort[] = [];
  const names = new Set<string>();
  entries.forEach((entry, i) => {
    const field = join('spec.ports', i);
    const raw = c.mapping(entry, field);
    if (!raw) return;
    c.allowOnly(raw, field, PORT);
    const port = c.port(raw.port, `${field}.port`) ?? 0;
    const sp: ServicePort = {
      port,
      targetPort: targetPort(c, raw.targetPort, `${field}.targetPort`) ?? port,
      protocol: raw.protocol === undefined ? 'TCP' : (c.oneOf(raw.protocol, `${field}.protocol`, PROTOCOLS) ?? 'TCP'),
    };
    const name = c.optionalString(raw.name, `${field}.name`);
    if (name !== undefined) {
      if (names.has(name)) c.fail(`${field}.name`, `"${name}" is used by another port of this Service`);
      names.add(name);
      sp.name = name;
    } else if (entries.length > 1) {
      c.fail(`${field}.name`, 'must be set when a Service has more than one port');
    }
    const appProtocol = c.optionalString(raw.appProtocol, `${field}.appProtocol`);
    if (appProtocol !== undefined) sp.appProtocol = appProtocol;
    result.push(sp);
  });
  return result;
}

/** A port number, or the name of a container port; absent means the same as `port`. */
function targetPort(c: Checker, value: unknown, field: string): number | string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return c.string(value, field);
  return c.port(value, field);
}
