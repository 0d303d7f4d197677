// The pure parts of same-node splicing (docs/splice.md): which connections are spliced, when a
// direction's redirected bytes have all been queued (half-close waits for it), the access log's
// counts, the peer-map codec, and ProxyConfig spec.sameNodeSplice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../agent/config/parse';
import { chooseSplice, directionFlushed, nextSpinWatch, SPIN_KEEP_BYTES_PER_S, SPIN_WASTE_BYTES, SPIN_WATCH_FIRST_MS, SPIN_WATCH_MAX_MS, SPIN_WATCH_MIN_MS, SPLICE_AFTER_BYTES, spinning, spliceWay, splicedTotals, type SpliceFacts } from '../../agent/proxy/splice-decision';
import { decodePeer, encodePeer } from '../../agent/proxy/splice-kernel';

const SPLICED: SpliceFacts = { path: 'local', protocol: 'tcp', allowed: true, available: true, socket: true };

test('chooseSplice: only an allowed same-node plain TCP connection, with splicing available, is spliced; each refusal says why', () => {
  assert.deepEqual(chooseSplice(SPLICED), { splice: true });
  const cases: Array<[Partial<SpliceFacts>, RegExp]> = [
    [{ path: 'hbone' }, /arrived over hbone/],
    [{ path: 'plaintext' }, /arrived over plaintext/],
    [{ protocol: 'http1' }, /http1: requests are judged/],
    [{ protocol: 'http2' }, /http2: requests are judged/],
    [{ allowed: false }, /denied/],
    [{ available: false }, /sameNodeSplice/],
    [{ socket: false }, /not a socket/],
  ];
  for (const [change, why] of cases) {
    const c = chooseSplice({ ...SPLICED, ...change });
    assert.equal(c.splice, false, JSON.stringify(change));
    assert.match((c as { reason: string }).reason, why, JSON.stringify(change));
  }
});

test('spliceWay: a second exchange or 64 KiB makes a connection worth splicing; one request and its answer do not', () => {
  const spliceWorthIt = (c: { bytes: number; turns: number }) => spliceWay(c) !== undefined;
  assert.equal(spliceWorthIt({ bytes: 0, turns: 0 }), false);
  assert.equal(spliceWorthIt({ bytes: 300, turns: 1 }), false, 'a request');
  assert.equal(spliceWorthIt({ bytes: 900, turns: 2 }), false, 'a request and its answer (Connection: close)');
  assert.equal(spliceWorthIt({ bytes: 1000, turns: 3 }), true, 'the next request on a kept-alive connection');
  assert.equal(spliceWorthIt({ bytes: SPLICE_AFTER_BYTES - 1, turns: 2 }), false);
  assert.equal(spliceWorthIt({ bytes: SPLICE_AFTER_BYTES, turns: 1 }), true, 'bulk in one direction');
});

test('directionFlushed: the peer must have queued everything redirected plus what the proxy wrote after the splice', () => {
  // base: the socket had queued 1001 (1000 bytes + the SYN) when the splice began.
  assert.equal(directionFlushed(1001n, 0n, 0, 1001n), true, 'nothing redirected: flushed at once');
  assert.equal(directionFlushed(1001n, 5000n, 0, 6000n), false, 'one byte still in the psock queue');
  assert.equal(directionFlushed(1001n, 5000n, 0, 6001n), true);
  assert.equal(directionFlushed(1001n, 5000n, 10, 6001n), false, 'bytes the kernel left to the proxy count too');
  assert.equal(directionFlushed(1001n, 5000n, 10, 6011n), true);
  assert.equal(directionFlushed(0n, 2n ** 40n, 0, 2n ** 40n), true, 'beyond 2^32: counts are 64-bit');
});

test('splicedTotals: the access log adds what the proxy moved before the splice to what the kernel moved', () => {
  assert.deepEqual(splicedTotals({ sent: 10, recv: 0 }, { sent: 0, recv: 0 }, { fromA: 2n ** 30n, fromB: 5n }), { sent: 2 ** 30 + 10, received: 5 });
  assert.deepEqual(splicedTotals({ sent: 0, recv: 7 }, { sent: 3, recv: 1 }, { fromA: 0n, fromB: 0n }), { sent: 3, received: 8 });
});

test('peer map codec: the cookie of the peer and the byte count round-trip at the BTF offsets', () => {
  const v = encodePeer(0x1122334455667788n, 2n ** 33n + 1n);
  assert.equal(v.length, 16);
  assert.deepEqual(decodePeer(v), { peerCookie: 0x1122334455667788n, bytes: 2n ** 33n + 1n });
});

