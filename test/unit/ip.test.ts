import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalIp, formatIp, ipBytes, unmapIp } from '../../agent/core/ip';

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
