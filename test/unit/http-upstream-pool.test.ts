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
