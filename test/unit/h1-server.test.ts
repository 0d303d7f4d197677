import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { serveH1, type H1Head } from '../../agent/http/h1-server';

/** A loopback server running serveH1 on each connection; what the handlers saw is recorded. */
const seen: Array<{ kind: string; head: H1Head; body?: string }> = [];
let server: net.Server;
let port = 0;

before(async () => {
  server = net.createServer((socket) => {
    serveH1(socket, undefined, { headersTimeoutMs: 60_000, idleTimeoutMs: 60_000, maxHeaderBytes: 1024 }, {
      request(req, res) {
        const entry: { kind: string; head: H1Head; body?: string } = { kind: 'request', head: req };
        seen.push(entry);
        const answer = (body: string) => {
          entry.body = body;
          if (req.url === '/chunked') {
            res.writeHead(200, { 'x-a': ['1', '2'] });
            res.write(Buffer.from('hello '));
            res.end(Buffer.from('world'), ['x-trailer', 'yes']);
          } else {
            // Answered out of order when asked: the server still writes them in order.
            const reply = () => { res.writeHead(200, { 'content-length': String(Buffer.byteLength(`${req.url} ${body}`)) }); res.end(Buffer.from(`${req.url} ${body}`)); };
            if (req.url === '/slow') setTimeout(reply, 20); else reply();
          }
        };
        if (req.bodyless) return answer('');
        const chunks: Buffer[] = [];
        req.body().on('data', (d: Buffer) => chunks.push(d)).on('end', () => answer(Buffer.concat(chunks).toString()));
      },
      upgrade(req, socket, head) {
        seen.push({ kind: 'upgrade', head: req, body: head.toString() });
        socket.end('HTTP/1.1 101 Switching Protocols\r\n\r\ntunnel');
      },
      connect(req, socket) {
        seen.push({ kind: 'connect', head: req });
        socket.end('HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      },
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

after(() => server.close());

/** Sends `bytes` (then half-closes when `end`), returns all the server wrote until it closed or `until` matched. */
function exchange(bytes: string, opts: { end?: boolean; until?: RegExp } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = net.connect(port, '127.0.0.1', () => { s.write(bytes, 'latin1'); if (opts.end) s.end(); });
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no complete answer within 5 s; got ${JSON.stringify(got)}`)); }, 5000);
    s.on('data', (d: Buffer) => { got += d.toString('latin1'); if (opts.until?.test(got)) { clearTimeout(timer); s.destroy(); resolve(got); } });
    s.on('close', () => { clearTimeout(timer); resolve(got); });
    s.on('error', () => undefined);
  });
}

test('pipelined requests are answered in order, each body given to its own request', async () => {
  seen.length = 0;
  const got = await exchange('GET /slow HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const bodies = got.split('HTTP/1.1 200 OK\r\n').slice(1).map((r) => r.slice(r.indexOf('\r\n\r\n') + 4));
  assert.deepEqual(bodies, ['/slow ', '/p abc', '/last '], got);
  assert.match(got, /connection: close\r\n/, 'the last response says the connection closes');
  assert.deepEqual(seen.map((s) => s.head.url), ['/slow', '/p', '/last']);
});

test('a response without Content-Length is chunked, repeated fields stay separate lines, trailers follow the last chunk', async () => {
  const got = await exchange('GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n', { until: /0\r\n[^]*\r\n\r\n$/ });
  assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(got, /x-a: 1\r\nx-a: 2\r\n/);
  assert.match(got, /transfer-encoding: chunked\r\n/);
  assert.match(got, /date: .+ GMT\r\n/, 'a Date field is added');
  assert.match(got, /\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nx-trailer: yes\r\n\r\n$/);
});

test('HTTP/1.0 without keep-alive: no chunking, the body ends with the connection', async () => {
  const got = await exchange('GET /chunked HTTP/1.0\r\n\r\n');
  assert.doesNotMatch(got, /transfer-encoding/i);
  assert.match(got, /connection: close\r\n\r\nhello world$/);
});

test('HEAD gets no body bytes even when the handler writes some', async () => {
  const got = await exchange('HEAD /chunked HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  assert.match(got, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n$/);
  assert.doesNotMatch(got, /hello/);
});

test('malformed requests are answered 400, an oversized head 431, and neither reaches the handler', async () => {
  seen.length = 0;
  const bad = await exchange('GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
  assert.match(bad, /^HTTP\/1\.1 400 /);
  const garbage = await exchange('GARBAGE\r\n\r\n');
  assert.match(garbage, /^HTTP\/1\.1 400 /);
  const big = await exchange(`GET / HTTP/1.1\r\nHost: a\r\nx-big: ${'b'.repeat(2000)}\r\n\r\n`);
  assert.match(big, /^HTTP\/1\.1 431 /);
  assert.deepEqual(seen, [], 'the handler saw none of them');
});

test('a request after a malformed one in the same bytes is not handled, the one before is answered first', async () => {
  seen.length = 0;
  const got = await exchange('GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n');
  assert.match(got, /^HTTP\/1\.1 200 OK[^]*\/ok HTTP\/1\.1 400 /);
  assert.deepEqual(seen.map((s) => s.head.url), ['/ok']);
});

test('HTTP/1.1 without Host is answered 400; an unknown expectation 417; 100-continue gets 100 Continue first', async () => {
  seen.length = 0;
  assert.match(await exchange('GET / HTTP/1.1\r\n\r\n'), /^HTTP\/1\.1 400 /);
  assert.match(await exchange('GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n'), /^HTTP\/1\.1 417 /);
  assert.deepEqual(seen, []);
  const cont = await exchange('POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi');
  assert.match(cont, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n[^]*\/c hi$/);
});

test('Upgrade and CONNECT are handed over at their turn with the bytes after their head', async () => {
  seen.length = 0;
  const up = await exchange('GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nearly');
  assert.match(up, /\/first [^]*HTTP\/1\.1 101 Switching Protocols\r\n\r\ntunnel$/);
  assert.deepEqual(seen.map((s) => [s.kind, s.head.url, s.body]), [['request', '/first', ''], ['upgrade', '/ws', 'early']]);
  seen.length = 0;
  const connect = await exchange('CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n');
  assert.match(connect, /^HTTP\/1\.1 405 /);
  assert.deepEqual(seen.map((s) => [s.kind, s.head.method]), [['connect', 'CONNECT']]);
});
