import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunk, firstValue, headerObject, lastChunk, requestHead, statusHead } from '../../agent/http/http1-wire';
import { llhttpParser, METHODS } from '../../agent/http/llhttp';

test('wire: heads keep the raw fields (order, case, repeats) as latin1 bytes', () => {
  assert.equal(requestHead('POST', '/a?b=1', ['Host', 'x', 'X-A', '1', 'x-a', '2']).toString('latin1'), 'POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n');
  assert.equal(statusHead(201, 'Made It', ['X-Z', '\u00e9']).toString('latin1'), 'HTTP/1.1 201 Made It\r\nX-Z: \u00e9\r\n\r\n');
  assert.equal(statusHead(404, undefined, []).toString('latin1'), 'HTTP/1.1 404 Not Found\r\n\r\n');
  assert.equal(statusHead(599, '', []).toString('latin1'), 'HTTP/1.1 599 Unknown\r\n\r\n');
});

test('wire: chunked framing, with and without trailers', () => {
  assert.equal(chunk(Buffer.from('x'.repeat(26))).toString(), `1a\r\n${'x'.repeat(26)}\r\n`);
  assert.equal(lastChunk([]).toString(), '0\r\n\r\n');
  assert.equal(lastChunk(['X-Checksum', 'abc', 'grpc-status', '0']).toString(), '0\r\nX-Checksum: abc\r\ngrpc-status: 0\r\n\r\n');
});

test('wire: the header object a decision sees (lower case, joined, set-cookie an array, no prototype fields)', () => {
  const h = headerObject(['Host', 'a', 'X-A', '1', 'x-a', '2', 'Cookie', 'c=1', 'cookie', 'd=2', 'Set-Cookie', 's=1', 'set-cookie', 's=2', 'constructor', 'k', '__proto__', 'p']);
  assert.deepEqual({ ...h }, { host: 'a', 'x-a': '1, 2', cookie: 'c=1; d=2', 'set-cookie': ['s=1', 's=2'], constructor: 'k', ['__proto__']: 'p' });
  assert.equal(Object.getPrototypeOf(h), Object.prototype, 'a __proto__ field did not replace the prototype');
  assert.equal(headerObject(['Constructor', 'a', 'constructor', 'b']).constructor, 'a, b', 'a field named like a prototype member is joined as data');
  assert.equal(firstValue(['A', '1', 'content-length', '5', 'Content-Length', '6'], 'content-length'), '5');
  assert.equal(firstValue(['A', '1'], 'content-length'), undefined);
});

test('llhttp (strict): pipelined requests, chunked body with trailers, and a smuggling attempt refused with the HPE code', () => {
  const seen: string[] = [];
  let acc: string[] = [];
  const p = llhttpParser('request', 1024, {
    messageBegin: () => seen.push('begin'),
    headers: (raw) => { acc = acc.concat(raw); },
    headersComplete: (_ma, _mi, raw, method, url) => { seen.push(`${METHODS[method!]} ${url ?? ''} ${(raw ?? acc).join(',')}`); acc = []; return 0; },
    body: (b) => seen.push(`body ${b.toString()}`),
    messageComplete: () => { seen.push(`end ${acc.join(',')}`); acc = []; },
  });
  const n = p.execute(Buffer.from('POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n'));
  assert.equal(typeof n, 'number');
  assert.deepEqual(seen.slice(0, 4), ['begin', 'POST /a Host,x,Transfer-Encoding,chunked', 'body abc', 'end X-T,1']);
  assert.equal(seen[5], 'GET  Host,y', 'a head flushed in pieces arrives through headers(); the url with it');
  const bad = p.execute(Buffer.from('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n'));
  assert.ok(bad instanceof Error);
  assert.match(String((bad as { code?: string }).code), /^HPE_/);
  p.close();
});
