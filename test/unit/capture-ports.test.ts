/**
 * The agent's check that the capture ports are free on the proxy's addresses before it spreads
 * captured connects over them (agent/redirect/capture-ports.ts, docs/capture-ports.md): real
 * sockets on loopback, in ports no Weft test uses.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { heldCapturePorts } from '../../agent/redirect/capture-ports';

const listen = (port: number, host: string): Promise<net.Server> => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.once('error', reject);
  s.listen(port, host, () => resolve(s));
});
const closeAll = (servers: net.Server[]) => Promise.all(servers.map((s) => new Promise((r) => s.close(r))));

test('free ports are free; a listener on the address, or on the wildcard, holds its port', async () => {
  const base = 47310, ports = { base, count: 4 };
  assert.deepEqual(heldCapturePorts(['127.0.0.1'], ports), []);
  const servers = [await listen(base + 1, '127.0.0.1'), await listen(base + 3, '0.0.0.0')];
  try {
    assert.deepEqual(heldCapturePorts(['127.0.0.1'], ports), [`127.0.0.1:${base + 1}`, `127.0.0.1:${base + 3}`]);
    assert.deepEqual(heldCapturePorts(['127.0.0.2'], ports), [`127.0.0.2:${base + 3}`], 'a listener on another address is not in the way');
  } finally {
    await closeAll(servers);
  }
  assert.deepEqual(heldCapturePorts(['127.0.0.1'], ports), [], 'free again once they close');
});

test('IPv6: a dual-stack wildcard listener holds the port for the IPv4 address as well', async () => {
  const base = 47330, ports = { base, count: 2 };
  const s = await listen(base, '::');
  try {
    assert.deepEqual(heldCapturePorts(['127.0.0.1', '::1'], ports), [`127.0.0.1:${base}`, `[::1]:${base}`]);
  } finally {
    await closeAll([s]);
  }
});

test('a connection that left TIME_WAIT on a port does not hold it (the probe binds with SO_REUSEADDR)', async () => {
  const base = 47350, ports = { base, count: 1 };
  const s = await listen(base, '127.0.0.1');
  await new Promise<void>((resolve) => {
    s.once('connection', (c) => c.end()); // the server closes first: its side holds the TIME_WAIT on base
    const c = net.connect(base, '127.0.0.1');
    c.on('end', () => c.end());
    c.on('close', () => resolve());
  });
  await closeAll([s]);
  assert.deepEqual(heldCapturePorts(['127.0.0.1'], ports), []);
});
