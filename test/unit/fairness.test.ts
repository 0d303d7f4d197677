import { EventEmitter } from 'node:events';
// Fairness between pods in the node proxy (agent/proxy/fairness.ts, fairness-share.ts): the pure
// decisions (limits, the shedding choice, the noise score), ProxyConfig spec.fairness, and the
// read gate on real loopback sockets (bytes per turn of the event loop).
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import net from 'node:net';
import { test } from 'node:test';
import { parseConfig } from '../../agent/config/parse';
import { addNoise, admitConnection, BUSY_MIN_BYTES, BUSY_WITHIN_MS, chargeWindow, chooseShed, isBusy, DEFAULT_FAIRNESS, isOverloaded, MAX_SHED_FACTOR, MIN_SHED_NOISE, NOISE_HALF_LIFE_MS, noiseAt, shedDuration, type FairnessConfig } from '../../agent/proxy/fairness';
import { addressAccount, arrivalAccount, FairShare, identityAccount, podAccount } from '../../agent/proxy/fairness-share';
import type { Arrival } from '../../agent/proxy/deliver';
import { CHANNELS, type OverloadShedEvent } from '../../agent/telemetry/events';

const config = (over: Partial<FairnessConfig> = {}): FairnessConfig => ({ ...DEFAULT_FAIRNESS, ...over });

test('admitConnection: a shed account is refused first, then the pending limit, then the open limit; below them it is admitted', () => {
  const c = config({ maxConnectionsPerPod: 4, maxPendingPerPod: 2 });
  assert.deepEqual(admitConnection('shop/web', { open: 3, pending: 1, shed: false }, c), { admit: true });
  const shed = admitConnection('shop/web', { open: 9, pending: 9, shed: true }, c);
  assert.equal(shed.admit, false);
  assert.equal(!shed.admit && shed.reason, 'overload');
  assert.match(!shed.admit ? shed.detail : '', /overloadLagMs 20 ms\): shop\/web is the noisiest and is shed for 200 ms/);
  const pending = admitConnection('shop/web', { open: 2, pending: 2, shed: false }, c);
  assert.equal(!pending.admit && pending.reason, 'max_pending');
  assert.match(!pending.admit ? pending.detail : '', /shop\/web has 2 connections being set up \(spec\.fairness\.maxPendingPerPod 2\)/);
  const throttled = admitConnection('shop/web', { open: 0, pending: 0, shed: false, throttled: true }, c);
  assert.equal(!throttled.admit && throttled.reason, 'overload');
  assert.match(!throttled.admit ? throttled.detail : '', /shop\/web was shed and may open one connection or read spec\.fairness\.readBudgetBytes 262144 per 10 ms/);
  const open = admitConnection('shop/web', { open: 4, pending: 0, shed: false }, c);
  assert.equal(!open.admit && open.reason, 'max_connections');
  assert.match(!open.admit ? open.detail : '', /shop\/web holds 4 connections \(spec\.fairness\.maxConnectionsPerPod 4\)/);
});

test('chooseShed: the noisiest account when it is at least twice as noisy as every other and someone else is active; none otherwise', () => {
  assert.equal(chooseShed(new Map([['noisy', 1e8], ['quiet', 2e5]])), 'noisy');
  assert.equal(chooseShed(new Map([['quiet', 2e5], ['noisy', 1e8], ['other', 3e5]])), 'noisy', 'order does not matter');
  assert.equal(chooseShed(new Map([['noisy', 1e8]])), undefined, 'the only pod being served is not shed: that protects nobody');
  assert.equal(chooseShed(new Map([['a', 1e8], ['b', 0.6e8]])), undefined, 'two comparably busy pods: neither starves the other');
  assert.equal(chooseShed(new Map([['a', 1e8], ['b', 0.5e8]])), 'a', 'exactly twice as noisy');
  assert.equal(chooseShed(new Map([['a', 1e8], ['b', 0]])), undefined, 'an account with no noise is not active');
  assert.equal(chooseShed(new Map()), undefined);
  assert.equal(chooseShed(new Map([['busiest', MIN_SHED_NOISE - 1], ['quiet', 1000]])), undefined, 'below the floor a pod is not what overloads the proxy');
  assert.equal(chooseShed(new Map([['busiest', MIN_SHED_NOISE], ['quiet', 1000]])), 'busiest');
  assert.equal(chooseShed(new Map([['busiest', 1e6], ['quiet', 1000]]), 2, MIN_SHED_NOISE, new Set(['busiest'])), 'busiest', 'on probation after a shed: proven the cause, its noise fell because it was shed');
  assert.equal(chooseShed(new Map([['finished', 1e9], ['quiet', 1000]]), 2, MIN_SHED_NOISE, new Set(), new Set(['quiet'])), undefined, 'the noisiest is not busy now (its bulk ended): the lag is not its doing');
  assert.equal(chooseShed(new Map([['busy', 1e9], ['quiet', 1000]]), 2, MIN_SHED_NOISE, new Set(), new Set(['busy'])), 'busy');
});

