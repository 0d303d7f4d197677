import type { ServicesByKey } from '../route/resolve';
import type { GrpcRouteInfo, RouteInfo } from '../route/route-info';
import { routeStatus, type RouteCondition } from '../route/route-status';
import { CONTROLLER_NAME, isRecord, sameJson, settle, type Condition, type ConditionDraft } from './status-conditions';
import { generationOf, statusList, type StatusObject } from './status-object';

/**
 * An HTTPRoute's or GRPCRoute's `status.parents` as Weft reports it (GEP-1294, GAMMA): one entry
 * per parentRef to a Service, each with `Accepted` and `ResolvedRefs`, from the same decision the
 * proxy applies (agent/route/route-status.ts). Entries of other controllers (a Gateway's, keyed by
 * their own controllerName) are kept as they are: the Gateway API gives each controller its own.
 * Pure: the writer (status-writer.ts) does the I/O.
 */

/** What the snapshot says about one route object. */
export interface RouteFacts {
  /** The version in force: the object's own when it is valid, else its last valid one, else none. */
  inForce: RouteInfo | undefined;
  /** The field-level conversion errors of the object as it stands; undefined when it is valid. */
  invalid: string | undefined;
  services: ServicesByKey;
  grpcRoutes: readonly GrpcRouteInfo[];
  /** RFC 3339, the transition time of a condition whose status changes now. */
  now: string;
}

export interface RouteParentStatus {
  parentRef: Record<string, unknown>;
  controllerName: string;
  conditions: Condition[];
}

/** The Gateway API's reason for an Accepted=False route whose fields Weft refuses. */
export const INVALID_ROUTE_REASON = 'UnsupportedValue';

const PARENT_REF_FIELDS = ['group', 'kind', 'namespace', 'name', 'sectionName', 'port'] as const;

/**
 * The parentRefs Weft answers for: those to a Service. A parentRef to a Gateway (or anything else)
 * belongs to that parent's controller, which reports it in an entry of its own.
 */
function serviceParentRefs(obj: StatusObject): Record<string, unknown>[] {
  const spec = isRecord(obj.spec) ? obj.spec : {};
  const refs = Array.isArray(spec.parentRefs) ? spec.parentRefs : [];
  return refs.filter((r): r is Record<string, unknown> => isRecord(r) && r.kind === 'Service');
}

/** The parentRef echoed as written, the Gateway API's defaults filled in (as the API server stores them). */
function echo(ref: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { group: ref.group ?? 'gateway.networking.k8s.io', kind: ref.kind ?? 'Gateway' };
  for (const f of PARENT_REF_FIELDS) if (ref[f] !== undefined && out[f] === undefined) out[f] = ref[f];
  return out;
}

/** The key route-info's RouteParentRef has for the same reference (namespace defaulted to the route's). */
function refKey(ref: { namespace?: unknown; name?: unknown; port?: unknown; sectionName?: unknown }, routeNamespace: string): string {
  return `${typeof ref.namespace === 'string' ? ref.namespace : routeNamespace}/${String(ref.name)}:${ref.port ?? ''}:${ref.sectionName ?? ''}`;
}

function draft(c: RouteCondition): ConditionDraft {
  return { type: c.type, status: c.status, reason: c.reason, message: c.message };
}

/** Weft's entries of `status.parents` as they should be, transition times kept from `obj`'s status. */
export function desiredRouteParents(obj: StatusObject, facts: RouteFacts): RouteParentStatus[] {
  const namespace = obj.metadata?.namespace ?? '';
  const previous = statusList(obj, 'parents').filter((p): p is Record<string, unknown> => isRecord(p) && p.controllerName === CONTROLLER_NAME);
  const computed = facts.inForce !== undefined ? routeStatus(facts.inForce, facts.services, facts.grpcRoutes) : undefined;
  const byKey = new Map((computed?.parents ?? []).map((p) => [refKey(p.parentRef, namespace), p]));
  const out: RouteParentStatus[] = [];
  for (const raw of serviceParentRefs(obj)) {
    const key = refKey(raw, namespace);
    let drafts: ConditionDraft[];
    if (facts.invalid !== undefined) {
      const standing = facts.inForce !== undefined
        ? 'the last valid version of this route stays in force until it is fixed'
        : 'the route is not in force until it is fixed';
      drafts = [{ type: 'Accepted', status: 'False', reason: INVALID_ROUTE_REASON, message: `${facts.invalid} (${standing})` }];
      // What is in force still resolves (or not) its backends: say so, if anything is in force.
      if (computed !== undefined) drafts.push(draft(computed.resolvedRefs));
    } else {
      const parent = byKey.get(key);
      // A valid route's parentRefs are all Services and all converted; a miss means the facts are from another version.
      if (parent === undefined) continue;
      drafts = [draft(parent.accepted), draft(parent.resolvedRefs)];
    }
    const before = previous.find((p) => isRecord(p.parentRef) && refKey(p.parentRef, namespace) === key && p.parentRef.kind === 'Service');
    out.push({
      parentRef: echo(raw),
      controllerName: CONTROLLER_NAME,
      conditions: settle(drafts, Array.isArray(before?.conditions) ? before.conditions : undefined, generationOf(obj), facts.now),
    });
  }
  return out;
}

/**
 * The merge patch that brings `obj`'s status to what it should be, or undefined when it already is.
 * A merge patch replaces a list whole, so the patch carries the other controllers' entries as they
 * are, and the resourceVersion they were read at: if another controller wrote in between, the API
 * server answers 409 and the next informer event brings the newer object to try again.
 */
export function routeStatusPatch(obj: StatusObject, facts: RouteFacts): { metadata: { resourceVersion?: string }; status: { parents: unknown[] } } | undefined {
  const existing = statusList(obj, 'parents');
  const ours = existing.filter((p) => isRecord(p) && p.controllerName === CONTROLLER_NAME);
  const others = existing.filter((p) => !(isRecord(p) && p.controllerName === CONTROLLER_NAME));
  const desired = desiredRouteParents(obj, facts);
  if (sameJson(ours, desired)) return undefined;
  const rv = obj.metadata?.resourceVersion;
  return { metadata: rv !== undefined ? { resourceVersion: rv } : {}, status: { parents: [...others, ...desired] } };
}
