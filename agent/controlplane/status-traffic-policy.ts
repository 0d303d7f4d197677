import type { TrafficPolicyConflict } from '../traffic/resolve';
import type { TrafficPolicyInfo } from '../traffic/traffic-policy';
import { isRecord, sameJson, settle, type ConditionDraft } from './status-conditions';
import { generationOf, statusList, type StatusObject } from './status-object';

/**
 * A TrafficPolicy's `status.conditions` (GEP-713's policy reasons): `Accepted` True when it is in
 * force on at least one of its Services; False with `Conflicted` when an older policy wins every
 * Service it targets (trafficPolicyConflicts, agent/traffic/resolve.ts), or `Invalid` with the
 * field-level errors when the object as it stands failed conversion (its last valid version, if it
 * had one, stays in force). Conditions of other types, written by someone else, are kept.
 */

export interface TrafficPolicyFacts {
  /** The version in force: the object's own when it is valid, else its last valid one, else none. */
  inForce: TrafficPolicyInfo | undefined;
  /** The field-level conversion errors of the object as it stands; undefined when it is valid. */
  invalid: string | undefined;
  /** The conflicts this policy loses (trafficPolicyConflicts, filtered to it). */
  lost: readonly TrafficPolicyConflict[];
  /** `namespace/name` of every Service in the snapshot. */
  services: ReadonlySet<string>;
  now: string;
}

export function trafficPolicyAccepted(facts: TrafficPolicyFacts): ConditionDraft {
  const { inForce, invalid, lost } = facts;
  if (invalid !== undefined) {
    const standing = inForce !== undefined ? 'its last valid version stays in force until it is fixed' : 'it is not in force until it is fixed';
    return { type: 'Accepted', status: 'False', reason: 'Invalid', message: `${invalid} (${standing})` };
  }
  if (inForce === undefined) return { type: 'Accepted', status: 'False', reason: 'Invalid', message: 'the policy was not converted (no targetRefs Weft reads)' };
  const services = inForce.targets.map((t) => `${inForce.namespace}/${t}`);
  const lostServices = new Set(lost.map((c) => c.service));
  const applied = services.filter((s) => !lostServices.has(s));
  if (applied.length === 0 && lost.length > 0) {
    return { type: 'Accepted', status: 'False', reason: 'Conflicted', message: lost.map((c) => c.message).join('; ') };
  }
  const missing = applied.filter((s) => !facts.services.has(s));
  const parts = [`applied to Service ${applied.join(', ')}`];
  if (missing.length > 0) parts.push(`Service ${missing.join(', ')} does not exist yet: the policy applies to it once it is created`);
  if (lost.length > 0) parts.push(...lost.map((c) => c.message));
  return { type: 'Accepted', status: 'True', reason: 'Accepted', message: parts.join('; ') };
}

/** The merge patch that brings `obj`'s status to what it should be, or undefined when it already is. */
export function trafficPolicyStatusPatch(obj: StatusObject, facts: TrafficPolicyFacts): { metadata: { resourceVersion?: string }; status: { conditions: unknown[] } } | undefined {
  const existing = statusList(obj, 'conditions');
  const ours = existing.filter((c) => isRecord(c) && c.type === 'Accepted');
  const others = existing.filter((c) => !(isRecord(c) && c.type === 'Accepted'));
  const desired = settle([trafficPolicyAccepted(facts)], ours, generationOf(obj), facts.now);
  if (sameJson(ours, desired)) return undefined;
  const rv = obj.metadata?.resourceVersion;
  return { metadata: rv !== undefined ? { resourceVersion: rv } : {}, status: { conditions: [...others, ...desired] } };
}
