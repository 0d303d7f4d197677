import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { emptySnapshot, type ServiceInfo, type Snapshot } from '../../agent/config/objects';
import { kindFragment, type CustomObject } from '../../agent/controlplane/discovery-kube-convert';
import { startKubeSource, type KubeObjectsView } from '../../agent/controlplane/kube-source';
import { CONTROLLER_NAME, type Condition } from '../../agent/controlplane/status-conditions';
import { planStatus, type StatusPlan } from '../../agent/controlplane/status-plan';
import { StatusWriter, type Clock } from '../../agent/controlplane/status-writer';

/**
 * Route and TrafficPolicy status. The decision (status-plan.ts and the status-*.ts it uses) is
 * checked on views built by the real conversion; the writer against a loopback stand-in for the API
 * server that applies merge patches to the status subresource as the real one does (RFC 7386, the
 * resourceVersion in the patch as a precondition, 404 for a missing object), and records every
 * request it gets.
 */

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const T0 = '2030-01-01T00:00:00Z';
const T1 = '2030-01-01T00:05:00Z';

function service(name: string, ports: number[], namespace = 'shop'): ServiceInfo {
  return { namespace, name, labels: {}, selector: { app: name }, clusterIPs: ['10.96.0.10'], ports: ports.map((port) => ({ port, targetPort: port, protocol: 'TCP' as const })) };
}
const SERVICES = [service('web', [80]), service('web-v1', [80]), service('web-v2', [80]), service('grpc', [80])];

function httpRoute(opts: { name?: string; generation?: number; rv?: string; spec?: Obj; status?: Obj } = {}): Obj {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute',
    metadata: { name: opts.name ?? 'web-split', namespace: 'shop', uid: `uid-${opts.name ?? 'web-split'}`, generation: opts.generation ?? 1, resourceVersion: opts.rv ?? '1' },
    spec: opts.spec ?? {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
      rules: [{ backendRefs: [{ name: 'web-v1', port: 80, weight: 90 }, { name: 'web-v2', port: 80, weight: 10 }] }],
    },
    ...(opts.status ? { status: opts.status } : {}),
  };
}

const BAD_REGEX_SPEC = {
  parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
  rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/(unclosed' } }], backendRefs: [{ name: 'web-v1', port: 80 }] }],
};

function trafficPolicy(name: string, createdAt: string, opts: { spec?: Obj; generation?: number; rv?: string; status?: Obj } = {}): Obj {
  return {
    apiVersion: 'networking.weft.dev/v1', kind: 'TrafficPolicy',
    metadata: { name, namespace: 'shop', uid: `uid-${name}`, generation: opts.generation ?? 1, resourceVersion: opts.rv ?? '1', creationTimestamp: createdAt },
    spec: opts.spec ?? { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], outlierDetection: { consecutive5xxErrors: 3 } },
    ...(opts.status ? { status: opts.status } : {}),
  };
}

