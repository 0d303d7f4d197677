/**
 * Weft's own metrics beside Istio's: retries, ejections and breaker overflows per Service port read
 * from a real ServiceRuntime driven through the calls the proxy makes; the agent's control-plane
 * state, config generation and redirect counters by reason.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { emptySnapshot, type PodInfo, type ServiceInfo, type Snapshot } from '../../agent/config/objects';
import { ServiceRuntime } from '../../agent/proxy/service-runtime';
import { servicePortKey } from '../../agent/proxy/service-target';
import { WorkloadStore } from '../../agent/state/store';
import { registerNodeState } from '../../agent/telemetry/node-state';
import { registerServiceMetrics, servicePortLabels } from '../../agent/telemetry/service-metrics';
import type { TrafficPolicyInfo } from '../../agent/traffic/traffic-policy';

const pod = (name: string, ip: string): PodInfo => ({ namespace: 'shop', name, labels: { app: 'api' }, annotations: {}, nodeName: 'n2', serviceAccount: 'api', ips: [ip] });
const API: ServiceInfo = { namespace: 'shop', name: 'api', labels: {}, selector: { app: 'api' }, clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] };
const POLICY: TrafficPolicyInfo = { namespace: 'shop', name: 'api-limits', targets: ['api'], portLevel: [],
  settings: { connectionPool: { http: { maxRetries: 1 } }, outlierDetection: { consecutive5xxErrors: 1, intervalMs: 1000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100 } } };
const snapshot = (services: ServiceInfo[]): Snapshot => ({
  ...emptySnapshot(),
  namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }],
  pods: [pod('api-a', '10.1.0.7'), pod('api-b', '10.1.0.8')],
  services,
  trafficPolicies: [POLICY],
});

/** The value of the one sample of `name` whose labels include `match` (fails on none or several). */
function one(text: string, name: string, match: Record<string, string>): number {
  const lines = text.split('\n').filter((l) => l.startsWith(`${name}{`) && Object.entries(match).every(([k, v]) => l.includes(`${k}="${v}"`)));
  assert.equal(lines.length, 1, `${name} ${JSON.stringify(match)}: ${lines.length} samples\n${text}`);
  return Number(lines[0]!.slice(lines[0]!.lastIndexOf(' ') + 1));
}

