import { objectKey } from '../config/objects';
import type { AuthorizationAction, AuthorizationPolicyInfo, AuthorizationRule, Condition, OperationMatch, SourceMatch } from './authorization-policy';
import type { ConnectionFacts, RequestFacts } from './facts';
import { IpMatcher } from './ip-match';
import { StringMatcher } from './string-match';

/**
 * AuthorizationPolicyInfo (plain JSON) to matchers, once per snapshot. A rule becomes Istio's
 * model (pilot/pkg/security/authz/model/model.go): its `from` entries ORed, its `to` entries
 * ORed, its `when` conditions ANDed, and inside an entry every field (a Check) ANDed.
 */

/** The facts a Check reads: the connection's, and the request's (HTTP only). */
export const enum Fact {
  SourceIp, RemoteIp, Principal, Namespace, DestinationIp, DestinationPort, Sni,
  Host, Method, Path, Header,
}

interface Matcher {
  matches(value: never): boolean;
}

class PortMatcher {
  private readonly ports: Set<number>;
  constructor(ports: readonly (number | string)[]) {
    this.ports = new Set(ports.map(Number));
  }
  matches(port: number | undefined): boolean {
    return port !== undefined && this.ports.has(port);
  }
}

/** One field of a source, operation or condition: its values ORed, its notValues negated. */
export interface Check {
  fact: Fact;
  /** For Fact.Header: the lower-cased header name. */
  header: string;
  /** Istio's HTTP-only attributes: hosts, methods, paths, request.headers (requestPrincipals are rejected). */
  httpOnly: boolean;
  values: Matcher | undefined;
  notValues: Matcher | undefined;
}

export interface CompiledRule {
  index: number;
  /** undefined: no `from`, any source. */
  from: Check[][] | undefined;
  to: Check[][] | undefined;
  when: Check[];
  /** Some check is HTTP-only: on plain TCP an ALLOW rule like this matches nothing. */
  usesHttp: boolean;
  /** The facts the rule reads, in order, each once: what a decision's reason reports. */
  facts: { fact: Fact; header: string }[];
}

export interface CompiledPolicy {
  /** `namespace/name` */
  key: string;
  namespace: string;
  name: string;
  matchLabels: Record<string, string> | undefined;
  action: AuthorizationAction;
  rules: CompiledRule[];
}

export function compilePolicy(info: AuthorizationPolicyInfo): CompiledPolicy {
  return {
    key: objectKey(info),
    namespace: info.namespace,
    name: info.name,
    matchLabels: info.matchLabels,
    action: info.action,
    rules: info.rules.map(compileRule),
  };
}

function compileRule(rule: AuthorizationRule, index: number): CompiledRule {
  const from = rule.from?.map(sourceChecks);
  const to = rule.to?.map(operationChecks);
  const when = (rule.when ?? []).map(conditionCheck);
  const all = [...(from ?? []).flat(), ...(to ?? []).flat(), ...when];
  const facts: { fact: Fact; header: string }[] = [];
  for (const c of all) if (!facts.some((f) => f.fact === c.fact && f.header === c.header)) facts.push({ fact: c.fact, header: c.header });
  facts.sort((a, b) => a.fact - b.fact);
  return { index, from, to, when, usesHttp: all.some((c) => c.httpOnly), facts };
}

function check(fact: Fact, values: Matcher | undefined, notValues: Matcher | undefined, header = ''): Check {
  return { fact, header, httpOnly: fact >= Fact.Host, values, notValues };
}

function strings(values: readonly string[] | undefined, caseless = false): StringMatcher | undefined {
  return values === undefined || values.length === 0 ? undefined : new StringMatcher(values, caseless);
}

function ips(values: readonly string[] | undefined): IpMatcher | undefined {
  return values === undefined || values.length === 0 ? undefined : new IpMatcher(values);
}

function ports(values: readonly (number | string)[] | undefined): PortMatcher | undefined {
  return values === undefined || values.length === 0 ? undefined : new PortMatcher(values);
}

