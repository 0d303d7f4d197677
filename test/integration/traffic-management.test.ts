/**
 * Traffic management through Service cluster IPs, end to end (issue 8, "What must be shown"): a
 * meshed client pod on node 1 sends HTTP to cluster IPs; its node proxy applies HTTPRoutes
 * (weighted backendRefs, retry, timeouts) and TrafficPolicies (retries and their budget, faults,
 * circuit breaker, outlier detection). What the backends really received is counted by the
 * backends themselves (test/support/traffic-apps.ts); what the proxy did, by its access log.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { curl, Lab, LabNode, LabPod } from '../../agent/sandbox';
import { startMesh, type AgentHandle, type MeshProcesses } from '../../agent/sandbox/weft-agent';
import { kernelTestBlocker } from '../support/requirements';
import { assertShare, load, median, startBackend, type BackendHandle } from '../support/traffic-apps';

const blocker = kernelTestBlocker();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NS = 'tm';

/** Service name → cluster IP. Every Service has port 80 → 8080 (HTTP). */
const VIPS = {
  split: '10.96.8.1', 'split-v1': '10.96.8.2', 'split-v2': '10.96.8.3',
  'retry-route': '10.96.8.10', 'retry-policy': '10.96.8.11', 'retry-none': '10.96.8.12', budget: '10.96.8.13', 'budget-loose': '10.96.8.14',
  slow: '10.96.8.20', faults: '10.96.8.30', breaker: '10.96.8.40', trio: '10.96.8.50', paths: '10.96.8.60',
} as const;
type Svc = keyof typeof VIPS;
const SELECTOR: Record<Svc, string> = {
  split: 'v1', 'split-v1': 'v1', 'split-v2': 'v2',
  'retry-route': 'gen', 'retry-policy': 'gen', 'retry-none': 'gen', budget: 'gen', 'budget-loose': 'gen', slow: 'gen', faults: 'gen', breaker: 'gen',
  trio: 'trio', paths: 'v1',
};

const service = (name: Svc) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: NS },
  spec: { clusterIP: VIPS[name], selector: { app: SELECTOR[name] }, ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }] } });

const routeRules = (name: string, parent: Svc, rules: Array<Record<string, unknown>>) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute',
  metadata: { name, namespace: NS }, spec: { parentRefs: [{ group: '', kind: 'Service', name: parent, port: 80 }], rules } });
const route = (name: string, parent: Svc, rule: Record<string, unknown>) => routeRules(name, parent, [rule]);

const policy = (name: string, target: Svc, spec: Record<string, unknown>) => ({ apiVersion: 'networking.weft.dev/v1', kind: 'TrafficPolicy',
  metadata: { name, namespace: NS }, spec: { targetRefs: [{ group: '', kind: 'Service', name: target }], ...spec } });

const OBJECTS = [
  ...(Object.keys(VIPS) as Svc[]).map(service),
  // Requests under /v2 go to split-v2 (pod v2), the rest to the Service's own pod v1: the match sees the normalized path.
  routeRules('paths', 'paths', [
    { matches: [{ path: { type: 'PathPrefix', value: '/v2' } }], backendRefs: [{ name: 'split-v2', port: 80 }] },
    { backendRefs: [{ name: 'paths', port: 80 }] }]),
  route('split', 'split', { backendRefs: [{ name: 'split-v1', port: 80, weight: 90 }, { name: 'split-v2', port: 80, weight: 10 }] }),
  // The route's retry must be what retries: the Service's TrafficPolicy says no retries.
  route('retry-route', 'retry-route', { retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'retry-route', port: 80 }] }),
  policy('retry-route-none', 'retry-route', { retries: { attempts: 0 } }),
  // Three retries (the default is two), so the policy is seen to be the one in force. A request holds
  // at most one retry lease at a time, so with minRetryConcurrency ≥ the client's concurrency (8)
  // the budget never binds and every request gets its retries (the default budget, 3 in flight,
  // would refuse some: measured 58 % success instead of 94 %).
  policy('retry-policy', 'retry-policy', { retries: { attempts: 3, retryOn: '503', retryBudget: { percent: 20, minRetryConcurrency: 8 } } }),
  policy('retry-none', 'retry-none', { retries: { attempts: 0 } }),
  route('budget', 'budget', { retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'budget', port: 80 }] }),
  policy('budget', 'budget', { retries: { retryBudget: { percent: 0, minRetryConcurrency: 1 } } }),
  // The same route with a budget that never binds: the control for what the budget stops.
  route('budget-loose', 'budget-loose', { retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'budget-loose', port: 80 }] }),
  policy('budget-loose', 'budget-loose', { retries: { retryBudget: { percent: 100, minRetryConcurrency: 100 } } }),
  route('slow', 'slow', { timeouts: { request: '300ms' }, backendRefs: [{ name: 'slow', port: 80 }] }),
  policy('faults', 'faults', { retries: { attempts: 0 }, fault: {
    abort: { percentage: { value: 20 }, httpStatus: 503 }, delay: { percentage: { value: 10 }, fixedDelay: '150ms' } } }),
  policy('breaker', 'breaker', { retries: { attempts: 0 }, connectionPool: { http: { http2MaxRequests: 2 } } }),
  policy('trio', 'trio', { retries: { attempts: 0 },
    outlierDetection: { consecutive5xxErrors: 3, interval: '1s', baseEjectionTime: '2s', maxEjectionPercent: 50 } }),
];

