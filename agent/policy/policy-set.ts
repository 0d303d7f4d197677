import { ROOT_NAMESPACE } from '../config/objects';
import type { AuthorizationPolicyInfo } from './authorization-policy';
import { checkHolds, compilePolicy, Fact, factValue, type Check, type CompiledPolicy, type CompiledRule } from './compile';
import type { AuthzDecision, ConnectionFacts, RequestFacts, Workload } from './facts';

/**
 * The policies in force for one workload, split by action, each list ordered by `namespace/name`
 * (the first matching DENY or ALLOW is the one a decision names). Get it from PolicySet.forWorkload.
 */
export interface ApplicablePolicies {
  readonly deny: readonly CompiledPolicy[];
  readonly allow: readonly CompiledPolicy[];
  readonly audit: readonly CompiledPolicy[];
  /** `ns/a, ns/b`: the ALLOW policies in force, for the reason of a default deny. */
  readonly allowNames: string;
  /** Some ALLOW rule reads HTTP-only fields: on plain TCP it matches nothing (the reason says so). */
  readonly allowUsesHttp: boolean;
}

/** Selector-less policies of a namespace, and selector policies indexed by one `key=value` of their selector. */
interface NamespaceIndex {
  wide: CompiledPolicy[];
  byLabel: Map<string, CompiledPolicy[]>;
}

const NO_POLICY: AuthzDecision = Object.freeze({ allow: true, reason: 'no policy' });
const NOTHING: ApplicablePolicies = Object.freeze({ deny: [], allow: [], audit: [], allowNames: '', allowUsesHttp: false });

/**
 * Istio's AuthorizationPolicy evaluation over one snapshot's policies. Built once per snapshot
 * (matchers compiled here); forWorkload() is cached per namespace and labels, so the cost of a
 * lookup grows with the policies that could select the workload, not with all policies.
 */
export class PolicySet {
  private readonly namespaces = new Map<string, NamespaceIndex>();
  private readonly cache = new Map<string, ApplicablePolicies>();
  /** The same labels object (a pod's, from the store) skips building the cache key. */
  private readonly byLabelsObject = new WeakMap<object, { namespace: string; applicable: ApplicablePolicies }>();
  readonly size: number;

  constructor(policies: readonly AuthorizationPolicyInfo[]) {
    this.size = policies.length;
    const sorted = policies.map(compilePolicy).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const p of sorted) {
      let index = this.namespaces.get(p.namespace);
      if (index === undefined) this.namespaces.set(p.namespace, (index = { wide: [], byLabel: new Map() }));
      if (p.matchLabels === undefined) {
        index.wide.push(p);
        continue;
      }
      const [key, value] = Object.entries(p.matchLabels).sort(([a], [b]) => (a < b ? -1 : 1))[0]!;
      const bucket = labelKey(key, value);
      const list = index.byLabel.get(bucket);
      if (list === undefined) index.byLabel.set(bucket, [p]);
      else list.push(p);
    }
  }

  /** The policies that select `w`: its namespace's and the root namespace's (`weft-system`, mesh-wide). */
  forWorkload(w: Workload): ApplicablePolicies {
    if (this.size === 0) return NOTHING;
    const seen = this.byLabelsObject.get(w.labels);
    if (seen !== undefined && seen.namespace === w.namespace) return seen.applicable;
    const applicable = this.lookup(w);
    this.byLabelsObject.set(w.labels, { namespace: w.namespace, applicable });
    return applicable;
  }

  private lookup(w: Workload): ApplicablePolicies {
    const cacheKey = workloadKey(w);
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined) return cached;
    const selected: CompiledPolicy[] = [];
    const collect = (namespace: string): void => {
      const index = this.namespaces.get(namespace);
      if (index === undefined) return;
      selected.push(...index.wide);
      for (const [key, value] of Object.entries(w.labels)) {
        for (const p of index.byLabel.get(labelKey(key, value)) ?? []) {
          if (Object.entries(p.matchLabels!).every(([k, v]) => w.labels[k] === v)) selected.push(p);
        }
      }
    };
    collect(w.namespace);
    if (w.namespace !== ROOT_NAMESPACE) collect(ROOT_NAMESPACE);
    selected.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const allow = selected.filter((p) => p.action === 'ALLOW');
    const applicable: ApplicablePolicies = {
      deny: selected.filter((p) => p.action === 'DENY'),
      allow,
      audit: selected.filter((p) => p.action === 'AUDIT'),
      allowNames: allow.map((p) => p.key).join(', '),
      allowUsesHttp: allow.some((p) => p.rules.some((r) => r.usesHttp)),
    };
    this.cache.set(cacheKey, applicable);
    return applicable;
  }

  authorize(applicable: ApplicablePolicies, conn: ConnectionFacts, request?: RequestFacts): AuthzDecision {
    return authorize(applicable, conn, request);
  }

  /** forWorkload + authorize, for callers that judge one connection or request. */
  decide(w: Workload, conn: ConnectionFacts, request?: RequestFacts): AuthzDecision {
    return authorize(this.forWorkload(w), conn, request);
  }
}

/**
 * Istio's order (istio.io/latest/docs/concepts/security/#implicit-enablement): (1) a matching DENY
 * denies; (2) no ALLOW policy for the workload: allow; (3) a matching ALLOW allows; (4) deny.
 * AUDIT policies never decide; the ones that match are reported.
 * `request` undefined: the connection is judged as plain TCP (see ruleMatches).
 */
