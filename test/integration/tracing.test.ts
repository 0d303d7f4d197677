/**
 * Tracing on real namespaces: two nodes, a control plane and an agent per node, a test OTLP/HTTP
 * collector (a tiny Node server in n1's netns that decodes the protobuf it receives and prints one
 * JSON line per span). A request with an incoming traceparent crosses two proxies (web on n1 → api
 * on n2, whose application calls db on n1 with the traceparent it received): each proxy exports its
 * span with the right parent, the trace id is kept, the applications see the proxies' spans as
 * their parents; B3 input is accepted; with tracing off nothing is sent and headers pass unchanged.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod, curl, startHttpServer } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { kernelTestBlocker } from '../support/requirements';
import type { DecodedSpan } from '../support/otlp-decode';

const blocker = kernelTestBlocker();
const COLLECTOR_PORT = 14318;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The test collector: POST /v1/traces (protobuf) → one `SPAN {json}` line per span on stdout; 200 with an empty ExportTraceServiceResponse. */
const COLLECTOR = `
const { decodeExportTraceRequest } = require(process.argv[1]);
require('http').createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/x-protobuf') {
      console.log('BAD ' + JSON.stringify({ url: req.url, type: req.headers['content-type'] }));
      res.statusCode = 415; return res.end();
    }
    try { for (const s of decodeExportTraceRequest(Buffer.concat(chunks))) console.log('SPAN ' + JSON.stringify(s)); }
    catch (e) { console.log('BAD ' + JSON.stringify({ error: e.message })); res.statusCode = 400; return res.end(); }
    res.setHeader('content-type', 'application/x-protobuf'); res.end();
  });
}).listen(Number(process.argv[2]), '0.0.0.0', () => console.log('listening'));`;

/** api's application: answers with the headers it received and what db answered when called with the same trace headers. */
const RELAY = `
const [port, next] = process.argv.slice(1);
const http = require('http');
const TRACE = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-parentspanid'];
http.createServer((req, res) => {
  req.resume();
  const headers = {};
  for (const h of TRACE) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
  http.get('http://' + next + req.url, { headers }, (up) => {
    let body = ''; up.setEncoding('utf8'); up.on('data', (d) => body += d);
    up.on('end', () => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ received: req.headers, db: JSON.parse(body) })); });
  }).on('error', (e) => { res.statusCode = 502; res.end(e.message); });
}).listen(Number(port), '::', () => console.log('listening'));`;

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';

