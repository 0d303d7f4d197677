/**
 * The agent's series under ztunnel's names and the per-pod connection gauge, in process: how a
 * discovery stream's end is classified (ztunnel's reasons), how connection events pair into exact
 * per-pod counts (also across a switch-on in mid-connection and a pod leaving), the /proc parsers,
 * a real listening socket seen by istio_tcp_sockets_open, and what node-state exports.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { terminationReason, TERMINATION_REASONS, type StreamEnding } from '../../agent/telemetry/control-plane-stream';
import type { ConnectionOpenedEvent } from '../../agent/telemetry/events';
import { registerHealth } from '../../agent/telemetry/health';
import { PodConnections } from '../../agent/telemetry/pod-connections';
import { maxOpenFiles, openTcpSockets, socketInodes, tcpInodes } from '../../agent/telemetry/process-resources';
import { registerNodeState } from '../../agent/telemetry/node-state';

describe('terminationReason: ztunnel\'s reasons for an ended discovery stream', () => {
  const table: Array<[StreamEnding, string]> = [
    [{ kind: 'status', code: status.UNAVAILABLE, delivered: false }, 'ConnectionError'],
    [{ kind: 'status', code: status.UNAVAILABLE, delivered: true }, 'Reconnect'],
    [{ kind: 'status', code: status.CANCELLED, delivered: true }, 'Reconnect'],
    [{ kind: 'status', code: status.UNKNOWN, delivered: false }, 'Reconnect'],
    [{ kind: 'status', code: status.DEADLINE_EXCEEDED, delivered: true }, 'Reconnect'],
    [{ kind: 'status', code: status.UNAUTHENTICATED, delivered: false }, 'Error'],
    [{ kind: 'status', code: status.PERMISSION_DENIED, delivered: false }, 'Error'],
    [{ kind: 'status', code: status.INTERNAL, delivered: true }, 'Error'],
    [{ kind: 'unreadable' }, 'Error'],
    [{ kind: 'end' }, 'Complete'],
  ];
  for (const [ending, reason] of table) {
    test(`${JSON.stringify(ending)} → ${reason}`, () => assert.equal(terminationReason(ending), reason));
  }
  test('every reason is one of ztunnel\'s four', () => {
    for (const [ending] of table) assert.ok((TERMINATION_REASONS as readonly string[]).includes(terminationReason(ending)));
  });
});

const ref = (name: string) => ({ namespace: 'shop', name, workload: name, identity: `spiffe://cluster.local/ns/shop/sa/${name}`, node: 'n1' });
const ends = (src?: string, dst?: string) => ({ direction: 'outbound' as const, srcIp: '10.0.0.1', srcPort: 1, dstIp: '10.0.0.2', dstPort: 2,
  ...(src ? { src: ref(src) } : {}), ...(dst ? { dst: ref(dst) } : {}) });
const ev = (reporter: 'source' | 'destination', e: ReturnType<typeof ends>): ConnectionOpenedEvent => ({ reporter, ends: e, security: 'mutual_tls' });

describe('PodConnections: connections open per local pod', () => {
  const render = async (r: Registry) => (await r.getSingleMetricAsString('weft_pod_open_connections')).split('\n').filter((l) => !l.startsWith('#')).sort();

  test('source events count the source pod outbound, destination events the destination pod inbound; a same-node pair counts once for each', async () => {
    const r = new Registry();
    const pc = new PodConnections();
    const stop = registerHealth(r, { connections: () => 0, certificates: () => [], version: 'test', podConnections: () => pc.counts() });
    const local = ends('web', 'api');
    const cross = ends('web', 'remote');
    pc.opened(ev('source', local));
    pc.opened(ev('destination', local));
    pc.opened(ev('source', cross));
    assert.deepEqual(pc.get('shop', 'web'), { inbound: 0, outbound: 2 });
    assert.deepEqual(pc.get('shop', 'api'), { inbound: 1, outbound: 0 });
    assert.equal(pc.get('shop', 'remote'), undefined, 'the remote pod is not this proxy\'s');
    assert.deepEqual(await render(r), [
      'weft_pod_open_connections{pod_namespace="shop",pod_name="api",direction="inbound"} 1',
      'weft_pod_open_connections{pod_namespace="shop",pod_name="api",direction="outbound"} 0',
      'weft_pod_open_connections{pod_namespace="shop",pod_name="web",direction="inbound"} 0',
      'weft_pod_open_connections{pod_namespace="shop",pod_name="web",direction="outbound"} 2',
    ]);
    pc.closed(ev('destination', local));
    pc.closed(ev('source', local));
    pc.closed(ev('source', cross));
    assert.deepEqual([pc.get('shop', 'web'), pc.get('shop', 'api')], [{ inbound: 0, outbound: 0 }, { inbound: 0, outbound: 0 }]);
    stop();
  });

  test('a close without its open (listening began mid-connection), a second close, or an unknown source pod change nothing', () => {
    const pc = new PodConnections();
    const a = ends('web', 'api');
    pc.opened(ev('source', a));
    pc.closed(ev('source', ends('web', 'api'))); // another connection's ends: its open was not seen
    assert.deepEqual(pc.get('shop', 'web'), { inbound: 0, outbound: 1 });
    pc.closed(ev('source', a));
    pc.closed(ev('source', a));
    assert.deepEqual(pc.get('shop', 'web'), { inbound: 0, outbound: 0 });
    pc.opened(ev('source', ends(undefined, 'api')));
    assert.deepEqual(pc.get('shop', 'web'), { inbound: 0, outbound: 0 });
    // One connection opened twice in one direction is still one connection, and one close ends it.
    const b = ends('web', 'api');
    pc.opened(ev('source', b));
    pc.opened(ev('source', b));
    assert.deepEqual(pc.get('shop', 'web'), { inbound: 0, outbound: 1 });
    pc.closed(ev('source', b));
    assert.deepEqual(pc.get('shop', 'web'), { inbound: 0, outbound: 0 });
  });

  test('a pod leaving the state takes its series; its connections closing later do not touch a new pod of the same name', () => {
    const pc = new PodConnections();
    const old = ends('web', 'api');
    pc.opened(ev('source', old));
    assert.equal(pc.prune(new Set(['shop/api'])), 1);
    assert.equal(pc.get('shop', 'web'), undefined);
    const fresh = ends('web', 'api');
    pc.opened(ev('source', fresh));
    pc.closed(ev('source', old));
    assert.deepEqual(pc.get('shop', 'web'), { inbound: 0, outbound: 1 });
    pc.clear();
    assert.equal(pc.get('shop', 'web'), undefined);
  });
});

describe('process resources from /proc', () => {
  test('parsers: socket fds, /proc/net/tcp inodes (header and inode 0 skipped), the open-files soft limit', () => {
    assert.deepEqual([...socketInodes(['socket:[123]', 'pipe:[9]', '/dev/null', 'socket:[77]', 'anon_inode:[eventpoll]'])], ['123', '77']);
    const tcp = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:3AA6 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0',
      '   1: 0100007F:3AA6 0100007F:D2F0 06 00000000:00000000 03:00000E6F 00000000     0        0 0 3 0000000000000000',
    ].join('\n');
    assert.deepEqual([...tcpInodes(tcp)], ['4242']);
    assert.equal(maxOpenFiles('Limit                     Soft Limit           Hard Limit           Units\nMax open files            1048576              1048576              files\n'), 1048576);
    assert.equal(maxOpenFiles('Max open files            unlimited            unlimited            files\n'), Infinity);
    assert.equal(maxOpenFiles('Max processes             63704                63704                processes\n'), undefined);
  });

  test('istio_tcp_sockets_open sees a listener this process opens and closes', async () => {
    const before = await openTcpSockets();
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const during = await openTcpSockets();
    await new Promise((r) => srv.close(r));
    const after = await openTcpSockets();
    assert.equal(during, before + 1, `${before} → ${during}`);
    assert.equal(after, before);
  });
});

describe('node-state under ztunnel\'s names', () => {
  test('terminations by every reason from 0, messages by type URL, active and pending pods', async () => {
    const r = new Registry();
    const t = { ConnectionError: 0, Error: 0, Reconnect: 2, Complete: 0 };
    registerNodeState(r, { controlPlane: { connected: () => true, lastVersion: () => 7, terminations: () => t, messages: () => ({ 'type.weft.dev/x': 3 }) },
      redirectCounters: () => ({}), enrolledPods: () => 4, pendingPods: () => 1 });
    const text = await r.metrics();
    for (const line of ['istio_xds_connection_terminations_total{reason="ConnectionError"} 0', 'istio_xds_connection_terminations_total{reason="Reconnect"} 2',
      'istio_xds_connection_terminations_total{reason="Error"} 0', 'istio_xds_connection_terminations_total{reason="Complete"} 0',
      'istio_xds_message_total{url="type.weft.dev/x"} 3', 'workload_manager_active_proxy_count 4', 'workload_manager_pending_proxy_count 1',
      '# TYPE istio_xds_connection_terminations_total counter', '# TYPE workload_manager_active_proxy_count gauge']) {
      assert.ok(text.includes(`${line}\n`), `${line} in:\n${text}`);
    }
    t.Reconnect = 3;
    assert.ok((await r.metrics()).includes('istio_xds_connection_terminations_total{reason="Reconnect"} 3\n'), 'read at each scrape');
  });
});
