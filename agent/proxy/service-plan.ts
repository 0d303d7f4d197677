/**
 * The plan for one HTTP request to a Service port: the routes attached to it (HTTPRoute/GRPCRoute,
 * consumer before producer), the rule's filters and backend, then the backend Service's
 * TrafficPolicy (fault, timeout, retries). Pure over the state in force and a random source;
 * service-http.ts carries the plan out.
 */
import { objectKey, type ServiceInfo } from '../config/objects';
import { applyHeaderEdits, pickBackend, requestEdits, responseEdits, RouteIndex, type MirrorTarget, type RouteMatch } from '../route';
import { servicePortFor } from '../state/endpoints';
import type { WorkloadStore } from '../state/store';
import { faultFor } from '../traffic/fault';
import { backoffMs, retriable, type TryOutcome } from '../traffic/retry';
import type { ResolvedTrafficPolicy } from '../traffic/traffic-policy';
import type { AttemptOutcome, Backend, HeaderMap, RequestPlan, RetryPlan } from './request-plan';
import type { PlanCall, PlanRequest } from './service-env';

/** What the plan needs of the proxy's live state: the TrafficPolicy in force for a Service port. */
export interface PolicySource {
  policy(service: { namespace: string; name: string }, port: number): ResolvedTrafficPolicy;
}

/** Envoy's default base interval of the retry backoff (Gateway API `retry.backoff` replaces it). */
const DEFAULT_BACKOFF_MS = 25;

const indexes = new WeakMap<WorkloadStore, { routes: RouteIndex; services: Map<string, ServiceInfo> }>();

/** The route index of a snapshot, built once per store. */
export function routesOf(store: WorkloadStore): RouteIndex {
  return indexOf(store).routes;
}

function indexOf(store: WorkloadStore): { routes: RouteIndex; services: Map<string, ServiceInfo> } {
  let ix = indexes.get(store);
  if (!ix) {
    const s = store.snapshot;
    ix = { routes: new RouteIndex(s.httpRoutes ?? [], s.grpcRoutes ?? [], s.services), services: new Map(s.services.map((svc) => [objectKey(svc), svc])) };
    indexes.set(store, ix);
  }
  return ix;
}

const noEdits = (): void => undefined;

export function planRequest(store: WorkloadStore, policies: PolicySource, call: PlanCall, req: PlanRequest, random: () => number = Math.random): RequestPlan {
  const { service, port } = call.target;
  const ix = indexOf(store);
  const table = ix.routes.table(call.clientNamespace, service, port.port);
  if (table === undefined) {
    return withPolicy(policies, { backend: { service, port }, path: req.path, authority: req.authority, editRequest: noEdits, editResponse: noEdits }, req, random);
  }
  const match = table.match({ method: req.method, path: req.path, headers: req.headers });
  if (match === undefined) return { kind: 'respond', status: 404, body: 'route not found', flag: 'NO_ROUTE' };
  const route = routeName(match);
  const backend = match.redirect === undefined ? pickBackend(match, random()) : undefined;
  const edits = requestEdits(match, { method: req.method, path: req.path, headers: req.headers, port: port.port }, backend);
  if ('redirect' in edits) return { kind: 'respond', status: edits.redirect.status, body: '', headers: { location: edits.redirect.location }, flag: '-', route };
  if (backend === undefined) return { kind: 'respond', status: 500, body: 'the matched route rule has no backend', flag: 'NO_ROUTE', route };
  const target = backend.service && resolveBackend(ix.services, backend.service, backend.port);
  if (!target) return { kind: 'respond', status: 500, body: `backend does not resolve: ${backend.unresolved ?? `${backend.service?.namespace}/${backend.service?.name}:${backend.port}`}`, flag: 'NO_ROUTE', route };
  const response = responseEdits(match, backend);
  const mirrors = backend.mirrors.length === 0 ? match.mirrors : match.mirrors.length === 0 ? backend.mirrors : [...match.mirrors, ...backend.mirrors];
  const mirror = firstMirror(ix.services, mirrors);
  return withPolicy(policies, {
    backend: target,
    route,
    path: edits.path,
    authority: edits.host ?? req.authority,
    editRequest: (h: HeaderMap) => { applyHeaderEdits(h, edits.headers); },
    editResponse: response.length === 0 ? noEdits : (h: HeaderMap) => { applyHeaderEdits(h, response); },
    ...(mirror ? { mirror } : {}),
  }, req, random, match);
}

