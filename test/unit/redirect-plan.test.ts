import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planEnrollment } from '../../agent/redirect/plan';
import { decodeConfig, decodeOrig, encodeConfig, encodeFlow } from '../../agent/redirect/codec';
import { weft_flow, weft_orig } from '../../agent/core/bpf-layout.generated';

const pod = (key: string, id: bigint, strict = false, ifindex: number | null = null) => ({ key, cgroupId: id, strict, ifindex });

test('plan: a fresh node enrolls every desired pod', () => {
  const p = planEnrollment([pod('a/x', 10n), pod('a/y', 11n)], [], 1n);
  assert.deepEqual(p, { addCgroups: [10n, 11n], removeCgroups: [], strictIfindexes: [] });
});

test('plan: after a restart, what is pinned and still desired is left alone', () => {
  const p = planEnrollment([pod('a/x', 10n), pod('a/y', 11n)], [10n, 11n], 1n);
  assert.deepEqual(p.addCgroups, []);
  assert.deepEqual(p.removeCgroups, []);
});

test('plan: a relabelled or deleted pod is removed from the kernel', () => {
  const p = planEnrollment([pod('a/x', 10n)], [10n, 12n], 1n);
  assert.deepEqual(p.removeCgroups, [12n]);
});

test('plan: the proxy\'s own cgroup is never enrolled, even if a pod claims it', () => {
  const p = planEnrollment([pod('a/x', 7n, true, 3)], [], 7n);
  assert.deepEqual(p, { addCgroups: [], removeCgroups: [], strictIfindexes: [] });
});

test('plan: STRICT interfaces are those of strict pods with a known interface', () => {
  const p = planEnrollment([pod('a/x', 10n, true, 5), pod('a/y', 11n, true, null), pod('a/z', 12n, false, 6)], [], 1n);
  assert.deepEqual(p.strictIfindexes, [5]);
});

test('codec: config round-trips through the generated layout', () => {
  const c = { proxyIp4: '172.30.0.1', proxyIp6: 'fd00:30::1', outboundPort: 15001, proxyCgroupId: 123456789n, inboundPlaintextPort: 15006, captureMark: 0x2000 };
  assert.deepEqual(decodeConfig(encodeConfig(c)), c);
});

test('codec: a flow key puts addresses in network order and ports in host order', () => {
  const k = encodeFlow({ family: 4, srcIp: '10.244.1.2', srcPort: 40000, dstIp: '172.30.0.1', dstPort: 15001 });
  assert.equal(k.length, weft_flow.size);
  assert.deepEqual([...k.subarray(0, 4)], [10, 244, 1, 2]);
  assert.equal(k.readUInt16LE(weft_flow.fields.sport.offset), 40000);
  assert.equal(k[weft_flow.fields.family.offset], 2);
});

test('codec: an original-destination record decodes IPv6 and the cgroup id', () => {
  const b = Buffer.alloc(weft_orig.size);
  Buffer.from([0xfd, 0, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]).copy(b, weft_orig.fields.addr.offset);
  b.writeUInt16LE(8080, weft_orig.fields.port.offset);
  b[weft_orig.fields.family.offset] = 10;
  b.writeBigUInt64LE(42n, weft_orig.fields.cgroup_id.offset);
  assert.deepEqual(decodeOrig(b), { family: 6, ip: 'fd00:244:1::5', port: 8080, cgroupId: 42n });
});

test('codec: an unknown family is an error, not a guess', () => {
  assert.throws(() => decodeOrig(Buffer.alloc(weft_orig.size)), /unknown address family 0/);
});