test('noise: bytes and connections add up and decay by half each half-life', () => {
  let n = { score: 0, at: 1000 };
  n = addNoise(n, 1000, 4096);
  n = addNoise(n, 1000, 4096);
  assert.equal(n.score, 8192);
  assert.equal(noiseAt(n, 1000 + NOISE_HALF_LIFE_MS), 4096);
  assert.equal(noiseAt(n, 1000 + 2 * NOISE_HALF_LIFE_MS), 2048);
  assert.equal(noiseAt(n, 500), 8192, 'a clock read before the last update does not inflate the score');
});

test('shedDuration: shedMs the first time and after a calm spell; twice the last when the overload is back before or soon after the restriction ended, up to the cap', () => {
  const c = config({ shedMs: 200 });
  assert.equal(shedDuration(undefined, 1000, c), 200);
  assert.equal(shedDuration({ ms: 200, endedAt: 2000 }, 1500, c), 400, 'back while still on probation');
  assert.equal(shedDuration({ ms: 400, endedAt: 2000 }, 2200, c), 800, 'back within shedMs of the end');
  assert.equal(shedDuration({ ms: 800, endedAt: 2000 }, 2201, c), 200, 'calm for longer than shedMs: from the start');
  assert.equal(shedDuration({ ms: MAX_SHED_FACTOR * 200, endedAt: 2000 }, 1999, c), MAX_SHED_FACTOR * 200, 'capped');
});

test('isOverloaded: lag strictly above the threshold', () => {
  assert.equal(isOverloaded(20, config({ overloadLagMs: 20 })), false);
  assert.equal(isOverloaded(20.5, config({ overloadLagMs: 20 })), true);
});

const proxyConfig = (spec: string) => parseConfig(`apiVersion: config.weft.dev/v1\nkind: ProxyConfig\nmetadata: { name: default }\nspec: ${spec}\n`, 'p.yaml');

test('ProxyConfig spec.fairness: fields by name, the defaults for what is absent; absent altogether: none set (the defaults apply)', () => {
  const some = proxyConfig('{ fairness: { maxConnectionsPerPod: 64, overloadLagMs: 50 } }');
  assert.ok(some.ok, JSON.stringify(!some.ok && some.error));
  assert.deepEqual(some.value.proxyConfig?.fairness, { ...DEFAULT_FAIRNESS, maxConnectionsPerPod: 64, overloadLagMs: 50 });
  const empty = proxyConfig('{ fairness: {} }');
  assert.ok(empty.ok);
  assert.deepEqual(empty.value.proxyConfig?.fairness, DEFAULT_FAIRNESS);
  const none = proxyConfig('{}');
  assert.ok(none.ok);
  assert.equal(none.value.proxyConfig?.fairness, undefined);
});

