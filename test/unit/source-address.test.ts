/**
 * Source address preservation: the pure decisions (which address and port the delivering proxy
 * connects from, which pods' replies are steered, what weft_capture holds) and the port fallback
 * of connectTransparent on real loopback sockets (a taken port is replaced, never a failed
 * connection). The packet path is proven on real namespaces in test/integration/source-address.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { pump } from '../../agent/core/pump';
import { isSourceCollision, sourcePortAttempts, upstreamSource, type SourceEnv } from '../../agent/proxy/source-address';
import { connectTransparent } from '../../agent/proxy/transparent-socket';
import type { Arrival } from '../../agent/proxy/deliver';
import { captureEntries, ingressInterfaces, lingeringAddresses, planCaptureEntries, steeredPods, withLingering } from '../../agent/redirect/reply-steering';
import { HeldAddresses } from '../../agent/proxy/held-addresses';
import type { DesiredPod } from '../../agent/redirect/plan';
import { weft_capture_flag, weft_counter } from '../../agent/core/bpf-layout.generated';
import { join } from 'node:path';
import * as bpf from '../../native/libbpf';
import { encodeCapture, encodeConfig, encodeIpKey } from '../../agent/redirect/codec';
import { kernelTestBlocker, skipLoudly } from '../support/requirements';
import { ipv4, tcp4, tcpHeader } from '../support/packets';

const REPLIES_ONLY = weft_capture_flag.WEFT_CAPTURE_REPLIES_ONLY;
const LINGER = weft_capture_flag.WEFT_CAPTURE_LINGER;
const SRC = { namespace: 'shop', name: 'client', workload: 'client', identity: 'spiffe://cluster.local/ns/shop/sa/client' };

function arrival(path: Arrival['path'], sourceIp: string, sourcePort: number, destinationIp = '10.244.2.5', verified = true): Pick<Arrival, 'path' | 'conn' | 'record'> {
  return {
    path,
    conn: { sourceIp, sourcePort, destinationIp, destinationPort: 8080 },
    record: { direction: 'inbound', srcIp: sourceIp, srcPort: sourcePort, dstIp: destinationIp, dstPort: 8080, ...(verified ? { src: SRC } : {}) } as Arrival['record'],
  };
}
const env = (steered: string[] = ['10.244.2.5', 'fd00:244:2::5'], nodeIps: string[] = ['172.30.2.1'], captured: string[] = ['10.244.2.5', 'fd00:244:2::5']): SourceEnv =>
  ({ steered: (ip) => steered.includes(ip), captured: (ip) => captured.includes(ip), nodeIps: new Set(nodeIps) });

describe('upstreamSource: where the delivering proxy connects from', () => {
  test('across nodes: the source pod the tunnel stated and the peer identity vouches for, with its port', () => {
    assert.deepEqual(upstreamSource(arrival('hbone', '10.244.1.7', 41000), env()), { preserve: true, source: { ip: '10.244.1.7', port: 41000 }, destination: '10.244.2.5' });
  });

  test('across nodes: an unverified Forwarded claim (the source is the peer proxy) is not used: the node connects', () => {
    const r = upstreamSource(arrival('hbone', '172.30.1.1', 50000, '10.244.2.5', false), env());
    assert.equal(r.preserve, false);
    assert.match((r as { reason: string }).reason, /did not state a source pod/);
  });

  test('same node: the client socket\'s own address and port', () => {
    assert.deepEqual(upstreamSource(arrival('local', '10.244.2.9', 35000), env()), { preserve: true, source: { ip: '10.244.2.9', port: 35000 }, destination: '10.244.2.5' });
  });

  test('IPv6 is kept canonical; an IPv4 client of an IPv6 pod (different families) is not preserved', () => {
    assert.deepEqual(upstreamSource(arrival('hbone', 'FD00:244:1:0::7', 41000, 'fd00:244:2::5'), env()), { preserve: true, source: { ip: 'fd00:244:1::7', port: 41000 }, destination: 'fd00:244:2::5' });
    assert.equal(upstreamSource(arrival('hbone', '10.244.1.7', 41000, 'fd00:244:2::5'), env()).preserve, false);
  });

  test('a destination whose replies are not steered (no ingress program, a bridge) gets the node\'s address', () => {
    const r = upstreamSource(arrival('local', '10.244.2.9', 35000), env([]));
    assert.equal(r.preserve, false);
    assert.match((r as { reason: string }).reason, /not steered/);
  });

  test('plaintext clients keep their address whatever the steering (their destination is captured)', () => {
    assert.deepEqual(upstreamSource(arrival('plaintext', '10.244.3.3', 45000, '10.244.2.5', false), env([])), { preserve: true, source: { ip: '10.244.3.3', port: 45000 }, destination: '10.244.2.5' });
  });

  test('a plaintext client of a pod that left the mesh since it connected gets the node\'s address (nothing brings the replies back)', () => {
    const r = upstreamSource(arrival('plaintext', '10.244.3.3', 45000, '10.244.2.5', false), env(undefined, undefined, []));
    assert.equal(r.preserve, false);
    assert.match((r as { reason: string }).reason, /10\.244\.2\.5 left the mesh after its client connected/);
    // the other paths are judged by the steering alone, as before
    assert.equal(upstreamSource(arrival('hbone', '10.244.1.7', 41000), env(undefined, undefined, [])).preserve, true);
  });

  test('never from the pod\'s own address, the node\'s address, or an unknown one; a port out of range becomes 0 (kernel picks)', () => {
    assert.equal(upstreamSource(arrival('local', '10.244.2.5', 35000), env()).preserve, false);
    assert.equal(upstreamSource(arrival('local', '172.30.2.1', 35000), env()).preserve, false);
    assert.equal(upstreamSource(arrival('hbone', '0.0.0.0', 0), env()).preserve, false);
    assert.equal(upstreamSource(arrival('hbone', 'not-an-ip', 1), env()).preserve, false);
    assert.deepEqual(upstreamSource(arrival('hbone', '10.244.1.7', 0), env()), { preserve: true, source: { ip: '10.244.1.7', port: 0 }, destination: '10.244.2.5' });
    assert.deepEqual(upstreamSource(arrival('hbone', '10.244.1.7', 70000), env()), { preserve: true, source: { ip: '10.244.1.7', port: 0 }, destination: '10.244.2.5' });
  });
});

test('port choice: the client\'s port first, then one the kernel picks; only address collisions move on', () => {
  assert.deepEqual(sourcePortAttempts(41000), [41000, 0]);
  assert.deepEqual(sourcePortAttempts(0), [0]);
  assert.equal(isSourceCollision('EADDRINUSE'), true);
  assert.equal(isSourceCollision('EADDRNOTAVAIL'), true);
  for (const code of ['ECONNREFUSED', 'ETIMEDOUT', 'EPERM', undefined]) assert.equal(isSourceCollision(code), false);
});

describe('reply steering decisions', () => {
  const pod = (key: string, cgroupId: bigint, strict: boolean, ips: string[]): DesiredPod => ({ key, cgroupId, strict, ifindex: null, ips });

  test('weft_capture holds every enrolled address: PERMISSIVE captured (0), STRICT replies only; never the proxy\'s cgroup', () => {
    const entries = captureEntries([pod('a', 1n, false, ['10.0.0.1']), pod('b', 2n, true, ['10.0.0.2', 'fd00::2']), pod('p', 9n, true, ['10.0.0.9'])], 9n);
    assert.deepEqual([...entries].sort(), [['10.0.0.1', 0], ['10.0.0.2', REPLIES_ONLY], ['fd00::2', REPLIES_ONLY]]);
    // one address claimed by both kinds (a stale snapshot): it stays captured
    assert.deepEqual([...captureEntries([pod('a', 1n, true, ['10.0.0.1']), pod('b', 2n, false, ['10.0.0.1'])], 9n)], [['10.0.0.1', 0]]);
  });

  test('a pod turning STRICT rewrites its entry\'s flags; gone addresses are removed; unchanged ones untouched', () => {
    const want = new Map([['10.0.0.1', REPLIES_ONLY], ['10.0.0.2', 0]]);
    const have = new Map([['10.0.0.1', 0], ['10.0.0.2', 0], ['10.0.0.3', 0]]);
    assert.deepEqual(planCaptureEntries(want, have), { put: [['10.0.0.1', REPLIES_ONLY]], remove: ['10.0.0.3'] });
    assert.deepEqual(planCaptureEntries(want, want), { put: [], remove: [] });
  });

  test('ingress interfaces: uplinks only while something is captured or lingers; pod interfaces while any pod is enrolled or lingers', () => {
    assert.deepEqual(ingressInterfaces(new Map([['10.0.0.1', 0]]), [2], [7, 5, 2]), [2, 5, 7]);
    assert.deepEqual(ingressInterfaces(new Map([['10.0.0.1', REPLIES_ONLY]]), [2], [7, 5]), [5, 7]);
    // a plaintext client on another node may still be talking to a pod that left the mesh: its segments arrive on the uplink
    assert.deepEqual(ingressInterfaces(new Map([['10.0.0.1', LINGER]]), [2], [7, 5]), [2, 5, 7]);
    assert.deepEqual(ingressInterfaces(new Map(), [2], [5]), []);
  });

  test('a pod that left the mesh lingers (its address kept, flagged LINGER) while the proxy holds connections with it, and only then', () => {
    const enrolled = new Map([['10.0.0.1', 0]]);
    const have = ['10.0.0.1', '10.0.0.2', '10.0.0.3', 'fd00::3'];
    const held = new Set(['10.0.0.3', 'fd00::3', '10.0.0.9']);
    const entries = withLingering(enrolled, have, (ip) => held.has(ip));
    // 10.0.0.2 left with nothing held: removed; 10.0.0.9 is held but never had an entry: not added
    assert.deepEqual([...entries].sort(), [['10.0.0.1', 0], ['10.0.0.3', LINGER], ['fd00::3', LINGER]]);
    assert.deepEqual(lingeringAddresses(entries), ['10.0.0.3', 'fd00::3']);
    assert.deepEqual(planCaptureEntries(entries, new Map(have.map((ip) => [ip, 0]))), { put: [['10.0.0.3', LINGER], ['fd00::3', LINGER]], remove: ['10.0.0.2'] });
    // enrolled again: its own flags, not LINGER; released: removed at the next pass
    assert.deepEqual([...withLingering(new Map([['10.0.0.3', REPLIES_ONLY]]), have, (ip) => held.has(ip))].sort(), [['10.0.0.3', REPLIES_ONLY], ['fd00::3', LINGER]]);
    assert.deepEqual([...withLingering(enrolled, have, () => false)], [['10.0.0.1', 0]]);
  });

  test('steered: routed veths carrying the program; a bridged pod, an unresolved one and an unattached one are named with why', () => {
    const ok = (ifindexes: number[], port?: string) => ({ ok: true as const, ifindexes, hops: ifindexes.map((i) => ({ ip: 'x', dev: port ? 'cni0' : `veth${i}`, ...(port ? { port } : {}) })) });
    const r = steeredPods([
      { key: 'ns/a', ips: ['10.0.0.1', 'fd00::1'], iface: ok([5]) },
      { key: 'ns/b', ips: ['10.0.0.2'], iface: ok([6], 'veth6') },
      { key: 'ns/c', ips: ['10.0.0.3'], iface: { ok: false, reason: 'a gateway answered', probes: [] } },
      { key: 'ns/d', ips: ['10.0.0.4'], iface: ok([8]) },
      { key: 'ns/e', ips: ['10.0.0.5'], iface: undefined },
    ], new Set([5, 6]));
    assert.deepEqual(r.addresses, ['10.0.0.1', 'fd00::1']);
    assert.deepEqual(r.notSteered.map((n) => n.pod), ['ns/b', 'ns/c', 'ns/d', 'ns/e']);
    assert.match(r.notSteered[0]!.reason, /bridge/);
    assert.match(r.notSteered[1]!.reason, /a gateway answered/);
    assert.match(r.notSteered[2]!.reason, /not attached/);
  });
});

describe('HeldAddresses: transparent connections per pod address', () => {
  test('held from hold() until release() or the socket\'s close; the last one out is reported once', async () => {
    const released: string[] = [];
    const held = new HeldAddresses((ip) => released.push(ip));
    const server = net.createServer((c) => c.on('error', () => undefined));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const a = net.connect(port, '127.0.0.1');
      const b = net.connect(port, '127.0.0.1');
      await Promise.all([a, b].map((s) => new Promise((r) => s.once('connect', r))));
      held.hold('10.0.0.5');
      held.hold('10.0.0.5');
      held.hold('10.0.0.6');
      held.release('10.0.0.6'); // its connect failed
      assert.deepEqual(released, ['10.0.0.6']);
      held.closeReleases(a, '10.0.0.5');
      held.closeReleases(b, '10.0.0.5');
      assert.equal(held.holds('10.0.0.5'), true);
      a.destroy();
      await new Promise((r) => a.once('close', r));
      assert.equal(held.holds('10.0.0.5'), true, 'one connection is still open');
      b.destroy();
      await new Promise((r) => b.once('close', r));
      assert.equal(held.holds('10.0.0.5'), false);
      assert.deepEqual(released, ['10.0.0.6', '10.0.0.5']);
      // a socket already destroyed when handed over releases at once
      held.hold('10.0.0.7');
      held.closeReleases(a, '10.0.0.7');
      assert.equal(held.holds('10.0.0.7'), false);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('connectTransparent on loopback: a taken source port is replaced, the connection still made', () => {
  let server: net.Server;
  let port = 0;
  const seen: Array<{ ip: string; port: number }> = [];
  const open: net.Socket[] = [];

  before(async () => {
    server = net.createServer((s) => { seen.push({ ip: s.remoteAddress!, port: s.remotePort! }); s.on('error', () => undefined); open.push(s); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  after(async () => {
    for (const s of open) s.destroy();
    await new Promise((r) => server.close(r));
  });

  const accepted = async (n: number) => {
    for (let i = 0; i < 200 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(seen.length, n, 'the server accepted the connection');
    return seen[n - 1]!;
  };

  test('a free port is used as asked', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.4', r));
    const free = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const moves: string[] = [];
    const s = await connectTransparent({ ip: '127.0.0.4', port: free }, { ip: '127.0.0.1', port }, 5000, 'stream', (code) => moves.push(code));
    open.push(s);
    assert.deepEqual(await accepted(1), { ip: '127.0.0.4', port: free });
    assert.deepEqual(moves, [], 'a port kept is no move');
  });

  test('the port held by a listener (EADDRINUSE at bind): same address, another port', async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.5', r));
    const held = (holder.address() as net.AddressInfo).port;
    try {
      const moves: string[] = [];
      const s = await connectTransparent({ ip: '127.0.0.5', port: held }, { ip: '127.0.0.1', port }, 5000, 'stream', (code) => moves.push(code));
      open.push(s);
      const got = await accepted(2);
      assert.equal(got.ip, '127.0.0.5');
      assert.notEqual(got.port, held);
      assert.deepEqual(moves, ['EADDRINUSE'], 'the move is reported with its reason');
    } finally {
      await new Promise((r) => holder.close(r));
    }
  });

  test('the same 4-tuple already connected (EADDRNOTAVAIL at connect): same address, another port', async () => {
    const first = await connectTransparent({ ip: '127.0.0.6', port: 0 }, { ip: '127.0.0.1', port }, 5000);
    open.push(first);
    const taken = first.localPort!;
    const moves: string[] = [];
    const s = await connectTransparent({ ip: '127.0.0.6', port: taken }, { ip: '127.0.0.1', port }, 5000, 'stream', (code) => moves.push(code));
    open.push(s);
    assert.deepEqual(moves, ['EADDRNOTAVAIL'], 'the move is reported with its reason');
    const got = await accepted(4);
    assert.equal(got.ip, '127.0.0.6');
    assert.notEqual(got.port, taken);
    assert.equal(s.localAddress, '127.0.0.6');
  });

  test('a socket for pump() reads into pooled buffers (no \'data\' events) and pump() moves every byte of a server that speaks first', async () => {
    const payload = Buffer.alloc(300_000, 7);
    const talker = net.createServer((c) => { c.on('error', () => undefined); c.end(payload); });
    await new Promise<void>((r) => talker.listen(0, '127.0.0.1', r));
    try {
      const s = await connectTransparent({ ip: '127.0.0.10', port: 0 }, { ip: '127.0.0.1', port: (talker.address() as net.AddressInfo).port }, 5000, 'pump');
      let dataEvents = 0;
      s.on('data', () => dataEvents++);
      const got: Buffer[] = [];
      const sink = new Writable({ write: (chunk: Buffer, _e, cb) => { got.push(Buffer.from(chunk)); cb(); } });
      await new Promise<void>((resolve) => { sink.on('finish', resolve); pump(s, sink); });
      s.destroy();
      assert.equal(Buffer.concat(got).equals(payload), true, 'every byte, in order');
      assert.equal(dataEvents, 0, 'read through the pooled buffers, not as data events');
    } finally {
      await new Promise((r) => talker.close(r));
    }
  });

  test('a refused connection is not retried as a collision: it fails with ECONNREFUSED', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    await assert.rejects(connectTransparent({ ip: '127.0.0.7', port: 0 }, { ip: '127.0.0.1', port: closedPort }, 5000), { code: 'ECONNREFUSED' });
  });
});

/**
 * The ingress program with a STRICT pod's entry (replies only), through BPF_PROG_TEST_RUN: its
 * inbound plaintext is not captured (the SYN, even a fragment, passes to its tc egress enforcement),
 * and its segments that no proxy socket holds pass untouched. Handing a reply to the proxy's socket
 * needs real tc ingress (bpf_sk_assign refuses a test-run packet): the lab test shows it.
 */