/** What the kube source hands the writer: each object converted by the kind registry, the last valid version kept for an invalid one. */
function view(objects: Obj[], lastValid: Obj[] = [], services: ServiceInfo[] = SERVICES): KubeObjectsView {
  const snapshot: Snapshot = { ...emptySnapshot(), services };
  const byKind = new Map<string, CustomObject[]>();
  const invalid = new Map<string, string>();
  const add = (fragment: Partial<Snapshot>): void => {
    for (const [key, value] of Object.entries(fragment)) {
      const into = snapshot as unknown as Record<string, unknown[]>;
      into[key] = [...(into[key] ?? []), ...(value as unknown[])];
    }
  };
  for (const obj of objects) {
    const list = byKind.get(obj.kind) ?? [];
    list.push(obj as CustomObject);
    byKind.set(obj.kind, list);
    const converted = kindFragment(obj.kind, obj as CustomObject);
    if (converted.ok) { add(converted.value); continue; }
    const id = `${obj.kind} ${obj.metadata.namespace}/${obj.metadata.name}`;
    invalid.set(id, converted.error);
    const previous = lastValid.find((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}` === id);
    if (previous !== undefined) {
      const good = kindFragment(previous.kind, previous as CustomObject);
      assert.ok(good.ok, 'the last valid version converts');
      add(good.value);
    }
  }
  return { snapshot, objects: byKind, invalid };
}

function onlyWrite(plan: StatusPlan): Obj {
  assert.equal(plan.writes.length, 1, `one write: ${JSON.stringify(plan.writes.map((w) => `${w.kind.kind} ${w.name}`))}`);
  return plan.writes[0]!.body;
}

function conditions(body: Obj, parent = 0): Record<string, Condition> {
  const list: Condition[] = body.status.parents.filter((p: Obj) => p.controllerName === CONTROLLER_NAME)[parent].conditions;
  return Object.fromEntries(list.map((c) => [c.type, c]));
}

/** The object as the API server has it after the patch: its status replaced by the patch's (the merge of a list replaces it). */
function withStatus(obj: Obj, body: Obj, rv: string): Obj {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: rv }, status: { ...(obj.status ?? {}), ...body.status } };
}

// ---- the decision ----

test('an HTTPRoute on a Service gets one status.parents entry per parentRef: Weft\'s controllerName, Accepted and ResolvedRefs with observedGeneration and transition time', () => {
  const route = httpRoute({ generation: 4 });
  const body = onlyWrite(planStatus(view([route]), T0));
  assert.deepEqual(body.metadata, { resourceVersion: '1' }, 'the patch is conditioned on the version it was computed from');
  assert.equal(body.status.parents.length, 1);
  const entry = body.status.parents[0];
  assert.deepEqual(entry.parentRef, { group: '', kind: 'Service', name: 'web', port: 80 }, 'the parentRef echoed as written');
  assert.equal(entry.controllerName, 'weft.dev/mesh-controller');
  assert.deepEqual(entry.conditions.map((c: Condition) => c.type), ['Accepted', 'ResolvedRefs']);
  const { Accepted, ResolvedRefs } = conditions(body);
  assert.deepEqual({ ...Accepted, message: undefined }, { type: 'Accepted', status: 'True', reason: 'Accepted', message: undefined, observedGeneration: 4, lastTransitionTime: T0 });
  assert.match(Accepted!.message, /Service shop\/web port 80/);
  assert.deepEqual(ResolvedRefs, { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'all references resolved', observedGeneration: 4, lastTransitionTime: T0 });
});

test('no write when the object already has the status it should have; lastTransitionTime kept while a condition\'s status stays, renewed when it flips', () => {
  const first = onlyWrite(planStatus(view([httpRoute()]), T0));
  const written = withStatus(httpRoute(), first, '2');
  assert.deepEqual(planStatus(view([written]), T1).writes, [], 'unchanged: nothing to write, even at a later time');
  const reversed = (o: unknown): unknown => Array.isArray(o) ? o.map(reversed)
    : typeof o === 'object' && o !== null ? Object.fromEntries(Object.entries(o).reverse().map(([k, v]) => [k, reversed(v)])) : o;
  assert.deepEqual(planStatus(view([{ ...written, status: reversed(written.status) }]), T1).writes, [], 'the same status with its keys in another order (as the API server may return it) is unchanged');

  // A new generation that changes nothing else: observedGeneration follows, the transition times stay.
  const edited = { ...written, metadata: { ...written.metadata, generation: 2, resourceVersion: '3' } };
  const second = onlyWrite(planStatus(view([edited]), T1));
  assert.equal(conditions(second).Accepted!.observedGeneration, 2);
  assert.equal(conditions(second).Accepted!.lastTransitionTime, T0, 'Accepted stayed True: its transition time is kept');
  assert.equal(conditions(second).ResolvedRefs!.lastTransitionTime, T0);

  // The canary Service goes away: ResolvedRefs flips to False (its transition time now), Accepted does not.
  const third = onlyWrite(planStatus(view([withStatus(edited, second, '4')], [], SERVICES.filter((s) => s.name !== 'web-v2')), T1));
  const { Accepted, ResolvedRefs } = conditions(third);
  assert.deepEqual([ResolvedRefs!.status, ResolvedRefs!.reason, ResolvedRefs!.lastTransitionTime], ['False', 'BackendNotFound', T1]);
  assert.match(ResolvedRefs!.message, /spec\.rules\[0\]\.backendRefs\[1\]: Service shop\/web-v2 does not exist/);
  assert.deepEqual([Accepted!.status, Accepted!.lastTransitionTime], ['True', T0]);
});

test('other controllers\' status.parents entries are kept as they are; Weft\'s entry for a removed parentRef goes', () => {
  const gateway = {
    parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge', namespace: 'infra' },
    controllerName: 'example.com/gateway-controller',
    conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', observedGeneration: 1, lastTransitionTime: '2029-01-01T00:00:00Z' }],
  };
  const stale = { parentRef: { group: '', kind: 'Service', name: 'old', port: 80 }, controllerName: CONTROLLER_NAME, conditions: [] };
  const route = httpRoute({ status: { parents: [gateway, stale] } });
  const body = onlyWrite(planStatus(view([route]), T0));
  assert.deepEqual(body.status.parents[0], gateway, 'the Gateway controller\'s entry, unchanged and first');
  assert.deepEqual(body.status.parents.slice(1).map((p: Obj) => p.parentRef.name), ['web'], 'Weft\'s entry for Service old is gone, web\'s is there');

  const written = withStatus(route, body, '2');
  assert.deepEqual(planStatus(view([written]), T1).writes, [], 'their entry does not make ours look changed');
});

test('a route whose edit is invalid: Accepted False UnsupportedValue with the field-level error, while its last valid version stays in force', () => {
  const good = httpRoute({ generation: 1 });
  const bad = httpRoute({ generation: 2, rv: '5', spec: BAD_REGEX_SPEC });
  const v = view([bad], [good]);
  assert.ok(v.snapshot.httpRoutes?.some((r) => r.name === 'web-split'), 'the last valid version is in the snapshot');
  const plan = planStatus(v, T0);
  const { Accepted, ResolvedRefs } = conditions(onlyWrite(plan));
  assert.deepEqual([Accepted!.status, Accepted!.reason, Accepted!.observedGeneration], ['False', 'UnsupportedValue', 2]);
  assert.match(Accepted!.message, /spec\.rules\[0\]\.matches\[0\]\.path\.value/, 'the field is named');
  assert.match(Accepted!.message, /last valid version of this route stays in force/);
  assert.equal(ResolvedRefs!.status, 'True', 'the version in force resolves its backends');
  assert.equal(plan.invalid.length, 1);
  assert.deepEqual([plan.invalid[0]!.kind.kind, plan.invalid[0]!.name, plan.invalid[0]!.generation], ['HTTPRoute', 'web-split', 2]);
  assert.match(plan.invalid[0]!.message, /path\.value/);

  const never = conditions(onlyWrite(planStatus(view([bad]), T0)));
  assert.match(never.Accepted!.message, /the route is not in force until it is fixed/);
  assert.equal(never.ResolvedRefs, undefined, 'nothing in force: no ResolvedRefs claimed');
});

test('an HTTPRoute that loses its Service port to a GRPCRoute is Accepted False Conflicted; the GRPCRoute gets its own status', () => {
  const grpc = {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute',
    metadata: { name: 'grpc-route', namespace: 'shop', uid: 'g1', generation: 1, resourceVersion: '7' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'grpc', port: 80 }], rules: [{ backendRefs: [{ name: 'grpc', port: 80 }] }] },
  };
  const http = httpRoute({ name: 'on-grpc', spec: { parentRefs: [{ group: '', kind: 'Service', name: 'grpc', port: 80 }], rules: [{ backendRefs: [{ name: 'grpc', port: 80 }] }] } });
  const plan = planStatus(view([http, grpc]), T0);
  const byName = new Map(plan.writes.map((w) => [w.name, w]));
  assert.equal(conditions(byName.get('on-grpc')!.body).Accepted!.reason, 'Conflicted');
  const g = byName.get('grpc-route')!;
  assert.equal(g.kind.plural, 'grpcroutes');
  assert.deepEqual([conditions(g.body).Accepted!.status, conditions(g.body).ResolvedRefs!.status], ['True', 'True']);
});

test('a parentRef to a missing Service: Accepted False NoMatchingParent', () => {
  const route = httpRoute({ spec: { parentRefs: [{ group: '', kind: 'Service', name: 'nowhere' }], rules: [{ backendRefs: [{ name: 'web-v1', port: 80 }] }] } });
  const { Accepted } = conditions(onlyWrite(planStatus(view([route]), T0)));
  assert.deepEqual([Accepted!.status, Accepted!.reason], ['False', 'NoMatchingParent']);
  assert.match(Accepted!.message, /Service shop\/nowhere does not exist/);
});

test('TrafficPolicy: the older of two on one Service is Accepted, the newer Conflicted naming it; an invalid one is Invalid with its field errors; other condition types are kept', () => {
  const older = trafficPolicy('breaker', '2030-01-01T00:00:00Z', { status: { conditions: [{ type: 'Reviewed', status: 'True', reason: 'ByHand', message: 'ok', lastTransitionTime: T0 }] } });
  const newer = trafficPolicy('outlier', '2030-02-01T00:00:00Z');
  const broken = trafficPolicy('broken', '2030-03-01T00:00:00Z', { generation: 3, spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web-v1' }], outlierDetection: { interval: 'soon' } } });
  const plan = planStatus(view([older, newer, broken]), T0);
  const byName = new Map(plan.writes.map((w) => [w.name, w.body.status.conditions as Condition[]]));
  assert.deepEqual(byName.get('breaker')!.map((c) => c.type), ['Reviewed', 'Accepted'], 'a condition of another type is kept');
  const accepted = (name: string): Condition => byName.get(name)!.find((c) => c.type === 'Accepted')!;
  assert.deepEqual([accepted('breaker').status, accepted('breaker').reason], ['True', 'Accepted']);
  assert.deepEqual([accepted('outlier').status, accepted('outlier').reason], ['False', 'Conflicted']);
  assert.match(accepted('outlier').message, /TrafficPolicy shop\/breaker targets it too and is older/);
  assert.deepEqual([accepted('broken').status, accepted('broken').reason, accepted('broken').observedGeneration], ['False', 'Invalid', 3]);
  assert.match(accepted('broken').message, /spec\.outlierDetection\.interval/);
  assert.match(accepted('broken').message, /not in force until it is fixed/);
  assert.deepEqual(plan.invalid.map((o) => o.name), ['broken']);
  for (const w of plan.writes) assert.equal(w.kind.plural, 'trafficpolicies');

  const settled = [older, newer, broken].map((o) => withStatus(o, plan.writes.find((w) => w.name === o.metadata.name)!.body, '9'));
  assert.deepEqual(planStatus(view(settled), T1).writes, [], 'written once, nothing more to write');
});

// ---- the writer, against a loopback API server ----

interface Recorded { method: string; path: string; contentType: string | undefined; body: Obj | undefined }

function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Obj = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Objects by `plural/namespace/name`; PATCH .../status applies the patch's status only, as the status subresource does. */
class FakeApi {
  readonly objects = new Map<string, Obj>();
  readonly requests: Recorded[] = [];
  /** Status codes to answer the next PATCHes with, instead of applying them. */
  readonly failPatches: number[] = [];
  /** Called with the object after each write (the kube-source test turns it into a watch event). */
  onWrite: ((plural: string, obj: Obj) => void) | undefined;
  lists: Record<string, () => Obj> = {};
  readonly watchers = new Map<string, ServerResponse>();
  private version = 100;
  private readonly server = createServer((req, res) => this.handle(req, res));

  async start(t: TestContext): Promise<KubeConfig> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => {
      for (const w of this.watchers.values()) w.end();
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    }));
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: 'test' }], contexts: [{ name: 'fake', cluster: 'fake', user: 'test' }], currentContext: 'fake',
    });
    return kc;
  }

  /** kubectl apply: resourceVersion bumped, and the generation when the spec changed. */
  put(plural: string, obj: Obj): Obj {
    const key = `${plural}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    const before = this.objects.get(key);
    const specChanged = JSON.stringify(before?.spec) !== JSON.stringify(obj.spec);
    const generation = (before?.metadata.generation ?? 0) + (before === undefined || specChanged ? 1 : 0);
    const stored = { ...obj, metadata: { ...obj.metadata, generation, resourceVersion: String(++this.version) }, ...(before?.status ? { status: before.status } : {}) };
    this.objects.set(key, stored);
    this.onWrite?.(plural, stored);
    return stored;
  }

  get(plural: string, name: string, namespace = 'shop'): Obj | undefined {
    return this.objects.get(`${plural}/${namespace}/${name}`);
  }

  patches(): Recorded[] {
    return this.requests.filter((r) => r.method === 'PATCH');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => { text += chunk; });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const body = text === '' ? undefined : JSON.parse(text) as Obj;
      if (req.method !== 'GET') this.requests.push({ method: req.method ?? '', path: url.pathname, contentType: req.headers['content-type'], body });
      // Namespaced (.../namespaces/NS/PLURAL/NAME/status) or cluster-scoped (.../PLURAL/NAME/status).
      const status = /^\/apis\/([^/]+)\/([^/]+)\/(?:namespaces\/([^/]+)\/)?([^/]+)\/([^/]+)\/status$/.exec(url.pathname);
      if (req.method === 'PATCH' && status) {
        const [, , , namespace = '', plural, name] = status as unknown as string[];
        const failure = this.failPatches.shift();
        if (failure !== undefined) return reply(res, failure, statusBody(failure, 'InternalError', 'etcdserver: request timed out'));
        const key = `${plural}/${namespace}/${name}`;
        const current = this.objects.get(key);
        if (current === undefined) return reply(res, 404, statusBody(404, 'NotFound', `${plural} "${name}" not found`));
        const precondition = body?.metadata?.resourceVersion;
        if (precondition !== undefined && precondition !== current.metadata.resourceVersion) {
          return reply(res, 409, statusBody(409, 'Conflict', `Operation cannot be fulfilled on ${plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`));
        }
        const updated = { ...current, metadata: { ...current.metadata, resourceVersion: String(++this.version) }, status: mergePatch(current.status, body?.status) };
        this.objects.set(key, updated);
        this.onWrite?.(plural!, updated);
        return reply(res, 200, updated);
      }
      if (req.method === 'POST' && /^\/api\/v1\/namespaces\/[^/]+\/events$/.test(url.pathname)) return reply(res, 201, body ?? {});
      const list = this.lists[url.pathname];
      if (req.method === 'GET' && list !== undefined) {
        if (url.searchParams.get('watch') === 'true') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.flushHeaders();
          this.watchers.set(url.pathname, res);
          return;
        }
        return reply(res, 200, list());
      }
      return reply(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
    });
  }
}

