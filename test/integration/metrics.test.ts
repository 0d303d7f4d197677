/**
 * Istio's standard metrics on 15020, end to end on real namespaces: two nodes, a control plane and
 * an agent per node, a known traffic mix (HTTP allowed and denied, gRPC, one TCP echo, a same-node
 * pair, a plaintext client outside the mesh), then each node's /metrics scraped from inside its
 * netns and the exact counts asserted per label set, for both reporters.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LabNode } from '../../agent/sandbox';
import { driveTrafficMix, ECHO, ID, MIX, scrapeSettled, SHOP, startMetricsMesh, SVC, type MetricsMesh, type Sample } from '../support/metrics-mesh';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
if (blocker) process.stderr.write(`\n*** SKIPPING metrics end-to-end tests: ${blocker} ***\n\n`);
const { get: N_GET, denied: M_DENIED, local: N_LOCAL } = MIX;

describe('Istio metrics on 15020', { skip: blocker ?? false }, () => {
  let mesh: MetricsMesh;
  let n1: LabNode, n2: LabNode;
  let scraped = new Map<LabNode, Sample[]>();

  /** The one series of `name` whose labels include `match`; fails if there is none or more than one. */
  const one = (node: LabNode, name: string, match: Record<string, string>): Sample => {
    const all = scraped.get(node)!.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
    assert.equal(all.length, 1, `${node.name} ${name} ${JSON.stringify(match)}: ${all.length} series: ${JSON.stringify(all.map((s) => s.labels))}`);
    return all[0]!;
  };
  const value = (node: LabNode, name: string, match: Record<string, string>) => one(node, name, match).value;
  const none = (node: LabNode, name: string, match: Record<string, string>) =>
    assert.equal(scraped.get(node)!.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).length, 0, `${node.name} ${name} ${JSON.stringify(match)}`);

  before(async () => {
    if (blocker) return;
    mesh = await startMetricsMesh('metrics');
    ({ n1, n2 } = mesh);
    await driveTrafficMix(mesh);
    // Connections end shortly after their clients exit: scrape (bounded) until every opened one has closed on both nodes.
    scraped = await scrapeSettled([n1, n2]);
  });

  after(async () => {
    if (blocker) return;
    await mesh?.close();
  });

  const meshed = { source_workload: 'web', source_workload_namespace: SHOP, source_principal: ID('web'), source_app: 'web', source_version: 'v1',
    destination_workload: 'api', destination_workload_namespace: SHOP, destination_principal: ID('api'), destination_app: 'api', destination_version: 'v2',
    connection_security_policy: 'mutual_tls' };

  test('HTTP across nodes, destination reporter: allowed GETs, denied requests with 403 and DENY, every label as Istio writes it', () => {
    const s = one(n2, 'istio_requests_total', { ...meshed, reporter: 'destination', request_protocol: 'http', response_code: '200' });
    assert.equal(s.value, N_GET);
    assert.deepEqual(s.labels, {
      reporter: 'destination', source_workload: 'web', source_canonical_service: 'web', source_canonical_revision: 'v1', source_workload_namespace: SHOP,
      source_principal: ID('web'), source_app: 'web', source_version: 'v1', source_cluster: 'Kubernetes',
      destination_workload: 'api', destination_workload_namespace: SHOP, destination_principal: ID('api'), destination_app: 'api', destination_version: 'v2',
      destination_service: SVC('api'), destination_canonical_service: 'api', destination_canonical_revision: 'v2', destination_service_name: 'api',
      destination_service_namespace: SHOP, destination_cluster: 'Kubernetes',
      request_protocol: 'http', response_code: '200', grpc_response_status: '', response_flags: '-', connection_security_policy: 'mutual_tls',
    });
    assert.equal(value(n2, 'istio_requests_total', { reporter: 'destination', source_workload: 'bot', source_principal: ID('bot'), response_code: '403', response_flags: 'DENY',
      connection_security_policy: 'mutual_tls', destination_service: SVC('api') }), M_DENIED);
    assert.equal(value(n2, 'istio_request_duration_milliseconds_count', { ...meshed, reporter: 'destination', request_protocol: 'http', response_code: '200' }), N_GET);
    assert.equal(value(n2, 'istio_request_duration_milliseconds_bucket', { ...meshed, reporter: 'destination', request_protocol: 'http', response_code: '200', le: '+Inf' }), N_GET);
    assert.equal(value(n2, 'istio_response_bytes_count', { ...meshed, reporter: 'destination', request_protocol: 'http', response_code: '200' }), N_GET);
    assert.equal(value(n2, 'istio_request_bytes_bucket', { ...meshed, reporter: 'destination', request_protocol: 'http', response_code: '200', le: '0.5' }), N_GET, 'GETs carry no body');
    // The source proxy moves a cross-node connection's bytes without parsing HTTP: no request series there.
    none(n1, 'istio_requests_total', { reporter: 'source', destination_service: SVC('api'), source_workload: 'bot' });
  });

  test('gRPC across nodes: request_protocol grpc, one series per grpc_response_status', () => {
    const grpc = { ...meshed, reporter: 'destination', request_protocol: 'grpc', response_code: '200' };
    assert.equal(value(n2, 'istio_requests_total', { ...grpc, grpc_response_status: '0' }), 2, 'Hello and Count');
    assert.equal(value(n2, 'istio_requests_total', { ...grpc, grpc_response_status: '7' }), 1, 'Fail: PERMISSION_DENIED');
  });

  test('TCP across nodes on both reporters: one echo connection with its exact bytes, in Istio\'s direction', () => {
    const bytes = Buffer.byteLength(ECHO);
    for (const [node, reporter] of [[n1, 'source'], [n2, 'destination']] as const) {
      const m = { ...meshed, reporter, destination_service: SVC('echo'), request_protocol: 'tcp', response_flags: '-' };
      assert.equal(value(node, 'istio_tcp_connections_opened_total', m), 1, reporter);
      assert.equal(value(node, 'istio_tcp_connections_closed_total', m), 1, reporter);
      assert.equal(value(node, 'istio_tcp_received_bytes_total', m), bytes, `${reporter}: client → server`);
      assert.equal(value(node, 'istio_tcp_sent_bytes_total', m), bytes, `${reporter}: server → client`);
    }
    // The HTTP and gRPC connections from web to api: 3 GETs and one gRPC channel, on both reporters.
    for (const [node, reporter] of [[n1, 'source'], [n2, 'destination']] as const) {
      // (n1's source series also counts the same-node connections to api1, a pod of the same workload.)
      const expected = N_GET + 1 + (reporter === 'source' ? N_LOCAL : 0);
      assert.equal(value(node, 'istio_tcp_connections_opened_total', { ...meshed, reporter, destination_service: SVC('api') }), expected, reporter);
      assert.equal(value(node, 'istio_tcp_connections_opened_total', { reporter, source_workload: 'bot', source_principal: ID('bot'), destination_service: SVC('api') }), M_DENIED,
        `${reporter}: the denied requests' connections themselves were accepted`);
    }
  });

  test('same node: one proxy reports both source and destination, mutual_tls', () => {
    for (const reporter of ['source', 'destination']) {
      const s = one(n1, 'istio_requests_total', { ...meshed, reporter, request_protocol: 'http', response_code: '200' });
      assert.equal(s.value, N_LOCAL, reporter);
      assert.equal(value(n1, 'istio_request_duration_milliseconds_count', { ...meshed, reporter, request_protocol: 'http', response_code: '200' }), N_LOCAL);
    }
    assert.equal(value(n1, 'istio_tcp_connections_opened_total', { ...meshed, reporter: 'destination', destination_service: SVC('api') }), N_LOCAL);
  });

  test('a plaintext client outside the mesh: destination reporter only, none, named by its address, no principal', () => {
    const s = one(n2, 'istio_requests_total', { reporter: 'destination', connection_security_policy: 'none' });
    assert.equal(s.value, 1);
    assert.equal(s.labels.source_workload, 'outsider');
    assert.equal(s.labels.source_workload_namespace, 'legacy');
    assert.equal(s.labels.source_principal, 'unknown');
    assert.equal(s.labels.destination_workload, 'api');
    assert.equal(s.labels.destination_principal, ID('api'));
    assert.equal(s.labels.response_code, '200');
    assert.equal(value(n2, 'istio_tcp_connections_closed_total', { reporter: 'destination', connection_security_policy: 'none' }), 1);
    none(n1, 'istio_tcp_connections_opened_total', { source_workload: 'outsider' });
  });

  test('no meshed series says unknown for what the mesh knows; agent health is there', () => {
    for (const node of [n1, n2]) {
      for (const s of scraped.get(node)!.filter((x) => x.name.startsWith('istio_') && x.labels.connection_security_policy === 'mutual_tls')) {
        const unknown = Object.entries(s.labels).filter(([, v]) => v === 'unknown');
        assert.deepEqual(unknown, [], `${node.name} ${s.name} ${JSON.stringify(s.labels)}`);
      }
      assert.equal(value(node, 'istio_build', { component: 'weft' }), 1);
      assert.ok(value(node, 'weft_agent_memory_bytes', { kind: 'rss' }) > 0);
    }
    const expiry = value(n1, 'weft_certificate_expiry_seconds', { identity: ID('web') });
    assert.ok(expiry > 0, `web's certificate expires in ${expiry} s`);
  });
});
