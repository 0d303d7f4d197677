/**
 * Istio's standard metrics on 15020, end to end on real namespaces: two nodes, a control plane and
 * an agent per node, a known traffic mix (HTTP allowed and denied, gRPC, one TCP echo, a same-node
 * pair, a plaintext client outside the mesh), then each node's /metrics scraped from inside its
 * netns and the exact counts asserted per label set, for both reporters. Then the agent's own
 * health: ztunnel's series (workload manager, xDS stream, fds, sockets) with one pod waiting for its
 * cgroup and a control-plane restart, and the connections each local pod holds open while a client
 * holds some, back to 0 when it lets go.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import type { LabNode, LabPod } from '../../agent/sandbox';
import { killGroup } from '../../agent/sandbox/run';
import { DELTA_TYPE_URL, SNAPSHOT_TYPE_URL, TERMINATION_REASONS } from '../../agent/telemetry/control-plane-stream';
import { driveTrafficMix, ECHO, HOLD_CLIENT, ID, MIX, NO_OVERLOAD_SHEDDING, scrapeNode, scrapeSettled, SHOP, sleep, startMetricsMesh, SVC, type MetricsMesh, type Sample } from '../support/metrics-mesh';
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
    mesh = await startMetricsMesh('obs9metrics', {
      // enrolled (mesh namespace, this node) but known by UID only, whose cgroup never appears: pending on n2
      objects: (_n1, n2) => [NO_OVERLOAD_SHEDDING, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'waiting', namespace: SHOP, uid: '6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b', labels: { app: 'waiting' } },
        spec: { nodeName: n2.name, serviceAccountName: 'waiting' }, status: { phase: 'Running', podIP: '10.244.2.200' } }],
    });
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

  /** Sum of `name`'s samples whose labels include `match`, in one scrape. */
  const sum = (samples: Sample[], name: string, match: Record<string, string> = {}) =>
    samples.filter((x) => x.name === name && Object.entries(match).every(([k, v]) => x.labels[k] === v)).reduce((a, x) => a + x.value, 0);

  test('ztunnel\'s own series: pods served and pending, discovery messages by type URL, terminations by reason from 0, open fds and TCP sockets', () => {
    // n1: web, bot, api1 (outsider's namespace is not meshed); n2: api, and `waiting` whose cgroup is not there
    for (const [node, active, pending] of [[n1, 3, 0], [n2, 1, 1]] as const) {
      assert.equal(value(node, 'workload_manager_active_proxy_count', {}), active, node.name);
      assert.equal(value(node, 'workload_manager_pending_proxy_count', {}), pending, node.name);
      assert.ok(value(node, 'istio_xds_message_total', { url: SNAPSHOT_TYPE_URL }) >= 1, `${node.name}: at least the first snapshot`);
      // Two type URLs, both exported from 0: full states (the first message of a stream) and deltas.
      assert.deepEqual(scraped.get(node)!.filter((x) => x.name === 'istio_xds_message_total').map((x) => x.labels.url).sort(), [SNAPSHOT_TYPE_URL, DELTA_TYPE_URL].sort(), node.name);
      for (const reason of TERMINATION_REASONS) assert.equal(value(node, 'istio_xds_connection_terminations_total', { reason }), 0, `${node.name} ${reason}`);
      const fds = value(node, 'process_open_fds', {});
      const sockets = value(node, 'istio_tcp_sockets_open', {});
      // listeners 15000, 15001, 15006, 15008, 15020, 15021 and the control-plane stream at least; every socket is an fd
      assert.ok(sockets >= 7 && fds > sockets && value(node, 'process_max_fds', {}) >= fds, `${node.name}: fds ${fds}, TCP sockets ${sockets}`);
    }
  });

  test('open connections per local pod: exact by direction while a client holds them, back to 0 when it lets go', async () => {
    const { web, api, api1 } = mesh.pods;
    const pc = (samples: Sample[], pod: LabPod, direction: string) =>
      samples.filter((x) => x.name === 'weft_pod_open_connections' && x.labels.pod_namespace === SHOP && x.labels.pod_name === pod.name && x.labels.direction === direction);
    const holders: ChildProcess[] = [];
    const hold = async (pod: LabPod, target: LabPod, count: number) => {
      const child = pod.spawn(process.execPath, ['-e', HOLD_CLIENT, target.ip, '7000', String(count)]);
      holders.push(child);
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${pod.name} → ${target.name}: not holding ${count} connections after 10 s: ${out}`)), 10_000);
        child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
        child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; if (out.includes(`held ${count}`)) { clearTimeout(timer); resolve(); } });
        child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`holder ${pod.name} → ${target.name} exited ${code}: ${out}\nn1 agent's log (last lines):\n${mesh.agents[0].stderr().split('\n').slice(-10).join('\n')}`)); });
      });
    };
    try {
      const before1 = await scrapeNode(n1), before2 = await scrapeNode(n2);
      for (const [samples, pod] of [[before1, web], [before1, api1], [before2, api]] as const) {
        for (const d of ['inbound', 'outbound']) assert.ok(pc(samples, pod, d).every((x) => x.value === 0), `${pod.name} ${d} before: ${JSON.stringify(pc(samples, pod, d))}`);
      }
      await hold(web, api, 3); // across nodes: web's proxy holds 3 outbound, api's 3 inbound
      await hold(web, api1, 2); // same node: the one proxy holds 2 outbound for web and 2 inbound for api1
      const held1 = await scrapeNode(n1), held2 = await scrapeNode(n2);
      const exact = (samples: Sample[], pod: LabPod, direction: string, n: number) => {
        const s = pc(samples, pod, direction);
        assert.equal(s.length, 1, `${pod.name} ${direction}: ${JSON.stringify(s)}`);
        assert.equal(s[0]!.value, n, `${pod.name} ${direction}`);
      };
      exact(held1, web, 'outbound', 5);
      exact(held1, web, 'inbound', 0);
      exact(held1, api1, 'inbound', 2);
      exact(held1, api1, 'outbound', 0);
      exact(held2, api, 'inbound', 3);
      exact(held2, api, 'outbound', 0);
      assert.equal(sum(held1, 'weft_pod_open_connections'), 7, 'nothing else on n1');
      assert.equal(sum(held2, 'weft_pod_open_connections'), 3, 'nothing else on n2');
      // The proxy's sockets: on n1 at least web's 5 accepted and the 2 to api1; on n2 at least the 3 to api.
      assert.ok(sum(held1, 'istio_tcp_sockets_open') >= sum(before1, 'istio_tcp_sockets_open') + 7, `n1 sockets ${sum(before1, 'istio_tcp_sockets_open')} → ${sum(held1, 'istio_tcp_sockets_open')}`);
      assert.ok(sum(held2, 'istio_tcp_sockets_open') >= sum(before2, 'istio_tcp_sockets_open') + 3, `n2 sockets ${sum(before2, 'istio_tcp_sockets_open')} → ${sum(held2, 'istio_tcp_sockets_open')}`);

      for (const h of holders) h.stdin!.end();
      await Promise.all(holders.map((h) => (h.exitCode !== null ? undefined : new Promise((r) => h.once('exit', r)))));
      assert.deepEqual(holders.map((h) => h.exitCode), [0, 0]);
      // The proxy sees each close shortly after the client's: scrape (bounded) until every count is 0.
      let after1: Sample[] = [], after2: Sample[] = [];
      for (let i = 0; i < 50; i++) {
        [after1, after2] = [await scrapeNode(n1), await scrapeNode(n2)];
        if (sum(after1, 'weft_pod_open_connections') === 0 && sum(after2, 'weft_pod_open_connections') === 0) break;
        await sleep(100);
      }
      for (const [samples, pod, d] of [[after1, web, 'outbound'], [after1, api1, 'inbound'], [after2, api, 'inbound']] as const) exact(samples, pod, d, 0);
    } finally {
      for (const h of holders) if (h.exitCode === null) killGroup(h, 'SIGKILL');
    }
  });

  test('a control-plane restart: each agent counts one Reconnect (its stream had delivered), reconnects, and receives the state again', async () => {
    const before = [await scrapeNode(n1), await scrapeNode(n2)];
    await mesh.restartControlPlane();
    // Bounded: the agents retry with backoff (250 ms doubling, at most 10 s); connected again with a new message.
    let now: Sample[][] = [];
    for (let i = 0; i < 60; i++) {
      now = [await scrapeNode(n1), await scrapeNode(n2)];
      if (now.every((s, k) => sum(s, 'weft_agent_control_plane_connected') === 1 && sum(s, 'istio_xds_message_total') > sum(before[k]!, 'istio_xds_message_total'))) break;
      await sleep(250);
    }
    [n1, n2].forEach((node, k) => {
      const t = (reason: string) => sum(now[k]!, 'istio_xds_connection_terminations_total', { reason });
      assert.equal(sum(now[k]!, 'weft_agent_control_plane_connected'), 1, `${node.name} reconnected`);
      assert.ok(sum(now[k]!, 'istio_xds_message_total', { url: SNAPSHOT_TYPE_URL }) > sum(before[k]!, 'istio_xds_message_total', { url: SNAPSHOT_TYPE_URL }), `${node.name}: a snapshot from the new control plane`);
      assert.equal(t('Reconnect'), 1, `${node.name}: the open stream went away once`);
      assert.equal(t('Error') + t('Complete'), 0, `${node.name}: ${JSON.stringify(TERMINATION_REASONS.map((r) => [r, t(r)]))}`);
      // (attempts while the control plane was down count as ConnectionError: as many as the backoff allowed, maybe none)
    });
  });
});