test('ProxyConfig spec.fairness: unknown fields, bad values and a non-mapping are refused naming the field', () => {
  const bad = proxyConfig('{ fairness: { maxConnectionsPerPod: 0, maxPendingPerPod: 1.5, readBudgetBytes: "1MiB", overloadLagMs: -1, shedMs: 100000, maxConnections: 5 } }');
  assert.ok(!bad.ok);
  const fields = bad.error.map((e) => `${e.field}: ${e.message}`);
  const has = (re: RegExp) => assert.ok(fields.some((f) => re.test(f)), `${re}\n${fields.join('\n')}`);
  has(/^spec\.fairness\.maxConnectionsPerPod: must be a whole number from 1 to 1000000, got 0/);
  has(/^spec\.fairness\.maxPendingPerPod: must be a whole number from 1 to 1000000, got 1\.5/);
  has(/^spec\.fairness\.readBudgetBytes: must be a whole number from 4096 to 1073741824, got "1MiB"/);
  has(/^spec\.fairness\.overloadLagMs: must be a whole number from 1 to 60000, got -1/);
  has(/^spec\.fairness\.shedMs: must be a whole number from 1 to 60000, got 100000/);
  has(/^spec\.fairness\.maxConnections: unknown field/);
  assert.ok(bad.error.every((e) => e.object.includes('ProxyConfig')), JSON.stringify(bad.error));
  const notMapping = proxyConfig('{ fairness: strict }');
  assert.ok(!notMapping.ok);
  assert.ok(notMapping.error.some((e) => e.field === 'spec.fairness' && /mapping/.test(e.message)), JSON.stringify(notMapping.error));
});

test('accounts: a pod by namespace/name, a peer by identity (its namespace from the SPIFFE ID), a client by address; an arrival picks the most specific', () => {
  assert.deepEqual(podAccount({ namespace: 'shop', name: 'web-1' }), { key: 'shop/web-1', namespace: 'shop', pod: 'web-1' });
  assert.deepEqual(identityAccount('spiffe://cluster.local/ns/shop/sa/web'), { key: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod: 'spiffe://cluster.local/ns/shop/sa/web' });
  assert.deepEqual(addressAccount('10.0.0.9'), { key: '10.0.0.9', namespace: '', pod: '10.0.0.9' });
  const base = { path: 'hbone', pod: {}, conn: { sourceIp: '10.0.0.9', sourcePort: 1, destinationIp: '10.0.0.2', destinationPort: 80 } } as unknown as Arrival;
  const src = { namespace: 'shop', name: 'web-1', workload: 'web', identity: 'spiffe://cluster.local/ns/shop/sa/web', node: 'n1' };
  assert.equal(arrivalAccount({ ...base, record: { direction: 'inbound', srcIp: '10.0.0.9', srcPort: 1, dstIp: '10.0.0.2', dstPort: 80, src } }).key, 'shop/web-1');
  assert.equal(arrivalAccount({ ...base, record: { direction: 'inbound', srcIp: '10.0.0.9', srcPort: 1, dstIp: '10.0.0.2', dstPort: 80, srcIdentity: src.identity } }).key, src.identity);
  assert.equal(arrivalAccount({ ...base, record: { direction: 'inbound', srcIp: '10.0.0.9', srcPort: 1, dstIp: '10.0.0.2', dstPort: 80 } }).key, '10.0.0.9');
});

test('FairShare.admit: open and pending are counted per account, a ticket ends pending once and closes once, refusals are published by reason', () => {
  const seen: OverloadShedEvent[] = [];
  const onShed = (m: unknown) => seen.push(m as OverloadShedEvent);
  diagnostics_channel.subscribe(CHANNELS.overloadShed, onShed);
  try {
    const share = new FairShare(() => config({ maxConnectionsPerPod: 3, maxPendingPerPod: 2 }));
    const web = podAccount({ namespace: 'shop', name: 'web' });
    const t1 = share.admit(web);
    const t2 = share.admit(web);
    assert.ok(t1.ok && t2.ok);
    const third = share.admit(web);
    assert.ok(!third.ok && third.refusal.reason === 'max_pending', JSON.stringify(third));
    t1.ticket.ready();
    t1.ticket.ready();
    const t3 = share.admit(web);
    assert.ok(t3.ok, 'one of two pending is set up: room for another');
    t2.ticket.ready();
    t3.ticket.ready();
    const fourth = share.admit(web);
    assert.ok(!fourth.ok && fourth.refusal.reason === 'max_connections', JSON.stringify(fourth));
    const other = share.admit(podAccount({ namespace: 'shop', name: 'api' }));
    assert.ok(other.ok, 'another pod has its own limits');
    t1.ticket.close();
    t1.ticket.close();
    assert.ok(share.admit(web).ok, 'a closed connection frees its place, once');
    // closeOn: the ticket closes with its socket ('close'), once however often that is emitted.
    const socket = new EventEmitter();
    t2.ticket.closeOn(socket);
    socket.emit('close');
    socket.emit('close');
    assert.equal(share.snapshot().find((a) => a.account === 'shop/web')!.open, 2);
    assert.ok(share.admit(web).ok, 'the socket\'s close freed its place');
    const { noise, ...counts } = share.snapshot().find((a) => a.account === 'shop/web')!;
    assert.deepEqual(counts, { account: 'shop/web', open: 3, pending: 2, shed: false });
    assert.ok(noise > 0, 'each connection adds to its account\'s noise');
    assert.deepEqual(seen, [{ namespace: 'shop', pod: 'web', reason: 'max_pending' }, { namespace: 'shop', pod: 'web', reason: 'max_connections' }]);
  } finally {
    diagnostics_channel.unsubscribe(CHANNELS.overloadShed, onShed);
  }
});