describe('Service port metrics from the ServiceRuntime', () => {
  it('a Service port is named by Istio\'s destination_service FQDN, its name, namespace and port', () => {
    assert.deepEqual(servicePortLabels({ service: { namespace: 'shop', name: 'api' }, port: 80 }),
      { destination_service: 'api.shop.svc.cluster.local', destination_service_name: 'api', destination_service_namespace: 'shop', destination_port: '80' });
  });

  it('retries made, ejections, endpoints ejected now and overflows by limit, as the runtime counted them; gone with the Service', async () => {
    let now = 1_000;
    const runtime = new ServiceRuntime(() => now, () => 0);
    runtime.setStore(new WorkloadStore(snapshot([API])));
    const registry = new Registry();
    registerServiceMetrics(registry, () => runtime.stats());
    const key = servicePortKey(API, 80);
    const store = new WorkloadStore(snapshot([API]));
    runtime.setStore(store);

    // Before any traffic the port has no state, hence no series.
    assert.doesNotMatch(await registry.metrics(), /^weft_upstream_retries_total\{/m);

    // A request whose first try answers 500: the endpoint is ejected (consecutive5xxErrors 1) and one retry is made.
    const admitted = await runtime.admitRequest(key, { service: API, port: API.ports[0]! }, 'http2');
    assert.ok(admitted.ok);
    const candidates = runtime.usableEndpoints(store, API, API.ports[0]!);
    assert.equal(candidates.length, 2);
    const first = runtime.pick(key, API, 80, candidates)!;
    runtime.started(key, first);
    runtime.finished(key, first, '5xx');
    const retry = runtime.admitRetry(key);
    assert.ok(retry.ok, 'the first retry fits maxRetries 1');
    // A second retry while the first is in flight overflows maxRetries 1.
    const refused = runtime.admitRetry(key);
    assert.equal(refused.ok, false);
    retry.release();
    admitted.release();

    const svc = { destination_service: 'api.shop.svc.cluster.local', destination_port: '80' };
    let text = await registry.metrics();
    assert.match(text, /^# TYPE weft_upstream_retries_total counter$/m);
    assert.match(text, /^# TYPE weft_outlier_ejected_endpoints gauge$/m);
    assert.equal(one(text, 'weft_upstream_retries_total', svc), 1);
    assert.equal(one(text, 'weft_outlier_ejections_total', svc), 1);
    assert.equal(one(text, 'weft_outlier_ejected_endpoints', svc), 1);
    assert.equal(one(text, 'weft_circuit_breaker_overflows_total', { ...svc, kind: 'retry' }), 1);
    for (const kind of ['connection', 'pending', 'request']) assert.equal(one(text, 'weft_circuit_breaker_overflows_total', { ...svc, kind }), 0, kind);

    // The ejection ends (baseEjectionTime 30 s): ejected now drops to 0, the total stays.
    now += 31_000;
    text = await registry.metrics();
    assert.equal(one(text, 'weft_outlier_ejected_endpoints', svc), 0);
    assert.equal(one(text, 'weft_outlier_ejections_total', svc), 1);

    // The Service leaves the state: its series go (bounded cardinality).
    runtime.setStore(new WorkloadStore(snapshot([])));
    text = await registry.metrics();
    assert.doesNotMatch(text, /destination_service="api\.shop/);
  });
});

describe('node state metrics', () => {
  it('control-plane connection 0/1 and config generation follow the watch; redirect counters by reason', async () => {
    let connected = false;
    let version = 0;
    const counters: Record<string, bigint> = { redirect4: 0n, strict_drop_syn: 0n };
    const registry = new Registry();
    registerNodeState(registry, { controlPlane: { connected: () => connected, lastVersion: () => version }, redirectCounters: () => counters });
    let text = await registry.metrics();
    assert.match(text, /^weft_agent_control_plane_connected 0$/m);
    assert.match(text, /^weft_agent_config_generation 0$/m);
    assert.match(text, /^# TYPE weft_redirect_events_total counter$/m);
    assert.match(text, /^weft_redirect_events_total\{reason="redirect4"\} 0$/m);
    connected = true;
    version = 7;
    counters.redirect4 = 12n;
    counters.strict_drop_syn = 2n;
    text = await registry.metrics();
    assert.match(text, /^weft_agent_control_plane_connected 1$/m);
    assert.match(text, /^weft_agent_config_generation 7$/m);
    assert.match(text, /^weft_redirect_events_total\{reason="redirect4"\} 12$/m);
    assert.match(text, /^weft_redirect_events_total\{reason="strict_drop_syn"\} 2$/m);
  });

  it('without a control plane (an agent fed otherwise) neither control-plane gauge is exported', async () => {
    const registry = new Registry();
    registerNodeState(registry, { redirectCounters: () => ({}) });
    const text = await registry.metrics();
    assert.doesNotMatch(text, /weft_agent_control_plane_connected|weft_agent_config_generation/);
  });

  it('same-node splicing: bytes the kernel carried, its programs\' events and the watchdog\'s handovers; 0 while not loaded', async () => {
    let view: { movedBytes: bigint; counters: Record<string, bigint>; spinHandovers: number; armSkipped: number; quietDestinations: number } | undefined;
    const registry = new Registry();
    registerNodeState(registry, { redirectCounters: () => ({}), splice: () => view });
    let text = await registry.metrics();
    assert.match(text, /^weft_splice_moved_bytes_total 0$/m);
    assert.match(text, /^weft_splice_spin_handovers_total 0$/m);
    assert.match(text, /^weft_splice_arm_skipped_total 0$/m);
    assert.match(text, /^weft_splice_quiet_destinations 0$/m);
    assert.match(text, /^# TYPE weft_splice_events_total counter$/m);
    view = { movedBytes: 268435463n, counters: { msg_switched: 3n, redirected: 0n }, spinHandovers: 1, armSkipped: 40, quietDestinations: 2 };
    text = await registry.metrics();
    assert.match(text, /^weft_splice_moved_bytes_total 268435463$/m);
    assert.match(text, /^weft_splice_events_total\{event="msg_switched"\} 3$/m);
    assert.match(text, /^weft_splice_events_total\{event="redirected"\} 0$/m);
    assert.match(text, /^weft_splice_spin_handovers_total 1$/m);
    assert.match(text, /^weft_splice_arm_skipped_total 40$/m);
    assert.match(text, /^weft_splice_quiet_destinations 2$/m);
  });

  it('an agent without same-node splicing exports none of its series', async () => {
    const registry = new Registry();
    registerNodeState(registry, { redirectCounters: () => ({}) });
    assert.doesNotMatch(await registry.metrics(), /weft_splice_/);
  });
});
