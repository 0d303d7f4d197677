// The HTTP benchmark's premise (test/bench/http-hop-config.ts): its ten AuthorizationPolicies all
// apply to the server workload, allow the benchmark's own requests whether the proxy judges them
// at L7 or as plain TCP, and still deny what each says it denies (so they are not vacuous).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../agent/config/parse';
import { manifests, toYamlStream, type PodFacts } from '../../agent/sandbox/manifests';
import { PolicySet, type ConnectionFacts, type RequestFacts } from '../../agent/policy';
import { httpHopObjects, PORTS } from '../bench/http-hop-config';

const pod = (name: string, nodeName: string, ip: string): PodFacts => ({
  name, namespace: 'bench', serviceAccount: name, labels: { app: name }, nodeName, hostIp: '172.30.9.1', ip, ip6: undefined, cgroupPath: `/sys/fs/cgroup/x/${name}`,
});
const client = pod('client', 'n1', '10.244.1.1');
const server = pod('server', 'n2', '10.244.2.1');
const serverWorkload = { namespace: 'bench', labels: server.labels };

function policySet(): PolicySet {
  const parsed = parseConfig(toYamlStream(manifests([], [client, server], { meshNamespaces: ['bench'], extra: httpHopObjects(client, server) })), 'bench.yaml');
  assert.ok(parsed.ok, parsed.ok ? '' : JSON.stringify(parsed.error));
  return new PolicySet(parsed.value.authorizationPolicies);
}

const conn = (from: { principal?: string; ip?: string }, port: number): ConnectionFacts => ({
  sourceIp: from.ip ?? client.ip, sourcePort: 40000, destinationIp: server.ip, destinationPort: port,
  ...(from.principal ? { sourcePrincipal: `spiffe://${from.principal}` } : {}),
});
const req = (method: string, path: string, headers: Record<string, string> = {}): RequestFacts => ({
  method, path, host: `${server.ip}:${PORTS.h1}`, headers: { host: `${server.ip}:${PORTS.h1}`, ...headers },
});
const CLIENT = 'cluster.local/ns/bench/sa/client';

test('the HTTP benchmark puts ten policies, five ALLOW and five DENY, in force on the server', () => {
  const applicable = policySet().forWorkload(serverWorkload);
  assert.equal(applicable.allow.length, 5);
  assert.equal(applicable.deny.length, 5);
});

test('the HTTP benchmark\'s own requests are allowed at L7 on both ports (wrk, h2load and curl headers)', () => {
  const set = policySet();
  for (const [port, headers] of [[PORTS.h1, {}], [PORTS.h2, { 'user-agent': 'h2load nghttp2/1.52.0' }], [PORTS.h1, { 'user-agent': 'curl/7.88.1', accept: '*/*' }]] as const) {
    const d = set.decide(serverWorkload, conn({ principal: CLIENT }, port), req('GET', '/', headers));
    assert.equal(d.allow, true, d.reason);
    assert.equal(d.policy, 'bench/server-readers', d.reason);
  }
});

test('the HTTP benchmark\'s connections are allowed when judged as plain TCP (before the proxy parses HTTP)', () => {
  const set = policySet();
  for (const port of [PORTS.h1, PORTS.h2]) {
    const d = set.decide(serverWorkload, conn({ principal: CLIENT }, port));
    assert.equal(d.allow, true, d.reason);
    assert.equal(d.policy, 'bench/tcp-client', d.reason);
  }
});

test('the HTTP benchmark\'s policies deny what they name, so the L7 path has real rules to judge', () => {
  const set = policySet();
  const cases: Array<[string, ConnectionFacts, RequestFacts, boolean, string | undefined]> = [
    ['a write without a JSON content type matches no ALLOW', conn({ principal: 'cluster.local/ns/bench/sa/writer' }, PORTS.h1), req('POST', '/api/items'), false, undefined],
    ['/admin from outside bench and ops', conn({ principal: 'cluster.local/ns/guest/sa/web' }, PORTS.h1), req('GET', '/admin/users'), false, 'bench/deny-admin-outside'],
    ['x-debug from a guest', conn({ principal: 'cluster.local/ns/guest/sa/web' }, PORTS.h1), req('GET', '/', { 'x-debug': 'true' }), false, 'bench/deny-debug-from-guests'],
    ['a legacy DELETE, mesh-wide', conn({ principal: 'cluster.local/ns/legacy/sa/batch' }, PORTS.h1), req('DELETE', '/api/items/1'), false, 'weft-system/deny-legacy-writes'],
    ['a scanner from a blocked range', conn({ ip: '192.0.2.7' }, PORTS.h1), req('GET', '/', { 'user-agent': 'sqlmap/1.7' }), false, 'bench/deny-scanners'],
    ['a write to the metrics port', conn({ principal: 'cluster.local/ns/monitoring/sa/prom' }, 9090), req('POST', '/metrics'), false, 'bench/deny-metrics-writes'],
    ['a JSON write from ops', conn({ principal: 'cluster.local/ns/ops/sa/deployer' }, PORTS.h1), req('POST', '/api/items', { 'content-type': 'application/json' }), true, 'bench/server-writers'],
    ['a scrape from monitoring', conn({ principal: 'cluster.local/ns/monitoring/sa/prom' }, 9090), req('GET', '/metrics'), true, 'bench/monitoring-scrape'],
    ['a probe of /healthz', conn({ ip: '10.244.2.254' }, PORTS.h1), req('GET', '/healthz'), true, 'bench/health-probes'],
  ];
  for (const [what, c, r, allow, policy] of cases) {
    const d = set.decide(serverWorkload, c, r);
    assert.equal(d.allow, allow, `${what}: ${d.reason}`);
    assert.equal(d.policy, policy, `${what}: ${d.reason}`);
  }
});
