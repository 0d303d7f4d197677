/**
 * Istio's standard metrics on 15020, end to end on real namespaces: two nodes, a control plane and
 * an agent per node, a known traffic mix (HTTP allowed and denied, gRPC, one TCP echo, a same-node
 * pair, a plaintext client outside the mesh), then each node's /metrics scraped from inside its
 * netns and the exact counts asserted per label set, for both reporters.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Lab, LabNode, LabPod, curl } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { APP_SERVER, GRPC_CLIENT, RAW_CLIENT } from '../support/mesh-apps';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
if (blocker) process.stderr.write(`\n*** SKIPPING metrics end-to-end tests: ${blocker} ***\n\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const GRPC_JS = dirname(require.resolve('@grpc/grpc-js/package.json'));

interface Sample { name: string; labels: Record<string, string>; value: number }

/** Parses Prometheus text exposition (the subset prom-client writes). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

const SHOP = 'shop';
const SVC = (name: string) => `${name}.${SHOP}.svc.cluster.local`;
const ID = (sa: string) => `spiffe://cluster.local/ns/${SHOP}/sa/${sa}`;
const ECHO = 'metrics-echo: 24 bytes\n'; // 23 bytes each way
const N_GET = 3, M_DENIED = 2, N_LOCAL = 2;

describe('Istio metrics on 15020', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode;
  let web: LabPod, bot: LabPod, api1: LabPod, outsider: LabPod, api: LabPod;
  let apps: ChildProcess[] = [];
  let cp: AgentHandle, agent1: AgentHandle, agent2: AgentHandle;
  let dir: string;
  const scraped = new Map<LabNode, Sample[]>();

  const scrape = async (node: LabNode): Promise<Sample[]> => {
    const r = await node.exec('curl', ['-sS', '--max-time', '5', `http://${node.ip}:15020/metrics`], { timeoutMs: 8000 });
    assert.equal(r.code, 0, r.stderr);
    return parse(r.stdout);
  };
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
    lab = await Lab.create({ name: 'metrics' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    web = await n1.pod('web', { namespace: SHOP, serviceAccount: 'web', labels: { app: 'web', version: 'v1' } });
    bot = await n1.pod('bot', { namespace: SHOP, serviceAccount: 'bot', labels: { app: 'bot' } });
    api1 = await n1.pod('api1', { namespace: SHOP, serviceAccount: 'api', labels: { app: 'api', version: 'v2' } });
    outsider = await n1.pod('outsider', { namespace: 'legacy' });
    api = await n2.pod('api', { namespace: SHOP, serviceAccount: 'api', labels: { app: 'api', version: 'v2' } });
    dir = mkdtempSync(join(tmpdir(), 'weft-metrics-'));
    const configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, lab.yaml({
      meshNamespaces: [SHOP],
      extra: [
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: SHOP }, spec: { clusterIP: 'None', selector: { app: 'api' }, ports: [
          { name: 'http', port: 8080, targetPort: 8080 }, { name: 'grpc', port: 8444, targetPort: 8444 }] } },
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: SHOP }, spec: { clusterIP: 'None', selector: { app: 'api' }, ports: [
          { name: 'tcp-echo', port: 7000, targetPort: 7000 }] } },
        { apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-bot', namespace: SHOP },
          spec: { selector: { matchLabels: { app: 'api' } }, action: 'DENY', rules: [{ from: [{ source: { principals: [`cluster.local/ns/${SHOP}/sa/bot`] } }] }] } },
      ],
    }));
    for (const p of [api, api1]) {
      const child = p.spawn(process.execPath, ['-e', APP_SERVER, p.name, GRPC_JS]);
      apps.push(child);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`app in ${p.name} not listening after 8 s`)), 8000);
        child.stdout!.setEncoding('utf8').on('data', (d: string) => { if (d.includes('listening')) { clearTimeout(timer); resolve(); } });
      });
    }
    const dataDir = join(dir, 'data');
    cp = startControlPlane(n1, configPath, dataDir);
    await cp.ready;
    agent1 = startNodeAgent(n1, `${n1.ip}:${CONTROL_PLANE_PORT}`, dataDir);
    agent2 = startNodeAgent(n2, `${n1.ip}:${CONTROL_PLANE_PORT}`, dataDir);
    await Promise.all([agent1.ready, agent2.ready]);

    // The traffic mix.
    for (let i = 0; i < N_GET; i++) assert.equal((await curl(web, `http://${api.ip}:8080/get/${i}`)).status, 200);
    for (let i = 0; i < M_DENIED; i++) assert.equal((await curl(bot, `http://${api.ip}:8080/denied/${i}`)).status, 403);
    const grpc = await web.exec(process.execPath, ['-e', GRPC_CLIENT, GRPC_JS, api.ip], { timeoutMs: 20_000 });
    assert.equal(grpc.code, 0, grpc.stdout + grpc.stderr);
    const r = JSON.parse(grpc.stdout.trim());
    assert.deepEqual([r.hello.hello, r.count.code, r.fail.code], ['weft', 0, 7]);
    const echo = await web.exec(process.execPath, ['-e', RAW_CLIENT, api.ip, '7000', JSON.stringify(ECHO)], { timeoutMs: 8000 });
    assert.equal(JSON.parse(echo.stdout.trim()), ECHO);
    for (let i = 0; i < N_LOCAL; i++) assert.equal((await curl(web, `http://${api1.ip}:8080/local/${i}`)).status, 200);
    assert.equal((await curl(outsider, `http://${api.ip}:8080/plain`)).status, 200);

    // Connections end shortly after their clients exit: scrape (bounded) until every opened one has closed on both nodes.
    const settled = (samples: Sample[]) => {
      const sum = (name: string) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
      return sum('istio_tcp_connections_opened_total') > 0 && sum('istio_tcp_connections_opened_total') === sum('istio_tcp_connections_closed_total');
    };
    for (const node of [n1, n2]) {
      let samples: Sample[] = [];
      for (let i = 0; i < 50; i++) {
        samples = await scrape(node);
        if (settled(samples)) break;
        await sleep(100);
      }
      scraped.set(node, samples);
    }
  });

  after(async () => {
    if (blocker) return;
    for (const p of [agent1, agent2, cp]) await p?.kill('SIGKILL');
    for (const c of apps) c.kill('SIGKILL');
    for (const n of [n1, n2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
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
