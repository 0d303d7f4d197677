import * as fc from 'fast-check';
import * as http from 'node:http';
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from '../../agent/http/limits';
import { serveHttp, type ExchangeLog } from '../../agent/http/serve';
import { duplexPair, type PairEnd } from '../../agent/proxy/duplex-pair';
import { stringOf, text } from './gen';
import { check, settlesWithin, type FuzzTarget } from './target';

const LIMITS: HttpLimits = { ...DEFAULT_HTTP_LIMITS, maxHeaderBytes: 2048, maxHeaderPairs: 20, maxRequestBodyBytes: 256, headersTimeoutMs: 2_000, maxDenyDrainBytes: 64 };

// Structure-aware requests: a request line, header fields with random mutations, a body framed (or not) to match.
const method = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'CONNECT', 'DELETE', 'PATCH', 'TRACE', 'PRI', 'get'), stringOf('ABCXYZ-_!', 8));
const requestTarget = fc.oneof(fc.constantFrom('/', '/deny', '/a?b=c', '*', 'http://h/x', 'h:443', '//x', '/%00', '/..%2f'), stringOf('/abc?=&%#', 30));
const version = fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'http/1.1');
const name = fc.oneof(fc.constantFrom('Host', 'host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'Upgrade', 'Expect', 'TE', 'Trailer', 'Keep-Alive', 'X-Forwarded-For', 'Cookie', 'Forwarded', 'traceparent', 'x-b3', 'Content-Length '), stringOf('abcz-_', 10));
const value = fc.oneof(fc.constantFrom('a', 'chunked', 'gzip, chunked', 'close', 'keep-alive', 'upgrade', 'websocket', 'h2c', '100-continue', '0', '5', '300', '-1', '1e2', ' 3', '99999999999999999999', '', 'trailers'), stringOf('abc ,;=09\t', 16));
const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r');
const field = fc.tuple(name, fc.constantFrom(': ', ':', ' : ', ':\t'), value, eol).map((p) => p.join(''));
const body = fc.oneof(fc.constant(''), fc.constantFrom('hello', '5\r\nhello\r\n0\r\n\r\n', '0\r\n\r\n', 'ffffffffff\r\n', '3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n'), fc.string({ maxLength: 40 }));
const request = fc.tuple(method, requestTarget, version, eol, fc.array(field, { maxLength: 8 }), eol, body).map(([m, t, v, e, fields, e2, b]) => `${m} ${t} ${v}${e}${fields.join('')}${e2}${b}`);
const pipeline = fc.array(request, { minLength: 1, maxLength: 3 }).map((rs) => text(rs.join('')));

const app = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
});

const STATUS_LINE = /^HTTP\/1\.[01] [1-5][0-9]{2} /;

export const target: FuzzTarget = {
  name: 'http1-serve',
  what: 'agent/http/serve.ts serveHttp (llhttp-driven http1-direct.ts) on an in-memory connection, the way every meshed HTTP/1 request arrives: no throw or unhandled error, the connection settles once the client is gone, what the client reads starts with a status line, every access-log status is 0 or 1xx-5xx',
  generators: [pipeline],
  maxBytes: 2048,
  async run(input) {
    const [client, proxySide] = duplexPair();
    const upstreams: PairEnd[] = [];
    const logs: ExchangeLog[] = [];
    const served = serveHttp(proxySide, {
      protocol: 'http1',
      limits: LIMITS,
      decide: (r) => (r.path.includes('deny') ? { allow: false, status: 403, body: 'denied' } : { allow: true }),
      connectUpstream: async () => {
        const [up, appSide] = duplexPair();
        upstreams.push(up);
        app.emit('connection', appSide);
        return up;
      },
      onExchange: (log) => logs.push(log),
    });
    const received: Buffer[] = [];
    client.on('data', (d: Buffer) => received.push(d));
    client.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => { client.once('end', resolve); client.once('close', resolve); });
    client.end(input);
    // The proxy answers and closes, or keeps the connection for more requests: give it a moment, then leave.
    await Promise.race([closed, new Promise((r) => setTimeout(r, 50))]);
    client.destroy();
    await settlesWithin(served, 3_000, 'serveHttp after the client went away');
    for (const u of upstreams) u.destroy();
    const out = Buffer.concat(received).toString('latin1');
    if (out.length > 0) check(STATUS_LINE.test(out), `the client read something other than a response: ${JSON.stringify(out.slice(0, 80))}`);
    for (const log of logs) check(Number.isInteger(log.status) && (log.status === 0 || (log.status >= 100 && log.status < 600)), `access log status ${log.status}`);
  },
};