test('FairShare.attachUpstream: the upstream ends the pending time of its own connection\'s ticket, even when two of a pod\'s connections share a client address and port', () => {
  // Two captured connects of one pod on different capture ports can get the same source port
  // (docs/capture-ports.md). Found by that address, the second connection's ticket was the one
  // readied by the first's upstream, and the first stayed pending for its whole life.
  const share = new FairShare(() => config({ maxConnectionsPerPod: 10, maxPendingPerPod: 2 }));
  const web = podAccount({ namespace: 'shop', name: 'web' });
  const first = share.admit(web);
  const second = share.admit(web);
  assert.ok(first.ok && second.ok);
  const pending = () => share.snapshot().find((a) => a.account === 'shop/web')!.pending;
  share.attachUpstream(new net.Socket(), first.ticket, () => assert.fail('the ticket is given'));
  assert.equal(pending(), 1);
  second.ticket.close();
  assert.equal(pending(), 0, 'the first connection is set up: it no longer counts as pending');
  share.attachUpstream(new net.Socket(), first.ticket, () => assert.fail('the ticket is given'));
  assert.equal(pending(), 0, 'a second upstream of the same connection changes nothing');
  let fellBack = 0;
  share.attachUpstream(new net.Socket(), undefined, () => { fellBack++; return web; });
  assert.equal(fellBack, 1, 'no ticket: charged to the fallback account');
  first.ticket.close();
  assert.deepEqual({ ...share.snapshot().find((a) => a.account === 'shop/web')!, noise: 0 }, { account: 'shop/web', open: 0, pending: 0, shed: false, noise: 0 });
});

