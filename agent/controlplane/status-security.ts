import { ROOT_NAMESPACE, type PeerAuthenticationInfo } from '../config/objects';
import { PROXY_CONFIG_NAME, type ProxyConfigInfo } from '../config/proxy-config';
import type { AuthorizationPolicyInfo } from '../policy/authorization-policy';
import { isRecord, sameJson, settle, type ConditionDraft } from './status-conditions';
import { generationOf, statusList, type StatusObject } from './status-object';

/**
 * `status.conditions` of an AuthorizationPolicy, a PeerAuthentication and the ProxyConfig: one
 * condition, `Accepted`. True (reason Accepted) when the object as it stands is what is in force;
 * False (reason Invalid) with the conversion's field-level errors when it is not (its last valid
 * version, if it had one, stays in force: kube-source.ts). The verdict is the kube source's own
 * (`KubeObjectsView.invalid`, filled by the conversion that decides what enters the snapshot), so
 * an object is reported invalid exactly when the snapshot ignores it as it stands. Istio reports
 * such problems through analysis (`status.validationMessages`); these CRDs carry metav1.Conditions,
 * as the Gateway API's policies do. Conditions of other types, written by someone else, are kept.
 * Pure: the writer (status-writer.ts) does the I/O.
 */

export type SecurityKind = 'AuthorizationPolicy' | 'PeerAuthentication' | 'ProxyConfig';

/** What the snapshot has in force for one object: its own version when valid, else its last valid one, else none. */
export type InForce =
  | { kind: 'AuthorizationPolicy'; info: AuthorizationPolicyInfo | undefined }
  | { kind: 'PeerAuthentication'; info: PeerAuthenticationInfo | undefined }
  | { kind: 'ProxyConfig'; info: ProxyConfigInfo | undefined };

export interface SecurityFacts {
  /** The object's name (a ProxyConfig is read only under PROXY_CONFIG_NAME). */
  name: string;
  inForce: InForce;
  /** The field-level conversion errors of the object as it stands; undefined when it is valid. */
  invalid: string | undefined;
  /** RFC 3339, the transition time of a condition whose status changes now. */
  now: string;
}

export const ACCEPTED = 'Accepted';
/** The reason of Accepted=False for an object the conversion refuses (the Event's reason too). */
export const INVALID_REASON = 'Invalid';

function labels(matchLabels: Record<string, string>): string {
  return Object.entries(matchLabels).map(([k, v]) => `${k}=${v}`).join(',');
}

/** Which workloads a namespaced policy applies to, as an operator reads it. */
function selection(namespace: string, matchLabels: Record<string, string> | undefined): string {
  const scope = namespace === ROOT_NAMESPACE ? `every namespace (${ROOT_NAMESPACE} is the root namespace)` : `namespace ${namespace}`;
  return matchLabels === undefined ? `every workload of ${scope}` : `the workloads labelled ${labels(matchLabels)} in ${scope}`;
}

/** What an object in force does, for Accepted=True's message. */
function inForceMessage(inForce: InForce): string | undefined {
  switch (inForce.kind) {
    case 'AuthorizationPolicy': {
      const p = inForce.info;
      if (p === undefined) return undefined;
      const rules = p.rules.length === 0 ? 'no rules (it matches nothing)' : `${p.rules.length} rule${p.rules.length === 1 ? '' : 's'}`;
      return `in force: ${p.action} with ${rules} on ${selection(p.namespace, p.matchLabels)}`;
    }
    case 'PeerAuthentication': {
      const p = inForce.info;
      if (p === undefined) return undefined;
      const mode = p.mode === 'UNSET' ? 'UNSET (inherited from the namespace or the mesh)' : p.mode;
      return `in force: mTLS mode ${mode} on ${selection(p.namespace, p.matchLabels)}`;
    }
    case 'ProxyConfig':
      return inForce.info === undefined ? undefined : 'in force on every node proxy';
  }
}

export function securityAccepted(facts: SecurityFacts): ConditionDraft {
  const { inForce, invalid } = facts;
  const wrongName = inForce.kind === 'ProxyConfig' && facts.name !== PROXY_CONFIG_NAME;
  if (wrongName) {
    // The conversion refuses the name (and the CRD does, for objects written since it says so).
    const why = invalid ?? `metadata.name: must be "${PROXY_CONFIG_NAME}"`;
    return { type: ACCEPTED, status: 'False', reason: INVALID_REASON,
      message: `${why} (only the ProxyConfig named "${PROXY_CONFIG_NAME}" is read: this one is ignored; put its settings in proxyconfig/${PROXY_CONFIG_NAME})` };
  }
  const standing = inForceMessage(inForce);
  if (invalid !== undefined) {
    const kept = standing !== undefined
      ? 'its last valid version stays in force until it is fixed'
      : 'it is not in force until it is fixed';
    return { type: ACCEPTED, status: 'False', reason: INVALID_REASON, message: `${invalid} (${kept})` };
  }
  if (standing === undefined) {
    // Valid but not in the snapshot: the view and the snapshot disagree (they come from one build, so this is a bug).
    return { type: ACCEPTED, status: 'False', reason: INVALID_REASON, message: `the ${inForce.kind} was not converted into what is in force (the control plane's log says why)` };
  }
  return { type: ACCEPTED, status: 'True', reason: ACCEPTED, message: standing };
}

/** The merge patch that brings `obj`'s status to what it should be, or undefined when it already is. */
export function securityStatusPatch(obj: StatusObject, facts: SecurityFacts): { metadata: { resourceVersion?: string }; status: { conditions: unknown[] } } | undefined {
  const existing = statusList(obj, 'conditions');
  const ours = existing.filter((c) => isRecord(c) && c.type === ACCEPTED);
  const others = existing.filter((c) => !(isRecord(c) && c.type === ACCEPTED));
  const desired = settle([securityAccepted(facts)], ours, generationOf(obj), facts.now);
  if (sameJson(ours, desired)) return undefined;
  const rv = obj.metadata?.resourceVersion;
  return { metadata: rv !== undefined ? { resourceVersion: rv } : {}, status: { conditions: [...others, ...desired] } };
}