function sourceChecks(s: SourceMatch): Check[] {
  const out: Check[] = [];
  const add = (fact: Fact, values: Matcher | undefined, notValues: Matcher | undefined): void => {
    if (values !== undefined || notValues !== undefined) out.push(check(fact, values, notValues));
  };
  add(Fact.Principal, strings(s.principals), strings(s.notPrincipals));
  add(Fact.Namespace, strings(s.namespaces), strings(s.notNamespaces));
  add(Fact.SourceIp, ips(s.ipBlocks), ips(s.notIpBlocks));
  add(Fact.RemoteIp, ips(s.remoteIpBlocks), ips(s.notRemoteIpBlocks));
  return out;
}

function operationChecks(o: OperationMatch): Check[] {
  const out: Check[] = [];
  const add = (fact: Fact, values: Matcher | undefined, notValues: Matcher | undefined): void => {
    if (values !== undefined || notValues !== undefined) out.push(check(fact, values, notValues));
  };
  add(Fact.DestinationPort, ports(o.ports), ports(o.notPorts));
  add(Fact.Host, strings(o.hosts, true), strings(o.notHosts, true));
  add(Fact.Method, strings(o.methods), strings(o.notMethods));
  add(Fact.Path, strings(o.paths), strings(o.notPaths));
  return out;
}

function conditionCheck(c: Condition): Check {
  switch (c.key) {
    case 'request.headers': return check(Fact.Header, strings(c.values), strings(c.notValues), c.header ?? '');
    case 'source.ip': return check(Fact.SourceIp, ips(c.values), ips(c.notValues));
    case 'remote.ip': return check(Fact.RemoteIp, ips(c.values), ips(c.notValues));
    case 'destination.ip': return check(Fact.DestinationIp, ips(c.values), ips(c.notValues));
    case 'destination.port': return check(Fact.DestinationPort, ports(c.values), ports(c.notValues));
    case 'source.namespace': return check(Fact.Namespace, strings(c.values), strings(c.notValues));
    case 'source.principal': return check(Fact.Principal, strings(c.values), strings(c.notValues));
    case 'connection.sni': return check(Fact.Sni, strings(c.values), strings(c.notValues));
  }
}

const SPIFFE = 'spiffe://';

/**
 * The value a Check compares. Principals drop `spiffe://` (Istio writes `cluster.local/ns/N/sa/S`);
 * the namespace is the principal's, never guessed from the source address; the path loses its
 * query (Envoy's url_path); a repeated header is joined with "," (as Envoy joins it).
 */
export function factValue(fact: Fact, header: string, conn: ConnectionFacts, req: RequestFacts | undefined): string | number | undefined {
  switch (fact) {
    case Fact.SourceIp:
    case Fact.RemoteIp: return conn.sourceIp;
    case Fact.Principal: return principalName(conn.sourcePrincipal);
    case Fact.Namespace: return principalNamespace(conn.sourcePrincipal);
    case Fact.DestinationIp: return conn.destinationIp;
    case Fact.DestinationPort: return conn.destinationPort;
    case Fact.Sni: return conn.sni;
    case Fact.Host: return req?.host;
    case Fact.Method: return req?.method;
    case Fact.Path: {
      if (req === undefined) return undefined;
      const q = req.path.indexOf('?');
      return q < 0 ? req.path : req.path.slice(0, q);
    }
    case Fact.Header: {
      const value = req?.headers[header];
      return Array.isArray(value) ? value.join(',') : value;
    }
  }
}

function principalName(principal: string | undefined): string | undefined {
  if (principal === undefined) return undefined;
  return principal.startsWith(SPIFFE) ? principal.slice(SPIFFE.length) : principal;
}

/** `spiffe://td/ns/N/sa/S` → N. */
function principalNamespace(principal: string | undefined): string | undefined {
  if (principal === undefined) return undefined;
  const start = principal.indexOf('/ns/');
  if (start < 0) return undefined;
  const end = principal.indexOf('/', start + 4);
  return end < 0 ? undefined : principal.slice(start + 4, end);
}

/** True when the check holds: a value among `values` (if set) and none among `notValues`. */
export function checkHolds(c: Check, conn: ConnectionFacts, req: RequestFacts | undefined): boolean {
  const value = factValue(c.fact, c.header, conn, req) as never;
  if (c.values !== undefined && !c.values.matches(value)) return false;
  if (c.notValues !== undefined && c.notValues.matches(value)) return false;
  return true;
}
