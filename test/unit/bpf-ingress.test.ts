/**
 * The inbound capture program, run in the kernel through BPF_PROG_TEST_RUN. A test run's packet
 * looks up sockets in the caller's network namespace, so a listener this test opens on the
 * configured capture port is what the program finds. bpf_sk_assign itself only works at real tc
 * ingress (a test-run packet is not there), so assignment is covered by the lab test
 * (test/integration/inbound-capture.test.ts); here: which packets are left alone, which are
 * dropped, and that the listener is found.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import * as bpf from '../../native/libbpf';
import { encodeCapture, encodeConfig, encodeIpKey } from '../../agent/redirect/codec';
import { weft_counter } from '../../agent/core/bpf-layout.generated';
import { kernelTestBlocker, skipLoudly } from '../support/requirements';
import { ipv4, ipv6, tcp4, tcp6, tcpHeader, udp4 } from '../support/packets';

const PASS = 0;
const DROP = 2;
const blocker = kernelTestBlocker();
// test/support/packets.ts sends from 10.244.2.1 / fd00:244:2::1 to 10.244.1.1 / fd00:244:1::1
const POD4 = '10.244.1.1', POD6 = 'fd00:244:1::1', CLIENT4 = '10.244.2.1';

type Counter = keyof typeof weft_counter;

describe('weft_capture_ingress (BPF_PROG_TEST_RUN)', () => {
  let obj: bpf.ObjectHandle | undefined;
  let prog = -1, configFd = -1, countersFd = -1, captureFd = -1;
  let listener: net.Server | undefined;
  let listenerPort = 0, idlePort = 0;

  const freePort = async () => {
    const s = net.createServer().listen(0, '::');
    await new Promise((r) => s.once('listening', r));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise((r) => s.close(r));
    return port;
  };
  const configure = (capturePort: number) => bpf.mapUpdate(configFd, Buffer.alloc(4), encodeConfig({
    proxyIp4: '172.30.9.1', proxyIp6: 'fd00:30:9::1', outboundPort: 15001, proxyCgroupId: 1n, inboundPlaintextPort: capturePort, captureMark: 0x2000,
  }));
  const counter = (name: Counter) => {
    const k = Buffer.alloc(4); k.writeUInt32LE(weft_counter[name]);
    return bpf.mapLookup(countersFd, k, 8)!.readBigUInt64LE(0);
  };
  const counters = () => Object.fromEntries(Object.keys(weft_counter).filter((n) => n.startsWith('WEFT_CTR_CAPTURE')).map((n) => [n, counter(n as Counter)]));
  /** Runs `pkt` and returns the verdict and which counters moved. */
  const run = (pkt: Buffer) => {
    const before = counters();
    const verdict = bpf.progTestRun(prog, pkt).retval;
    const after = counters();
    return { verdict, moved: Object.keys(after).filter((k) => after[k] !== before[k]).sort() };
  };

  before(async () => {
    if (blocker) return;
    obj = bpf.openObject(join(__dirname, '../../bpf/weft_ingress.o'), null); // unpinned: nothing outlives the test
    bpf.loadObject(obj);
    prog = bpf.programFds(obj).get('weft_capture_ingress')!;
    const maps = bpf.mapFds(obj);
    configFd = maps.get('weft_config')!;
    countersFd = maps.get('weft_counters')!;
    captureFd = maps.get('weft_capture')!;
    for (const ip of [POD4, POD6]) bpf.mapUpdate(captureFd, encodeIpKey(ip), encodeCapture());
    listener = net.createServer((s) => s.destroy()).listen(0, '::'); // dual-stack wildcard, as the agent's listeners are
    await new Promise((r) => listener!.once('listening', r));
    listenerPort = (listener.address() as net.AddressInfo).port;
    idlePort = await freePort();
  });
  after(async () => {
    if (obj) bpf.closeObject(obj);
    await new Promise((r) => (listener ? listener.close(r) : r(undefined)));
  });

  test('TCP between addresses that are not captured passes untouched, uncounted', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    configure(idlePort);
    bpf.mapDelete(captureFd, encodeIpKey(POD4));
    try {
      assert.deepEqual(run(tcp4({ syn: true })), { verdict: PASS, moved: [] });
      assert.deepEqual(run(tcp4({ ack: true }, Buffer.from('data'))), { verdict: PASS, moved: [] });
    } finally {
      bpf.mapUpdate(captureFd, encodeIpKey(POD4), encodeCapture());
    }
  });

  test('non-TCP to a captured pod passes (UDP, DNS)', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    configure(idlePort);
    assert.deepEqual(run(udp4()), { verdict: PASS, moved: [] });
  });

  test('a SYN to a captured pod with no listener on the capture port is dropped (agent down: fail closed), counted', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    configure(idlePort);
    assert.deepEqual(run(tcp4({ syn: true })), { verdict: DROP, moved: ['WEFT_CTR_CAPTURE_DROP_NO_LISTENER'] });
    assert.deepEqual(run(tcp6({ syn: true })), { verdict: DROP, moved: ['WEFT_CTR_CAPTURE_DROP_NO_LISTENER'] });
  });

  test('a SYN to a captured pod finds the wildcard listener on the capture port (IPv4 and IPv6)', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    configure(listenerPort);
    for (const pkt of [tcp4({ syn: true }), tcp6({ syn: true })]) {
      const r = run(pkt);
      assert.ok(!r.moved.includes('WEFT_CTR_CAPTURE_DROP_NO_LISTENER'), `listener not found: ${JSON.stringify(r)}`);
      // At real tc ingress the SYN is assigned (CAPTURE_LISTENER, pass). A test-run packet is not at
      // ingress, so bpf_sk_assign refuses the listener it found (EOPNOTSUPP, kernel 6.18) and the
      // program fails closed rather than let the SYN by.
      assert.deepEqual(r, { verdict: DROP, moved: ['WEFT_CTR_CAPTURE_DROP_ASSIGN'] });
    }
  });

  test('a segment of a connection the proxy does not hold (one from before capture) passes to the pod, counted', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    configure(listenerPort);
    assert.deepEqual(run(tcp4({ ack: true }, Buffer.from('GET / HTTP/1.1\r\n'))), { verdict: PASS, moved: ['WEFT_CTR_CAPTURE_PASS_NO_SOCKET'] });
    assert.deepEqual(run(tcp6({ ack: true, fin: true })), { verdict: PASS, moved: ['WEFT_CTR_CAPTURE_PASS_NO_SOCKET'] });
  });

  test('fragments and IPv6 extension headers towards a captured pod are dropped, counted', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    configure(listenerPort);
    assert.deepEqual(run(ipv4(6, Buffer.alloc(24), { fragOffset: 10 })), { verdict: DROP, moved: ['WEFT_CTR_CAPTURE_DROP_UNPARSED'] });
    assert.deepEqual(run(ipv4(6, tcpHeader({ syn: true }), { fragOffset: 0x2000 })), { verdict: DROP, moved: ['WEFT_CTR_CAPTURE_DROP_UNPARSED'] });
    const hopByHop = ipv6(0, Buffer.concat([Buffer.from([6, 0, 0, 0, 0, 0, 0, 0]), tcpHeader({ syn: true })]));
    assert.deepEqual(run(hopByHop), { verdict: DROP, moved: ['WEFT_CTR_CAPTURE_DROP_UNPARSED'] });
  });

  test('a captured pod\'s segment with no proxy socket for its 4-tuple passes (the pod answering a direct client)', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    configure(listenerPort);
    bpf.mapDelete(captureFd, encodeIpKey(POD4));
    bpf.mapUpdate(captureFd, encodeIpKey(CLIENT4), encodeCapture()); // the sender is the captured one now
    try {
      assert.deepEqual(run(tcp4({ syn: true, ack: true })), { verdict: PASS, moved: [] });
      assert.deepEqual(run(tcp4({ ack: true }, Buffer.from('reply'))), { verdict: PASS, moved: [] });
    } finally {
      bpf.mapDelete(captureFd, encodeIpKey(CLIENT4));
      bpf.mapUpdate(captureFd, encodeIpKey(POD4), encodeCapture());
    }
  });
});