export function authorize(applicable: ApplicablePolicies, conn: ConnectionFacts, request?: RequestFacts): AuthzDecision {
  let audit: string[] | undefined;
  for (const p of applicable.audit) {
    if (firstMatch(p, conn, request) !== undefined) (audit ??= []).push(p.key);
  }
  for (const p of applicable.deny) {
    const rule = firstMatch(p, conn, request);
    if (rule !== undefined) return decision(false, p, rule, conn, request, audit);
  }
  if (applicable.allow.length === 0) {
    if (audit === undefined && applicable.deny.length === 0) return NO_POLICY;
    const reason = applicable.deny.length === 0 ? 'no policy' : 'no DENY policy matched and no ALLOW policy applies';
    return audit === undefined ? { allow: true, reason } : { allow: true, reason, audit };
  }
  for (const p of applicable.allow) {
    const rule = firstMatch(p, conn, request);
    if (rule !== undefined) return decision(true, p, rule, conn, request, audit);
  }
  let reason = `no ALLOW policy matched; in force: ${applicable.allowNames}`;
  if (request === undefined && applicable.allowUsesHttp) reason += ' (ALLOW rules with HTTP-only fields match nothing on plain TCP)';
  return audit === undefined ? { allow: false, reason } : { allow: false, reason, audit };
}

function firstMatch(p: CompiledPolicy, conn: ConnectionFacts, request: RequestFacts | undefined): CompiledRule | undefined {
  for (const rule of p.rules) if (ruleMatches(rule, p.action === 'ALLOW', conn, request)) return rule;
  return undefined;
}

/**
 * HTTP-only fields on plain TCP, as Istio's model.go does it (Generate → checkError): in an ALLOW
 * rule they make the whole rule match nothing ("a smaller allow policy"); in a DENY or AUDIT rule
 * each HTTP-only field is dropped on its own and the rest of its source, operation or condition
 * list still applies ("a wider deny policy"), so an operation of HTTP-only fields alone matches
 * any connection.
 */
function ruleMatches(rule: CompiledRule, isAllow: boolean, conn: ConnectionFacts, request: RequestFacts | undefined): boolean {
  const tcp = request === undefined;
  if (tcp && isAllow && rule.usesHttp) return false;
  if (rule.from !== undefined && !anyEntryHolds(rule.from, tcp, conn, request)) return false;
  if (rule.to !== undefined && !anyEntryHolds(rule.to, tcp, conn, request)) return false;
  return allHold(rule.when, tcp, conn, request);
}

function anyEntryHolds(entries: Check[][], tcp: boolean, conn: ConnectionFacts, request: RequestFacts | undefined): boolean {
  for (const checks of entries) if (allHold(checks, tcp, conn, request)) return true;
  return false;
}

function allHold(checks: Check[], tcp: boolean, conn: ConnectionFacts, request: RequestFacts | undefined): boolean {
  for (const c of checks) {
    if (tcp && c.httpOnly) continue;
    if (!checkHolds(c, conn, request)) return false;
  }
  return true;
}

function decision(
  allow: boolean, p: CompiledPolicy, rule: CompiledRule, conn: ConnectionFacts, request: RequestFacts | undefined, audit: string[] | undefined,
): AuthzDecision {
  const reason = `${allow ? 'ALLOW' : 'DENY'} policy ${p.key} rule ${rule.index} matched: ${describe(rule, conn, request)}`;
  const d: AuthzDecision = { allow, policy: p.key, rule: rule.index, reason };
  if (audit !== undefined) d.audit = audit;
  return d;
}

/** The facts the deciding rule read, e.g. `method POST, path /admin`. */
function describe(rule: CompiledRule, conn: ConnectionFacts, request: RequestFacts | undefined): string {
  let text = '';
  for (const { fact, header } of rule.facts) {
    if (request === undefined && fact >= Fact.Host) continue;
    const value = fact === Fact.Principal ? conn.sourcePrincipal : factValue(fact, header, conn, request);
    const part = `${FACT_NAMES[fact]}${fact === Fact.Header ? ` ${header}` : ''} ${value ?? ABSENT[fact] ?? 'absent'}`;
    text = text === '' ? part : `${text}, ${part}`;
  }
  return text === '' ? 'every request (the rule places no constraint)' : text;
}

const FACT_NAMES: Record<Fact, string> = {
  [Fact.SourceIp]: 'source ip', [Fact.RemoteIp]: 'remote ip', [Fact.Principal]: 'principal', [Fact.Namespace]: 'source namespace',
  [Fact.DestinationIp]: 'destination ip', [Fact.DestinationPort]: 'port', [Fact.Sni]: 'sni',
  [Fact.Host]: 'host', [Fact.Method]: 'method', [Fact.Path]: 'path', [Fact.Header]: 'header',
};
const ABSENT: Partial<Record<Fact, string>> = {
  [Fact.Principal]: 'none (plaintext client)', [Fact.Namespace]: 'none (plaintext client)', [Fact.Sni]: 'none',
};

function labelKey(key: string, value: string): string {
  return `${key}\u0000${value}`;
}

function workloadKey(w: Workload): string {
  const keys = Object.keys(w.labels).sort();
  let key = w.namespace;
  for (const k of keys) key += `\u0000${k}\u0000${w.labels[k]}`;
  return key;
}
