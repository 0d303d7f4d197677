import assert from 'node:assert/strict';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { emptySnapshot, type PodInfo, type Snapshot } from '../../agent/config/objects';
import { adminRoutes, type AdminView } from '../../agent/node/admin';
import { serveJson } from '../../agent/node/http-endpoints';
import { livePageHtml } from '../../agent/node/live-page';
import { PolicySet } from '../../agent/policy';
import { WorkloadStore } from '../../agent/state/store';
import { connectionClosed, connectionOpened, requestCompleted, telemetryWanted, type ConnectionEnds, type RequestCompletedEvent } from '../../agent/telemetry/events';
import type { LiveEdge, LiveFeed } from '../../agent/telemetry/live-feed';
import { edgeEnds, LiveView, requestFailed } from '../../agent/telemetry/live-view';

function pod(name: string, ip: string, labels: Record<string, string>, sa: string, node = 'n1', namespace = 'shop'): PodInfo {
  return { namespace, name, labels, annotations: {}, nodeName: node, serviceAccount: sa, ips: [ip] };
}
const snapshot = (pods: PodInfo[]): Snapshot => ({
  ...emptySnapshot(),
  namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }, { name: 'legacy', labels: {} }],
  pods,
  services: [{ namespace: 'shop', name: 'api', labels: {}, selector: { app: 'api' }, clusterIPs: ['10.96.0.10'], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] }],
});
const WEB = pod('web', '10.1.0.5', { app: 'web' }, 'web');
const BOT = pod('bot', '10.1.0.6', { app: 'bot' }, 'bot');
const API = pod('api-7f9c', '10.2.0.7', { app: 'api' }, 'api', 'n2');
const API1 = pod('api1', '10.1.0.8', { app: 'api' }, 'api');
const OUTSIDER = pod('outsider', '10.1.0.9', {}, 'default', 'n1', 'legacy');
const store = new WorkloadStore(snapshot([WEB, BOT, API, API1, OUTSIDER]));
const ref = (p: PodInfo) => store.workloadRef(p);

/** A connection's ends as the destination proxy on n2 records them (inbound over HBONE). */
const inbound = (src: PodInfo, dst: PodInfo = API, srcPort = 40000): ConnectionEnds =>
  ({ direction: 'inbound', srcIp: src.ips[0]!, srcPort, src: ref(src), dstIp: dst.ips[0]!, dstPort: 8080, dst: ref(dst) });

const ok = (ends: ConnectionEnds, durationMs = 2, reporter: 'source' | 'destination' = 'destination'): RequestCompletedEvent =>
  ({ reporter, ends, security: 'mutual_tls', protocol: 'http', status: 200, requestBytes: 0, responseBytes: 10, durationMs, flags: '-' });

/** A view on node `node` with a clock the test steps. */
function view(node = 'n2', more: Partial<ConstructorParameters<typeof LiveView>[0]> = {}) {
  let t = 1_000_000;
  const v = new LiveView({ node, window: { slotMs: 1000, slots: 10 }, now: () => t, ...more });
  v.setStore(store);
  return { v, step: (ms: number) => { t += ms; }, now: () => t };
}
const edge = (f: LiveFeed, source: string, destination: string): LiveEdge => {
  const e = f.edges.find((x) => x.source === source && x.destination === destination);
  assert.ok(e, `edge ${source} > ${destination} in ${f.edges.map((x) => x.id).join(', ')}`);
  return e;
};