test('ProxyConfig spec.sameNodeSplice: absent is on, false turns it off, anything else is refused by field', () => {
  const doc = (v: string) => `apiVersion: config.weft.dev/v1\nkind: ProxyConfig\nmetadata: { name: default }\nspec: { ${v} }\n`;
  const absent = parseConfig(doc('protocolDetectionTimeoutMs: 50'), 'p.yaml');
  assert.ok(absent.ok);
  assert.equal(absent.value.proxyConfig?.sameNodeSplice, undefined);
  const off = parseConfig(doc('sameNodeSplice: false'), 'p.yaml');
  assert.ok(off.ok);
  assert.equal(off.value.proxyConfig?.sameNodeSplice, false);
  const bad = parseConfig(doc('sameNodeSplice: "no"'), 'p.yaml');
  assert.ok(!bad.ok);
  assert.ok(bad.error.some((e) => e.field === 'spec.sameNodeSplice'), JSON.stringify(bad.error));
});

test('spliceWay: a second exchange splices at the pods\' sendmsg(), volume alone at the proxy\'s sockets', () => {
  assert.equal(spliceWay({ bytes: 900, turns: 2 }), undefined, 'one request and its answer');
  assert.equal(spliceWay({ bytes: 1000, turns: 3 }), 'pods', 'the next request: its senders pause between exchanges');
  assert.equal(spliceWay({ bytes: SPLICE_AFTER_BYTES * 4, turns: 3 }), 'pods', 'a second exchange wins over volume');
  assert.equal(spliceWay({ bytes: SPLICE_AFTER_BYTES, turns: 1 }), 'proxy', 'a stream: its sender never pauses');
  assert.equal(spliceWay({ bytes: SPLICE_AFTER_BYTES, turns: 2 }), 'proxy', 'a bulk answer');
});

test('spinning: a switched direction whose verdict counts far more than its proxy socket takes, for a slow reader, is spinning', () => {
  const MiB = 2 ** 20;
  // Measured: a slow echo reader at 4 MiB/s, 8 MiB counted 180 MiB twice in a 100 ms look.
  assert.equal(spinning(180 * MiB, 0.4 * MiB, 100), true, 'a writer retrying on a full proxy socket');
  assert.equal(spinning(64 * MiB, 64 * MiB, 100), false, 'every counted byte taken');
  assert.equal(spinning(64 * MiB + SPIN_WASTE_BYTES, 64 * MiB, 100), false, 'retries, but fewer than the bytes moved');
  assert.equal(spinning(SPIN_WASTE_BYTES, 0, 100), false, 'at most SPIN_WASTE_BYTES counted twice in a look');
  assert.equal(spinning(SPIN_WASTE_BYTES + 1, 0, 100), true, 'nothing taken, more than that counted');
  assert.equal(spinning(0, 0, 100), false, 'idle');
  // A download read at full speed: 2.34 GB counted for 268 MB taken in about 0.5 s.
  const fast = SPIN_KEEP_BYTES_PER_S / 10;
  assert.equal(spinning(9 * fast, fast, 100), false, 'a fast reader: the switch carries at SPIN_KEEP_BYTES_PER_S');
  assert.equal(spinning(9 * fast, fast - 1, 100), true, 'just under it');
  assert.equal(spinning(9 * fast, fast, 200), true, 'the same bytes over twice the time');
});

test('nextSpinWatch: looks soon while the verdict counts, backs off to the cap while it does not', () => {
  assert.equal(nextSpinWatch(SPIN_WATCH_MAX_MS, true), SPIN_WATCH_MIN_MS);
  let ms = SPIN_WATCH_MIN_MS;
  for (let i = 0; i < 20; i++) ms = nextSpinWatch(ms, false);
  assert.equal(ms, SPIN_WATCH_MAX_MS);
  assert.equal(nextSpinWatch(SPIN_WATCH_MIN_MS, false), 2 * SPIN_WATCH_MIN_MS);
  assert.equal(nextSpinWatch(SPIN_WATCH_MAX_MS, true, false), SPIN_WATCH_FIRST_MS, 'a look that could not judge: the next one sooner');
  assert.equal(nextSpinWatch(SPIN_WATCH_MIN_MS, false, false), 2 * SPIN_WATCH_MIN_MS, 'not counting: backs off whatever was judged');
});
