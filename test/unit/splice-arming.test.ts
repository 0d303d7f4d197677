// Which same-node servers are armed before their first byte (agent/proxy/splice-arming.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_DESTINATIONS, ServerArming, SHORT_BYTES, SHORT_STREAK } from '../../agent/proxy/splice-arming';

test('a destination is armed until SHORT_STREAK short connections in a row, and again from the next long one', () => {
  const a = new ServerArming();
  const d = '10.244.1.7|8080';
  for (let i = 0; i < SHORT_STREAK; i++) {
    assert.equal(a.armFor(d), true, `connection ${i}`);
    a.record(d, SHORT_BYTES - 1);
  }
  assert.equal(a.armFor(d), false);
  assert.equal(a.armFor(d), false);
  assert.deepEqual([a.skipped, a.quiet], [2, 1]);
  // An unarmed connection that turns out to be a download re-arms the destination.
  a.record(d, SHORT_BYTES);
  assert.equal(a.armFor(d), true);
  assert.equal(a.quiet, 0);
  // A long connection within a streak starts it over.
  for (let i = 0; i < SHORT_STREAK - 1; i++) a.record(d, 10);
  a.record(d, 1 << 30);
  for (let i = 0; i < SHORT_STREAK - 1; i++) a.record(d, 10);
  assert.equal(a.armFor(d), true);
});

test('destinations are independent, and past the bound the oldest is forgotten (armed again)', () => {
  const a = new ServerArming(3);
  const quiet = (d: string) => { for (let i = 0; i < SHORT_STREAK; i++) a.record(d, 0); };
  quiet('a|1');
  assert.equal(a.armFor('a|2'), true, 'another port of the same pod');
  quiet('b|1');
  quiet('c|1');
  assert.equal(a.quiet, 3);
  quiet('d|1');
  assert.equal(a.quiet, 3);
  assert.equal(a.armFor('a|1'), true, 'the oldest was forgotten');
  assert.equal(a.armFor('d|1'), false);
  assert.ok(MAX_DESTINATIONS >= 1024);
});
