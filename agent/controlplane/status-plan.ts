import { objectKey } from '../config/objects';
import { servicesByKey } from '../route/resolve';
import type { RouteInfo } from '../route/route-info';
import { trafficPolicyConflicts, type TrafficPolicyConflict } from '../traffic/resolve';
import type { TrafficPolicyInfo } from '../traffic/traffic-policy';
import type { KubeObjectsView } from './kube-source';
import { generationOf, statusObjectKey, type StatusObject } from './status-object';
import { routeStatusPatch } from './status-route';
import { trafficPolicyStatusPatch } from './status-traffic-policy';

/**
 * From one build of the Kubernetes source to the status writes it calls for: every HTTPRoute,
 * GRPCRoute and TrafficPolicy whose status differs from what it should be, with the merge patch
 * that fixes it, and every object that is invalid as it stands (for an Event). Pure: no clock
 * (`now` is given), no I/O.
 */

export interface StatusKind {
  kind: string;
  group: string;
  version: string;
  plural: string;
}

export const STATUS_KINDS: readonly StatusKind[] = [
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes' },
  { kind: 'GRPCRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes' },
  { kind: 'TrafficPolicy', group: 'networking.weft.dev', version: 'v1', plural: 'trafficpolicies' },
];

/** One object's status as it should be. */
export interface StatusWrite {
  kind: StatusKind;
  namespace: string;
  name: string;
  /** The resourceVersion the patch was computed from (and is conditioned on). */
  resourceVersion: string | undefined;
  /** The merge patch for the status subresource. */
  body: { metadata: { resourceVersion?: string }; status: Record<string, unknown[]> };
}

/** An object that failed conversion as it stands. */
export interface InvalidObject {
  kind: StatusKind;
  namespace: string;
  name: string;
  uid: string | undefined;
  generation: number | undefined;
  resourceVersion: string | undefined;
  message: string;
}

export interface StatusPlan {
  /** `Kind namespace/name` of every object looked at (the writer forgets the rest). */
  seen: Set<string>;
  writes: StatusWrite[];
  invalid: InvalidObject[];
}

export function planStatus(view: KubeObjectsView, now: string): StatusPlan {
  const { snapshot } = view;
  const services = servicesByKey(snapshot.services);
  const serviceKeys = new Set(services.keys());
  const grpcRoutes = snapshot.grpcRoutes ?? [];
  const routes = new Map<string, RouteInfo>();
  for (const r of [...(snapshot.httpRoutes ?? []), ...grpcRoutes]) routes.set(`${r.kind} ${objectKey(r)}`, r);
  const policies = new Map<string, TrafficPolicyInfo>((snapshot.trafficPolicies ?? []).map((p) => [objectKey(p), p]));
  const lost = new Map<string, TrafficPolicyConflict[]>();
  for (const c of trafficPolicyConflicts(snapshot.trafficPolicies ?? [])) {
    const list = lost.get(c.policy);
    if (list === undefined) lost.set(c.policy, [c]);
    else list.push(c);
  }

  const plan: StatusPlan = { seen: new Set(), writes: [], invalid: [] };
  for (const kind of STATUS_KINDS) {
    for (const raw of view.objects.get(kind.kind) ?? []) {
      const obj = raw as StatusObject;
      const key = statusObjectKey(obj);
      const id = `${kind.kind} ${key}`;
      plan.seen.add(id);
      const invalid = view.invalid.get(id);
      const body = kind.kind === 'TrafficPolicy'
        ? trafficPolicyStatusPatch(obj, { inForce: policies.get(key), invalid, lost: lost.get(key) ?? [], services: serviceKeys, now })
        : routeStatusPatch(obj, { inForce: routes.get(id), invalid, services, grpcRoutes, now });
      const namespace = obj.metadata?.namespace ?? '';
      const name = obj.metadata?.name ?? '';
      const resourceVersion = obj.metadata?.resourceVersion;
      if (body !== undefined) plan.writes.push({ kind, namespace, name, resourceVersion, body });
      if (invalid !== undefined) {
        plan.invalid.push({ kind, namespace, name, uid: obj.metadata?.uid, generation: generationOf(obj), resourceVersion, message: invalid });
      }
    }
  }
  return plan;
}