/** Reads `bytes` from a loopback server through a socket gated by `share`; returns the most bytes read in one turn of the event loop. */
async function readThroughGate(share: FairShare | undefined, bytes: number): Promise<{ total: number; maxPerTurn: number }> {
  const server = net.createServer((s) => s.end(Buffer.alloc(bytes, 1)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    share?.gate(c, podAccount({ namespace: 'shop', name: 'bulk' }));
    let total = 0, inTurn = 0, maxPerTurn = 0, turns = 0;
    const turn = () => { maxPerTurn = Math.max(maxPerTurn, inTurn); inTurn = 0; if (++turns < 1_000_000 && !c.destroyed) setImmediate(turn); };
    setImmediate(turn);
    c.on('data', (d: Buffer) => { total += d.length; inTurn += d.length; });
    await new Promise<void>((resolve, reject) => { c.on('end', resolve); c.on('error', reject); });
    maxPerTurn = Math.max(maxPerTurn, inTurn);
    c.destroy();
    return { total, maxPerTurn };
  } finally {
    server.close();
  }
}

test('FairShare.gate: a bulk socket reads at most the budget per turn of the event loop (plus one read), and every byte still arrives', async () => {
  const bytes = 16 << 20;
  const gated = await readThroughGate(new FairShare(() => config({ readBudgetBytes: 64 * 1024 })), bytes);
  assert.equal(gated.total, bytes);
  assert.ok(gated.maxPerTurn <= 128 * 1024, `at most the budget plus one 64 KiB read per turn, read ${gated.maxPerTurn}`);
  // The same transfer ungated shows what the gate bounds: libuv reads a ready socket many times per wakeup.
  const free = await readThroughGate(undefined, bytes);
  assert.equal(free.total, bytes);
  assert.ok(free.maxPerTurn > gated.maxPerTurn, `ungated ${free.maxPerTurn} per turn against gated ${gated.maxPerTurn}`);
});

test('FairShare under overload: a lag sample above the threshold sheds the noisiest pod (refused, reported once), then probation rations it, then it is free again', () => {
  let now = 0;
  const reports: string[] = [];
  const share = new FairShare(() => config({ overloadLagMs: 20, shedMs: 200, readBudgetBytes: 64 * 1024 }),
    (account, lagMs, _c, sheds, shedMs) => reports.push(`${account.key} lag ${lagMs} sheds ${sheds} for ${shedMs}`), () => now);
  const sample = () => (share as unknown as { sample(): void }).sample();
  /** Time passing calmly: a sample every 10 ms, as the timer takes them. */
  const calm = (ms: number) => { for (let t = 0; t < ms; t += 10) { now += 10; sample(); } };
  const noisy = podAccount({ namespace: 'shop', name: 'noisy' });
  const quiet = podAccount({ namespace: 'shop', name: 'quiet' });
  // 600 new connections: noise above MIN_SHED_NOISE (a pod quieter than that is never shed).
  for (let i = 0; i < 600; i++) { const t = share.admit(noisy); assert.ok(t.ok); t.ticket.close(); }
  assert.ok(share.admit(quiet).ok);
  // A calm sample (10 ms apart, as the timer runs): nothing happens.
  (share as unknown as { lastSample: number }).lastSample = now;
  calm(10);
  assert.ok(share.admit(noisy).ok, 'no overload, no shedding');
  // The loop stalled 50 ms: overload, the noisiest (600 connections against 1) is shed.
  now += 50; sample(); now += 50; sample();
  assert.deepEqual(reports, ['shop/noisy lag 40 sheds 1 for 200']);
  const refused = share.admit(noisy);
  assert.ok(!refused.ok && refused.refusal.reason === 'overload');
  assert.ok(share.admit(quiet).ok, 'the quiet pod is served');
  assert.equal(share.snapshot().find((a) => a.account === 'shop/noisy')?.shed, true);
  // The shed ends: probation, one new connection per 10 ms sample.
  calm(200);
  assert.equal(share.snapshot().find((a) => a.account === 'shop/noisy')?.shed, false);
  assert.ok(share.admit(noisy).ok, 'one connection in this sample');
  const rationed = share.admit(noisy);
  assert.ok(!rationed.ok && rationed.refusal.reason === 'overload' && /may open one connection/.test(rationed.refusal.detail));
  calm(10);
  assert.ok(share.admit(noisy).ok, 'the next sample brings the next one');
  // Overload again while on probation: shed twice as long, not reported again within 10 s.
  now += 50; sample(); now += 50; sample();
  const again = share.admit(noisy);
  assert.ok(!again.ok && again.refusal.reason === 'overload');
  calm(390);
  assert.equal(share.snapshot().find((a) => a.account === 'shop/noisy')?.shed, true, 'still shed after 390 of 400 ms');
  calm(10);
  assert.equal(share.snapshot().find((a) => a.account === 'shop/noisy')?.shed, false);
  assert.equal(reports.length, 1);
  // Probation (4 x 400 ms) over and calm: free again, any number of connections.
  calm(1700);
  for (let i = 0; i < 5; i++) assert.ok(share.admit(noisy).ok, `connection ${i} after probation`);
});

test('busy now: at least BUSY_MIN_BYTES charged within a window of BUSY_WITHIN_MS that began at most two windows ago', () => {
  let w = { since: 0, bytes: 0 };
  w = chargeWindow(w, 10, BUSY_MIN_BYTES - 1);
  assert.equal(isBusy(w, 20), false, 'just under the bytes');
  w = chargeWindow(w, 100, 1);
  assert.equal(isBusy(w, 100), true);
  assert.equal(isBusy(w, 2 * BUSY_WITHIN_MS), true);
  assert.equal(isBusy(w, 2 * BUSY_WITHIN_MS + 1), false, 'the window is too old');
  // A new window once the current one is BUSY_WITHIN_MS old: a trickle never adds up to busy.
  let trickle = { since: 0, bytes: 0 };
  for (let t = 0; t < 10_000; t += 200) trickle = chargeWindow(trickle, t, 5);
  assert.equal(isBusy(trickle, 10_000), false);
});

test('FairShare under overload: a pod whose bulk ended seconds ago and now only trickles is not shed, though its decayed score is above the floor', () => {
  let now = 0;
  const reports: string[] = [];
  const share = new FairShare(() => config({ overloadLagMs: 20, shedMs: 200, readBudgetBytes: 64 * 1024 }),
    (account, lagMs) => reports.push(`${account.key} lag ${lagMs}`), () => now);
  const sample = () => (share as unknown as { sample(): void }).sample();
  const calm = (ms: number) => { for (let t = 0; t < ms; t += 10) { now += 10; sample(); } };
  const bulk = podAccount({ namespace: 'shop', name: 'bulk' });
  const other = podAccount({ namespace: 'shop', name: 'other' });
  // 2,000 connections' worth of noise (125 MiB), then one ping-sized connection every 200 ms.
  for (let i = 0; i < 2000; i++) { const t = share.admit(bulk); assert.ok(t.ok); t.ticket.close(); }
  assert.ok(share.admit(other).ok);
  (share as unknown as { lastSample: number }).lastSample = now;
  for (let i = 0; i < 5; i++) { calm(200); const t = share.admit(bulk); assert.ok(t.ok); t.ticket.close(); }
  assert.ok(share.snapshot().find((a) => a.account === 'shop/bulk')!.noise > MIN_SHED_NOISE, 'still above the floor');
  // A machine-wide stall: not the trickling pod's doing.
  now += 50; sample(); now += 50; sample();
  assert.deepEqual(reports, []);
  assert.ok(share.admit(bulk).ok);
  // The same pod busy again (20 connections within the window): shed.
  for (let i = 0; i < 20; i++) { const t = share.admit(bulk); assert.ok(t.ok); t.ticket.close(); }
  now += 50; sample(); now += 50; sample();
  assert.equal(reports.length, 1);
  assert.match(reports[0]!, /^shop\/bulk lag/);
});

test('FairShare: the lag sampler pauses after a quiet second and starts again at the next connection, and the time paused is not lag', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  let now = 0;
  const reports: string[] = [];
  const share = new FairShare(() => config({ overloadLagMs: 20 }), (account) => reports.push(account.key), () => now);
  const tick = (ms: number) => { for (let i = 0; i < ms; i += 10) { now += 10; t.mock.timers.tick(10); } };
  share.start();
  assert.equal(share.sampling, true);
  const pod = podAccount({ namespace: 'shop', name: 'web' });
  const ticket = share.admit(pod);
  assert.ok(ticket.ok);
  tick(500);
  assert.equal(share.sampling, true, 'half a quiet second: still sampling');
  tick(600);
  assert.equal(share.sampling, false, 'a quiet second: paused (an open connection with no traffic does not keep it running)');
  // A long quiet stretch, then a connection: sampling again, and the paused time reads as no lag.
  now += 60_000;
  assert.ok(share.admit(pod).ok);
  assert.equal(share.sampling, true, 'a new connection starts it again');
  share.maxLag();
  tick(10);
  assert.equal(share.maxLag(), 0, 'the first sample after the pause sees no lag');
  assert.deepEqual(reports, [], 'nothing was shed');
  // A stall while sampling is still lag: a sample 60 ms after the last is 50 ms late.
  now += 60; t.mock.timers.tick(10);
  assert.equal(share.maxLag(), 50);
  share.stop();
  assert.equal(share.sampling, false);
  if (ticket.ok) ticket.ticket.close();
});
