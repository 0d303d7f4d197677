/**
 * Authorization: AuthorizationPolicy (Istio's spec) validated at the edge, compiled per snapshot,
 * and the pure decision the node proxy asks on every connection and every HTTP request.
 */
export type { AuthzDecision, ConnectionFacts, RequestFacts, Workload } from './facts';
export type {
  AuthorizationAction, AuthorizationPolicyInfo, AuthorizationRule, Condition, ConditionKey, OperationMatch, SourceMatch,
} from './authorization-policy';
export { convertAuthorizationPolicy } from './convert';
export { authorize, PolicySet, type ApplicablePolicies } from './policy-set';
