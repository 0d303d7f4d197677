/**
 * The STRICT inbound program, run in the kernel through BPF_PROG_TEST_RUN. In a test run the
 * packet's socket belongs to the calling process's cgroup, so configuring our own cgroup as the
 * proxy's makes the packet "from the proxy", and any other id makes it "from elsewhere".
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as bpf from '../../native/libbpf';
import { encodeConfig } from '../../agent/redirect/codec';
import { cgroupId, ownCgroupPath } from '../../agent/redirect/cgroup';
import { weft_counter } from '../../agent/core/bpf-layout.generated';
import { kernelTestBlocker, skipLoudly } from '../support/requirements';
import { ipv4, ipv6, tcp4, tcp6, tcpHeader, udp4 } from '../support/packets';

const PASS = 0;
const DROP = 2;
const blocker = kernelTestBlocker();

describe('weft_strict_egress (BPF_PROG_TEST_RUN)', () => {
  let obj: bpf.ObjectHandle | undefined;
  let prog = -1, configFd = -1, countersFd = -1;
  const self = blocker ? 0n : cgroupId(ownCgroupPath());

  before(() => {
    if (blocker) return;
    obj = bpf.openObject(join(__dirname, '../../bpf/weft_tc.o'), null); // unpinned: nothing outlives the test
    bpf.loadObject(obj);
    prog = bpf.programFds(obj).get('weft_strict_egress')!;
    configFd = bpf.mapFds(obj).get('weft_config')!;
    countersFd = bpf.mapFds(obj).get('weft_counters')!;
  });
  after(() => { if (obj) bpf.closeObject(obj); });

  const setProxyCgroup = (id: bigint) =>
    bpf.mapUpdate(configFd, Buffer.alloc(4), encodeConfig({ proxyIp4: '10.0.0.1', proxyIp6: null, outboundPort: 15001, proxyCgroupId: id }));
  const counter = (name: keyof typeof weft_counter) => {
    const k = Buffer.alloc(4); k.writeUInt32LE(weft_counter[name]);
    return bpf.mapLookup(countersFd, k, 8)!.readBigUInt64LE(0);
  };
  const run = (pkt: Buffer) => bpf.progTestRun(prog, pkt).retval;

  const cases: Array<[string, Buffer, number]> = [
    ['IPv4 SYN', tcp4({ syn: true }), DROP],
    ['IPv4 data segment', tcp4({ ack: true, psh: true }, Buffer.from('GET / HTTP/1.1\r\n')), DROP],
    ['IPv4 bare ACK (time-wait control)', tcp4({ ack: true }), PASS],
    ['IPv4 RST', tcp4({ rst: true, ack: true }), PASS],
    ['IPv4 FIN without data', tcp4({ fin: true, ack: true }), PASS],
    ['IPv4 non-first fragment of TCP', ipv4(6, Buffer.alloc(24), { fragOffset: 10 }), DROP],
    ['IPv6 SYN', tcp6({ syn: true }), DROP],
    ['IPv6 data segment', tcp6({ ack: true }, Buffer.from('x')), DROP],
    ['IPv6 hop-by-hop header hiding TCP', ipv6(0, Buffer.concat([Buffer.from([6, 0, 0, 0, 0, 0, 0, 0]), tcpHeader({ syn: true })])), DROP],
    ['UDP (DNS)', udp4(), PASS],
  ];

  for (const [name, pkt, fromElsewhere] of cases) {
    test(`${name}: from outside the mesh → ${fromElsewhere === DROP ? 'dropped' : 'passed'}; from the proxy → passed`, (t) => {
      if (blocker) return skipLoudly(t, blocker);
      setProxyCgroup(self + 1000n);
      assert.equal(run(pkt), fromElsewhere);
      setProxyCgroup(self);
      assert.equal(run(pkt), PASS);
    });
  }

  test('drops are counted by reason', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    setProxyCgroup(self + 1000n);
    const syn0 = counter('WEFT_CTR_STRICT_DROP_SYN'), data0 = counter('WEFT_CTR_STRICT_DROP_DATA');
    run(tcp4({ syn: true }));
    run(tcp4({ syn: true }));
    run(tcp6({ ack: true }, Buffer.from('payload')));
    assert.equal(counter('WEFT_CTR_STRICT_DROP_SYN') - syn0, 2n);
    assert.equal(counter('WEFT_CTR_STRICT_DROP_DATA') - data0, 1n);
  });

  test('a proxy cgroup id of 0 never matches a packet without a socket', (t) => {
    if (blocker) return skipLoudly(t, blocker);
    setProxyCgroup(0n);
    assert.equal(run(tcp4({ syn: true })), DROP);
  });
});
