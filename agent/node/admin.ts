/**
 * The admin API's routes (127.0.0.1:15000, DESIGN.md): read-only views of what the agent holds,
 * and `/explain`. The agent hands in a view of its state; nothing here changes it.
 */
import type { Snapshot } from '../config/objects';
import type { PolicySet } from '../policy';
import { routesOf } from '../proxy/service-plan';
import type { RouteStatus } from '../route';
import { trafficPolicyConflicts } from '../traffic/resolve';
import type { WorkloadStore } from '../state/store';
import { explain } from './explain';
import { explainQueryOf } from './explain-command';
import { badRequest, type Handler } from './http-endpoints';
import { LIVE_PATHS, livePage } from './live-page';

export interface AdminView {
  /** the agent's node: `/explain` answers only where it holds the policies (explain.ts) */
  node: string;
  /** the state in force; undefined before the first snapshot */
  store(): WorkloadStore | undefined;
  policies(): PolicySet;
  workloads(): unknown;
  certs(): unknown;
  redirect(): unknown;
  /** the source proxy's live state per Service port (ejections, breaker overflows) */
  services(): unknown;
  /** the live view's feed (telemetry/live-feed.ts); the page at /live draws it */
  live?(): unknown;
}

/**
 * The snapshot in force, each HTTPRoute and GRPCRoute with its status (the Gateway API's Accepted
 * and ResolvedRefs conditions, computed here as the control plane would write them in Kubernetes).
 */
export function configDump(store: WorkloadStore): Snapshot & { trafficPolicyConflicts: unknown[] } {
  const routes = routesOf(store);
  const s = store.snapshot;
  const withStatus = <T extends Parameters<typeof routes.status>[0]>(r: T): T & { status: RouteStatus } => ({ ...r, status: routes.status(r) });
  return {
    ...s,
    ...(s.httpRoutes ? { httpRoutes: s.httpRoutes.map(withStatus) } : {}),
    ...(s.grpcRoutes ? { grpcRoutes: s.grpcRoutes.map(withStatus) } : {}),
    trafficPolicyConflicts: trafficPolicyConflicts(s.trafficPolicies ?? []),
  };
}

/** One line per route and parent: what `weft status` prints. */
export function routeSummary(store: WorkloadStore): unknown[] {
  return routesOf(store).statuses().map(({ route, status }) => ({
    route: `${route.kind} ${route.namespace}/${route.name}`,
    accepted: status.accepted.status === 'True' ? 'True' : `${status.accepted.status} (${status.accepted.reason}: ${status.accepted.message})`,
    resolvedRefs: status.resolvedRefs.status === 'True' ? 'True' : `${status.resolvedRefs.status} (${status.resolvedRefs.reason}: ${status.resolvedRefs.message})`,
  }));
}

export function adminRoutes(v: AdminView): Record<string, Handler> {
  return {
    '/config_dump': () => { const store = v.store(); return store && configDump(store); },
    '/routes': () => { const store = v.store(); return store ? routeSummary(store) : []; },
    '/services': () => v.services(),
    '/workloads': () => v.workloads(),
    '/certs': () => v.certs(),
    '/redirect': () => v.redirect(),
    [LIVE_PATHS.page]: () => livePage(),
    [LIVE_PATHS.feed]: () => {
      if (!v.live) throw new Error('this agent keeps no live view');
      return v.live();
    },
    '/explain': (query) => {
      const q = explainQueryOf(query);
      if (!q.ok) throw badRequest(q.error);
      const store = v.store();
      if (!store) throw new Error('no state received from the control plane yet');
      const answer = explain(store, v.policies(), q.value, v.node);
      if (!answer.ok) throw badRequest(answer.error);
      return answer.value;
    },
  };
}

/**
 * 15021, for kubelet probes: ready once the proxy listens and every STRICT pod on the node is
 * enforced. The port is the node agent's, so readiness is the node's: a STRICT pod left open
 * makes the agent's pod not ready (visible in `kubectl get pods`, and it holds a rolling update
 * of the DaemonSet) while liveness stays up, so the agent is not restarted for it.
 * `?pod=<namespace>/<name>` answers for one pod.
 */
export function healthRoutes(ready: () => boolean, strictNotEnforced: () => Array<{ pod: string; reason: string }> = () => []): Record<string, Handler> {
  return {
    '/healthz/ready': (query) => {
      if (!ready()) throw new Error('proxy not listening');
      const pod = query.get('pod');
      const open = strictNotEnforced().filter((p) => pod === null || p.pod === pod);
      if (open.length > 0) {
        throw Object.assign(new Error(`STRICT not enforced for ${open.map((p) => `pod ${p.pod}: ${p.reason}`).join('; ')}`), { statusCode: 503, strictNotEnforced: open });
      }
      return { ready: true };
    },
    '/healthz/live': () => ({ live: true }),
  };
}
