import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHistogram } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { emptySnapshot, type PodInfo, type Snapshot } from '../../agent/config/objects';
import { WorkloadStore } from '../../agent/state/store';
import { connectionClosed, connectionOpened, requestCompleted, telemetryWanted, type ConnectionEnds } from '../../agent/telemetry/events';
import { registerHealth } from '../../agent/telemetry/health';
import { ISTIO_BUCKETS, MeshMetrics } from '../../agent/telemetry/metrics';

function pod(name: string, ip: string, labels: Record<string, string>, sa: string): PodInfo {
  return { namespace: 'shop', name, labels, annotations: {}, nodeName: 'n1', serviceAccount: sa, ips: [ip] };
}
const snapshot = (pods: PodInfo[]): Snapshot => ({
  ...emptySnapshot(),
  namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }],
  pods,
  services: [{ namespace: 'shop', name: 'api', labels: {}, selector: { app: 'api' }, clusterIPs: [], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] }],
});
const WEB = pod('web', '10.1.0.5', { app: 'web' }, 'web');
const API = pod('api', '10.1.0.7', { app: 'api' }, 'api');
const store = new WorkloadStore(snapshot([WEB, API]));
const ends: ConnectionEnds = { direction: 'inbound', srcIp: '10.1.0.5', srcPort: 40000, src: store.workloadRef(WEB), dstIp: '10.1.0.7', dstPort: 8080, dst: store.workloadRef(API) };

/** The samples of `name` in the exposition text whose labels include every one of `match`. */
function samples(text: string, name: string, match: Record<string, string>): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (Object.entries(match).every(([k, v]) => line.includes(`${k}="${v}"`))) out.push(Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}
const one = (text: string, name: string, match: Record<string, string>): number => {
  const s = samples(text, name, match);
  assert.equal(s.length, 1, `${name} ${JSON.stringify(match)}: ${s.length} series\n${text.split('\n').filter((l) => l.startsWith(name)).join('\n')}`);
  return s[0]!;
};