describe('live view: naming the ends', () => {
  it('pods by the workload refs the proxy recorded, with their node and identity', () => {
    const e = edgeEnds(inbound(WEB), 'mutual_tls', store);
    assert.deepEqual(e.source, { id: 'pod:shop/web', kind: 'pod', name: 'web', namespace: 'shop', workload: 'web', node: 'n1', identity: 'spiffe://cluster.local/ns/shop/sa/web' });
    assert.equal(e.destination.id, 'pod:shop/api-7f9c');
    assert.equal(e.destination.node, 'n2');
    assert.equal(e.destination.workload, 'api');
  });

  it('a plaintext client by its address when the state knows the pod there, else as an address outside the mesh', () => {
    const ends: ConnectionEnds = { ...inbound(OUTSIDER), src: undefined } as ConnectionEnds;
    delete (ends as { src?: unknown }).src;
    assert.equal(edgeEnds(ends, 'none', store).source.id, 'pod:legacy/outsider');
    const stranger = { ...ends, srcIp: '192.0.2.1' };
    assert.deepEqual(edgeEnds(stranger, 'none', store).source, { id: 'ip:192.0.2.1', kind: 'external', name: '192.0.2.1' });
  });

  it('a tunnel peer by address only when the pod there has the identity it proved', () => {
    const base: ConnectionEnds = { direction: 'inbound', srcIp: WEB.ips[0]!, srcPort: 1, dstIp: API.ips[0]!, dstPort: 8080, dst: ref(API) };
    assert.equal(edgeEnds({ ...base, srcIdentity: 'spiffe://cluster.local/ns/shop/sa/web' }, 'mutual_tls', store).source.id, 'pod:shop/web');
    const liar = edgeEnds({ ...base, srcIdentity: 'spiffe://cluster.local/ns/shop/sa/bot' }, 'mutual_tls', store).source;
    assert.deepEqual(liar, { id: 'identity:spiffe://cluster.local/ns/shop/sa/bot', kind: 'identity', name: 'bot', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/bot' });
  });

  it('a Service when no endpoint was reached, with the host the client addressed', () => {
    const ends: ConnectionEnds = { direction: 'outbound', srcIp: WEB.ips[0]!, srcPort: 1, src: ref(WEB), dstIp: '10.96.0.10', dstPort: 80, dstService: { namespace: 'shop', name: 'api' } };
    const e = edgeEnds(ends, 'mutual_tls', store);
    assert.deepEqual(e.destination, { id: 'service:shop/api', kind: 'service', name: 'api', namespace: 'shop' });
    assert.equal(e.service, 'api.shop.svc.cluster.local');
    const viaVip = edgeEnds({ ...ends, dstService: undefined } as ConnectionEnds, 'mutual_tls', store);
    assert.equal(viaVip.destination.id, 'service:shop/api', 'a cluster IP is named by the state');
    const reached = edgeEnds({ ...ends, dstIp: API.ips[0]!, dst: ref(API) }, 'mutual_tls', store);
    assert.equal(reached.destination.id, 'pod:shop/api-7f9c');
    assert.equal(reached.service, 'api.shop.svc.cluster.local');
  });

  it('failed requests: 5xx, no response, non-OK gRPC, refused by the proxy; 4xx from the app is an answer', () => {
    const table: [Parameters<typeof requestFailed>[0], boolean][] = [
      [{ status: 200, flags: '-' }, false],
      [{ status: 404, flags: '-' }, false],
      [{ status: 503, flags: '-' }, true],
      [{ status: 0, flags: '-' }, true],
      [{ status: 403, flags: 'DENY' }, true],
      [{ status: 200, grpcStatus: '0', flags: '-' }, false],
      [{ status: 200, grpcStatus: '7', flags: '-' }, true],
      [{ status: 503, flags: 'UPSTREAM_OVERFLOW' }, true],
    ];
    for (const [ev, failed] of table) assert.equal(requestFailed(ev), failed, JSON.stringify(ev));
  });
});

describe('live view: edges', () => {
  it('counts requests, success, p99, connections and bytes per pod pair', () => {
    const { v } = view();
    const ends = inbound(WEB);
    v.opened({ reporter: 'destination', ends, security: 'mutual_tls' });
    for (let i = 1; i <= 100; i++) v.request(ok(ends, i === 100 ? 250 : 2));
    v.request({ ...ok(ends), status: 503 });
    v.closed({ reporter: 'destination', ends, security: 'mutual_tls', bytesFromClient: 1000, bytesToClient: 5000, flags: '-' });
    const f = v.feed();
    assert.equal(f.node, 'n2');
    assert.equal(f.windowSeconds, 10);
    const e = edge(f, 'pod:shop/web', 'pod:shop/api-7f9c');
    assert.equal(e.mtls, 'mutual_tls');
    assert.equal(e.protocol, 'http');
    assert.equal(e.requests.reporter, 'destination');
    assert.equal(e.requests.total, 101);
    assert.equal(e.requests.errors, 1);
    assert.equal(e.requests.successRate, 0.9901);
    assert.ok(e.requests.p99Ms! >= 2 && e.requests.p99Ms! < 2.4, `p99 ${e.requests.p99Ms}: 1 of 101 is slow, so rank 100 is a fast one`);
    assert.equal(e.requests.perSecond, 101 / 1, 'the view started in this slot: rates over one slot');
    assert.deepEqual([e.tcp.opened, e.tcp.active, e.tcp.bytesFromClient, e.tcp.bytesToClient], [1, 0, 1000, 5000]);
    assert.deepEqual(f.vertices.map((x) => x.id).sort(), ['pod:shop/api-7f9c', 'pod:shop/web']);
  });

  it('rates are over the window, and slide: the numbers change as traffic does', () => {
    const { v, step } = view();
    const ends = inbound(WEB);
    for (let i = 0; i < 20; i++) v.request(ok(ends));
    step(10_000); // a full window later the view has run 10 s
    for (let i = 0; i < 10; i++) v.request(ok(ends));
    let e = edge(v.feed(), 'pod:shop/web', 'pod:shop/api-7f9c');
    assert.equal(e.requests.total, 30);
    assert.equal(e.requests.perSecond, 1, 'the first 20 slid out: 10 in 10 s');
    step(10_000);
    e = edge(v.feed(), 'pod:shop/web', 'pod:shop/api-7f9c');
    assert.equal(e.requests.perSecond, 0);
    assert.equal(e.requests.successRate, null, 'no requests in the window: no rate to claim');
    assert.equal(e.requests.p99Ms, null);
    assert.equal(e.requests.total, 30, 'totals stay');
  });

  it('shows the destination proxy\'s counts when both reporters report (same node), so nothing counts twice', () => {
    const { v } = view('n1');
    const ends = inbound(WEB, API1);
    for (const reporter of ['source', 'destination'] as const) {
      v.opened({ reporter, ends, security: 'mutual_tls' });
      v.request(ok(ends, 2, reporter));
      v.closed({ reporter, ends, security: 'mutual_tls', bytesFromClient: 7, bytesToClient: 9, flags: '-' });
    }
    const e = edge(v.feed(), 'pod:shop/web', 'pod:shop/api1');
    assert.deepEqual([e.requests.reporter, e.requests.total, e.tcp.reporter, e.tcp.opened, e.tcp.bytesFromClient], ['destination', 1, 'destination', 1, 7]);
  });

  it('the source proxy\'s counts when it is the only reporter (a tunnel to another node: bytes, no requests)', () => {
    const { v } = view('n1');
    const ends: ConnectionEnds = { ...inbound(WEB), direction: 'outbound' };
    v.opened({ reporter: 'source', ends, security: 'mutual_tls' });
    let e = edge(v.feed(), 'pod:shop/web', 'pod:shop/api-7f9c');
    assert.deepEqual([e.requests.reporter, e.requests.total, e.tcp.reporter, e.tcp.active, e.protocol], [null, 0, 'source', 1, 'tcp']);
    v.closed({ reporter: 'source', ends, security: 'mutual_tls', bytesFromClient: 300, bytesToClient: 700, flags: '-' });
    e = edge(v.feed(), 'pod:shop/web', 'pod:shop/api-7f9c');
    assert.deepEqual([e.tcp.active, e.tcp.bytesFromClient + e.tcp.bytesToClient], [0, 1000]);
  });

  it('mTLS per edge: plaintext dashed, mTLS solid, both in the window mixed; an idle edge keeps its last', () => {
    const { v, step } = view();
    const plainEnds: ConnectionEnds = { direction: 'inbound', srcIp: OUTSIDER.ips[0]!, srcPort: 5, dstIp: API.ips[0]!, dstPort: 8080, dst: ref(API) };
    v.opened({ reporter: 'destination', ends: plainEnds, security: 'none' });
    v.closed({ reporter: 'destination', ends: plainEnds, security: 'none', bytesFromClient: 1, bytesToClient: 1, flags: '-' });
    const ends = inbound(WEB);
    v.opened({ reporter: 'destination', ends, security: 'mutual_tls' });
    let f = v.feed();
    assert.equal(edge(f, 'pod:legacy/outsider', 'pod:shop/api-7f9c').mtls, 'none');
    assert.equal(edge(f, 'pod:shop/web', 'pod:shop/api-7f9c').mtls, 'mutual_tls');
    // web's pod also reaches api in plaintext (e.g. PERMISSIVE, before it was enrolled)
    const webPlain: ConnectionEnds = { ...plainEnds, srcIp: WEB.ips[0]! };
    v.opened({ reporter: 'destination', ends: webPlain, security: 'none' });
    f = v.feed();
    assert.equal(edge(f, 'pod:shop/web', 'pod:shop/api-7f9c').mtls, 'mixed');
    step(60_000);
    f = v.feed();
    assert.equal(edge(f, 'pod:shop/web', 'pod:shop/api-7f9c').mtls, 'none', 'idle: the last connection was plaintext');
  });

  it('lists denials once, newest first, with the deciding policy when the event names it', () => {
    const { v, step } = view('n1');
    const local = inbound(BOT, API1);
    // same node: the proxy reports the denied request as both source and destination
    for (const reporter of ['source', 'destination'] as const) {
      v.opened({ reporter, ends: local, security: 'mutual_tls' });
      v.request({ ...ok(local, 1, reporter), status: 403, flags: 'DENY', policy: 'shop/deny-bot' });
      v.closed({ reporter, ends: local, security: 'mutual_tls', bytesFromClient: 80, bytesToClient: 120, flags: '-' });
    }
    step(5);
    // a tunnel to n2 refused there: the source's report is the only one this node gets
    const remote: ConnectionEnds = { ...inbound(BOT), direction: 'outbound' };
    v.opened({ reporter: 'source', ends: remote, security: 'mutual_tls' });
    v.closed({ reporter: 'source', ends: remote, security: 'mutual_tls', bytesFromClient: 0, bytesToClient: 0, flags: 'DENY' });
    const f = v.feed();
    assert.equal(f.denials.length, 2);
    assert.deepEqual(f.denials[0], { at: 1_000_005, source: 'pod:shop/bot', destination: 'pod:shop/api-7f9c', kind: 'connection', reporter: 'source' });
    assert.deepEqual(f.denials[1], { at: 1_000_000, source: 'pod:shop/bot', destination: 'pod:shop/api1', kind: 'request', status: 403, policy: 'shop/deny-bot', reporter: 'destination' });
    const e = edge(f, 'pod:shop/bot', 'pod:shop/api1');
    assert.deepEqual([e.requests.total, e.requests.denied, e.requests.deniedTotal, e.requests.successRate], [1, 1, 1, 0]);
    assert.deepEqual([e.tcp.reporter, e.tcp.opened, e.tcp.deniedTotal], ['destination', 1, 0], 'a denied request on an allowed connection is not also a denied connection');
    assert.equal(edge(f, 'pod:shop/bot', 'pod:shop/api-7f9c').tcp.deniedTotal, 1);
  });

  it('keeps at most maxDenials denials', () => {
    const { v, step } = view('n2', { maxDenials: 3 });
    for (let i = 0; i < 10; i++) {
      v.request({ ...ok(inbound(BOT)), status: 403, flags: 'DENY' });
      step(1);
    }
    const f = v.feed();
    assert.equal(f.denials.length, 3);
    assert.deepEqual(f.denials.map((d) => d.at), [1_000_009, 1_000_008, 1_000_007]);
  });
});

describe('live view: bounded memory', () => {
  it('keeps at most maxEdges edges, dropping the longest idle without open connections', () => {
    const { v, step } = view('n2', { maxEdges: 3 });
    const held: ConnectionEnds = { ...inbound(WEB), srcIp: '192.0.2.1', src: undefined } as ConnectionEnds;
    delete (held as { src?: unknown }).src;
    v.opened({ reporter: 'destination', ends: held, security: 'none' }); // oldest, but open
    for (let i = 2; i <= 10; i++) {
      step(1);
      const ends = { ...held, srcIp: `192.0.2.${i}` };
      v.request({ ...ok(ends), security: 'none' });
    }
    assert.equal(v.size, 3);
    const ids = v.feed().edges.map((e) => e.source).sort();
    assert.deepEqual(ids, ['ip:192.0.2.1', 'ip:192.0.2.10', 'ip:192.0.2.9']);
  });

  it('drops edges idle for longer than idleMs, unless a connection is still open', () => {
    const { v, step } = view('n2', { idleMs: 60_000 });
    v.request(ok(inbound(WEB)));
    v.opened({ reporter: 'destination', ends: inbound(BOT), security: 'mutual_tls' });
    step(60_001);
    const f = v.feed();
    assert.deepEqual(f.edges.map((e) => e.source), ['pod:shop/bot']);
    assert.deepEqual(f.vertices.map((x) => x.id).sort(), ['pod:shop/api-7f9c', 'pod:shop/bot']);
  });

  it('refuses limits it cannot keep, naming the option', () => {
    assert.throws(() => new LiveView({ node: 'n1', maxEdges: 0 }), /live view: maxEdges must be a positive whole number \(got 0\)/);
    assert.throws(() => new LiveView({ node: 'n1', maxDenials: -1 }), /live view: maxDenials must be a whole number \(got -1\)/);
    assert.throws(() => new LiveView({ node: 'n1', window: { slotMs: 1000, slots: 1.5 } }), /slots must be a positive whole number/);
  });
});

describe('live view: subscribed to the proxy\'s events', () => {
  it('hears what the proxy publishes while subscribed, and nothing after', () => {
    assert.equal(telemetryWanted(), false);
    const { v } = view();
    v.subscribe();
    try {
      const ends = inbound(WEB);
      connectionOpened.publish({ reporter: 'destination', ends, security: 'mutual_tls' });
      requestCompleted.publish(ok(ends));
      connectionClosed.publish({ reporter: 'destination', ends, security: 'mutual_tls', bytesFromClient: 1, bytesToClient: 2, flags: '-' });
    } finally {
      v.unsubscribe();
    }
    assert.equal(telemetryWanted(), false);
    requestCompleted.publish(ok(inbound(WEB)));
    const e = edge(v.feed(), 'pod:shop/web', 'pod:shop/api-7f9c');
    assert.deepEqual([e.requests.total, e.tcp.opened, e.tcp.bytesToClient], [1, 1, 2]);
  });
});

describe('live view: served on the admin port', () => {
  it('/live is the self-contained page, /live.json the feed; no view answers 503 saying so', async () => {
    const { v } = view();
    v.request(ok(inbound(WEB)));
    const base: AdminView = { node: 'n1', store: () => store, policies: () => new PolicySet([]), workloads: () => [], certs: () => [], redirect: () => ({}), services: () => [] };
    const servers: http.Server[] = [];
    try {
      servers.push(await serveJson('127.0.0.1', 0, adminRoutes({ ...base, live: () => v.feed() })));
      servers.push(await serveJson('127.0.0.1', 0, adminRoutes(base)));
      const [withView, without] = servers.map((s) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`);
      const page = await fetch(`${withView}/live`);
      assert.equal(page.status, 200);
      assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
      assert.match(page.headers.get('content-security-policy')!, /default-src 'none'.*connect-src 'self'/);
      const html = await page.text();
      assert.equal(html, livePageHtml());
      assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'nothing loaded from elsewhere');
      const feed = await (await fetch(`${withView}/live.json`)).json() as LiveFeed;
      assert.equal(edge(feed, 'pod:shop/web', 'pod:shop/api-7f9c').requests.total, 1);
      const none = await fetch(`${without}/live.json`);
      assert.equal(none.status, 503);
      assert.match(((await none.json()) as { error: string }).error, /keeps no live view/);
    } finally {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    }
  });

  it('the page refuses a poll interval it cannot use', () => {
    assert.throws(() => livePageHtml(0), /pollMs must be a positive whole number of ms \(got 0\)/);
  });
});
