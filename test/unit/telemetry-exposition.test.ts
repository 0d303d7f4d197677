/**
 * Istio's series written by Weft itself (series.ts, exposition.ts, exposition-registry.ts, serve.ts)
 * against prom-client as the reference: the same events fed to MeshMetrics and to prom-client
 * Counters and Histograms (with the labels labels.ts derives) give the same text, byte for byte,
 * also for label values that need escaping. Then what prom-client never did: one document with
 * prom-client's own families, streamed, gzip when asked, values that would have thrown.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { emptySnapshot, type PodInfo } from '../../agent/config/objects';
import { WorkloadStore } from '../../agent/state/store';
import { DENIAL_LABELS, denialLabels } from '../../agent/telemetry/denials';
import { connectionClosed, connectionOpened, requestCompleted, type ConnectionEnds, type ConnectionOpenedEvent, type RequestCompletedEvent, type ResponseFlags } from '../../agent/telemetry/events';
import { escapeLabelValue, labelPairs, sampleValue } from '../../agent/telemetry/exposition';
import { ExpositionRegistry } from '../../agent/telemetry/exposition-registry';
import { HTTP_LABELS, httpLabels, TCP_LABELS, tcpLabels } from '../../agent/telemetry/labels';
import { ISTIO_BUCKETS, MeshMetrics } from '../../agent/telemetry/metrics';
import { bucketOf, FAMILIES } from '../../agent/telemetry/series';
import { acceptsGzip, serveMetrics } from '../../agent/telemetry/serve';

const pod = (name: string, ip: string, labels: Record<string, string>): PodInfo =>
  ({ namespace: 'shop', name, labels, annotations: {}, nodeName: 'n1', serviceAccount: name, ips: [ip] });
// Label values a pod may carry that the text format must escape: backslash, double quote, newline, and UTF-8.
const WEB = pod('web', '10.1.0.5', { app: 'web', version: 'v1 "quoted" \\ back\nslash' });
const API = pod('api', '10.1.0.7', { app: 'api', 'service.istio.io/canonical-name': 'api-ü' });
const BOT = pod('bot', '10.1.0.4', { app: 'bot' });
const store = new WorkloadStore({ ...emptySnapshot(), namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }], pods: [WEB, API, BOT],
  services: [{ namespace: 'shop', name: 'api', labels: {}, selector: { app: 'api' }, clusterIPs: [], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] }] });
const endsOf = (src: PodInfo, srcPort: number): ConnectionEnds =>
  ({ direction: 'inbound', srcIp: src.ips[0]!, srcPort, src: store.workloadRef(src), dstIp: '10.1.0.7', dstPort: 8080, dst: store.workloadRef(API) });
const ENDS = [endsOf(WEB, 1), endsOf(BOT, 2), { direction: 'inbound', srcIp: '192.0.2.9', srcPort: 3, dstIp: '10.1.0.7', dstPort: 8080, dst: store.workloadRef(API) } as ConnectionEnds];

/** A small deterministic generator (the same events every run). */
function rng(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

/** prom-client as it held these series before: the reference the new text must equal. */
class Reference {
  readonly registry = new Registry();
  private readonly r = [this.registry];
  private readonly http = [...HTTP_LABELS];
  private readonly tcp = [...TCP_LABELS];
  private readonly buckets = [...ISTIO_BUCKETS];
  readonly requests = new Counter({ ...FAMILIES.requests, labelNames: this.http, registers: this.r });
  readonly duration = new Histogram({ ...FAMILIES.duration, labelNames: this.http, buckets: this.buckets, registers: this.r });
  readonly requestBytes = new Histogram({ ...FAMILIES.requestBytes, labelNames: this.http, buckets: this.buckets, registers: this.r });
  readonly responseBytes = new Histogram({ ...FAMILIES.responseBytes, labelNames: this.http, buckets: this.buckets, registers: this.r });
  readonly tcpSent = new Counter({ ...FAMILIES.tcpSent, labelNames: this.tcp, registers: this.r });
  readonly tcpReceived = new Counter({ ...FAMILIES.tcpReceived, labelNames: this.tcp, registers: this.r });
  readonly tcpOpened = new Counter({ ...FAMILIES.tcpOpened, labelNames: this.tcp, registers: this.r });
  readonly tcpClosed = new Counter({ ...FAMILIES.tcpClosed, labelNames: this.tcp, registers: this.r });
  readonly denials = new Counter({ name: 'weft_authorization_denials_total', help: 'Requests and TCP connections denied by authorization policy, by the deciding policy (default-deny: ALLOW policies in force, none matched)',
    labelNames: [...DENIAL_LABELS], registers: this.r });

  request(ev: RequestCompletedEvent): void {
    const l = httpLabels(ev, store);
    this.requests.inc(l);
    this.duration.observe(l, ev.durationMs);
    this.requestBytes.observe(l, ev.requestBytes);
    this.responseBytes.observe(l, ev.responseBytes);
    if (ev.flags === 'DENY') this.denials.inc(denialLabels(l, ev.policy));
  }

  private tcpSeries(ev: ConnectionOpenedEvent, flags: ResponseFlags) {
    const l = tcpLabels(ev, flags, store);
    for (const c of [this.tcpClosed, this.tcpSent, this.tcpReceived, this.tcpOpened]) c.inc(l, 0);
    return l;
  }

  opened(ev: ConnectionOpenedEvent): void {
    this.tcpOpened.inc(this.tcpSeries(ev, '-'));
  }

  closed(ev: ConnectionOpenedEvent & { bytesFromClient: number; bytesToClient: number; flags: ResponseFlags; policy?: string }): void {
    const l = this.tcpSeries(ev, ev.flags);
    this.tcpClosed.inc(l);
    this.tcpReceived.inc(l, ev.bytesFromClient);
    this.tcpSent.inc(l, ev.bytesToClient);
    if (ev.flags === 'DENY') this.denials.inc(denialLabels(l, ev.policy));
  }
}

/** Feeds the same `n` random events to the proxy's channels (MeshMetrics listening) and to the reference. */
function feed(ref: Reference, n: number, seed: number): void {
  const next = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  for (let i = 0; i < n; i++) {
    const base = { reporter: pick(['source', 'destination'] as const), security: pick(['mutual_tls', 'none'] as const), ends: pick(ENDS) };
    const kind = next();
    if (kind < 0.6) {
      const flags = pick(['-', '-', '-', 'DENY', 'UPSTREAM_TIMEOUT'] as const);
      const ev: RequestCompletedEvent = { ...base, protocol: pick(['http', 'grpc'] as const), status: flags === 'DENY' ? 403 : pick([200, 200, 404, 503]),
        ...(next() < 0.3 ? { grpcStatus: pick(['0', '14']) } : {}), requestBytes: Math.floor(next() * 5000), responseBytes: Math.floor(next() ** 3 * 4e6),
        // durations on and between the bounds, fractions included
        durationMs: next() < 0.2 ? pick(ISTIO_BUCKETS) : Math.round(next() ** 4 * 4e6 * 1000) / 1000, flags,
        ...(flags === 'DENY' && next() < 0.5 ? { policy: 'shop/deny-bot' } : {}) };
      requestCompleted.publish(ev);
      ref.request(ev);
    } else if (kind < 0.8) {
      connectionOpened.publish(base);
      ref.opened(base);
    } else {
      const flags = pick(['-', '-', 'DENY', 'CONNECT'] as const);
      const ev = { ...base, bytesFromClient: Math.floor(next() * 1e6), bytesToClient: Math.floor(next() * 1e7), flags, ...(flags === 'DENY' ? { policy: 'shop/deny-tcp' } : {}) };
      connectionClosed.publish(ev);
      ref.closed(ev);
    }
  }
}

const get = (port: number, headers: Record<string, string>) => new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, path: '/metrics', headers }, (res) => {
    const chunks: Buffer[] = [];
    res.on('data', (d: Buffer) => chunks.push(d));
    res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    res.on('error', reject);
  }).on('error', reject);
});

