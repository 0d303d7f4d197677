import { objectKey } from '../config/objects';
import { servicesByKey } from '../route/resolve';
import type { RouteInfo } from '../route/route-info';
import { trafficPolicyConflicts, type TrafficPolicyConflict } from '../traffic/resolve';
import type { TrafficPolicyInfo } from '../traffic/traffic-policy';
import { PROXY_CONFIG_NAME } from '../config/proxy-config';
import type { KubeObjectsView } from './kube-source';
import { generationOf, statusObjectKey, type StatusObject } from './status-object';
import { routeStatusPatch } from './status-route';
import { securityAccepted, securityStatusPatch, type InForce } from './status-security';
import { trafficPolicyStatusPatch } from './status-traffic-policy';

/**
 * From one build of the Kubernetes source to the status writes it calls for: every HTTPRoute,
 * GRPCRoute, TrafficPolicy, AuthorizationPolicy, PeerAuthentication and ProxyConfig whose status
 * differs from what it should be, with the merge patch that fixes it, and every object that is
 * invalid as it stands (for an Event). Pure: no clock (`now` is given), no I/O.
 */

export interface StatusKind {
  kind: string;
  group: string;
  version: string;
  plural: string;
  /** false: cluster-scoped (ProxyConfig); its status is patched without a namespace, its Events go to `default`. */
  namespaced: boolean;
}

export const STATUS_KINDS: readonly StatusKind[] = [
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', namespaced: true },
  { kind: 'GRPCRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes', namespaced: true },
  { kind: 'TrafficPolicy', group: 'networking.weft.dev', version: 'v1', plural: 'trafficpolicies', namespaced: true },
  { kind: 'AuthorizationPolicy', group: 'security.weft.dev', version: 'v1', plural: 'authorizationpolicies', namespaced: true },
  { kind: 'PeerAuthentication', group: 'security.weft.dev', version: 'v1', plural: 'peerauthentications', namespaced: true },
  { kind: 'ProxyConfig', group: 'config.weft.dev', version: 'v1', plural: 'proxyconfigs', namespaced: false },
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

  const authorization = new Map((snapshot.authorizationPolicies ?? []).map((p) => [objectKey(p), p]));
  const peer = new Map((snapshot.peerAuthentications ?? []).map((p) => [objectKey(p), p]));
  /** What the snapshot has in force for a security or config object (by its `namespace/name`). */
  const inForce = (kind: string, key: string, name: string): InForce | undefined => {
    if (kind === 'AuthorizationPolicy') return { kind, info: authorization.get(key) };
    if (kind === 'PeerAuthentication') return { kind, info: peer.get(key) };
    if (kind === 'ProxyConfig') return { kind, info: name === PROXY_CONFIG_NAME ? snapshot.proxyConfig : undefined };
    return undefined;
  };

  const plan: StatusPlan = { seen: new Set(), writes: [], invalid: [] };
  for (const kind of STATUS_KINDS) {
    for (const raw of view.objects.get(kind.kind) ?? []) {
      const obj = raw as StatusObject;
      const key = statusObjectKey(obj);
      const id = `${kind.kind} ${key}`;
      plan.seen.add(id);
      const invalid = view.invalid.get(id);
      const namespace = obj.metadata?.namespace ?? '';
      const name = obj.metadata?.name ?? '';
      const security = inForce(kind.kind, key, name);
      const facts = security !== undefined ? { name, inForce: security, invalid, now } : undefined;
      const body = facts !== undefined
        ? securityStatusPatch(obj, facts)
        : kind.kind === 'TrafficPolicy'
          ? trafficPolicyStatusPatch(obj, { inForce: policies.get(key), invalid, lost: lost.get(key) ?? [], services: serviceKeys, now })
          : routeStatusPatch(obj, { inForce: routes.get(id), invalid, services, grpcRoutes, now });
      const resourceVersion = obj.metadata?.resourceVersion;
      if (body !== undefined) plan.writes.push({ kind, namespace, name, resourceVersion, body });
      if (invalid !== undefined) {
        // A security or config object's Event says what its condition says (what stays in force; for a ProxyConfig, which one is read).
        const message = facts !== undefined ? securityAccepted(facts).message : invalid;
        plan.invalid.push({ kind, namespace, name, uid: obj.metadata?.uid, generation: generationOf(obj), resourceVersion, message });
      }
    }
  }
  return plan;
}
