/**
 * weft_authorization_denials_total: denied requests and TCP connections counted by the policy that
 * decided, from the events deliver() publishes; default-deny when no policy denied by name; the
 * series of departed workloads removed with Istio's.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emptySnapshot, type PodInfo, type Snapshot } from '../../agent/config/objects';
import { WorkloadStore } from '../../agent/state/store';
import { DEFAULT_DENY, denialLabels } from '../../agent/telemetry/denials';
import { connectionClosed, requestCompleted, type ConnectionEnds } from '../../agent/telemetry/events';
import { tcpLabels } from '../../agent/telemetry/labels';
import { MeshMetrics } from '../../agent/telemetry/metrics';

const pod = (name: string, ip: string, sa: string): PodInfo => ({ namespace: 'shop', name, labels: { app: name }, annotations: {}, nodeName: 'n1', serviceAccount: sa, ips: [ip] });
const BOT = pod('bot', '10.1.0.4', 'bot');
const API = pod('api', '10.1.0.7', 'api');
const snapshot = (pods: PodInfo[]): Snapshot => ({ ...emptySnapshot(), namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }], pods });
const store = new WorkloadStore(snapshot([BOT, API]));
const ends: ConnectionEnds = { direction: 'inbound', srcIp: '10.1.0.4', srcPort: 40000, src: store.workloadRef(BOT), dstIp: '10.1.0.7', dstPort: 8080, dst: store.workloadRef(API) };

const denials = (text: string) => text.split('\n').filter((l) => l.startsWith('weft_authorization_denials_total{'));
const value = (text: string, match: Record<string, string>) => {
  const lines = denials(text).filter((l) => Object.entries(match).every(([k, v]) => l.includes(`${k}="${v}"`)));
  assert.equal(lines.length, 1, `${JSON.stringify(match)}:\n${denials(text).join('\n')}`);
  return Number(lines[0]!.slice(lines[0]!.lastIndexOf(' ') + 1));
};

describe('authorization denials by policy', () => {
  it('labels: the two workloads, the deciding policy (default-deny when none by name), reporter and protocol', () => {
    const l = tcpLabels({ reporter: 'destination', security: 'mutual_tls', ends }, 'DENY', store);
    assert.deepEqual(denialLabels(l, 'shop/deny-bot'), { reporter: 'destination', source_workload: 'bot', source_workload_namespace: 'shop',
      destination_workload: 'api', destination_workload_namespace: 'shop', policy: 'shop/deny-bot', request_protocol: 'tcp' });
    assert.equal(denialLabels(l, undefined).policy, DEFAULT_DENY);
  });

  it('denied requests and connections are counted by policy; allowed ones are not; departed workloads\' series go', async () => {
    const m = new MeshMetrics().subscribe();
    m.setStore(store);
    try {
      const req = { reporter: 'destination', security: 'mutual_tls', ends, protocol: 'http', requestBytes: 0, responseBytes: 19, durationMs: 1 } as const;
      requestCompleted.publish({ ...req, status: 403, flags: 'DENY', policy: 'shop/deny-bot' });
      requestCompleted.publish({ ...req, status: 403, flags: 'DENY', policy: 'shop/deny-bot' });
      requestCompleted.publish({ ...req, status: 403, flags: 'DENY' });
      requestCompleted.publish({ ...req, status: 200, flags: '-' });
      connectionClosed.publish({ reporter: 'destination', security: 'mutual_tls', ends, bytesFromClient: 0, bytesToClient: 0, flags: 'DENY', policy: 'shop/deny-tcp' });
      connectionClosed.publish({ reporter: 'destination', security: 'mutual_tls', ends, bytesFromClient: 5, bytesToClient: 5, flags: '-' });
      const text = await m.metrics();
      assert.match(text, /^# TYPE weft_authorization_denials_total counter$/m);
      assert.equal(denials(text).length, 3, denials(text).join('\n'));
      assert.equal(value(text, { policy: 'shop/deny-bot', request_protocol: 'http', source_workload: 'bot', destination_workload: 'api' }), 2);
      assert.equal(value(text, { policy: DEFAULT_DENY, request_protocol: 'http' }), 1);
      assert.equal(value(text, { policy: 'shop/deny-tcp', request_protocol: 'tcp' }), 1);
      // bot leaves: every denial series names it.
      m.setStore(new WorkloadStore(snapshot([API])));
      assert.equal(denials(await m.metrics()).length, 0);
    } finally {
      m.unsubscribe();
    }
  });
});