describe('Istio series outside prom-client', () => {
  it('the same events give the text prom-client wrote, byte for byte (names, HELP/TYPE, label order and escaping, le, cumulative buckets, sums, counts, denials)', async () => {
    const m = new MeshMetrics().subscribe();
    m.setStore(store);
    const ref = new Reference();
    try {
      feed(ref, 3000, 7);
      const ours = await m.metrics();
      assert.equal(ours, await ref.registry.metrics());
      assert.match(ours, /version="v1 \\"quoted\\" \\\\ back\\nslash"/, 'backslash, quote and newline escaped');
      assert.match(ours, /canonical_service="api-ü"/);
      assert.ok(m.series > 20, `${m.series} label sets`);
    } finally {
      m.unsubscribe();
    }
  });

  it('bucket search: a value on a bound falls in it (le is <=), above the last bound only +Inf', () => {
    assert.equal(bucketOf(0), 0);
    assert.equal(bucketOf(0.5), 0);
    assert.equal(bucketOf(0.51), 1);
    assert.equal(bucketOf(7), 3);
    assert.equal(bucketOf(3_600_000), ISTIO_BUCKETS.length - 1);
    assert.equal(bucketOf(3_600_001), ISTIO_BUCKETS.length);
    assert.equal(bucketOf(-1), 0, 'prom-client counts a negative observation in the first bucket');
  });

  it('formatting helpers: escaping, label order as given, values as prom-client prints them', () => {
    assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    assert.equal(labelPairs({ z: '1', a: '"' }), 'z="1",a="\\""');
    assert.deepEqual([0.5, 1, 1e21, NaN, Infinity, -Infinity].map(sampleValue), ['0.5', '1', '1e+21', 'Nan', '+Inf', '-Inf']);
  });

  it('values prom-client would have thrown on are not counted, and do not throw into publish()', async () => {
    const m = new MeshMetrics().subscribe();
    m.setStore(store);
    try {
      const ends = ENDS[0]!;
      requestCompleted.publish({ reporter: 'destination', security: 'mutual_tls', ends, protocol: 'http', status: 200, requestBytes: NaN, responseBytes: Infinity, durationMs: 3, flags: '-' });
      connectionClosed.publish({ reporter: 'destination', security: 'mutual_tls', ends, bytesFromClient: -5, bytesToClient: NaN, flags: '-' });
      const text = await m.metrics();
      assert.match(text, /^istio_requests_total\{[^}]*\} 1$/m);
      assert.match(text, /^istio_request_duration_milliseconds_count\{[^}]*\} 1$/m);
      assert.match(text, /^istio_request_bytes_count\{[^}]*\} 0$/m, 'NaN not observed');
      assert.match(text, /^istio_response_bytes_count\{[^}]*\} 0$/m, 'Infinity not observed');
      assert.match(text, /^istio_tcp_received_bytes_total\{[^}]*\} 0$/m, 'a counter does not go down');
      assert.match(text, /^istio_tcp_sent_bytes_total\{[^}]*\} 0$/m);
      assert.match(text, /^istio_tcp_connections_closed_total\{[^}]*\} 1$/m);
    } finally {
      m.unsubscribe();
    }
  });

  it('one document: prom-client\'s families, then Istio\'s, each # HELP/# TYPE once; the Istio families are not in prom-client; gone after unsubscribe, from zero after subscribe', async () => {
    const registry = new ExpositionRegistry();
    const m = new MeshMetrics(registry).subscribe();
    new Gauge({ name: 'weft_example', help: 'a prom-client gauge', registers: [registry] }).set(3);
    try {
      requestCompleted.publish({ reporter: 'source', security: 'mutual_tls', ends: ENDS[0]!, protocol: 'http', status: 200, requestBytes: 1, responseBytes: 1, durationMs: 1, flags: '-' });
      let text = await registry.metrics();
      const helps = [...text.matchAll(/^# HELP (\S+)/gm)].map((x) => x[1]!);
      assert.deepEqual(helps, ['weft_example', ...Object.values(FAMILIES).map((f) => f.name), 'weft_authorization_denials_total']);
      assert.equal(new Set(helps).size, helps.length, 'no family twice');
      assert.equal([...text.matchAll(/^# TYPE /gm)].length, helps.length);
      assert.match(text, /^weft_example 3\n\n# HELP istio_requests_total /m, 'a blank line between families');
      assert.ok(text.endsWith('\n') && !text.endsWith('\n\n'));
      assert.deepEqual(registry.getMetricsAsArray().map((x) => (x as unknown as { name: string }).name), ['weft_example'], 'prom-client holds only its own');
      m.unsubscribe();
      text = await registry.metrics();
      assert.doesNotMatch(text, /istio_|weft_authorization/, 'nothing frozen while not listening');
      assert.match(text, /^weft_example 3$/m);
      m.subscribe();
      text = await registry.metrics();
      assert.match(text, /^# TYPE istio_requests_total counter$/m);
      assert.doesNotMatch(text, /^istio_requests_total\{/m, 'counting again from zero');
    } finally {
      m.unsubscribe();
    }
  });

  it('/metrics: the same document plain (with its length) or gzip when the scraper accepts it; 500 naming the failure when collecting fails; a scraper hanging up mid-way does not stop the next scrape', async () => {
    const m = new MeshMetrics().subscribe();
    m.setStore(store);
    const srv = await serveMetrics('127.0.0.1', 0, m.registry);
    const port = (srv.address() as AddressInfo).port;
    try {
      feed(new Reference(), 3000, 11);
      // enough series for several chunks and pauses
      for (let i = 0; i < 400; i++) requestCompleted.publish({ reporter: 'source', security: 'mutual_tls', ends: { ...ENDS[0]!, srcPort: i }, protocol: 'http', status: 200 + (i % 300), requestBytes: i, responseBytes: i, durationMs: i, flags: '-' });
      const expected = await m.metrics();
      assert.ok(expected.length > 2 * (1 << 20), `${expected.length} bytes: more than one chunk`);
      const plain = await get(port, {});
      assert.equal(plain.status, 200);
      assert.match(String(plain.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      assert.equal(plain.headers['content-encoding'], undefined);
      assert.equal(plain.body.toString('utf8'), expected);
      const gz = await get(port, { 'accept-encoding': 'gzip' });
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.ok(gz.body.length * 10 < expected.length, `${gz.body.length} compressed bytes of ${expected.length}`);
      assert.equal(zlib.gunzipSync(gz.body).toString('utf8'), expected);

      // A scraper that reads a little and hangs up.
      await new Promise<void>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
          res.once('data', () => { req.destroy(); resolve(); });
        });
        req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
      });
      assert.equal((await get(port, {})).body.toString('utf8'), expected);

      new Gauge({ name: 'weft_broken', help: 'fails to collect', registers: [m.registry], collect() { throw new Error('node state unreadable'); } });
      const failed = await get(port, {});
      assert.equal(failed.status, 500);
      assert.match(failed.body.toString('utf8'), /collecting metrics failed: node state unreadable/);
    } finally {
      await new Promise((r) => srv.close(r));
      m.unsubscribe();
    }
  });

  it('Accept-Encoding: gzip only when admitted', () => {
    assert.equal(acceptsGzip(undefined), false);
    assert.equal(acceptsGzip('identity'), false);
    assert.equal(acceptsGzip('gzip'), true);
    assert.equal(acceptsGzip('deflate, GZIP;q=0.5'), true);
    assert.equal(acceptsGzip('gzip;q=0'), false);
    assert.equal(acceptsGzip('*'), true);
  });
});
