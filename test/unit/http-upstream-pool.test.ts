import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test } from 'node:test';
import { countApp, listen, rawExchange, startProxy, statuses } from './http-fixture';

/** The upstream connection of a downstream connection (agent/http/http1-direct.ts) when the application does not keep it. */

test('an application that closes its connection after a response: the next request on the same client connection opens a new one', async () => {
  let n = 0;
  const server = http.createServer((req, res) => {
    n++;
    // every other response closes the application's connection
    if (n % 2 === 1) res.setHeader('Connection', 'close');
    res.end(`${req.url}`);
  });
  const counters = countApp(server);
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await rawExchange(proxy.port,
      'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\nGET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(raw), [200, 200, 200, 200]);
    assert.match(raw, /\/1[\s\S]*\/2[\s\S]*\/3[\s\S]*\/4/);
    // /1 closes, /2 and /3 share one, /3 closes, /4 on a third
    assert.equal(counters.connections, 3);
    assert.equal(proxy.upstreamConnections, 3);
    assert.ok((raw.match(/Connection: close/gi) ?? []).length <= 1, 'the application\'s Connection: close is not passed on (only the last answer, to a client that asked, closes)');
  } finally {
    await proxy.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('a kept-alive application connection that closes as the next request arrives (the keep-alive race): a request without a body is sent again on a new connection, not answered 502', async () => {
  let requests = 0;
  const net = await import('node:net');
  // An application that answers the first request on each connection and closes the connection,
  // without answering, when a second one arrives on it (what an idle timeout firing just then looks like).
  const server = net.createServer((s) => {
    let seen = 0;
    s.on('data', (d) => {
      const heads = (d.toString('latin1').match(/HTTP\/1\.1\r\n/g) ?? []).length;
      for (let i = 0; i < heads; i++) {
        seen++;
        requests++;
        if (seen === 1) s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`);
        else { s.destroy(); return; }
      }
    });
    s.on('error', () => undefined);
  });
  const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as import('node:net').AddressInfo).port)));
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await rawExchange(proxy.port, 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(raw), [200, 200], raw);
    assert.equal(requests, 3, 'the second request reached the application twice: cut on the old connection, answered on a new one');
    assert.equal(proxy.upstreamConnections, 2);
    // A request with a body is not sent twice: the client gets the 502.
    requests = 0;
    const withBody = await rawExchange(proxy.port, 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx');
    assert.deepEqual(statuses(withBody), [200, 502], withBody);
    assert.equal(requests, 2);
  } finally {
    await proxy.close();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