describe('tracing: spans for each proxy hop at an OTLP/HTTP endpoint', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, web: LabPod, api: LabPod, db: LabPod;
  let cp: AgentHandle, agent1: AgentHandle, agent2: AgentHandle, collector: ChildProcess, relay: ChildProcess;
  let dir: string, configPath: string;
  const spans: DecodedSpan[] = [];
  const bad: string[] = [];
  const extra: object[] = [];
  const writeConfig = () => writeFileSync(configPath, lab.yaml({ meshNamespaces: ['shop'], extra }));
  const tracingConfig = (samplingPercent: number) => ({ apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' },
    spec: { tracing: { otlpEndpoint: `http://${n1.ip}:${COLLECTOR_PORT}/v1/traces`, samplingPercent } } });

  /** Spans of `traceId` once `count` have arrived (bounded wait: the exporter sends within ~1 s). */
  async function spansOf(traceId: string, count: number): Promise<DecodedSpan[]> {
    for (let i = 0; i < 100; i++) {
      const got = spans.filter((s) => s.traceId === traceId);
      if (got.length >= count) return got;
      await sleep(100);
    }
    assert.fail(`expected ${count} spans of trace ${traceId} at the collector; have ${JSON.stringify(spans.filter((s) => s.traceId === traceId))}; bad: ${bad.join(' ')}`);
  }

  /** Waits until both agents trace (a sampled request gets a span from each proxy), or fails. */
  async function untilTracing(): Promise<void> {
    for (let i = 0; i < 60; i++) {
      const id = (0xabc000 + i).toString(16).padStart(32, '0');
      const r = await curl(web, `http://${api.ip}:8080/warmup`, { args: ['-H', `traceparent: 00-${id}-${CLIENT_SPAN}-01`] });
      if (r.status === 200 && JSON.parse(r.body).received.traceparent !== `00-${id}-${CLIENT_SPAN}-01`) {
        const db2 = JSON.parse(r.body).db.headers.traceparent as string;
        if (db2 !== JSON.parse(r.body).received.traceparent) return;
      }
      await sleep(250);
    }
    assert.fail('the agents did not start tracing after ProxyConfig spec.tracing was set');
  }

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'trc' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    web = await n1.pod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    db = await n1.pod('db', { namespace: 'shop', serviceAccount: 'db', labels: { app: 'db' } });
    api = await n2.pod('api', { namespace: 'shop', serviceAccount: 'api', labels: { app: 'api' } });
    dir = mkdtempSync(join(tmpdir(), 'weft-trc-'));
    configPath = join(dir, 'mesh.yaml');
    // Tracing off at first.
    writeConfig();
    const dbServer = startHttpServer(db, 8080);
    relay = api.spawn(process.execPath, ['-e', RELAY, '8080', `${db.ip}:8080`]);
    collector = n1.spawn(process.execPath, ['-e', COLLECTOR, join(__dirname, '..', 'support', 'otlp-decode.js'), String(COLLECTOR_PORT)]);
    const lines = (child: ChildProcess, on: (line: string) => void) => {
      let buf = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) { on(buf.slice(0, i)); buf = buf.slice(i + 1); }
      });
    };
    const ready = (child: ChildProcess, what: string) => new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${what} did not start`)), 10_000);
      lines(child, (l) => { if (l === 'listening') { clearTimeout(t); resolve(); } });
    });
    const collectorReady = ready(collector, 'the test collector');
    lines(collector, (l) => {
      if (l.startsWith('SPAN ')) spans.push(JSON.parse(l.slice(5)) as DecodedSpan);
      else if (l.startsWith('BAD ')) bad.push(l);
    });
    await Promise.all([dbServer.ready, ready(relay, 'the relay in api'), collectorReady]);
    cp = startControlPlane(n1, configPath, join(dir, 'data'));
    await cp.ready;
    const cpAddress = `${n1.ip}:${CONTROL_PLANE_PORT}`;
    agent1 = startNodeAgent(n1, cpAddress, join(dir, 'data'));
    agent2 = startNodeAgent(n2, cpAddress, join(dir, 'data'));
    await Promise.all([agent1.ready, agent2.ready]);
  });

  after(async () => {
    if (blocker) return;
    for (const p of [agent1, agent2, cp]) await p?.kill('SIGKILL');
    for (const n of [n1, n2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('tracing off: the applications see the traceparent as sent and nothing reaches the collector', async () => {
    const tp = `00-${'1'.repeat(32)}-${CLIENT_SPAN}-01`;
    const r = await curl(web, `http://${api.ip}:8080/off`, { args: ['-H', `traceparent: ${tp}`, '-H', 'tracestate: vendor=x'] });
    assert.equal(r.status, 200, r.stderr + r.body);
    const body = JSON.parse(r.body);
    assert.equal(body.received.traceparent, tp);
    assert.equal(body.received.tracestate, 'vendor=x');
    assert.equal(body.db.headers.traceparent, tp);
    // Both agents serve traffic (the request crossed both proxies); give a would-be exporter its flush interval.
    await sleep(1500);
    assert.equal(spans.length, 0, `spans sent with tracing off: ${JSON.stringify(spans)}`);
    assert.deepEqual(bad, []);
  });

  test('a request with an incoming traceparent yields a span per proxy hop, each the parent of the next, trace id kept', async () => {
    extra.push(tracingConfig(0));
    writeConfig();
    await untilTracing();
    const tp = `00-${TRACE_ID}-${CLIENT_SPAN}-01`;
    const r = await curl(web, `http://${api.ip}:8080/items?id=7`, { args: ['-H', `traceparent: ${tp}`, '-H', 'tracestate: congo=t61rcWkgMzE', '-H', 'user-agent: trc-test'] });
    assert.equal(r.status, 200, r.stderr + r.body);
    const body = JSON.parse(r.body);
    const got = await spansOf(TRACE_ID, 2);
    assert.equal(got.length, 2, JSON.stringify(got));
    const atApi = got.find((s) => s.attributes['weft.destination.workload'] === 'api')!;
    const atDb = got.find((s) => s.attributes['weft.destination.workload'] === 'db')!;
    assert.ok(atApi && atDb, JSON.stringify(got));
    // The chain: client span → n2's proxy span → api; api's call → n1's proxy span → db.
    assert.equal(atApi.parentSpanId, CLIENT_SPAN);
    assert.equal(body.received.traceparent, `00-${TRACE_ID}-${atApi.spanId}-01`, 'api sees n2\'s proxy span as its parent');
    assert.equal(atDb.parentSpanId, atApi.spanId, 'n1\'s span is a child of what api sent (n2\'s span)');
    assert.equal(body.db.headers.traceparent, `00-${TRACE_ID}-${atDb.spanId}-01`, 'db sees n1\'s proxy span as its parent');
    assert.equal(body.received.tracestate, 'congo=t61rcWkgMzE', 'tracestate passed on');
    for (const s of got) {
      assert.equal(s.kind, 2, 'SERVER spans at the destination hops');
      assert.equal(s.traceState, 'congo=t61rcWkgMzE');
      assert.equal(s.statusCode, 0);
      assert.equal(s.scope, 'weft');
      assert.ok(BigInt(s.endNanos) >= BigInt(s.startNanos) && BigInt(s.startNanos) > 1_600_000_000n * 1_000_000_000n, `${s.startNanos}..${s.endNanos}`);
      assert.equal(s.flags & 0x300, 0x300, 'the parent is marked remote');
    }
    const a = atApi.attributes;
    assert.equal(atApi.name, 'GET');
    assert.equal(atApi.resource['service.name'], 'api.shop');
    assert.equal(atApi.resource['k8s.node.name'], n2.name);
    assert.equal(a['http.request.method'], 'GET');
    assert.equal(a['http.method'], 'GET');
    assert.equal(a['http.response.status_code'], 200);
    assert.equal(a['http.status_code'], 200);
    assert.equal(a['url.path'], '/items');
    assert.equal(a['url.query'], 'id=7');
    assert.equal(a['server.address'], api.ip);
    assert.equal(a['server.port'], 8080);
    assert.equal(a['client.address'], web.ip);
    assert.equal(a['user_agent.original'], 'trc-test');
    assert.equal(a['network.protocol.version'], '1.1');
    assert.equal(a['weft.source.workload'], 'web');
    assert.equal(a['weft.source.principal'], 'spiffe://cluster.local/ns/shop/sa/web');
    assert.equal(a['weft.destination.principal'], 'spiffe://cluster.local/ns/shop/sa/api');
    assert.equal(a['weft.connection_security_policy'], 'mutual_tls');
    assert.equal(a['weft.reporter'], 'destination');
    assert.equal(a['weft.propagation'], 'w3c');
    // db's hop: api (n2) → db (n1) crossed the wire over HBONE as well.
    assert.equal(atDb.resource['service.name'], 'db.shop');
    assert.equal(atDb.attributes['weft.source.principal'], 'spiffe://cluster.local/ns/shop/sa/api');
    assert.equal(atDb.attributes['weft.connection_security_policy'], 'mutual_tls');
    assert.deepEqual(bad, []);
  });

  test('B3 input is accepted (single b3 and x-b3-*): the trace continues and the B3 headers are updated too', async () => {
    const single = 'a'.repeat(32);
    const r1 = await curl(web, `http://${api.ip}:8080/b3`, { args: ['-H', `b3: ${single}-${CLIENT_SPAN}-1`] });
    assert.equal(r1.status, 200, r1.stderr);
    const [s1] = (await spansOf(single, 2)).filter((s) => s.attributes['weft.destination.workload'] === 'api');
    assert.equal(s1!.parentSpanId, CLIENT_SPAN);
    assert.equal(s1!.attributes['weft.propagation'], 'b3');
    const got1 = JSON.parse(r1.body).received;
    assert.equal(got1.traceparent, `00-${single}-${s1!.spanId}-01`);
    assert.equal(got1.b3, `${single}-${s1!.spanId}-1-${CLIENT_SPAN}`);

    const short = '0123456789abcdef';
    const r2 = await curl(web, `http://${api.ip}:8080/b3multi`, { args: ['-H', `X-B3-TraceId: ${short}`, '-H', `X-B3-SpanId: ${CLIENT_SPAN}`, '-H', 'X-B3-Sampled: 1'] });
    assert.equal(r2.status, 200, r2.stderr);
    const padded = `0000000000000000${short}`;
    const [s2] = (await spansOf(padded, 2)).filter((s) => s.attributes['weft.destination.workload'] === 'api');
    assert.equal(s2!.parentSpanId, CLIENT_SPAN);
    const got2 = JSON.parse(r2.body).received;
    assert.equal(got2['x-b3-traceid'], padded);
    assert.equal(got2['x-b3-spanid'], s2!.spanId);
    assert.equal(got2['x-b3-parentspanid'], CLIENT_SPAN);
  });

  test('the incoming sampled flag is respected: a trace marked not sampled yields no span and passes unchanged', async () => {
    const id = 'c'.repeat(32);
    const tp = `00-${id}-${CLIENT_SPAN}-00`;
    const r = await curl(web, `http://${api.ip}:8080/unsampled`, { args: ['-H', `traceparent: ${tp}`] });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).received.traceparent, tp);
    // A sampled request sent after it is exported; by then the unsampled one would have been too.
    const later = 'd'.repeat(32);
    await curl(web, `http://${api.ip}:8080/after`, { args: ['-H', `traceparent: 00-${later}-${CLIENT_SPAN}-01`] });
    await spansOf(later, 2);
    assert.equal(spans.filter((s) => s.traceId === id).length, 0);
  });

  test('Service traffic: the source proxy\'s CLIENT span is the parent of the destination\'s SERVER span', async () => {
    extra.push({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'shop' }, spec: {
      clusterIP: '10.96.0.80', selector: { app: 'api' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
    writeConfig();
    const id = 'f'.repeat(32);
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i++) {
      status = (await curl(web, 'http://10.96.0.80/svc', { args: ['-H', `traceparent: 00-${id}-${CLIENT_SPAN}-01`] })).status;
      if (status !== 200) await sleep(250);
    }
    assert.equal(status, 200);
    const got = await spansOf(id, 3);
    const client = got.find((s) => s.kind === 3);
    assert.ok(client, `a CLIENT span from the source proxy: ${JSON.stringify(got)}`);
    assert.equal(client.parentSpanId, CLIENT_SPAN);
    assert.equal(client.resource['service.name'], 'web.shop');
    assert.equal(client.attributes['weft.destination.service'], 'api.shop.svc.cluster.local');
    const server = got.find((s) => s.kind === 2 && s.attributes['weft.destination.workload'] === 'api');
    assert.equal(server?.parentSpanId, client.spanId);
  });

  test('a request denied by policy gets a span with its 403 and the deciding policy', async () => {
    extra.push({ apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'no-delete', namespace: 'shop' },
      spec: { selector: { matchLabels: { app: 'api' } }, action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] } });
    writeConfig();
    // A trace id per attempt: attempts made before the policy applied are allowed and traced too.
    let id = '';
    let status = 0;
    for (let i = 0; i < 40 && status !== 403; i++) {
      id = `${'e'.repeat(30)}${i.toString(16).padStart(2, '0')}`;
      const r = await curl(web, `http://${api.ip}:8080/x`, { args: ['-X', 'DELETE', '-H', `traceparent: 00-${id}-${CLIENT_SPAN}-01`] });
      status = r.status;
      if (status !== 403) await sleep(250);
    }
    assert.equal(status, 403);
    const denied = (await spansOf(id, 1)).find((s) => s.attributes['http.response.status_code'] === 403);
    assert.ok(denied, JSON.stringify(spans.filter((s) => s.traceId === id)));
    assert.equal(denied.attributes['weft.response_flags'], 'DENY');
    assert.equal(denied.attributes['weft.policy'], 'shop/no-delete');
    assert.equal(denied.statusCode, 0, 'a 4xx is not an error on a server span');
  });
});
