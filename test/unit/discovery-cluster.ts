/**
 * Random small clusters for the discovery tests (discovery-view, discovery-delta): three nodes,
 * namespaces in and out of the mesh and the root namespace, pods with every PodInfo field that
 * can be set, Services by selector and by EndpointSlice, PeerAuthentications and
 * AuthorizationPolicies at every level. Keys are drawn from small sets so that sequences of
 * clusters add, change, remove and re-add the same objects.
 */
import * as fc from 'fast-check';
import { ROOT_NAMESPACE, type EndpointSliceInfo, type MtlsMode, type PeerAuthenticationInfo, type PodInfo, type ServiceInfo, type Snapshot } from '../../agent/config/objects';
import { defaultProxyConfig } from '../../agent/config/proxy-config';
import type { AuthorizationPolicyInfo } from '../../agent/policy/authorization-policy';

export const NODES = ['node-a', 'node-b', 'node-c'] as const;
export const NAMESPACES = [ROOT_NAMESPACE, 'shop', 'db', 'legacy'] as const;
const APPS = ['web', 'db', 'api'] as const;
const MODES: MtlsMode[] = ['STRICT', 'PERMISSIVE', 'UNSET', 'DISABLE'];

export const nodeAddress = (i: number): string => `192.168.50.${i + 1}`;

const pod = (i: number): fc.Arbitrary<PodInfo> =>
  fc.record({
    namespace: fc.constantFrom(...NAMESPACES),
    node: fc.constantFrom(...NODES),
    app: fc.constantFrom(...APPS),
    disabled: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
    sa: fc.constantFrom('default', 'web', 'db'),
    v6: fc.boolean(),
    ready: fc.constantFrom(undefined, undefined, false),
    terminating: fc.constantFrom(undefined, undefined, true),
    ports: fc.constantFrom<Array<Record<string, number> | undefined>>(undefined, { http: 8080 }, { http: 8081, grpc: 9090 }),
    cgroup: fc.boolean(),
    uid: fc.boolean(),
    note: fc.constantFrom(undefined, 'x', 'y'),
    hash: fc.boolean(),
  }).map((f) => {
    const p: PodInfo = {
      namespace: f.namespace,
      name: f.hash ? `${f.app}-7d4b9c-x2x4${'bcdfg'[i % 5]}` : `p${i}`,
      labels: { app: f.app, ...(f.hash ? { 'pod-template-hash': '7d4b9c' } : {}), ...(f.disabled ? { 'weft.dev/mesh': 'disabled' } : {}) },
      annotations: f.note === undefined ? {} : { note: f.note, ...(f.cgroup ? { 'weft.dev/cgroup': `/sys/fs/cgroup/wdelta/p${i}` } : {}) },
      nodeName: f.node,
      serviceAccount: f.sa,
      ips: f.v6 ? [`10.60.${i}.1`, `fd00:60::${i + 1}`] : [`10.60.${i}.1`],
    };
    if (f.cgroup) p.cgroupPath = `/sys/fs/cgroup/wdelta/p${i}`;
    if (f.uid) p.uid = `0000000${i}-1111-2222-3333-444444444444`;
    if (f.ready !== undefined) p.ready = f.ready;
    if (f.terminating !== undefined) p.terminating = f.terminating;
    if (f.ports !== undefined) p.containerPorts = f.ports;
    return p;
  });

const service = (i: number): fc.Arbitrary<ServiceInfo> =>
  fc.record({
    namespace: fc.constantFrom(...NAMESPACES.slice(1)),
    app: fc.constantFrom(...APPS),
    target: fc.constantFrom<number | string>(8080, 'http', 9090),
    appProtocol: fc.constantFrom(undefined, 'http', 'tcp'),
    headless: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  }).map((f) => ({
    namespace: f.namespace, name: `svc${i}`, labels: {}, selector: { app: f.app },
    clusterIPs: f.headless ? [] : [`10.96.0.${i + 1}`],
    ports: [{ name: 'http', port: 80, targetPort: f.target, protocol: 'TCP' as const, ...(f.appProtocol === undefined ? {} : { appProtocol: f.appProtocol }) }],
  }));

