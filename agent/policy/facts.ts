/**
 * What the node proxy knows about a connection and a request when it asks for a decision. The
 * proxy fills these in; the policy module only reads them (agent/policy/policy-set.ts).
 */

/** One accepted connection, as the destination's node proxy sees it. */
export interface ConnectionFacts {
  /** Canonical form (agent/core/ip.ts). Also what `remoteIpBlocks` and `remote.ip` match: Weft trusts no X-Forwarded-For. */
  sourceIp: string;
  sourcePort: number;
  /** SPIFFE ID `spiffe://td/ns/N/sa/S` from a verified certificate (or the kernel-attributed source pod on the same node); absent for plaintext clients */
  sourcePrincipal?: string;
  /** Canonical form: the destination pod's address. */
  destinationIp: string;
  destinationPort: number;
  /** TLS server name the client sent, if any */
  sni?: string;
}

/** One HTTP request on a connection; absent when the connection is judged as plain TCP. */
export interface RequestFacts {
  method: string;
  /** request target as sent: path plus optional ?query */
  path: string;
  /** Host / :authority */
  host: string;
  /** lower-cased header names */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** The destination workload a decision is for: policies select it by namespace and labels. */
export interface Workload {
  namespace: string;
  labels: Readonly<Record<string, string>>;
}

/** The outcome of authorize(): allowed or not, and which policy and rule decided, for logs and `weft explain`. */
export type AuthzDecision = {
  allow: boolean;
  /** `namespace/name` and rule index of the deciding policy; absent when none decided (no policy, or no ALLOW matched) */
  policy?: string;
  rule?: number;
  /** one line a person can act on, e.g. `DENY policy shop/deny-post rule 0 matched: method POST, path /admin` or `no ALLOW policy matched; in force: shop/allow-get` */
  reason: string;
  /** matching AUDIT policies (`ns/name`) */
  audit?: string[];
};