const url = (svc: Svc, path: string) => `http://${VIPS[svc]}${path}`;

type LogLine = Record<string, unknown>;
type Counts = Record<'connection' | 'pending' | 'request' | 'retry', number>;
interface ServicePortState { servicePort: string; trafficPolicy: string; ejections: number; ejectedNow: number; inUse: Counts; overflows: Counts }

describe('traffic management through Service cluster IPs: routes, retries, timeouts, faults, breaker, outlier detection', { skip: blocker ?? false }, () => {
  let lab: Lab, n1: LabNode, n2: LabNode, client: LabPod;
  let mesh: MeshProcesses | undefined, agent1: AgentHandle;
  let dir: string;
  const backends: Record<string, BackendHandle> = {};

  /** The source proxy's request lines for `path` (exact, query included), waiting (bounded) until there are `n`. */
  const sourceLines = async (path: string, n: number, timeoutMs = 10_000): Promise<LogLine[]> => {
    const pick = () => agent1.accessLog.filter((l) => l.path === path && l.direction === 'outbound' && l.retries !== undefined);
    for (const end = Date.now() + timeoutMs; pick().length < n && Date.now() < end;) await sleep(50);
    const lines = pick();
    assert.equal(lines.length, n, `source proxy request lines for ${path}`);
    return lines;
  };

  /** The source proxy's live state of a Service port, from node 1's admin API (what `weft status` shows). */
  const servicePort = async (svc: Svc): Promise<ServicePortState> => {
    const r = await n1.exec('curl', ['-sS', '--max-time', '5', 'http://127.0.0.1:15000/services']);
    assert.equal(r.code, 0, r.stderr);
    const all = JSON.parse(r.stdout) as ServicePortState[];
    const st = all.find((x) => x.servicePort === `${NS}/${svc}:80`);
    assert.ok(st, `admin /services lists ${NS}/${svc}:80: ${r.stdout}`);
    return st;
  };

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'tmg' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    client = await n1.pod('client', { namespace: NS, serviceAccount: 'client' });
    const pods = [
      await n2.pod('gen', { namespace: NS, serviceAccount: 'gen', labels: { app: 'gen' } }),
      await n1.pod('v1', { namespace: NS, serviceAccount: 'split', labels: { app: 'v1' } }),
      await n2.pod('v2', { namespace: NS, serviceAccount: 'split', labels: { app: 'v2' } }),
      await n1.pod('o1', { namespace: NS, serviceAccount: 'trio', labels: { app: 'trio' } }),
      await n2.pod('o2', { namespace: NS, serviceAccount: 'trio', labels: { app: 'trio' } }),
      await n2.pod('o3', { namespace: NS, serviceAccount: 'trio', labels: { app: 'trio' } }),
    ];
    dir = mkdtempSync(join(tmpdir(), 'weft-tmg-'));
    const configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, lab.yaml({ meshNamespaces: [NS], extra: OBJECTS }));
    for (const p of pods) backends[p.name] = startBackend(p, 8080, join(dir, `${p.name}.ctl`));
    await Promise.all(Object.values(backends).map((b) => b.ready));
    mesh = await startMesh([n1, n2], configPath, join(dir, 'data'));
    agent1 = mesh.agents[0]!;
  });

  after(async () => {
    if (blocker) return;
    await mesh?.stop();
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a 90/10 HTTPRoute split over two Services lands within ±3 % over 2,000 requests', async (t) => {
    const r = await load(client, url('split', '/split'), { count: 2000, concurrency: 8 });
    assert.deepEqual(r.statuses, { 200: 2000 });
    t.diagnostic(`split: v1 ${r.pods.v1}, v2 ${r.pods.v2} of 2000`);
    assertShare('requests answered by split-v1 (weight 90)', r.pods.v1 ?? 0, 2000, 0.9, 0.03);
    // The backends' own counts agree with what the client saw.
    assert.equal(backends.v1!.seen('/split').length, r.pods.v1);
    assert.equal(backends.v2!.seen('/split').length, r.pods.v2);
    const lines = await sourceLines('/split', 2000);
    assert.ok(lines.every((l) => l.route === `${NS}/split[0]` && l['dst.service'] === `split.${NS}.svc.cluster.local`), JSON.stringify(lines[0]));
  });

  test('a PathPrefix match sees the normalized path (dot segments, escaped letters, backslashes), the endpoint gets it, and a bad path gets 400', async () => {
    const answer = async (path: string): Promise<{ status: number; pod?: string; path?: string }> => {
      const r = await curl(client, url('paths', path), { args: ['--path-as-is'] });
      return { status: r.status, ...(r.status === 200 ? JSON.parse(r.body) as { pod: string; path: string } : {}) };
    };
    for (const [sent, want] of [['/x/../v2/a', '/v2/a'], ['/./v2/b', '/v2/b'], ['/%76%32/c', '/v2/c'], ['/x\\..\\v2\\d', '/v2/d']] as const) {
      assert.deepEqual(await answer(sent), { status: 200, pod: 'v2', path: want }, sent);
    }
    assert.deepEqual(await answer('/v2x/../v1/e'), { status: 200, pod: 'v1', path: '/v1/e' });
    assert.equal((await answer('/v2/%00')).status, 400);
    assert.equal(backends.v2!.seen('/v2/%00').length, 0);
    const lines = await sourceLines('/v2/a', 1);
    assert.equal(lines[0]!.route, `${NS}/paths[0]`);
  });

  test('an HTTPRoute retry (attempts 2, codes [503]) turns a backend\'s 50 % 503s into 200s; without retries half fail', async () => {
    const N = 100;
    const r = await load(client, url('retry-route', '/retry-route?flaky=alternate'), { count: N });
    assert.deepEqual(r.statuses, { 200: N }, 'every request succeeds on its retry');
    const seen = backends.gen!.seen('/retry-route');
    assert.equal(seen.length, 2 * N, 'each request took two tries');
    assert.equal(seen.filter((s) => s.status === 503).length, N, 'half of the tries the backend saw were 503');
    const lines = await sourceLines('/retry-route?flaky=alternate', N);
    assert.deepEqual([...new Set(lines.map((l) => l.retries))], [1], 'the access log counts one retry per request');

    // The same backend behaviour with retries turned off: the 503s reach the client.
    const none = await load(client, url('retry-none', '/retry-none?flaky=alternate'), { count: N });
    assert.deepEqual(none.statuses, { 200: N / 2, 503: N / 2 });
    assert.equal(backends.gen!.seen('/retry-none').length, N);
  });

  test('TrafficPolicy retries (attempts 3, retryOn 503) turn random 50 % 503s into 1 − 0.5⁴ successes, each retry logged', async (t) => {
    const N = 800;
    const r = await load(client, url('retry-policy', '/retry-policy?flaky=50'), { count: N, concurrency: 8 });
    assert.deepEqual(Object.keys(r.statuses).filter((s) => s !== '200' && s !== '503'), []);
    const tries = backends.gen!.seen('/retry-policy');
    t.diagnostic(`TrafficPolicy retries: ${r.statuses[200]} of ${N} answered 200, backend saw ${tries.length} tries`);
    assertShare('requests answered 200 after up to 3 retries', r.statuses[200] ?? 0, N, 1 - 0.5 ** 4, 0.03);
    assertShare('503s among the tries the backend saw', tries.filter((s) => s.status === 503).length, tries.length, 0.5, 0.05);
    const lines = await sourceLines('/retry-policy?flaky=50', N);
    const retries = lines.map((l) => Number(l.retries));
    assert.equal(retries.reduce((a, b) => a + b, 0), tries.length - N, 'the retries logged are the extra tries the backend saw');
    assert.equal(Math.max(...retries), 3, 'some requests needed all 3 retries, none got more');
    assert.ok(tries.length <= N * (1 + 3));
  });

  test('retries are bounded: ≤ requests × (1 + attempts) tries for an always-503 backend, and past the retry budget they stop', async (t) => {
    // Sequential: one retry in flight at a time is within the budget (minRetryConcurrency 1), so every request gets both retries.
    const N = 30;
    const seq = await load(client, url('budget', '/budget-seq?status=503'), { count: N });
    assert.deepEqual(seq.statuses, { 503: N });
    assert.equal(backends.gen!.seen('/budget-seq').length, N * 3, 'tries seen by the backend = requests × (1 + attempts)');
    assert.deepEqual([...new Set((await sourceLines('/budget-seq?status=503', N)).map((l) => l.retries))], [2]);

    // A burst of C slow failures at once: the budget (0 % of requests in flight, at least 1) lets one
    // retry be in flight at a time, so about 2 retries run instead of C × 2 = 40.
    const C = 20;
    const burst = await load(client, url('budget', '/budget-burst?status=503&sleep=300'), { count: C, concurrency: C, keepAlive: false });
    assert.deepEqual(burst.statuses, { 503: C });
    const tries = backends.gen!.seen('/budget-burst').length;
    const lines = await sourceLines('/budget-burst?status=503&sleep=300', C);
    const retried = lines.map((l) => Number(l.retries));
    t.diagnostic(`retry budget: ${C} concurrent requests, backend saw ${tries} tries`);
    assert.equal(retried.reduce((a, b) => a + b, 0), tries - C, 'the retries logged are the extra tries the backend saw');
    assert.ok(tries >= C + 1, `the budget still allows a retry (backend saw ${tries})`);
    assert.ok(tries <= C + 2 * 2, `the backend saw ${tries} tries for ${C} requests; the retry budget allows ~${C + 2} (no budget: up to ${C * 3})`);
    assert.ok(retried.filter((n) => n === 0).length >= C - 2, `requests refused a retry by the budget answered their first 503: ${JSON.stringify(retried)}`);

    // Every request ended with a 503, so each one with fewer than 2 retries had one refused: counted.
    assert.equal((await servicePort('budget')).overflows.retry, retried.filter((n) => n < 2).length, 'each refused retry is counted');

    // Control: the same burst where the budget cannot bind gets every retry, C × (1 + attempts) tries.
    const loose = await load(client, url('budget-loose', '/budget-loose?status=503&sleep=300'), { count: C, concurrency: C, keepAlive: false });
    assert.deepEqual(loose.statuses, { 503: C });
    assert.equal(backends.gen!.seen('/budget-loose').length, C * 3);
  });

  test('an HTTPRoute timeouts.request of 300ms cuts a backend sleeping 2 s: 504 cut at the deadline by the proxy (median of 5 on its own clock, within 100 ms after it; the client\'s shown beside it)', async (t) => {
    // One keep-alive connection, so the client's clock times the request and not a connect through
    // the capture; the first request (which also connects) is left out of the medians.
    const r = await load(client, url('slow', '/slow?sleep=2000'), { count: 6, keepAlive: true, timeoutMs: 5_000 });
    assert.deepEqual(r.statuses, { 504: 6 });
    const lines = await sourceLines('/slow?sleep=2000', 6);
    assert.ok(lines.every((l) => l.response_flags === 'UPSTREAM_TIMEOUT' && l.status === 504), JSON.stringify(lines[0]));
    // The deadline is the proxy's: from the request's arrival to the 504 it writes (its access log's duration).
    const proxy = lines.map((l) => Number(l.duration)).sort((a, b) => a - b).slice(0, 5);
    const seen = r.results.slice(1).map((x) => x.ms);
    t.diagnostic(`timeout: proxy-side ms ${proxy.map((x) => x.toFixed(1)).join(', ')}; client-side ms ${seen.map((x) => x.toFixed(1)).join(', ')}`);
    // Cut at the deadline, never before it; how late depends on the host (306-322 ms here when quiet,
    // up to 357 ms on a loaded CI host), so the bound is loose: a test is no benchmark. "Before" allows
    // the 1 ms of a libuv timer: it is armed against the loop's cached clock, so it can fire up to 1 ms
    // early against the access log's high-resolution clock (CI saw a median of 299.96 ms).
    const m = median(proxy);
    assert.ok(m >= 300 - 1 && m <= 300 + 100, `proxy-side median ${m.toFixed(1)} ms of ${proxy.map((x) => x.toFixed(1)).join(', ')}`);
    // The client sees it soon after (its own process and the capture add a little on a loaded host).
    assert.ok(median(seen) < 300 + 250, `client-side median ${median(seen).toFixed(1)} ms`);
    assert.equal(backends.gen!.seen('/slow').length, 6, 'each request reached the backend before the deadline cut it');
  });

  test('injected faults (abort 20 % with 503, delay 10 % by 150ms) at their rates ±3 % over 2,000 requests; aborted requests never reach the backend', async (t) => {
    const N = 2000;
    const r = await load(client, url('faults', '/faults'), { count: N, concurrency: 16 });
    assert.deepEqual(Object.keys(r.statuses).sort(), ['200', '503'], JSON.stringify(r.statuses));
    const aborted = r.statuses[503]!;
    t.diagnostic(`faults: ${aborted} aborted, ${r.results.filter((x) => x.ms >= 150).length} delayed of ${N}`);
    assertShare('requests aborted with 503', aborted, N, 0.2, 0.03);
    assert.equal(backends.gen!.seen('/faults').length, N - aborted, 'the backend saw exactly the requests that were not aborted');
    // A delayed request takes at least the fixed delay; undelayed ones take a few ms here.
    assertShare('requests delayed by ≥150 ms', r.results.filter((x) => x.ms >= 150).length, N, 0.1, 0.03);
    const lines = await sourceLines('/faults', N);
    assert.equal(lines.filter((l) => l.response_flags === 'FAULT_INJECTED').length, aborted);
  });

  test('a circuit breaker (http2MaxRequests 2) answers the excess 503 UPSTREAM_OVERFLOW at once, and the backend sees only the admitted requests', async () => {
    const C = 10;
    const r = await load(client, url('breaker', '/breaker?sleep=1500'), { count: C, concurrency: C, keepAlive: false });
    assert.deepEqual(r.statuses, { 200: 2, 503: C - 2 });
    const firstAdmittedDone = Math.min(...r.results.filter((x) => x.s === 200).map((x) => x.t1));
    for (const x of r.results.filter((y) => y.s === 503)) {
      assert.ok(x.t1 <= firstAdmittedDone, `an overflow was answered at ${x.t1}, after an admitted request finished at ${firstAdmittedDone}: it waited`);
    }
    assert.equal(backends.gen!.seen('/breaker').length, 2, 'the backend saw only the two admitted requests');
    const lines = await sourceLines('/breaker?sleep=1500', C);
    const overflow = lines.filter((l) => l.response_flags === 'UPSTREAM_OVERFLOW');
    assert.equal(overflow.length, C - 2);
    assert.match(String(overflow[0]!.error), /http2MaxRequests/);
    // Counted, and every lease given back.
    const st = await servicePort('breaker');
    assert.equal(st.overflows.request, C - 2);
    assert.deepEqual(st.inUse, { connection: 0, pending: 0, request: 0, retry: 0 });
    // Leases were released: the Service works again.
    const again = await load(client, url('breaker', '/breaker-after'), { count: 4, concurrency: 2 });
    assert.deepEqual(again.statuses, { 200: 4 });
  });

  test('outlier detection ejects the endpoint answering 500, sends it nothing while ejected (2 s), and takes it back once healthy', async (t) => {
    const o3 = backends.o3!;
    o3.force(500);
    const first = await load(client, url('trio', '/trio-1'), { count: 60 });
    const bad = o3.seen('/trio-1');
    assert.ok(bad.length >= 3, `o3 got ${bad.length} requests`);
    assert.ok(bad.every((x) => x.status === 500));
    const ejectedAt = bad[2]!.t;
    t.diagnostic(`outlier: o3 got ${bad.length} requests in phase 1, ${first.results.filter((x) => x.t0 > ejectedAt + 20 && x.t1 < ejectedAt + 2000).length} sent while ejected`);
    // Nothing reached o3 for its ejection time after its third 500 in a row.
    for (const x of bad.slice(3)) assert.ok(x.t >= ejectedAt + 2000 - 5, `o3 got a request ${x.t - ejectedAt} ms after its ejection`);
    const whileEjected = first.results.filter((x) => x.t0 > ejectedAt + 20 && x.t1 < ejectedAt + 2000);
    assert.ok(whileEjected.length >= 10, `${whileEjected.length} requests were sent while o3 was ejected`);
    assert.ok(whileEjected.every((x) => x.s === 200 && (x.p === 'o1' || x.p === 'o2')), JSON.stringify(whileEjected.filter((x) => x.s !== 200 || x.p === 'o3')));
    assert.equal(first.statuses[500], bad.length, 'the client saw exactly the 500s o3 answered');
    assert.equal((await servicePort('trio')).ejections, Math.ceil(bad.length / 3), 'the ejection is counted');

    o3.force(undefined);
    // Back after its ejection time: 2 s (× the ejection count, had a slow run ejected it again).
    const lastBad = bad.at(-1)!.t;
    await sleep(Math.max(0, lastBad + 2000 * Math.ceil(bad.length / 3) + 300 - Date.now()));
    const back = await load(client, url('trio', '/trio-2'), { count: 60 });
    assert.deepEqual(back.statuses, { 200: 60 });
    assert.ok((back.pods.o3 ?? 0) >= 5, `o3 serves again: ${JSON.stringify(back.pods)}`);
    assert.equal(o3.seen('/trio-2').length, back.pods.o3);
  });
});
