import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { test } from 'node:test';
import { closeApp, countApp, listen, rawExchange, startProxy, statuses } from './http-fixture';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const accept = (key: string) => createHash('sha1').update(key + WS_GUID).digest('base64');

/** One unfragmented WebSocket frame (RFC 6455 5.2); clients mask, servers do not. */
function frame(payload: Buffer, masked: boolean): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x82, (masked ? 0x80 : 0) | len]) : Buffer.from([0x82, (masked ? 0x80 : 0) | 126, len >> 8, len & 0xff]);
  if (!masked) return Buffer.concat([head, payload]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([head, mask, body]);
}

/** Reads frames from `buf`: payloads of complete frames, and what is left over. */
function parseFrames(buf: Buffer): { payloads: Buffer[]; rest: Buffer } {
  const payloads: Buffer[] = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const masked = (buf[off + 1]! & 0x80) !== 0;
    let len = buf[off + 1]! & 0x7f;
    let p = off + 2;
    if (len === 126) { if (buf.length - off < 4) break; len = buf.readUInt16BE(off + 2); p += 2; }
    const maskKey = masked ? buf.subarray(p, p + 4) : undefined;
    if (masked) p += 4;
    if (buf.length < p + len) break;
    const data = Buffer.from(buf.subarray(p, p + len));
    if (maskKey) for (let i = 0; i < data.length; i++) data[i] = data[i]! ^ maskKey[i % 4]!;
    payloads.push(data);
    off = p + len;
  }
  return { payloads, rest: buf.subarray(off) };
}

/** A WebSocket echo server on Node's 'upgrade' event: each frame comes back prefixed with `echo:`. */
async function wsEchoApp() {
  const server = http.createServer((_req, res) => res.end('plain'));
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (req.headers['sec-websocket-version'] !== '13') {
      socket.end('HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(String(req.headers['sec-websocket-key']))}\r\n\r\n`);
    let buf: Buffer<ArrayBufferLike> = head;
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const { payloads, rest } = parseFrames(buf);
      buf = rest;
      for (const p of payloads) socket.write(frame(Buffer.concat([Buffer.from('echo:'), p]), false));
    };
    socket.on('data', onData);
    if (head.length) onData(Buffer.alloc(0));
  });
  const counters = countApp(server);
  const port = await listen(server);
  return { port, counters, close: () => closeApp(server, counters) };
}

/** Handshake through the proxy, then `messages` frames; resolves with the 101 head and the echoed payloads. */
function wsClient(port: number, messages: string[]): Promise<{ head: string; echoes: string[] }> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString('base64');
    const c = net.connect(port, '127.0.0.1');
    let buf: Buffer<ArrayBufferLike> = Buffer.alloc(0);
    let head: string | undefined;
    const echoes: string[] = [];
    c.on('error', reject);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (head === undefined) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = buf.subarray(0, end + 4).toString('latin1');
        buf = buf.subarray(end + 4);
        assert.ok(head.includes(`Sec-WebSocket-Accept: ${accept(key)}`), head);
        for (const m of messages) c.write(frame(Buffer.from(m), true));
      }
      const { payloads, rest } = parseFrames(buf);
      buf = rest;
      echoes.push(...payloads.map((p) => p.toString()));
      if (echoes.length === messages.length) { c.end(); resolve({ head, echoes }); }
    });
    c.write(`GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  });
}

test('WebSocket: the handshake passes after decide allows it, then frames flow both ways', async () => {
  const app = await wsEchoApp();
  const proxy = await startProxy({ appPort: app.port });
  try {
    const { head, echoes } = await wsClient(proxy.port, ['hello', 'x'.repeat(1000), 'bye']);
    assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.deepEqual(echoes, ['echo:hello', `echo:${'x'.repeat(1000)}`, 'echo:bye']);
    assert.equal(proxy.decided.length, 1);
    assert.equal(proxy.decided[0]!.path, '/chat');
  } finally { await proxy.close(); await app.close(); }
});

test('WebSocket: a denied handshake is answered by the proxy and never reaches the application', async () => {
  const app = await wsEchoApp();
  const proxy = await startProxy({ appPort: app.port, decide: () => ({ allow: false, status: 403, body: 'RBAC: access denied' }) });
  try {
    const raw = await rawExchange(proxy.port, 'GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n');
    assert.deepEqual(statuses(raw), [403]);
    assert.match(raw, /RBAC: access denied$/);
    assert.equal(app.counters.connections, 0);
  } finally { await proxy.close(); await app.close(); }
});

test('an upgrade the application refuses leaves no tunnel: what follows is not passed through unseen', async () => {
  const app = await wsEchoApp();
  const proxy = await startProxy({ appPort: app.port });
  try {
    // Version 12: the application answers 426; the "request" after it must not reach it.
    const raw = await rawExchange(proxy.port,
      'GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 12\r\n\r\n',
      'GET /internal HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.deepEqual(statuses(raw), [426]);
    assert.equal(proxy.decided.length, 1, 'only the upgrade request was seen');
  } finally { await proxy.close(); await app.close(); }
});

test('an h2c upgrade is refused: HTTP/2 after it would pass without per-request policy', async () => {
  const app = await wsEchoApp();
  const proxy = await startProxy({ appPort: app.port });
  try {
    const raw = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n');
    assert.deepEqual(statuses(raw), [400]);
    assert.equal(app.counters.connections, 0);
  } finally { await proxy.close(); await app.close(); }
});

test('CONNECT: after the application agrees, raw bytes flow both ways', async () => {
  // An application that is itself a CONNECT endpoint: it answers 200 and echoes bytes upper-cased.
  const server = http.createServer();
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    assert.equal(req.url, 'db.internal:5432');
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) socket.write(head.toString().toUpperCase());
    socket.on('data', (d: Buffer) => socket.write(d.toString().toUpperCase()));
    socket.on('end', () => socket.end());
  });
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await new Promise<string>((resolve, reject) => {
      const c = net.connect(proxy.port, '127.0.0.1');
      let got = '';
      c.on('error', reject);
      c.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.endsWith('\r\n\r\n') && !got.includes('PING')) c.write('ping');
        if (got.endsWith('PING')) c.end();
      });
      c.on('close', () => resolve(got));
      c.write('CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n');
    });
    assert.equal(raw, 'HTTP/1.1 200 Connection Established\r\n\r\nPING');
    assert.equal(proxy.decided[0]!.method, 'CONNECT');
    assert.equal(proxy.logs[0]!.status, 200);
  } finally { await proxy.close(); server.closeAllConnections(); server.close(); }
});
