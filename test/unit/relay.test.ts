import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectWithTimeout } from '../../agent/proxy/connect';
import { watchedRelay, type WatchedRelay } from '../../agent/proxy/relay';

/** A client, a relay in the middle (accepted socket to a pooled upstream, as deliver.ts makes them) and a server that records what it gets. */
async function middle(onRelay: (down: net.Socket, up: net.Socket) => void) {
  const got: Buffer[] = [];
  const server = net.createServer((c) => c.on('data', (d: Buffer) => { got.push(d); c.write(Buffer.from(`echo:${d.length}`)); }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxy = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
    void connectWithTimeout('127.0.0.1', (server.address() as net.AddressInfo).port, 2000).then((up) => onRelay(down, up));
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const client = await new Promise<net.Socket>((r) => { const c = net.connect((proxy.address() as net.AddressInfo).port, '127.0.0.1', () => r(c)); });
  return { client, got, close: () => { client.destroy(); server.close(); proxy.close(); } };
}

test('a watched relay tells each chunk once written, by direction, and detach() stops it at once with its counts', { timeout: 10_000 }, async () => {
  const seen: Array<[string, number]> = [];
  let relay: WatchedRelay | undefined;
  let counts: ReturnType<WatchedRelay['detach']> | undefined;
  let sockets: { down: net.Socket; up: net.Socket } | undefined;
  const listeners = (s: net.Socket) => ['close', 'error', 'data', 'end', 'drain'].map((e) => s.listenerCount(e));
  let before: { down: number[]; up: number[] } | undefined;
  const detached = new Promise<void>((resolve) => {
    void middle((down, up) => {
      sockets = { down, up };
      before = { down: listeners(down), up: listeners(up) };
      relay = watchedRelay(down, up, (to, n) => {
        seen.push([to, n]);
        // the first answer: taken back, as a splice's handover does, from inside the callback
        if (to === 'down') { counts = relay!.detach(); down.pause(); up.pause(); resolve(); }
      });
    }).then((m) => { ctx = m; m.client.write(Buffer.alloc(100, 1)); });
  });
  let ctx: Awaited<ReturnType<typeof middle>> | undefined;
  await detached;
  try {
    assert.deepEqual(seen, [['up', 100], ['down', 8]]);
    assert.deepEqual(counts, { sent: 100, received: 8 });
    const answer = await new Promise<Buffer>((r) => ctx!.client.once('data', r));
    assert.equal(answer.toString(), 'echo:100', 'the chunk told last was written before detach() took the relay back');
    ctx!.client.write(Buffer.alloc(50, 2));
    await sleep(150);
    assert.equal(ctx!.got.length, 1, 'after detach() the relay moves nothing: the server got only the first chunk');
    assert.equal(seen.length, 2, 'and tells nothing');
    assert.deepEqual({ down: listeners(sockets!.down), up: listeners(sockets!.up) }, before, 'none of the relay\'s listeners is left on either socket');
    let settled = false;
    void relay!.done.then(() => { settled = true; });
    sockets!.down.destroy();
    sockets!.up.destroy();
    await sleep(50);
    assert.equal(settled, false, 'a detached relay does not settle: its caller has the sockets now');
  } finally {
    sockets?.down.destroy();
    sockets?.up.destroy();
    ctx?.close();
  }
});

test('a watched relay left alone relays to the end and settles with the totals the watch was told', { timeout: 10_000 }, async () => {
  let told = { up: 0, down: 0 };
  let done: Promise<{ sent: number; received: number }> | undefined;
  const m = await middle((down, up) => { done = watchedRelay(down, up, (to, n) => { told = { ...told, [to]: told[to] + n }; }).done; });
  try {
    for (let i = 1; i <= 3; i++) {
      m.client.write(Buffer.alloc(i * 1000, i));
      await new Promise((r) => m.client.once('data', r));
    }
    m.client.end();
    await sleep(50);
    m.client.destroy();
    while (!done) await sleep(10);
    const r = await done;
    assert.equal(r.sent, 6000);
    assert.deepEqual(told, { up: r.sent, down: r.received });
  } finally {
    m.close();
  }
});
