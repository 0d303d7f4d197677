import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { extractContext, outgoingFields, parseB3Single, parseTracestate } from '../../agent/telemetry/tracing-context';
import { sampledByRatio, splitAuthority, Tracer, type FinishedSpan } from '../../agent/telemetry/tracing';
import { encodeExportRequest, unixNanos } from '../../agent/telemetry/otlp-encode';
import { OtlpExporter, tracesUrl } from '../../agent/telemetry/otlp-exporter';
import { parseConfig } from '../../agent/config/parse';
import type { ConnectionEnds } from '../../agent/telemetry/events';
import { decodeExportTraceRequest } from '../support/otlp-decode';

const TID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SID = '00f067aa0ba902b7';
const ENDS = { direction: 'inbound' as const, srcIp: '10.0.1.2', srcPort: 40000, dstIp: '10.0.2.3', dstPort: 8080,
  src: { workload: 'web', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/web', name: 'web-1' },
  dst: { workload: 'api', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/api', name: 'api-1' } } as unknown as ConnectionEnds;

test('tracing context: W3C traceparent and tracestate are read; W3C wins over B3', () => {
  const x = extractContext({ traceparent: `00-${TID}-${SID}-01`, tracestate: 'a=1, b=2', b3: `${'a'.repeat(32)}-${'b'.repeat(16)}-1` });
  assert.deepEqual(x, { kind: 'context', value: { context: { traceId: TID, spanId: SID, sampled: true, traceState: 'a=1,b=2' }, format: 'w3c' } });
  const unsampled = extractContext({ traceparent: `00-${TID}-${SID}-00` });
  assert.equal(unsampled.kind === 'context' && unsampled.value.context.sampled, false);
});

test('tracing context: an invalid traceparent is ignored (B3 then, else none); a malformed tracestate is dropped, the traceparent kept', () => {
  assert.deepEqual(extractContext({ traceparent: `00-${TID.toUpperCase()}-${SID}-01` }), { kind: 'none' });
  assert.deepEqual(extractContext({ traceparent: [`00-${TID}-${SID}-01`, `00-${TID}-${SID}-01`] }), { kind: 'none' }, 'a repeated traceparent is invalid');
  const b3 = extractContext({ traceparent: 'garbage', b3: `${TID}-${SID}-1` });
  assert.equal(b3.kind === 'context' && b3.value.format, 'b3');
  assert.equal(parseTracestate('no-equals'), undefined);
  assert.equal(parseTracestate('a=1,a=2'), undefined, 'duplicate keys');
  assert.equal(parseTracestate(Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')), undefined, 'more than 32 members');
  assert.equal(parseTracestate(['a=1', 'b=2']), 'a=1,b=2', 'repeated fields are one list');
  const kept = extractContext({ traceparent: `00-${TID}-${SID}-01`, tracestate: '=bad' });
  assert.equal(kept.kind === 'context' && kept.value.context.traceState, undefined);
});

test('tracing context: B3 single (with and without sampling and parent, 64-bit ids padded, sampling-only) and multi headers', () => {
  assert.deepEqual(parseB3Single(`${TID}-${SID}`), { kind: 'context', value: { context: { traceId: TID, spanId: SID, sampled: true }, format: 'b3' } });
  assert.deepEqual(parseB3Single(`0123456789abcdef-${SID}-0-${'1'.repeat(16)}`),
    { kind: 'context', value: { context: { traceId: '00000000000000000123456789abcdef', spanId: SID, sampled: false }, format: 'b3' } });
  assert.deepEqual(parseB3Single(`${TID}-${SID}-d`)?.kind, 'context');
  assert.deepEqual(parseB3Single('0'), { kind: 'none', sampled: false });
  for (const bad of [`${TID}-${SID}-x`, `${TID}`, `${'0'.repeat(32)}-${SID}`, `${TID}-${'0'.repeat(16)}`, `${TID}-${SID}-1-zz`, 'a-b-c-d-e']) {
    assert.equal(parseB3Single(bad), undefined, bad);
  }
  assert.deepEqual(extractContext({ 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-sampled': '1' }),
    { kind: 'context', value: { context: { traceId: TID, spanId: SID, sampled: true }, format: 'b3multi' } });
  assert.deepEqual(extractContext({ 'x-b3-traceid': TID }), { kind: 'none' }, 'a trace id without a span id');
  assert.deepEqual(extractContext({ 'x-b3-sampled': '0' }), { kind: 'none', sampled: false });
  const debug = extractContext({ 'x-b3-traceid': TID, 'x-b3-spanid': SID, 'x-b3-sampled': '0', 'x-b3-flags': '1' });
  assert.equal(debug.kind === 'context' && debug.value.context.sampled, true, 'debug flag samples');
});

test('tracing context: outgoing fields carry the context as traceparent plus each B3 form the request had', () => {
  const c = { traceId: TID, spanId: 'b'.repeat(16), sampled: true, traceState: 'a=1' };
  assert.deepEqual(outgoingFields(c, { b3: false, b3multi: false }, SID), ['traceparent', `00-${TID}-${'b'.repeat(16)}-01`, 'tracestate', 'a=1']);
  assert.deepEqual(outgoingFields({ ...c, traceState: undefined as never }, { b3: true, b3multi: true }, SID).slice(2), [
    'b3', `${TID}-${'b'.repeat(16)}-1-${SID}`,
    'x-b3-traceid', TID, 'x-b3-spanid', 'b'.repeat(16), 'x-b3-sampled', '1', 'x-b3-parentspanid', SID]);
});

test('sampling: ratio by trace id bits (same id, same answer at every hop), 0 and 100 exact', () => {
  assert.equal(sampledByRatio(TID, 100), true);
  assert.equal(sampledByRatio(TID, 0), false);
  assert.equal(sampledByRatio(`${'f'.repeat(18)}00000000000000`, 1), true);
  assert.equal(sampledByRatio(`${'0'.repeat(18)}ffffffffffffff`, 99), false);
  let n = 0;
  for (let i = 0; i < 10_000; i++) if (sampledByRatio(`${'0'.repeat(18)}${(i * 7_205_759_403_792).toString(16).padStart(14, '0').slice(-14)}`, 25)) n++;
  assert.ok(n > 2_000 && n < 3_000, `25 % of evenly spread ids: ${n}`);
});

function collectTracer(o: { samplingPercent: number; serviceName?: string } = { samplingPercent: 0 }): { tracer: Tracer; spans: FinishedSpan[] } {
  const spans: FinishedSpan[] = [];
  let t = 1_700_000_000_000;
  return { spans, tracer: new Tracer({ ...o, sink: { add: (s) => spans.push(s) }, node: 'n2', now: () => (t += 1.5) }) };
}

test('tracer: a sampled incoming trace gets a child span whose context goes on; end() records it once with the HTTP conventions', () => {
  const { tracer, spans } = collectTracer();
  const span = tracer.start({ method: 'GET', path: '/a/b?x=1', host: 'api.shop:8080', headers: { traceparent: `00-${TID}-${SID}-01` }, protocol: 'http2' }, 'destination')!;
  assert.equal(span.context.traceId, TID);
  assert.notEqual(span.context.spanId, SID);
  assert.equal(span.outgoing[1], `00-${TID}-${span.context.spanId}-01`);
  span.end({ ends: ENDS, security: 'mutual_tls', status: 503, flags: '-' });
  span.end({ ends: ENDS, security: 'mutual_tls', status: 200 });
  assert.equal(spans.length, 1);
  const s = spans[0]!;
  assert.equal(s.parentSpanId, SID);
  assert.equal(s.kind, 'server');
  assert.equal(s.service, 'api.shop');
  assert.equal(s.endMs - s.startMs, 1.5);
  assert.equal(s.error, 'HTTP 503');
  const a = Object.fromEntries(s.attributes);
  assert.equal(a['url.path'], '/a/b');
  assert.equal(a['url.query'], 'x=1');
  assert.equal(a['server.address'], 'api.shop');
  assert.equal(a['server.port'], 8080);
  assert.equal(a['http.response.status_code'], 503);
  assert.equal(a['network.protocol.version'], '2');
  assert.equal(a['client.address'], '10.0.1.2');
  assert.equal(a['error.type'], '503');
});

test('tracer: a client span errs on 4xx; serviceName overrides the workload name; no response is an error', () => {
  const { tracer, spans } = collectTracer({ samplingPercent: 0, serviceName: 'mesh' });
  const tp = { traceparent: `00-${TID}-${SID}-01` };
  tracer.start({ method: 'POST', path: '/', host: 'api', headers: tp }, 'source')!.end({ ends: ENDS, security: 'mutual_tls', status: 404 });
  tracer.start({ method: 'POST', path: '/', host: 'api', headers: tp }, 'destination')!.end({ ends: ENDS, security: 'none', status: 404 });
  tracer.start({ method: 'POST', path: '/', host: 'api', headers: tp }, 'destination')!.end({ ends: ENDS, security: 'none', status: 0, error: 'upstream reset' });
  assert.deepEqual(spans.map((s) => [s.kind, s.service, s.error]), [['client', 'mesh', 'HTTP 404'], ['server', 'mesh', undefined], ['server', 'mesh', 'upstream reset']]);
  assert.equal(Object.fromEntries(spans[0]!.attributes)['network.peer.address'], '10.0.2.3', 'a client span\'s peer is the endpoint');
});

test('tracer: unsampled incoming → no span (headers pass); new traces follow the ratio and propagate their decision', () => {
  const { tracer, spans } = collectTracer({ samplingPercent: 0 });
  assert.equal(tracer.start({ method: 'GET', path: '/', host: 'h', headers: { traceparent: `00-${TID}-${SID}-00` } }, 'destination'), undefined);
  assert.equal(tracer.start({ method: 'GET', path: '/', host: 'h', headers: { b3: '0' } }, 'destination'), undefined);
  const fresh = tracer.start({ method: 'GET', path: '/', host: 'h', headers: {} }, 'source')!;
  assert.equal(fresh.recording, false);
  assert.match(fresh.outgoing[1]!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  fresh.end({ ends: ENDS, security: 'none', status: 200 });
  assert.equal(spans.length, 0);
  const all = collectTracer({ samplingPercent: 100 });
  const root = all.tracer.start({ method: 'GET', path: '/', host: 'h', headers: {} }, 'source')!;
  root.end({ ends: ENDS, security: 'none', status: 200 });
  assert.equal(all.spans.length, 1);
  assert.equal(all.spans[0]!.parentSpanId, undefined);
  assert.equal(all.spans[0]!.remoteParent, false);
});

test('tracer: inject() replaces every trace field of an outgoing header map', () => {
  const { tracer } = collectTracer();
  const span = tracer.start({ method: 'GET', path: '/', host: 'h', headers: { traceparent: `00-${TID}-${SID}-01`, 'x-b3-traceid': TID, 'x-b3-spanid': SID } }, 'source')!;
  const headers: Record<string, string | string[] | undefined> = { traceparent: 'old', 'x-b3-flags': '1', 'x-b3-spanid': SID, accept: '*/*' };
  span.inject(headers);
  assert.equal(headers.traceparent, `00-${TID}-${span.context.spanId}-01`);
  assert.equal(headers['x-b3-spanid'], span.context.spanId);
  assert.equal(headers['x-b3-flags'], undefined);
  assert.equal(headers.accept, '*/*');
});

test('splitAuthority: host, host:port, [v6]:port', () => {
  assert.deepEqual(splitAuthority('api.shop'), { address: 'api.shop' });
  assert.deepEqual(splitAuthority('10.0.0.1:80'), { address: '10.0.0.1', port: 80 });
  assert.deepEqual(splitAuthority('[fd00::1]:8080'), { address: 'fd00::1', port: 8080 });
});

function span(i: number, over: Partial<FinishedSpan> = {}): FinishedSpan {
  return { traceId: TID, spanId: (i + 1).toString(16).padStart(16, '0'), parentSpanId: SID, name: 'GET', kind: 'server', startMs: 1_700_000_000_123.5, endMs: 1_700_000_000_125,
    service: 'api.shop', attributes: [['http.response.status_code', 200], ['url.path', '/ü'], ['ok', true], ['ratio', 0.5], ['long', 'x'.repeat(300)]], remoteParent: true, ...over };
}

test('OTLP protobuf: what the encoder writes decodes (independent decoder) to the same spans, grouped by service', () => {
  const body = encodeExportRequest({ resource: [['k8s.node.name', 'n2']], scope: { name: 'weft', version: '0.1.0' },
    spans: [span(0), span(1, { service: 'db.shop', kind: 'client', error: 'HTTP 502', traceState: 'a=1' }), span(2)] });
  const got = decodeExportTraceRequest(body);
  assert.deepEqual(got.map((s) => [s.resource['service.name'], s.spanId]), [['api.shop', '0000000000000001'], ['api.shop', '0000000000000003'], ['db.shop', '0000000000000002']]);
  const s = got[0]!;
  assert.equal(s.traceId, TID);
  assert.equal(s.parentSpanId, SID);
  assert.equal(s.kind, 2);
  assert.equal(s.startNanos, '1700000000123500000');
  assert.equal(s.endNanos, '1700000000125000000');
  assert.deepEqual(s.attributes, { 'http.response.status_code': 200, 'url.path': '/ü', ok: true, ratio: 0.5, long: 'x'.repeat(300) });
  assert.equal(s.resource['k8s.node.name'], 'n2');
  assert.equal(s.scope, 'weft');
  assert.equal(s.flags, 0x301);
  const c = got[2]!;
  assert.deepEqual([c.kind, c.statusCode, c.statusMessage, c.traceState], [3, 2, 'HTTP 502', 'a=1']);
  assert.equal(unixNanos(0.000001), 1n);
});

test('OTLP endpoint URL: a bare collector address gets /v1/traces; other schemes and junk are refused with the field named', () => {
  const href = (e: string) => { const r = tracesUrl(e); return r.ok ? r.value.href : r.error; };
  assert.equal(href('http://collector:4318'), 'http://collector:4318/v1/traces');
  assert.equal(href('https://c/custom/path'), 'https://c/custom/path');
  assert.equal(tracesUrl('grpc://c:4317').ok, false);
  assert.throws(() => new OtlpExporter({ endpoint: 'nope' }), /spec\.tracing\.otlpEndpoint/);
});

async function collector(status: number): Promise<{ url: string; bodies: Buffer[]; close: () => Promise<void> }> {
  const bodies: Buffer[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => { bodies.push(Buffer.concat(chunks)); res.statusCode = status; res.end(status === 200 ? '' : 'collector says no'); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, bodies,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

test('OTLP exporter: batches of maxBatch go to the collector as protobuf; flush sends the rest', async () => {
  const c = await collector(200);
  const ex = new OtlpExporter({ endpoint: c.url, maxBatch: 4, flushMs: 60_000 });
  for (let i = 0; i < 10; i++) ex.add(span(i));
  await ex.flush();
  assert.deepEqual(c.bodies.map((b) => decodeExportTraceRequest(b).length), [4, 4, 2]);
  assert.equal(ex.stats.exported, 10);
  assert.equal(ex.stats.queued, 0);
  await ex.close();
  await c.close();
});

test('OTLP exporter: a full queue drops and counts; a refusing or absent collector costs the batch, counted, and the exporter goes on', async () => {
  const c = await collector(503);
  const ex = new OtlpExporter({ endpoint: c.url, maxQueue: 5, maxBatch: 100, flushMs: 60_000 });
  for (let i = 0; i < 8; i++) ex.add(span(i));
  assert.equal(ex.stats.droppedQueueFull, 3);
  assert.equal(ex.stats.queued, 5);
  await ex.flush();
  assert.equal(ex.stats.droppedExportFailed, 5);
  assert.match(ex.stats.lastError ?? '', /collector answered 503: collector says no/);
  await c.close();
  const url = c.url;
  const down = new OtlpExporter({ endpoint: url, flushMs: 60_000 });
  down.add(span(0));
  await down.flush();
  assert.equal(down.stats.droppedExportFailed, 1);
  assert.match(down.stats.lastError ?? '', /ECONNREFUSED/);
  down.destroy();
  await ex.close();
});

test('ProxyConfig spec.tracing: read with defaults; absent means off; bad fields are named', () => {
  const doc = (tracing: unknown) => `apiVersion: config.weft.dev/v1\nkind: ProxyConfig\nmetadata: {name: default}\nspec: ${JSON.stringify({ tracing })}\n`;
  const on = parseConfig(doc({ otlpEndpoint: 'http://c:4318/v1/traces' }), 'test.yaml');
  assert.equal(on.ok, true, JSON.stringify(on));
  if (on.ok) assert.deepEqual(on.value.proxyConfig?.tracing, { otlpEndpoint: 'http://c:4318/v1/traces', samplingPercent: 1 });
  const off = parseConfig('apiVersion: config.weft.dev/v1\nkind: ProxyConfig\nmetadata: {name: default}\nspec: {}\n', 'test.yaml');
  assert.equal(off.ok && off.value.proxyConfig?.tracing, undefined);
  for (const [tracing, field] of [
    [{ otlpEndpoint: 'ftp://c' }, 'spec.tracing.otlpEndpoint'],
    [{ samplingPercent: 5 }, 'spec.tracing.otlpEndpoint'],
    [{ otlpEndpoint: 'http://c', samplingPercent: 101 }, 'spec.tracing.samplingPercent'],
    [{ otlpEndpoint: 'http://c', sampling: 5 }, 'spec.tracing.sampling'],
    [{ otlpEndpoint: 'http://c', serviceName: '' }, 'spec.tracing.serviceName'],
    ['yes', 'spec.tracing'],
  ] as const) {
    const r = parseConfig(doc(tracing), 'test.yaml');
    assert.equal(r.ok, false, JSON.stringify(tracing));
    if (!r.ok) assert.ok(JSON.stringify(r.error).includes(field), `${JSON.stringify(r.error)} names ${field}`);
  }
});