function statusBody(code: number, reason: string, message: string): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason, message, code };
}

function reply(res: ServerResponse, code: number, body: Obj): void {
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** Time stands still until the test moves it; timers fire when it does. */
class ManualClock implements Clock {
  private t = Date.parse(T0);
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  private next = 0;
  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void { this.timers.delete(handle as number); }
  pending(): number { return this.timers.size; }
  advance(ms: number): void {
    this.t += ms;
    for (const [id, timer] of [...this.timers].sort((a, b) => a[1].at - b[1].at)) {
      if (timer.at > this.t) continue;
      this.timers.delete(id);
      timer.fn();
    }
  }
}

/** A regression that leaves a write waiting (e.g. for a timer of the manual clock) fails the test instead of hanging the run. */
const WRITER_TEST = { timeout: 20_000 };

const ROUTE_STATUS_PATH = '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web-split/status';

async function writerOn(t: TestContext, options: { minIntervalMs?: number; retryMs?: number } = {}): Promise<{ api: FakeApi; writer: StatusWriter; clock: ManualClock; kc: KubeConfig }> {
  const api = new FakeApi();
  const kc = await api.start(t);
  const clock = new ManualClock();
  const writer = new StatusWriter({ custom: kc.makeApiClient(CustomObjectsApi), core: kc.makeApiClient(CoreV1Api), clock, ...options });
  t.after(() => writer.close());
  return { api, writer, clock, kc };
}

test('the writer PATCHes the status subresource with a merge patch, once: not again while the informer still shows the old version, nor once it shows the new one', WRITER_TEST, async (t) => {
  const { api, writer } = await writerOn(t);
  const gateway = { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' }, controllerName: 'example.com/gw', conditions: [] };
  const route = api.put('httproutes', httpRoute({ status: { parents: [gateway] } }));
  writer.observe(view([route]));
  await writer.idle();
  const [patch, ...more] = api.patches();
  assert.equal(more.length, 0);
  assert.equal(patch!.path, ROUTE_STATUS_PATH);
  assert.equal(patch!.contentType, 'application/merge-patch+json');
  assert.deepEqual(patch!.body!.metadata, { resourceVersion: route.metadata.resourceVersion });
  assert.deepEqual(patch!.body!.status.parents[0], gateway, 'the other controller\'s entry is sent back unchanged');
  assert.equal(patch!.body!.status.parents[1].controllerName, CONTROLLER_NAME);
  const stored = api.get('httproutes', 'web-split')!;
  assert.deepEqual(stored.status.parents.map((p: Obj) => p.controllerName), ['example.com/gw', CONTROLLER_NAME], 'the API server has both entries');
  assert.deepEqual(stored.spec, route.spec, 'the spec is untouched');

  writer.observe(view([route]));
  writer.observe(view([stored]));
  await writer.idle();
  assert.equal(api.patches().length, 1, 'the stale view (informer not caught up) and the fresh one both write nothing');
  assert.deepEqual(writer.stats, { written: 1, superseded: 0, failed: 0, events: 0 });
});

test('changes within the rate limit are coalesced: one write per object per interval, carrying the latest status', WRITER_TEST, async (t) => {
  const { api, writer, clock } = await writerOn(t, { minIntervalMs: 1000 });
  writer.observe(view([api.put('httproutes', httpRoute())]));
  await writer.idle();
  assert.equal(api.patches().length, 1);

  // Two spec edits in quick succession (as the informer delivers them), each from the version after the last.
  const edit1 = api.put('httproutes', { ...api.get('httproutes', 'web-split')!, spec: { ...httpRoute().spec, hostnames: ['a.example'] } });
  writer.observe(view([edit1]));
  const edit2 = api.put('httproutes', { ...edit1, spec: { ...httpRoute().spec, hostnames: ['b.example'] } });
  writer.observe(view([edit2]));
  await sleep(20);
  assert.equal(api.patches().length, 1, 'nothing sent before the interval is over');
  assert.equal(clock.pending(), 1, 'one timer for the object, not one per change');

  clock.advance(1000);
  await writer.idle();
  const patches = api.patches();
  assert.equal(patches.length, 2, 'one more write for both edits');
  assert.equal(patches[1]!.body!.metadata.resourceVersion, edit2.metadata.resourceVersion, 'the latest state, conditioned on its version');
  assert.equal(patches[1]!.body!.status.parents[0].conditions[0].observedGeneration, 3);
  assert.equal(api.get('httproutes', 'web-split')!.status.parents[0].conditions[0].observedGeneration, 3);
  assert.deepEqual(writer.stats, { written: 2, superseded: 0, failed: 0, events: 0 });
});

test('a 404 (object gone) and a 409 (changed since read) are not retried; the next view writes; another failure is retried after retryMs', WRITER_TEST, async (t) => {
  const { api, writer, clock } = await writerOn(t, { minIntervalMs: 0, retryMs: 5000 });
  writer.observe(view([httpRoute({ name: 'gone' })]));
  await writer.idle();
  assert.deepEqual(api.patches().map((p) => p.path), ['/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/gone/status']);
  assert.equal(writer.stats.superseded, 1);

  const route = api.put('httproutes', httpRoute());
  const stale = { ...route, metadata: { ...route.metadata, resourceVersion: '1' } };
  writer.observe(view([stale]));
  await writer.idle();
  assert.equal(writer.stats.superseded, 2, '409: the informer will bring the newer version');
  assert.equal(clock.pending(), 0, 'no retry scheduled for a 404 or 409');
  assert.equal(api.get('httproutes', 'web-split')!.status, undefined);

  api.failPatches.push(500);
  writer.observe(view([route]));
  await writer.idle();
  assert.equal(writer.stats.failed, 1);
  assert.equal(clock.pending(), 1, 'a retry is scheduled');
  clock.advance(5000);
  await writer.idle();
  assert.equal(writer.stats.written, 1, 'the retry wrote it');
  assert.equal(api.get('httproutes', 'web-split')!.status.parents[0].conditions[0].status, 'True');
  assert.equal(api.patches().length, 4);
});

test('an invalid object gets a Warning Event (reason Invalid) once per generation, and its status written to the trafficpolicies status subresource', WRITER_TEST, async (t) => {
  const { api, writer } = await writerOn(t, { minIntervalMs: 0 });
  const broken = api.put('trafficpolicies', trafficPolicy('broken', T0, { spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], fault: { abort: { httpStatus: 99 } } } }));
  writer.observe(view([broken]));
  writer.observe(view([broken]));
  await writer.idle();
  await until('the Event is created', () => writer.stats.events === 1);
  const events = api.requests.filter((r) => r.method === 'POST');
  assert.equal(events.length, 1, 'one Event for two views of the same generation');
  assert.equal(events[0]!.path, '/api/v1/namespaces/shop/events');
  const event = events[0]!.body!;
  assert.deepEqual(event.involvedObject, { apiVersion: 'networking.weft.dev/v1', kind: 'TrafficPolicy', name: 'broken', namespace: 'shop', uid: 'uid-broken', resourceVersion: broken.metadata.resourceVersion });
  assert.deepEqual([event.type, event.reason, event.metadata.namespace, event.source.component, event.reportingComponent], ['Warning', 'Invalid', 'shop', 'weft-controlplane', CONTROLLER_NAME]);
  assert.match(event.message, /spec\.fault\.abort\.httpStatus/);
  assert.match(event.metadata.name, /^broken\.[0-9a-f]+$/);

  const [patch] = api.patches();
  assert.equal(patch!.path, '/apis/networking.weft.dev/v1/namespaces/shop/trafficpolicies/broken/status');
  assert.equal(patch!.contentType, 'application/merge-patch+json');
  const accepted = api.get('trafficpolicies', 'broken')!.status.conditions[0];
  assert.deepEqual([accepted.type, accepted.status, accepted.reason, accepted.observedGeneration], ['Accepted', 'False', 'Invalid', 1]);

  const stillBroken = api.put('trafficpolicies', { ...broken, spec: { ...broken.spec, fault: { abort: { httpStatus: 98 } } } });
  writer.observe(view([stillBroken]));
  await writer.idle();
  await until('the second Event is created', () => writer.stats.events === 2);
  assert.equal(api.requests.filter((r) => r.method === 'POST').length, 2, 'a new generation, still invalid: one more Event');
});