describe('weft_capture_ingress with replies-only and lingering entries (BPF_PROG_TEST_RUN)', () => {
  const blocker = kernelTestBlocker();
  // test/support/packets.ts sends from 10.244.2.1:40000 to 10.244.1.1:8080
  const SRC = '10.244.2.1', DST = '10.244.1.1';
  const PASS = 0;
  let obj: bpf.ObjectHandle | undefined;
  let prog = -1, captureFd = -1, countersFd = -1;
  const counters = () => Object.keys(weft_counter).filter((n) => n.startsWith('WEFT_CTR_CAPTURE')).map((n) => {
    const k = Buffer.alloc(4); k.writeUInt32LE(weft_counter[n as keyof typeof weft_counter]);
    return bpf.mapLookup(countersFd, k, 8)!.readBigUInt64LE(0);
  });
  const run = (pkt: Buffer) => {
    const before = counters();
    const verdict = bpf.progTestRun(prog, pkt).retval;
    return { verdict, moved: counters().some((v, i) => v !== before[i]) };
  };

  before(() => {
    if (blocker) return;
    obj = bpf.openObject(join(__dirname, '../../bpf/weft_ingress.o'), null); // unpinned: nothing outlives the test
    bpf.loadObject(obj);
    prog = bpf.programFds(obj).get('weft_capture_ingress')!;
    const maps = bpf.mapFds(obj);
    captureFd = maps.get('weft_capture')!;
    countersFd = maps.get('weft_counters')!;
    bpf.mapUpdate(maps.get('weft_config')!, Buffer.alloc(4), encodeConfig({
      proxyIp4: '172.30.9.1', proxyIp6: null, outboundPort: 15001, proxyCgroupId: 1n, inboundPlaintextPort: 1, captureMark: 0x2000,
    }));
  });
  after(() => { if (obj) bpf.closeObject(obj); });

  test('a SYN or a fragment to a STRICT pod is not captured: it passes, uncounted (a captured pod\'s would be dropped here, no listener)', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    bpf.mapUpdate(captureFd, encodeIpKey(DST), encodeCapture(REPLIES_ONLY));
    try {
      assert.deepEqual(run(tcp4({ syn: true })), { verdict: PASS, moved: false });
      assert.deepEqual(run(ipv4(6, tcpHeader({ syn: true }), { fragOffset: 0x2000 })), { verdict: PASS, moved: false });
      bpf.mapUpdate(captureFd, encodeIpKey(DST), encodeCapture(0));
      assert.notEqual(run(tcp4({ syn: true })).verdict, PASS, 'the same SYN to a captured (PERMISSIVE) pod is taken');
    } finally {
      bpf.mapDelete(captureFd, encodeIpKey(DST));
    }
  });

  test('a pod that left the mesh (LINGER): its new connections pass, uncounted, SYN or not; nothing the proxy does not hold is taken', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    bpf.mapUpdate(captureFd, encodeIpKey(DST), encodeCapture(LINGER));
    bpf.mapUpdate(captureFd, encodeIpKey(SRC), encodeCapture(LINGER));
    try {
      assert.deepEqual(run(tcp4({ syn: true })), { verdict: PASS, moved: false }, 'a SYN to it is not captured (no listener here: a captured pod\'s would be dropped)');
      assert.deepEqual(run(ipv4(6, tcpHeader({ syn: true }), { fragOffset: 0x2000 })), { verdict: PASS, moved: false }, 'nor a fragment (a captured pod\'s would be dropped as unparsed)');
      assert.deepEqual(run(tcp4({ ack: true }, Buffer.from('data'))), { verdict: PASS, moved: false }, 'a segment of a connection no proxy socket holds passes');
      assert.deepEqual(run(tcp4({ syn: true, ack: true })), { verdict: PASS, moved: false });
    } finally {
      bpf.mapDelete(captureFd, encodeIpKey(DST));
      bpf.mapDelete(captureFd, encodeIpKey(SRC));
    }
  });

  test('a STRICT pod\'s segment that no proxy socket holds (its own connection) passes untouched', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    bpf.mapUpdate(captureFd, encodeIpKey(SRC), encodeCapture(REPLIES_ONLY));
    try {
      assert.deepEqual(run(tcp4({ syn: true, ack: true })), { verdict: PASS, moved: false });
      assert.deepEqual(run(tcp4({ ack: true }, Buffer.from('reply'))), { verdict: PASS, moved: false });
    } finally {
      bpf.mapDelete(captureFd, encodeIpKey(SRC));
    }
  });
});
