/**
 * AuthorizationPolicy (`security.weft.dev/v1`, Istio's `security.istio.io/v1` spec) as the
 * Snapshot carries it: plain JSON, validated and normalized once at the edge (convert.ts).
 * Agents compile matchers from it (compile.ts); nothing here is evaluated.
 */

export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT';

export interface AuthorizationPolicyInfo {
  namespace: string;
  name: string;
  /** Absent: the policy applies to every workload of its namespace (of every namespace in `weft-system`). */
  matchLabels?: Record<string, string>;
  action: AuthorizationAction;
  /**
   * Empty (the field absent, or `[]`): the policy matches nothing, so an ALLOW policy without rules
   * denies everything on the workloads it selects. A rule `{}` matches everything.
   */
  rules: AuthorizationRule[];
}

/** `from`, `to` and `when` are ANDed; an absent list places no constraint. */
export interface AuthorizationRule {
  /** ORed; every field of one source is ANDed. */
  from?: SourceMatch[];
  /** ORed; every field of one operation is ANDed. */
  to?: OperationMatch[];
  /** ANDed. */
  when?: Condition[];
}

/**
 * Principals are written as Istio writes them, `cluster.local/ns/NS/sa/SA` (no `spiffe://`);
 * string patterns are exact, `prefix*`, `*suffix` or `*` (present). IP blocks are canonical
 * `ip` or `ip/len`.
 */
export interface SourceMatch {
  principals?: string[];
  notPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}

export interface OperationMatch {
  /** Lower-cased: matched case-insensitively against Host / :authority. */
  hosts?: string[];
  notHosts?: string[];
  ports?: number[];
  notPorts?: number[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

/** The `when` keys Weft evaluates (Istio's, minus `request.auth.*` and `experimental.*`). */
export type ConditionKey =
  | 'request.headers' | 'source.ip' | 'remote.ip' | 'source.namespace' | 'source.principal'
  | 'destination.ip' | 'destination.port' | 'connection.sni';

export interface Condition {
  key: ConditionKey;
  /** For `request.headers[NAME]`: NAME, lower-cased. */
  header?: string;
  values?: string[];
  notValues?: string[];
}
