import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKOFF_CAP_MS, SAFETY_MARGIN_MS, backoff, renewAt } from '../../agent/identity/renewal';

const at = (ms: number) => new Date(Date.UTC(2030, 0, 1) + ms);
const HOUR = 3_600_000;

test('a 24 h certificate is renewed between 40 % and 60 % of its lifetime, spread by jitter', () => {
  const day = 24 * HOUR;
  assert.equal(renewAt(at(0), at(day), at(0), 0).getTime(), at(0.4 * day).getTime());
  assert.equal(renewAt(at(0), at(day), at(0), 0.5).getTime(), at(0.5 * day).getTime());
  const late = renewAt(at(0), at(day), at(0), 0.999).getTime();
  assert.ok(late > at(0.59 * day).getTime() && late < at(0.6 * day).getTime());
});

test('a backdated notBefore does not make a short certificate due at once: lifetime counts from receipt', () => {
  const renew = renewAt(at(-60_000), at(6_000), at(0), 0.5);
  assert.equal(renew.getTime(), at(3_000).getTime());
});

test('renewal is never later than the safety margin before expiry, nor earlier than jitter allows', () => {
  const tenMinutes = 10 * 60_000;
  assert.equal(renewAt(at(0), at(tenMinutes), at(0), 0.999).getTime(), at(tenMinutes - SAFETY_MARGIN_MS).getTime());
  assert.equal(renewAt(at(0), at(tenMinutes), at(0), 0).getTime(), at(0.4 * tenMinutes).getTime());
  const short = renewAt(at(0), at(4_000), at(0), 0.999).getTime();
  assert.ok(short <= at(2_000).getTime(), 'a short certificate is renewed by half its life');
});

test('a certificate received already expired is due now', () => {
  assert.equal(renewAt(at(-2 * HOUR), at(-HOUR), at(0), 0.5).getTime(), at(0).getTime());
});

test('backoff doubles from 250 ms, draws from the upper half, and stops at 30 s', () => {
  assert.equal(backoff(0, { jitter: 0 }), 125);
  assert.equal(backoff(0, { jitter: 0.999999 }) > 249, true);
  assert.equal(backoff(1, { jitter: 0 }), 250);
  assert.equal(backoff(3, { jitter: 0 }), 1_000);
  assert.equal(backoff(7, { jitter: 0 }), BACKOFF_CAP_MS / 2);
  assert.equal(backoff(8, { jitter: 0.999999 }) <= BACKOFF_CAP_MS, true);
  assert.equal(backoff(10_000, { jitter: 0.5 }), BACKOFF_CAP_MS * 0.75);
});

test('while a certificate is valid, backoff waits at most half the time it has left', () => {
  assert.equal(backoff(20, { now: at(0), notAfter: at(4_000), jitter: 0.5 }), 2_000);
  assert.equal(backoff(0, { now: at(0), notAfter: at(HOUR), jitter: 0 }), 125);
  assert.equal(backoff(20, { now: at(0), notAfter: at(-1), jitter: 0 }), BACKOFF_CAP_MS / 2, 'an expired certificate no longer shortens the wait');
});
