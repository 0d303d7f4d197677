import { err, ok, type Result } from '../core/result';

/** A workload identity as Weft issues it: `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>`. */
export interface WorkloadIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

// SPIFFE ID spec: trust domains are lower-case [a-z0-9.-_]; path segments are [A-Za-z0-9.-_], never
// empty, "." or "..". No port, user info, query, fragment or percent-encoding anywhere.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_ID_LENGTH = 2048;

function segmentProblem(what: string, value: string): string | undefined {
  if (value === '') return `${what} is empty`;
  if (value === '.' || value === '..' || !SEGMENT.test(value)) {
    return `${what} "${value}" may contain only letters, digits, ".", "-" and "_" (and is not "." or "..")`;
  }
  return undefined;
}

/** Builds the SPIFFE ID; throws TypeError on parts no valid ID can contain (a programming error). */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  const id = `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  const parsed = parseSpiffeId(id);
  if (!parsed.ok) throw new TypeError(`cannot build a SPIFFE ID from (${trustDomain}, ${namespace}, ${serviceAccount}): ${parsed.error}`);
  return id;
}

/** Strict parse: exactly `spiffe://<td>/ns/<ns>/sa/<sa>`, anything else is refused with the reason. */
export function parseSpiffeId(uri: string): Result<WorkloadIdentity, string> {
  if (uri.length > MAX_ID_LENGTH) return err(`SPIFFE ID is longer than ${MAX_ID_LENGTH} characters`);
  const prefix = 'spiffe://';
  if (!uri.startsWith(prefix)) return err(`"${uri}" is not a SPIFFE ID: it must start with ${prefix}`);
  const rest = uri.slice(prefix.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  if (!TRUST_DOMAIN.test(trustDomain)) {
    return err(`"${uri}": trust domain "${trustDomain}" must be 1-255 of lower-case letters, digits, ".", "-", "_"`);
  }
  const path = slash === -1 ? [] : rest.slice(slash + 1).split('/');
  if (path.length !== 4 || path[0] !== 'ns' || path[2] !== 'sa') {
    return err(`"${uri}": path must be /ns/<namespace>/sa/<serviceaccount>`);
  }
  const [, namespace, , serviceAccount] = path as [string, string, string, string];
  const problem = segmentProblem('namespace', namespace) ?? segmentProblem('service account', serviceAccount);
  if (problem !== undefined) return err(`"${uri}": ${problem}`);
  return ok({ trustDomain, namespace, serviceAccount });
}