/** `namespace/name[rule]` of a match, once per table entry (the table returns the same RouteMatch for the same rule). */
const routeNames = new WeakMap<RouteMatch, string>();
function routeName(match: RouteMatch): string {
  let name = routeNames.get(match);
  if (name === undefined) routeNames.set(match, (name = `${match.route.namespace}/${match.route.name}[${match.ruleName ?? match.ruleIndex}]`));
  return name;
}

function resolveBackend(services: Map<string, ServiceInfo>, ref: { namespace: string; name: string }, portNumber: number): Backend | undefined {
  const service = services.get(objectKey(ref));
  const port = service && servicePortFor(service, portNumber);
  return service && port ? { service, port } : undefined;
}

function firstMirror(services: Map<string, ServiceInfo>, mirrors: readonly MirrorTarget[]): { backend: Backend; percent: number } | undefined {
  for (const m of mirrors) {
    const backend = m.service && resolveBackend(services, m.service, m.port);
    if (backend) return { backend, percent: (100 * m.numerator) / m.denominator };
  }
  return undefined;
}

type Forward = Omit<Extract<RequestPlan, { kind: 'forward' }>, 'kind' | 'retry'>;

/** The backend's TrafficPolicy over a forward: an injected fault, the timeouts and the retries (a route's own win). */
function withPolicy(policies: PolicySource, f: Forward, _req: PlanRequest, random: () => number, match?: RouteMatch): RequestPlan {
  const policy = policies.policy(f.backend.service, f.backend.port.port);
  const fault = faultFor(policy.fault, random);
  if (fault.abortStatus !== undefined || fault.abortGrpcStatus !== undefined) {
    return { kind: 'respond', status: fault.abortStatus ?? 200, body: 'fault filter abort', flag: 'FAULT_INJECTED',
      ...(fault.abortGrpcStatus !== undefined ? { grpcStatus: fault.abortGrpcStatus } : {}), ...(f.route ? { route: f.route } : {}), ...(fault.delayMs ? { delayMs: fault.delayMs } : {}) };
  }
  const requestMs = match?.timeouts.requestMs ?? policy.timeoutMs;
  const tryMs = match?.timeouts.backendRequestMs ?? policy.retries.perTryTimeoutMs;
  const plan: Extract<RequestPlan, { kind: 'forward' }> = { kind: 'forward', ...f, retry: retryPlan(policy, match) };
  if (requestMs > 0) plan.requestTimeoutMs = requestMs;
  if (tryMs > 0) plan.tryTimeoutMs = tryMs;
  if (fault.delayMs) plan.delayMs = fault.delayMs;
  return plan;
}

function tryOutcome(o: AttemptOutcome): TryOutcome {
  return o.kind === 'response' ? { status: o.status } : { error: o.kind };
}

/**
 * A route's `retry` (Gateway API: its codes, and connection failures) replaces the TrafficPolicy's
 * retries; the TrafficPolicy's (Istio's retryOn) apply otherwise.
 */
/**
 * Retry plans by what they are made of (the route's retry, else nothing, then the policy's
 * retries): made once, not per request (a Set and two closures each).
 */
const retryPlans = new WeakMap<object, WeakMap<object, RetryPlan>>();
const NO_ROUTE_RETRY = {};

function retryPlan(policy: ResolvedTrafficPolicy, match: RouteMatch | undefined): RetryPlan {
  const outer = match?.retry ?? NO_ROUTE_RETRY;
  let byPolicy = retryPlans.get(outer);
  if (byPolicy === undefined) retryPlans.set(outer, (byPolicy = new WeakMap()));
  let plan = byPolicy.get(policy.retries);
  if (plan === undefined) byPolicy.set(policy.retries, (plan = makeRetryPlan(policy, match)));
  return plan;
}

function makeRetryPlan(policy: ResolvedTrafficPolicy, match: RouteMatch | undefined): RetryPlan {
  const r = match?.retry;
  if (r !== undefined) {
    const base = r.backoffMs ?? DEFAULT_BACKOFF_MS;
    const codes = new Set(r.codes);
    return {
      attempts: r.attempts ?? policy.retries.attempts,
      retryable: (o) => (o.kind === 'response' ? codes.has(o.status) : o.kind === 'connect-failure' || o.kind === 'reset'),
      backoffMs: (n) => backoffMs(n, base),
    };
  }
  const { attempts, retryOn, backoffMs: base } = policy.retries;
  return { attempts, retryable: (o) => retriable(retryOn, tryOutcome(o)), backoffMs: (n) => backoffMs(n, base) };
}
