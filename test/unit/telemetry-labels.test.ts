import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emptySnapshot, type PodInfo, type Snapshot } from '../../agent/config/objects';
import { arrivalReporters, arrivalSecurity, type Arrival } from '../../agent/proxy/deliver';
import { WorkloadStore } from '../../agent/state/store';
import type { ConnectionEnds, RequestCompletedEvent } from '../../agent/telemetry/events';
import fc from 'fast-check';
import { HTTP_LABELS, httpLabels, TCP_LABELS, tcpLabels, tcpLabelsKey } from '../../agent/telemetry/labels';

function pod(namespace: string, name: string, node: string, ip: string, labels: Record<string, string>, serviceAccount = 'default'): PodInfo {
  return { namespace, name, labels, annotations: {}, nodeName: node, serviceAccount, ips: [ip] };
}

const snapshot: Snapshot = {
  ...emptySnapshot(),
  namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }, { name: 'legacy', labels: {} }],
  nodes: [{ name: 'n1', internalIPs: ['192.168.9.1'] }, { name: 'n2', internalIPs: ['192.168.9.2'] }],
  pods: [
    pod('shop', 'web-7d4b9c-x2x4q', 'n1', '10.1.0.5', { app: 'web', version: 'v2' }, 'web'),
    pod('shop', 'api', 'n2', '10.2.0.7', { app: 'api', 'service.istio.io/canonical-revision': 'r7' }, 'api'),
    pod('legacy', 'outsider', 'n2', '10.2.0.9', {}),
  ],
  services: [
    { namespace: 'shop', name: 'api', labels: {}, selector: { app: 'api' }, clusterIPs: [], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] },
    { namespace: 'shop', name: 'api-grpc', labels: {}, selector: { app: 'api' }, clusterIPs: ['10.96.0.4'], ports: [{ port: 8444, targetPort: 8444, protocol: 'TCP' }] },
  ],
};
const store = new WorkloadStore(snapshot);
const web = store.workloadRef(snapshot.pods[0]!);
const api = store.workloadRef(snapshot.pods[1]!);
const WEB_ID = 'spiffe://cluster.local/ns/shop/sa/web';
const API_ID = 'spiffe://cluster.local/ns/shop/sa/api';

const ends = (over: Partial<ConnectionEnds>): ConnectionEnds => ({ direction: 'inbound', srcIp: '10.1.0.5', srcPort: 40000, dstIp: '10.2.0.7', dstPort: 8080, ...over });

