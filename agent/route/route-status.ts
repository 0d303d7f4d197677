import type { ServiceInfo } from '../config/objects';
import { resolveBackend, resolveParent, servicesByKey, type ServicesByKey } from './resolve';
import type { BackendObjectRef, GrpcRouteInfo, RouteFilter, RouteInfo, RouteParentRef } from './route-info';

/**
 * A route's status conditions as the Gateway API defines them (RouteConditionType and reasons),
 * computed from the snapshot alone, so Kubernetes status, `weft status` and `/config_dump` say the
 * same thing the proxy does.
 */

export interface RouteCondition {
  type: 'Accepted' | 'ResolvedRefs';
  status: 'True' | 'False';
  /** Accepted: Accepted, NoMatchingParent, Conflicted. ResolvedRefs: ResolvedRefs, BackendNotFound, InvalidKind. */
  reason: string;
  message: string;
}

export interface ParentStatus {
  parentRef: RouteParentRef;
  accepted: RouteCondition;
  resolvedRefs: RouteCondition;
}

export interface RouteStatus {
  /** True when the route is in force for at least one parent. */
  accepted: RouteCondition;
  /** False when some backendRef (or mirror target) cannot be resolved: its share of requests is answered 500. */
  resolvedRefs: RouteCondition;
  /** One entry per parentRef, as `status.parents` in Kubernetes. */
  parents: ParentStatus[];
}

/**
 * `grpcRoutes`: pass the snapshot's GRPCRoutes to report an HTTPRoute that loses a Service port to a
 * GRPCRoute (GEP-1294: on one Service port, GRPCRoute wins over HTTPRoute) as Conflicted.
 * Cross-namespace backendRefs need no ReferenceGrant in a mesh (GEP-1294, "Namespace boundaries"),
 * so RefNotPermitted is never reported.
 */
export function routeStatus(route: RouteInfo, services: readonly ServiceInfo[] | ServicesByKey, grpcRoutes: readonly GrpcRouteInfo[] = []): RouteStatus {
  const byKey = services instanceof Map ? services : servicesByKey(services as readonly ServiceInfo[]);
  const resolvedRefs = refsCondition(route, byKey);
  const parents = route.parentRefs.map((parentRef): ParentStatus => ({ parentRef, accepted: parentCondition(route, parentRef, byKey, grpcRoutes), resolvedRefs }));
  const inForce = parents.find((p) => p.accepted.status === 'True');
  const accepted = inForce?.accepted ?? parents[0]?.accepted ?? condition('Accepted', false, 'NoMatchingParent', 'the route has no parentRef');
  return { accepted, resolvedRefs, parents };
}

function condition(type: RouteCondition['type'], ok: boolean, reason: string, message: string): RouteCondition {
  return { type, status: ok ? 'True' : 'False', reason, message };
}

function parentCondition(route: RouteInfo, ref: RouteParentRef, services: ServicesByKey, grpcRoutes: readonly GrpcRouteInfo[]): RouteCondition {
  const parent = resolveParent(ref, services);
  if (!parent.ok) return condition('Accepted', false, parent.reason, parent.message);
  const scope = route.namespace === ref.namespace ? 'producer route (applies to every client)' : `consumer route (applies to clients in ${route.namespace})`;
  if (route.kind === 'HTTPRoute') {
    // GRPCRoutes of the same scope (same namespace) on the same Service ports win those ports.
    const taken = new Set<number>();
    for (const g of grpcRoutes) {
      if (g.namespace !== route.namespace) continue;
      for (const gp of g.parentRefs) {
        if (gp.namespace !== ref.namespace || gp.name !== ref.name) continue;
        const r = resolveParent(gp, services);
        if (r.ok) for (const p of r.ports) taken.add(p);
      }
    }
    const left = parent.ports.filter((p) => !taken.has(p));
    if (left.length === 0) {
      return condition('Accepted', false, 'Conflicted', `GRPCRoutes attached to Service ${ref.namespace}/${ref.name} port ${parent.ports.join(', ')} take precedence over this HTTPRoute there (GEP-1294)`);
    }
    return condition('Accepted', true, 'Accepted', `${scope} on Service ${ref.namespace}/${ref.name} port ${left.join(', ')}`);
  }
  return condition('Accepted', true, 'Accepted', `${scope} on Service ${ref.namespace}/${ref.name} port ${parent.ports.join(', ')}`);
}

/** Every backendRef and mirror target; the first problem gives the reason, the message lists them all. */
function refsCondition(route: RouteInfo, services: ServicesByKey): RouteCondition {
  const problems: { reason: string; text: string }[] = [];
  const check = (ref: BackendObjectRef, field: string): void => {
    const r = resolveBackend(ref, services);
    if (!r.ok) problems.push({ reason: r.reason, text: `${field}: ${r.message}` });
  };
  const mirrors = (filters: readonly RouteFilter[], field: string): void => {
    filters.forEach((f, i) => { if (f.type === 'RequestMirror') check(f.requestMirror.backendRef, `${field}.filters[${i}].requestMirror.backendRef`); });
  };
  route.rules.forEach((rule, i) => {
    const field = `spec.rules[${i}]`;
    mirrors(rule.filters, field);
    rule.backendRefs.forEach((b, j) => {
      check(b, `${field}.backendRefs[${j}]`);
      mirrors(b.filters, `${field}.backendRefs[${j}]`);
    });
  });
  if (problems.length === 0) return condition('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved');
  const shares = 'their share of requests is answered 500';
  return condition('ResolvedRefs', false, problems[0]!.reason, `${problems.map((p) => p.text).join('; ')} (${shares}; mirrors to them are skipped)`);
}
