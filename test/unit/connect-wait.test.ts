import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import { connectWithTimeout, whenConnected } from '../../agent/proxy/connect';

/** A loopback port nothing listens on: a server's, after it closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

test('a connected socket keeps one error listener, the same function for every socket, and nothing of the wait', async () => {
  const server = net.createServer((c) => c.on('error', () => undefined));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const sockets: net.Socket[] = [];
  try {
    const a = await connectWithTimeout('127.0.0.1', port, 2000);
    sockets.push(a);
    const b = await connectWithTimeout('127.0.0.1', port, 2000, 'stream');
    sockets.push(b);
    for (const s of [a, b]) {
      assert.equal(s.listenerCount('error'), 1);
      assert.ok(!s.listeners('connect').some((f) => f.name === 'onConnect'), 'the wait\'s connect listener is gone');
    }
    assert.equal(a.listeners('error')[0], b.listeners('error')[0], 'one shared listener, not a closure per connection');
    // An error before its user listens does not go unhandled.
    a.destroy(new Error('boom'));
    await new Promise((r) => a.on('close', r));
  } finally {
    for (const s of sockets) s.destroy();
    server.close();
  }
});

test('a refused connect rejects with the socket\'s error, said by the caller, and destroys the socket', async () => {
  const port = await closedPort();
  const s = new net.Socket();
  const waited = whenConnected(s, 2000, () => new Error('timed out'), (e) => Object.assign(e, { message: `to ${port}: ${e.message}` }));
  s.connect({ host: '127.0.0.1', port });
  await assert.rejects(waited, (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED' && e.message.startsWith(`to ${port}: `));
  assert.equal(s.destroyed, true);
  await assert.rejects(connectWithTimeout('127.0.0.1', port, 2000), { code: 'ECONNREFUSED' });
});

test('a connect that does not complete in time rejects with the caller\'s timeout error', async () => {
  const s = new net.Socket(); // never asked to connect: it cannot complete
  const t0 = Date.now();
  await assert.rejects(whenConnected(s, 50, () => Object.assign(new Error('late'), { code: 'ETIMEDOUT' }), (e) => e), { code: 'ETIMEDOUT', message: 'late' });
  assert.ok(Date.now() - t0 >= 45);
  assert.equal(s.destroyed, true);
  assert.equal(s.listenerCount('connect'), 0);
});
