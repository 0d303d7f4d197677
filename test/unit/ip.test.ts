import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv4 } from 'node:net';
import fc from 'fast-check';
import { canonicalIp, formatIp, ipBytes, ipv4Value, unmapIp, writeIpBytes } from '../../agent/core/ip';

test('ip: IPv6 text round-trips to the canonical compressed form', () => {
  for (const [input, canon] of [['fd00:0::1', 'fd00::1'], ['FD00:244:1:0:0:0:0:5', 'fd00:244:1::5'], ['::1', '::1'], ['::', '::'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], ['::ffff:10.1.2.3', '10.1.2.3'], ['2001:db8::10.1.2.3', '2001:db8::a01:203']]) {
    assert.equal(canonicalIp(input!), canon, input);
  }
});

test('ip: bytes are network order', () => {
  assert.deepEqual([...ipBytes('10.244.1.2')], [10, 244, 1, 2]);
  assert.equal(formatIp(ipBytes('fd00:30::7'), 6), 'fd00:30::7');
  assert.equal(unmapIp('::ffff:172.30.0.1'), '172.30.0.1');
  assert.throws(() => ipBytes('10.0.0'), /not an IP address/);
});

test('ip: ipv4Value accepts exactly what node:net isIPv4 accepts, and its value is the address\'s bytes', () => {
  // octets in and out of range, some with leading zeros; quads, near-quads and any text
  const octet = fc.tuple(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 1, max: 3 })).map(([n, width]) => String(n).padStart(width, '0'));
  const quad = fc.array(octet, { minLength: 3, maxLength: 5 }).map((o) => o.join('.'));
  const text = fc.oneof(quad, fc.string({ maxLength: 16 }), fc.stringMatching(/^[0-9.]{0,16}$/));
  fc.assert(fc.property(text, (s) => {
    const v = ipv4Value(s);
    assert.equal(v >= 0, isIPv4(s), JSON.stringify(s));
    if (v >= 0) {
      assert.deepEqual([...ipBytes(s)], s.split('.').map(Number), s);
      assert.equal(v, s.split('.').reduce((acc, o) => acc * 256 + Number(o), 0));
      assert.equal(canonicalIp(s), s, 'a dotted quad isIPv4 accepts is canonical');
      const b = Buffer.alloc(8);
      writeIpBytes(s, b, 2);
      assert.deepEqual([...b.subarray(2, 6)], s.split('.').map(Number));
    }
  }), { numRuns: 5000 });
  for (const s of ['0.0.0.0', '255.255.255.255', '10.244.1.2']) assert.ok(ipv4Value(s) >= 0, s);
  for (const s of ['01.2.3.4', '1.2.3.256', '1.2.3', '1.2.3.4.', '.1.2.3.4', '1..2.3', '1.2.3.4 ', '1.2.3.-4', '::ffff:1.2.3.4', '']) assert.equal(ipv4Value(s), -1, s);
  const b = Buffer.alloc(16);
  writeIpBytes('fd00::1', b, 0);
  assert.equal(formatIp(b, 6), 'fd00::1');
});