describe('telemetry metrics', () => {
  it('publishers see no subscriber without metrics, and one while metrics listen', () => {
    assert.equal(telemetryWanted(), false);
    const m = new MeshMetrics().subscribe();
    assert.equal(connectionClosed.hasSubscribers && requestCompleted.hasSubscribers && connectionOpened.hasSubscribers, true);
    m.unsubscribe();
    assert.equal(telemetryWanted(), false);
  });

  it('a connection that closes with another outcome than it opened with is counted under each', async () => {
    const m = new MeshMetrics().subscribe();
    m.setStore(store);
    try {
      const own = { ...ends };
      connectionOpened.publish({ reporter: 'source', security: 'mutual_tls', ends: own });
      connectionClosed.publish({ reporter: 'source', security: 'mutual_tls', ends: own, bytesFromClient: 5, bytesToClient: 0, flags: 'CONNECT' });
      const again = { ...ends };
      connectionOpened.publish({ reporter: 'source', security: 'mutual_tls', ends: again });
      connectionClosed.publish({ reporter: 'source', security: 'mutual_tls', ends: again, bytesFromClient: 1, bytesToClient: 2, flags: '-' });
      const text = await m.metrics();
      const tcp = (flags: string) => ({ reporter: 'source', request_protocol: 'tcp', response_flags: flags });
      assert.equal(one(text, 'istio_tcp_connections_opened_total', tcp('-')), 2);
      assert.equal(one(text, 'istio_tcp_connections_closed_total', tcp('-')), 1);
      assert.equal(one(text, 'istio_tcp_connections_closed_total', tcp('CONNECT')), 1);
      assert.equal(one(text, 'istio_tcp_received_bytes_total', tcp('CONNECT')), 5);
      assert.equal(one(text, 'istio_tcp_received_bytes_total', tcp('-')), 1);
    } finally {
      m.unsubscribe();
    }
  });

  it('names, types, Envoy buckets and le formatting as istio-metrics.md says', async () => {
    const m = new MeshMetrics().subscribe();
    m.setStore(store);
    try {
      requestCompleted.publish({ reporter: 'destination', security: 'mutual_tls', ends, protocol: 'http', status: 200, requestBytes: 3, responseBytes: 700, durationMs: 7, flags: '-' });
      connectionOpened.publish({ reporter: 'destination', security: 'mutual_tls', ends });
      connectionClosed.publish({ reporter: 'destination', security: 'mutual_tls', ends, bytesFromClient: 11, bytesToClient: 22, flags: '-' });
      const text = await m.metrics();
      for (const [name, type] of [['istio_requests_total', 'counter'], ['istio_request_duration_milliseconds', 'histogram'], ['istio_request_bytes', 'histogram'],
        ['istio_response_bytes', 'histogram'], ['istio_tcp_sent_bytes_total', 'counter'], ['istio_tcp_received_bytes_total', 'counter'],
        ['istio_tcp_connections_opened_total', 'counter'], ['istio_tcp_connections_closed_total', 'counter']]) {
        assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), name);
      }
      const les = samples(text, 'istio_request_duration_milliseconds_bucket', { reporter: 'destination' }).length;
      assert.equal(les, 20, '19 finite bounds and +Inf');
      const leValues = [...text.matchAll(/^istio_request_duration_milliseconds_bucket\{.*le="([^"]+)"/gm)].map((x) => x[1]);
      assert.deepEqual(leValues, [...ISTIO_BUCKETS.map(String), '+Inf']);
      assert.deepEqual(leValues.slice(0, 3).concat(leValues.slice(-3)), ['0.5', '1', '5', '1800000', '3600000', '+Inf'], 'no trailing .0, no exponent');
      const base = { reporter: 'destination', response_code: '200', connection_security_policy: 'mutual_tls', destination_service: 'api.shop.svc.cluster.local' };
      assert.equal(one(text, 'istio_requests_total', base), 1);
      assert.equal(one(text, 'istio_request_duration_milliseconds_bucket', { ...base, le: '5' }), 0);
      assert.equal(one(text, 'istio_request_duration_milliseconds_bucket', { ...base, le: '10' }), 1);
      assert.equal(one(text, 'istio_request_duration_milliseconds_sum', base), 7);
      assert.equal(one(text, 'istio_request_duration_milliseconds_count', base), 1);
      assert.equal(one(text, 'istio_response_bytes_bucket', { ...base, le: '500' }), 0);
      assert.equal(one(text, 'istio_response_bytes_bucket', { ...base, le: '1000' }), 1);
      assert.equal(one(text, 'istio_request_bytes_sum', base), 3);
      // Istio's byte direction: received = from the client (11), sent = back to the client (22).
      const tcp = { reporter: 'destination', request_protocol: 'tcp', response_flags: '-' };
      assert.equal(one(text, 'istio_tcp_received_bytes_total', tcp), 11);
      assert.equal(one(text, 'istio_tcp_sent_bytes_total', tcp), 22);
      assert.equal(one(text, 'istio_tcp_connections_opened_total', tcp), 1);
      assert.equal(one(text, 'istio_tcp_connections_closed_total', tcp), 1);
      assert.doesNotMatch(text, /grpc_response_status="[^"]*".*request_protocol="tcp"/, 'TCP series carry no HTTP labels');
      assert.match(text, /istio_requests_total\{[^}]*grpc_response_status=""/, 'plain HTTP: empty grpc_response_status');
    } finally {
      m.unsubscribe();
    }
  });

  it('series of workloads that left the state are removed when a new state arrives', async () => {
    const m = new MeshMetrics().subscribe();
    m.setStore(store);
    try {
      connectionClosed.publish({ reporter: 'destination', security: 'mutual_tls', ends, bytesFromClient: 1, bytesToClient: 1, flags: '-' });
      requestCompleted.publish({ reporter: 'destination', security: 'mutual_tls', ends, protocol: 'http', status: 200, requestBytes: 0, responseBytes: 0, durationMs: 1, flags: '-' });
      assert.equal(m.series, 2);
      assert.equal(m.setStore(new WorkloadStore(snapshot([WEB, API]))), 0, 'both still there');
      assert.equal(m.setStore(new WorkloadStore(snapshot([API]))), 2, 'web left');
      const text = await m.metrics();
      assert.equal(samples(text, 'istio_requests_total', {}).length, 0);
      assert.equal(samples(text, 'istio_tcp_sent_bytes_total', {}).length, 0);
    } finally {
      m.unsubscribe();
    }
  });

  it('agent health: memory, connections, certificate expiry per identity, build info', async () => {
    const registry = new Registry();
    const stop = registerHealth(registry, { connections: () => 3, certificates: () => [{ identity: 'spiffe://cluster.local/ns/shop/sa/web', notAfter: new Date(1_000_000 + 3_600_000) }, { identity: 'spiffe://cluster.local/ns/shop/sa/none' }], version: '0.1.0' }, () => 1_000_000);
    try {
      const text = await registry.metrics();
      assert.equal(one(text, 'weft_certificate_expiry_seconds', { identity: 'spiffe://cluster.local/ns/shop/sa/web' }), 3600);
      assert.equal(samples(text, 'weft_certificate_expiry_seconds', { identity: 'spiffe://cluster.local/ns/shop/sa/none' }).length, 0, 'no certificate, no expiry');
      assert.match(text, /^weft_agent_connections 3$/m);
      assert.ok(one(text, 'weft_agent_memory_bytes', { kind: 'rss' }) > 0);
      assert.equal(samples(text, 'weft_agent_event_loop_delay_seconds', {}).length, 3);
      assert.equal(one(text, 'istio_build', { component: 'weft', tag: '0.1.0' }), 1);
    } finally {
      stop();
    }
  });
  it('agent health: the event-loop delay from the proxy\'s own lag samples when given (read and reset at each scrape; 0 for a loop idle throughout)', async () => {
    const registry = new Registry();
    const lag = createHistogram();
    const stop = registerHealth(registry, { connections: () => 0, certificates: () => [], version: 'test', loopDelay: lag });
    try {
      for (let i = 0; i < 98; i++) lag.record(1);
      lag.record(30e6);
      lag.record(200e6);
      const text = await registry.metrics();
      assert.ok(one(text, 'weft_agent_event_loop_delay_seconds', { quantile: '0.5' }) < 1e-6, 'p50: no delay');
      assert.ok(Math.abs(one(text, 'weft_agent_event_loop_delay_seconds', { quantile: '0.99' }) - 0.03) < 0.001, 'p99: the 30 ms sample');
      assert.ok(Math.abs(one(text, 'weft_agent_event_loop_delay_seconds', { quantile: '1' }) - 0.2) < 0.002, 'max: the 200 ms sample');
      assert.equal(lag.count, 0, 'the scrape reset it');
      const idle = await registry.metrics();
      assert.deepEqual(samples(idle, 'weft_agent_event_loop_delay_seconds', {}), [0, 0, 0], 'no samples since: no delay');
    } finally {
      stop();
    }
  });
  it('requests on one connection with changing outcomes each count in their own series (the per-connection last-outcome shortcut), also after a new state', async () => {
    const m = new MeshMetrics().subscribe();
    m.setStore(store);
    try {
      const req = (status: number, flags: '-' | 'UF' = '-', grpcStatus?: string) => requestCompleted.publish({ reporter: 'source', security: 'mutual_tls', ends,
        protocol: grpcStatus === undefined ? 'http' : 'grpc', status, ...(grpcStatus === undefined ? {} : { grpcStatus }), requestBytes: 1, responseBytes: 2, durationMs: 1, flags });
      for (const s of [200, 200, 503, 200, 503, 404, 200]) req(s);
      req(503, 'UF');
      req(200, '-', '0');
      req(200, '-', '14');
      req(200);
      let text = await m.metrics();
      const count = (match: Record<string, string>) => one(text, 'istio_requests_total', { reporter: 'source', ...match });
      assert.equal(count({ response_code: '200', request_protocol: 'http' }), 5);
      assert.equal(count({ response_code: '503', response_flags: '-' }), 2);
      assert.equal(count({ response_code: '503', response_flags: 'UF' }), 1);
      assert.equal(count({ response_code: '404' }), 1);
      assert.equal(count({ grpc_response_status: '0' }), 1);
      assert.equal(count({ grpc_response_status: '14' }), 1);
      m.setStore(new WorkloadStore(snapshot([WEB, API])));
      req(200);
      req(503);
      text = await m.metrics();
      assert.equal(count({ response_code: '200', request_protocol: 'http' }), 6);
      assert.equal(count({ response_code: '503', response_flags: '-' }), 3);
    } finally {
      m.unsubscribe();
    }
  });
});
