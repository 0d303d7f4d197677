import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkHttp1Request, h2WithoutConnectionHeaders, refusalCloses, statusForUpstreamError, upgradeProtocols, withoutHopByHop } from '../../agent/http/headers';
import { statusForParseError } from '../../agent/http/http1-direct';
import { http2ServerOptions } from '../../agent/http/http2';
import { checkLimits, DEFAULT_HTTP_LIMITS, RateBudget } from '../../agent/http/limits';
import { declaredProtocol } from '../../agent/http/protocol';
import { classifyHead, classifyOnTimeout, H2_PREFACE, SNIFF_MAX_BYTES } from '../../agent/http/sniff';

test('declaredProtocol: appProtocol first, then the port name prefix (Istio rules), else undefined', () => {
  const table: Array<[{ name?: string; appProtocol?: string }, string | undefined]> = [
    [{ appProtocol: 'http' }, 'http1'],
    [{ appProtocol: 'HTTP2' }, 'http2'],
    [{ appProtocol: 'grpc' }, 'http2'],
    [{ appProtocol: 'grpc-web' }, 'http1'],
    [{ appProtocol: 'kubernetes.io/h2c' }, 'http2'],
    [{ appProtocol: 'kubernetes.io/ws' }, 'http1'],
    [{ appProtocol: 'kubernetes.io/wss' }, 'tcp'],
    [{ appProtocol: 'https' }, 'tcp'],
    [{ appProtocol: 'tls' }, 'tcp'],
    [{ appProtocol: 'tcp', name: 'http-web' }, 'tcp'],
    [{ appProtocol: 'mysql' }, 'tcp'],
    [{ appProtocol: 'something-new', name: 'grpc-api' }, 'http2'],
    [{ appProtocol: 'something-new' }, undefined],
    [{ name: 'http' }, 'http1'],
    [{ name: 'http-web' }, 'http1'],
    [{ name: 'http2-api' }, 'http2'],
    [{ name: 'grpc' }, 'http2'],
    [{ name: 'grpc-web' }, 'http1'],
    [{ name: 'grpc-web-ui' }, 'http1'],
    [{ name: 'tcp-db' }, 'tcp'],
    [{ name: 'https-x' }, 'tcp'],
    [{ name: 'httpx' }, undefined],
    [{ name: 'web' }, undefined],
    [{ name: 'metrics-http' }, undefined],
    [{}, undefined],
  ];
  for (const [port, want] of table) assert.equal(declaredProtocol(port), want, JSON.stringify(port));
});

test('classifyHead: preface, request line, anything else; "more" while undecided', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  const table: Array<[Buffer, string]> = [
    [Buffer.alloc(0), 'more'],
    [H2_PREFACE, 'http2'],
    [H2_PREFACE.subarray(0, 10), 'more'],
    [b('GET / HTTP/1.1\r\n'), 'http1'],
    [b('OPTIONS * HTTP/1.0\r\n'), 'http1'],
    [b('CONNECT a:443 HTTP/1.1\r\n'), 'http1'],
    [b('GET / HTTP/1.1'), 'more'],
    [b('GET /ver'), 'more'],
    [b('GET key\r\n'), 'tcp'],
    [b('GET / HTTP/2.0\r\n'), 'tcp'],
    [b('GET  / HTTP/1.1\r\n'), 'tcp'],
    [b('G\x00T'), 'tcp'],
    [Buffer.from([0x16, 0x03, 0x01]), 'tcp'],
    [b('SSH-2.0-OpenSSH\r\n'), 'tcp'],
    [b(`GET /${'a'.repeat(SNIFF_MAX_BYTES)}`), 'http1'],
  ];
  for (const [head, want] of table) assert.equal(classifyHead(head), want, JSON.stringify(head.toString('latin1').slice(0, 40)));
});

test('classifyOnTimeout: nothing is tcp (server-first), a started request line is http1, a started preface http2', () => {
  assert.equal(classifyOnTimeout(Buffer.alloc(0)), 'tcp');
  assert.equal(classifyOnTimeout(Buffer.from('POST /x')), 'http1');
  assert.equal(classifyOnTimeout(Buffer.from('PRI * H')), 'http2');
  assert.equal(classifyOnTimeout(Buffer.from('HELO')), 'tcp');
});

test('hop-by-hop: the fixed set and the names Connection lists are dropped; keep and drop adjust', () => {
  const raw = ['Host', 'a', 'Connection', 'keep-alive, X-Private', 'X-Private', '1', 'Keep-Alive', '5', 'TE', 'trailers', 'Transfer-Encoding', 'chunked', 'Upgrade', 'websocket', 'Proxy-Connection', 'x', 'X-Pass', '2', 'Expect', '100-continue'];
  assert.deepEqual(withoutHopByHop(raw), ['Host', 'a', 'X-Pass', '2', 'Expect', '100-continue']);
  assert.deepEqual(withoutHopByHop(raw, { keep: ['connection', 'upgrade'], drop: ['expect'] }), ['Host', 'a', 'Connection', 'keep-alive, X-Private', 'Upgrade', 'websocket', 'X-Pass', '2']);
  assert.deepEqual(upgradeProtocols(['Upgrade', 'h2c, WebSocket']), ['h2c', 'websocket']);
});