test('an inactive writer (not the Lease holder) writes nothing; made active it writes from the latest view at once, and nothing that is already right', WRITER_TEST, async (t) => {
  const { api, writer, kc } = await writerOn(t, { minIntervalMs: 0 });
  const route = api.put('httproutes', httpRoute());
  writer.setActive(false);
  writer.observe(view([httpRoute({ name: 'older-view' })]));
  writer.observe(view([route]));
  await writer.idle();
  assert.equal(api.requests.length, 0, 'nothing written while inactive');
  writer.setActive(true);
  await writer.idle();
  assert.deepEqual(api.patches().map((p) => p.path), [ROUTE_STATUS_PATH], 'the latest view only');

  // A replica taking over a status the old leader already wrote has nothing to do.
  const standby = new StatusWriter({ custom: kc.makeApiClient(CustomObjectsApi), minIntervalMs: 0 });
  t.after(() => standby.close());
  standby.setActive(false);
  standby.observe(view([api.get('httproutes', 'web-split')!]));
  standby.setActive(true);
  await standby.idle();
  assert.equal(api.patches().length, 1);
});

async function until(what: string, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!ready()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

test('through the Kubernetes source: the route\'s status is written after the first sync, an invalid edit turns it to UnsupportedValue, and our own write (seen by the informer) writes nothing more', WRITER_TEST, async (t) => {
  const api = new FakeApi();
  const kc = await api.start(t);
  const empty = (kind: string) => () => ({ apiVersion: 'v1', kind, metadata: { resourceVersion: '1' }, items: [] });
  const svc = { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] } };
  const backends = ['web-v1', 'web-v2'].map((name) => ({ ...svc, metadata: { name, namespace: 'shop' } }));
  api.lists = {
    '/api/v1/namespaces': empty('NamespaceList'), '/api/v1/pods': empty('PodList'), '/api/v1/nodes': empty('NodeList'),
    '/apis/discovery.k8s.io/v1/endpointslices': empty('EndpointSliceList'),
    '/api/v1/services': () => ({ apiVersion: 'v1', kind: 'ServiceList', metadata: { resourceVersion: '1' }, items: [svc, ...backends] }),
    '/apis/gateway.networking.k8s.io/v1/httproutes': () => ({
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRouteList', metadata: { resourceVersion: '1' },
      items: [...api.objects].filter(([k]) => k.startsWith('httproutes/')).map(([, o]) => o),
    }),
  };
  api.put('httproutes', httpRoute());
  api.onWrite = (plural, obj) => {
    api.watchers.get(`/apis/gateway.networking.k8s.io/v1/${plural}`)?.write(JSON.stringify({ type: 'MODIFIED', object: obj }) + '\n');
  };
  const writer = new StatusWriter({ custom: kc.makeApiClient(CustomObjectsApi), core: kc.makeApiClient(CoreV1Api), minIntervalMs: 0 });
  t.after(() => writer.close());
  const source = await startKubeSource(kc, () => undefined, (v) => writer.observe(v));
  t.after(() => source.close());

  await until('the status is written', () => api.get('httproutes', 'web-split')?.status !== undefined);
  assert.equal(api.get('httproutes', 'web-split')!.status.parents[0].conditions[0].reason, 'Accepted');
  await until('the informer watches HTTPRoutes', () => api.watchers.has('/apis/gateway.networking.k8s.io/v1/httproutes'));

  api.put('httproutes', { ...api.get('httproutes', 'web-split')!, spec: BAD_REGEX_SPEC });
  await until('the invalid edit is reported', () => api.get('httproutes', 'web-split')!.status.parents[0].conditions[0].reason === 'UnsupportedValue');
  const accepted = api.get('httproutes', 'web-split')!.status.parents[0].conditions[0];
  assert.equal(accepted.observedGeneration, 2);
  assert.match(accepted.message, /last valid version of this route stays in force/);
  assert.ok(source.current().httpRoutes?.some((r) => r.name === 'web-split'), 'the last valid version is still in the snapshot');
  await until('the Event is created', () => writer.stats.events === 1);
  await writer.idle();
  // Our second write came back through the watch; had it made another write, it would be here by the time a later edit is seen.
  api.put('httproutes', { ...api.get('httproutes', 'web-split')!, spec: httpRoute().spec });
  await until('the fixed edit is Accepted again', () => api.get('httproutes', 'web-split')!.status.parents[0].conditions[0].reason === 'Accepted');
  await writer.idle();
  assert.equal(api.patches().length, 3, 'one write per change of status: first sync, invalid edit, fixed edit');
});