const peerAuthentication = (i: number): fc.Arbitrary<PeerAuthenticationInfo> =>
  fc.record({
    namespace: fc.constantFrom(...NAMESPACES),
    app: fc.constantFrom(undefined, ...APPS),
    mode: fc.constantFrom(...MODES),
    port: fc.constantFrom(undefined, 8080, 9090),
    portMode: fc.constantFrom(...MODES),
  }).map((f) => ({
    namespace: f.namespace, name: `pa${i}`, mode: f.mode,
    ...(f.app === undefined ? {} : { matchLabels: { app: f.app } }),
    portLevel: f.port === undefined ? {} : { [f.port]: f.portMode },
  }));

const authorizationPolicy = (i: number): fc.Arbitrary<AuthorizationPolicyInfo> =>
  fc.record({
    namespace: fc.constantFrom(...NAMESPACES),
    app: fc.constantFrom(undefined, ...APPS),
    action: fc.constantFrom('ALLOW' as const, 'DENY' as const),
    rule: fc.constantFrom('none', 'all', 'principal', 'namespace', 'port', 'ip'),
    sa: fc.constantFrom('default', 'web', 'db'),
    ns: fc.constantFrom(...NAMESPACES),
  }).map((f) => ({
    namespace: f.namespace, name: `ap${i}`, action: f.action,
    ...(f.app === undefined ? {} : { matchLabels: { app: f.app } }),
    rules: f.rule === 'none' ? [] : f.rule === 'all' ? [{}]
      : f.rule === 'principal' ? [{ from: [{ principals: [`cluster.local/ns/${f.ns}/sa/${f.sa}`] }] }]
        : f.rule === 'namespace' ? [{ from: [{ namespaces: [f.ns] }] }]
          : f.rule === 'port' ? [{ to: [{ ports: [8080] }] }]
            : [{ from: [{ ipBlocks: ['10.60.0.0/20'] }] }],
  }));

/** Optional entries of a small key space: index i present or not. */
function some<T>(n: number, make: (i: number) => fc.Arbitrary<T>): fc.Arbitrary<T[]> {
  return fc.tuple(...Array.from({ length: n }, (_, i) => fc.option(make(i), { freq: 2 }))).map((xs) => xs.filter((x): x is Awaited<T> => x !== null) as T[]);
}

/** An EndpointSlice for each Service that `sliced` picks, listing the pods its selector matches. */
function slicesFor(services: ServiceInfo[], pods: PodInfo[], sliced: boolean[]): EndpointSliceInfo[] {
  return services.filter((_, i) => sliced[i % sliced.length]).map((svc) => ({
    namespace: svc.namespace, name: `${svc.name}-abcde`, service: svc.name, addressType: 'IPv4' as const,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' as const }],
    endpoints: pods.filter((p) => p.namespace === svc.namespace && p.labels.app === svc.selector.app).map((p) => ({
      addresses: [p.ips[0]!], ready: p.ready !== false && p.terminating !== true, serving: p.ready !== false, terminating: p.terminating === true,
      nodeName: p.nodeName, pod: p.name,
    })),
  }));
}

export const cluster: fc.Arbitrary<Snapshot> = fc.record({
  meshed: fc.subarray(['shop', 'db', 'legacy']),
  pods: some(12, pod),
  services: some(4, service),
  sliced: fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }),
  pas: some(5, peerAuthentication),
  aps: some(6, authorizationPolicy),
  nodes: fc.subarray([...NODES], { minLength: 2 }),
  proxyConfig: fc.constantFrom(undefined, { ...defaultProxyConfig(), sameNodeSplice: false }),
}).map((f) => {
  // Pods named after the Deployment share names in a namespace: keep the first of each key.
  const seen = new Set<string>();
  const pods = f.pods.filter((p) => { const k = `${p.namespace}/${p.name}`; if (seen.has(k)) return false; seen.add(k); return true; });
  const s: Snapshot = {
    namespaces: NAMESPACES.map((name) => ({ name, labels: f.meshed.includes(name) ? { 'weft.dev/mesh': 'enabled' } : ({} as Record<string, string>) })),
    pods,
    nodes: f.nodes.map((name) => ({ name, internalIPs: [nodeAddress(NODES.indexOf(name as (typeof NODES)[number]))] })),
    services: f.services,
    peerAuthentications: f.pas,
    authorizationPolicies: f.aps,
    endpointSlices: slicesFor(f.services, pods, f.sliced),
  };
  if (f.proxyConfig !== undefined) s.proxyConfig = f.proxyConfig;
  return s;
});