describe('telemetry labels', () => {
  const table: { name: string; ev: Parameters<typeof tcpLabels>[0]; flags?: '-' | 'DENY'; want: Record<string, string> }[] = [
    {
      name: 'meshed across nodes, destination side (verified tunnel peer)',
      ev: { reporter: 'destination', security: 'mutual_tls', ends: ends({ src: web, dst: api }) },
      want: {
        reporter: 'destination', source_workload: 'web', source_workload_namespace: 'shop', source_principal: WEB_ID, source_app: 'web', source_version: 'v2',
        source_canonical_service: 'web', source_canonical_revision: 'v2', source_cluster: 'Kubernetes',
        destination_workload: 'api', destination_workload_namespace: 'shop', destination_principal: API_ID, destination_app: 'api', destination_version: 'r7',
        destination_canonical_service: 'api', destination_canonical_revision: 'r7', destination_service: 'api.shop.svc.cluster.local',
        destination_service_name: 'api', destination_service_namespace: 'shop', destination_cluster: 'Kubernetes',
        request_protocol: 'tcp', response_flags: '-', connection_security_policy: 'mutual_tls',
      },
    },
    {
      name: 'meshed across nodes, source side, addressed to a Service IP',
      ev: { reporter: 'source', security: 'mutual_tls', ends: ends({ direction: 'outbound', src: web, dst: api, dstPort: 8444, dstService: { namespace: 'shop', name: 'api-grpc' } }) },
      want: { reporter: 'source', source_principal: WEB_ID, destination_principal: API_ID, destination_service: 'api-grpc.shop.svc.cluster.local', destination_service_name: 'api-grpc' },
    },
    {
      name: 'tunnel peer whose pod is not named: principal and namespace from the identity, workload unknown',
      ev: { reporter: 'destination', security: 'mutual_tls', ends: ends({ srcIp: '192.168.9.1', srcIdentity: WEB_ID, dst: api }) },
      want: { source_workload: 'unknown', source_workload_namespace: 'shop', source_principal: WEB_ID, source_canonical_revision: 'latest', source_cluster: 'unknown' },
    },
    {
      name: 'plaintext client outside the mesh: named by its address, no principal, none',
      ev: { reporter: 'destination', security: 'none', ends: ends({ srcIp: '10.2.0.9', dst: api }) },
      want: { source_workload: 'outsider', source_workload_namespace: 'legacy', source_principal: 'unknown', source_app: 'outsider', source_version: 'latest',
        destination_principal: API_ID, connection_security_policy: 'none' },
    },
    {
      name: 'plaintext client the mesh does not know: unknown source',
      ev: { reporter: 'destination', security: 'none', ends: ends({ srcIp: '172.16.0.1', dst: api }) },
      want: { source_workload: 'unknown', source_workload_namespace: 'unknown', source_principal: 'unknown', destination_workload: 'api' },
    },
    {
      name: 'passthrough to a destination outside the mesh',
      ev: { reporter: 'source', security: 'none', ends: ends({ direction: 'outbound', src: web, dstIp: '203.0.113.9', dstPort: 443 }) },
      want: { source_workload: 'web', source_principal: 'unknown', destination_workload: 'unknown', destination_principal: 'unknown', destination_service: 'unknown',
        destination_service_namespace: 'unknown', destination_canonical_revision: 'latest', connection_security_policy: 'none' },
    },
    {
      name: 'denied connection',
      ev: { reporter: 'destination', security: 'mutual_tls', ends: ends({ src: web, dst: api, dstPort: 7000 }) },
      flags: 'DENY',
      want: { response_flags: 'DENY', destination_service: 'api.shop.svc.cluster.local' },
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      const l = tcpLabels(row.ev, row.flags ?? '-', store);
      assert.deepEqual(Object.keys(l).sort(), [...TCP_LABELS].sort());
      for (const [k, v] of Object.entries(row.want)) assert.equal(l[k as keyof typeof l], v, k);
      for (const v of Object.values(l)) assert.notEqual(v, '', 'no empty TCP label');
    });
  }

  const request = (over: Partial<RequestCompletedEvent>): RequestCompletedEvent => ({
    reporter: 'destination', security: 'mutual_tls', ends: ends({ src: web, dst: api }), protocol: 'http', status: 200,
    requestBytes: 0, responseBytes: 10, durationMs: 1, flags: '-', ...over,
  });
  it('HTTP: response_code, an empty grpc_response_status, request_protocol http', () => {
    const l = httpLabels(request({}), store);
    assert.deepEqual(Object.keys(l).sort(), [...HTTP_LABELS].sort());
    assert.equal(HTTP_LABELS.length, 25);
    assert.deepEqual([l.request_protocol, l.response_code, l.grpc_response_status, l.response_flags], ['http', '200', '', '-']);
  });
  it('HTTP denied by policy: 403 and DENY', () => {
    const l = httpLabels(request({ status: 403, flags: 'DENY' }), store);
    assert.deepEqual([l.response_code, l.response_flags], ['403', 'DENY']);
  });
  it('gRPC: request_protocol grpc and the status code', () => {
    const l = httpLabels(request({ protocol: 'grpc', grpcStatus: '7', ends: ends({ src: web, dst: api, dstPort: 8444 }) }), store);
    assert.deepEqual([l.request_protocol, l.response_code, l.grpc_response_status, l.destination_service], ['grpc', '200', '7', 'api-grpc.shop.svc.cluster.local']);
  });
  it('without a state, the references alone still name both workloads', () => {
    const l = tcpLabels({ reporter: 'destination', security: 'mutual_tls', ends: ends({ src: web, dst: api }) }, '-', undefined);
    assert.deepEqual([l.source_workload, l.destination_workload, l.source_principal, l.destination_service], ['web', 'api', WEB_ID, 'unknown']);
  });

  it('who reports an arrival, and its security policy, by path', () => {
    const arrival = (path: Arrival['path'], src?: typeof web): Arrival => ({ path, pod: snapshot.pods[1]!, conn: { sourceIp: '10.1.0.5', sourcePort: 1, destinationIp: '10.2.0.7', destinationPort: 8080 },
      record: ends(src ? { src, dst: api } : { dst: api }) });
    assert.deepEqual([arrivalReporters(arrival('hbone')), arrivalSecurity(arrival('hbone'))], [['destination'], 'mutual_tls']);
    assert.deepEqual([arrivalReporters(arrival('local', web)), arrivalSecurity(arrival('local', web))], [['source', 'destination'], 'mutual_tls']);
    assert.equal(arrivalSecurity(arrival('local')), 'none', 'same node, source pod not attributed by the kernel');
    assert.deepEqual([arrivalReporters(arrival('plaintext')), arrivalSecurity(arrival('plaintext'))], [['destination'], 'none']);
  });
  it('tcpLabelsKey: events with the same key have the same TCP labels (what lets MeshMetrics reuse a record across connections)', () => {
    const outsider = store.workloadRef(snapshot.pods[2]!);
    const forged = { ...web, identity: 'spiffe://cluster.local/ns/shop/sa/other' };
    const event = fc.record({
      reporter: fc.constantFrom('source' as const, 'destination' as const),
      security: fc.constantFrom('mutual_tls' as const, 'none' as const),
      flags: fc.constantFrom('-' as const, 'DENY' as const, 'CONNECT' as const),
      src: fc.constantFrom(undefined, web, api, outsider, forged),
      srcIdentity: fc.constantFrom(undefined, WEB_ID, API_ID),
      srcIp: fc.constantFrom('10.1.0.5', '10.2.0.7', '10.2.0.9', '192.168.9.1', '10.9.9.9'),
      dst: fc.constantFrom(undefined, web, api, outsider),
      dstPort: fc.constantFrom(8080, 8444, 9000),
      dstService: fc.constantFrom(undefined, { namespace: 'shop', name: 'api' }, { namespace: 'shop', name: 'api-grpc' }),
    });
    const toEv = (e: { reporter: 'source' | 'destination'; security: 'mutual_tls' | 'none'; src?: typeof web; srcIdentity?: string; srcIp: string; dst?: typeof web; dstPort: number; dstService?: { namespace: string; name: string } }) => ({
      reporter: e.reporter, security: e.security,
      ends: ends({ srcIp: e.srcIp, dstPort: e.dstPort, ...(e.src ? { src: e.src } : {}), ...(e.srcIdentity ? { srcIdentity: e.srcIdentity } : {}), ...(e.dst ? { dst: e.dst } : {}), ...(e.dstService ? { dstService: e.dstService } : {}) }),
    });
    let same = 0;
    fc.assert(fc.property(fc.array(event, { minLength: 500, maxLength: 1000 }), (events) => {
      const byKey = new Map<string, ReturnType<typeof tcpLabels>>();
      for (const e of events) {
        const ev = toEv(e);
        const key = tcpLabelsKey(ev, e.flags);
        const labels = tcpLabels(ev, e.flags, store);
        const seen = byKey.get(key);
        if (seen) { same++; assert.deepEqual(labels, seen, key); } else byKey.set(key, labels);
      }
    }), { numRuns: 40 });
    assert.ok(same > 1000, `events with a key seen before were compared (${same})`);
  });
});