test('a cluster-scoped object (ProxyConfig) is patched without a namespace, and its Event goes to namespace default with no namespace on the involved object', WRITER_TEST, async (t) => {
  const { api, writer } = await writerOn(t, { minIntervalMs: 0 });
  const misnamed = api.put('proxyconfigs', {
    apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'mesh', uid: 'uid-mesh' }, spec: { accessLog: { level: 'all' } },
  });
  const objects = new Map<string, CustomObject[]>([['ProxyConfig', [misnamed as CustomObject]]]);
  const converted = kindFragment('ProxyConfig', misnamed as CustomObject);
  assert.ok(!converted.ok, 'the conversion refuses another name');
  writer.observe({ snapshot: emptySnapshot(), objects, invalid: new Map([['ProxyConfig /mesh', converted.error]]) });
  await writer.idle();
  await until('the Event is created', () => writer.stats.events === 1);
  const [patch] = api.patches();
  assert.equal(patch!.path, '/apis/config.weft.dev/v1/proxyconfigs/mesh/status');
  const accepted = api.get('proxyconfigs', 'mesh', '')!.status.conditions[0];
  assert.deepEqual([accepted.type, accepted.status, accepted.reason, accepted.observedGeneration], ['Accepted', 'False', 'Invalid', 1]);
  assert.match(accepted.message, /only the ProxyConfig named "default" is read/);
  const [event] = api.requests.filter((r) => r.method === 'POST');
  assert.equal(event!.path, '/api/v1/namespaces/default/events');
  assert.deepEqual(event!.body!.involvedObject, { apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', name: 'mesh', uid: 'uid-mesh', resourceVersion: misnamed.metadata.resourceVersion });
  assert.equal(event!.body!.metadata.namespace, 'default');
  assert.equal(event!.body!.message, accepted.message, 'the Event says what the condition says');
});