test('checkHttp1Request: what llhttp lets through and a proxy must refuse', () => {
  const ok = checkHttp1Request(['Host', 'a', 'Content-Length', '5'], 10);
  assert.deepEqual(ok, { ok: true, value: { chunked: false, contentLength: 5 } });
  const refusal = (raw: string[], limit?: number) => { const r = checkHttp1Request(raw, limit); return r.ok ? 0 : r.error.status; };
  assert.equal(refusal(['Host', 'a', 'host', 'b']), 400);
  assert.equal(refusal([]), 400);
  assert.equal(refusal(['Host', 'a', 'Transfer-Encoding', 'gzip, chunked']), 501);
  assert.equal(refusal(['Host', 'a', 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked']), 501);
  assert.equal(refusal(['Host', 'a', 'Transfer-Encoding', 'chunked', 'Content-Length', '3']), 400);
  assert.equal(refusal(['Host', 'a', 'Content-Length', '3', 'Content-Length', '3']), 400);
  assert.equal(refusal(['Host', 'a', 'Content-Length', '11'], 10), 413);
  assert.equal(refusal(['Host', 'a', 'Transfer-Encoding', 'Chunked']), 0);
  assert.equal(checkHttp1Request(['Host', 'a', 'X', '1'], undefined, 2).ok, true);
  const tooMany = checkHttp1Request(['Host', 'a', 'X', '1', 'Y', '2'], undefined, 2);
  assert.deepEqual(tooMany.ok ? 0 : tooMany.error.status, 431);
});

test('refusalCloses: drain a small announced body, close for chunked, large, or Expect bodies', () => {
  assert.equal(refusalCloses({ chunked: false }, false, 1024), false);
  assert.equal(refusalCloses({ chunked: false, contentLength: 1024 }, false, 1024), false);
  assert.equal(refusalCloses({ chunked: false, contentLength: 1025 }, false, 1024), true);
  assert.equal(refusalCloses({ chunked: true }, false, 1024), true);
  assert.equal(refusalCloses({ chunked: false, contentLength: 10 }, true, 1024), true);
  assert.equal(refusalCloses({ chunked: false, contentLength: 0 }, true, 1024), false);
});

test('HTTP/2 headers lose the connection-specific fields; te survives only as trailers (gRPC)', () => {
  assert.deepEqual(h2WithoutConnectionHeaders({ ':path': '/', connection: 'x', 'keep-alive': '1', te: 'trailers', 'x-a': 'b' }), { ':path': '/', te: 'trailers', 'x-a': 'b' });
  assert.deepEqual(h2WithoutConnectionHeaders({ te: 'gzip' }), {});
});

test('status codes: parser errors and upstream failures', () => {
  assert.equal(statusForParseError('HPE_HEADER_OVERFLOW'), 431);
  assert.equal(statusForParseError('ERR_HTTP_REQUEST_TIMEOUT'), 408);
  assert.equal(statusForParseError('HPE_INVALID_METHOD'), 400);
  assert.equal(statusForParseError('ECONNRESET'), 0);
  assert.equal(statusForUpstreamError({ code: 'ECONNREFUSED' }), 503);
  assert.equal(statusForUpstreamError({ code: 'ECONNRESET' }), 502);
});

test('checkLimits names the field at fault', () => {
  assert.deepEqual(checkLimits(DEFAULT_HTTP_LIMITS), { ok: true, value: DEFAULT_HTTP_LIMITS });
  const bad = (l: object) => { const r = checkLimits({ ...DEFAULT_HTTP_LIMITS, ...l }); return r.ok ? '' : r.error; };
  assert.match(bad({ maxHeaderBytes: 0 }), /HttpLimits\.maxHeaderBytes must be a positive integer, got 0/);
  assert.match(bad({ maxRequestBodyBytes: -1 }), /HttpLimits\.maxRequestBodyBytes/);
  assert.match(bad({ requestTimeoutMs: 100, headersTimeoutMs: 200 }), /headersTimeoutMs \(200\) must not exceed requestTimeoutMs \(100\)/);
  assert.match(bad({ resetsPerSecond: 1.5 }), /HttpLimits\.resetsPerSecond/);
});

test('RateBudget: a burst, then the refill rate', () => {
  const b = new RateBudget(3, 10, 0);
  assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false]);
  assert.equal(b.take(50), false, 'half a token after 50 ms at 10/s');
  assert.equal(b.take(100), true, 'one token after 100 ms');
  assert.equal(b.take(100), false);
  assert.deepEqual([b.take(10_000), b.take(10_000), b.take(10_000), b.take(10_000)], [true, true, true, false], 'refill stops at the burst');
});

test('http2ServerOptions: every HTTP/2 limit is set deliberately', () => {
  const o = http2ServerOptions(DEFAULT_HTTP_LIMITS) as Record<string, unknown> & { settings: Record<string, unknown> };
  assert.deepEqual(o.settings, { maxConcurrentStreams: 100, maxHeaderListSize: 60 * 1024, enablePush: false });
  for (const k of ['maxHeaderListPairs', 'maxSessionInvalidFrames', 'maxSessionRejectedStreams', 'maxSettings', 'maxOutstandingPings', 'maxSessionMemory', 'peerMaxConcurrentStreams']) {
    assert.equal(typeof o[k], 'number', k);
  }
});

test('serveHttp rejects limits that fail checkLimits, naming the field, and a protocol it does not serve', async () => {
  const { PassThrough } = await import('node:stream');
  const { serveHttp } = await import('../../agent/http/serve');
  const base = { decide: () => ({ allow: true as const }), connectUpstream: () => Promise.reject(new Error('unused')) };
  await assert.rejects(serveHttp(new PassThrough(), { ...base, protocol: 'http1', limits: { ...DEFAULT_HTTP_LIMITS, headersTimeoutMs: -1 } }), /HttpLimits\.headersTimeoutMs/);
  await assert.rejects(serveHttp(new PassThrough(), { ...base, protocol: 'tcp' as 'http1', limits: DEFAULT_HTTP_LIMITS }), /options\.protocol must be 'http1' or 'http2', got "tcp"/);
});
