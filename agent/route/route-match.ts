import { resolveBackend, type ServicesByKey } from './resolve';
import type {
  BackendObjectRef, BackendRefInfo, HeaderModifier, RequestRedirect, RouteFilter, RouteRetry, RouteTimeouts, UrlRewrite,
} from './route-info';

/**
 * What a matched request does: the compiled form of one rule (and the match that chose it), built
 * once per snapshot by the RouteIndex and shared by every request it matches.
 */

/** One header edit; names lower-case. Applied in order (applyHeaderEdits in filters.ts). */
export interface HeaderEdit {
  op: 'set' | 'add' | 'remove';
  name: string;
  value: string;
}
export type HeaderEdits = readonly HeaderEdit[];

export interface ServiceRef {
  namespace: string;
  name: string;
}

export interface MirrorTarget {
  /** undefined: the mirror backend does not resolve; the proxy skips the mirror. */
  service: ServiceRef | undefined;
  port: number;
  /** Mirror numerator/denominator of the requests. */
  numerator: number;
  denominator: number;
}

export interface RouteBackend {
  /** undefined: the backendRef does not resolve (`unresolved` says why); its share of requests is answered 500. */
  service: ServiceRef | undefined;
  port: number;
  weight: number;
  filters: readonly RouteFilter[];
  /** The backend's own RequestHeaderModifier (applied after the rule's) and ResponseHeaderModifier. */
  requestHeaders: HeaderEdits;
  responseHeaders: HeaderEdits;
  mirrors: readonly MirrorTarget[];
  unresolved?: string;
}

export interface RouteMatch {
  route: { kind: 'HTTPRoute' | 'GRPCRoute'; namespace: string; name: string };
  ruleIndex: number;
  ruleName?: string;
  /** The PathPrefix value of the match that chose the rule (what ReplacePrefixMatch replaces); undefined otherwise. */
  matchedPrefix?: string;
  filters: readonly RouteFilter[];
  /**
   * Weighted backends. Empty (and no redirect): the proxy answers 500, as the Gateway API requires
   * of a rule with nothing to send to. Pick one with pickBackend.
   */
  backends: readonly RouteBackend[];
  /** Sum of the backends' weights (above 0 whenever backends is not empty: enforced at conversion). */
  totalWeight: number;
  timeouts: RouteTimeouts;
  retry?: RouteRetry;
  /** Rule-level RequestMirror targets. */
  mirrors: readonly MirrorTarget[];
  redirect?: RequestRedirect;
  rewrite?: UrlRewrite;
  /** The rule's RequestHeaderModifier and ResponseHeaderModifier as edits. */
  requestHeaders: HeaderEdits;
  responseHeaders: HeaderEdits;
}

export interface CompiledRule {
  route: RouteMatch['route'];
  ruleIndex: number;
  ruleName?: string;
  filters: readonly RouteFilter[];
  backends: readonly RouteBackend[];
  timeouts: RouteTimeouts;
  retry?: RouteRetry;
}

export function compileRule(
  route: RouteMatch['route'], ruleIndex: number, rule: { name?: string; filters: RouteFilter[]; backendRefs: BackendRefInfo[]; timeouts?: RouteTimeouts; retry?: RouteRetry },
  services: ServicesByKey,
): CompiledRule {
  const out: CompiledRule = {
    route, ruleIndex, filters: rule.filters, timeouts: rule.timeouts ?? {},
    backends: rule.backendRefs.map((b) => compileBackend(b, services)),
  };
  if (rule.name !== undefined) out.ruleName = rule.name;
  if (rule.retry !== undefined) out.retry = rule.retry;
  return out;
}

/** The RouteMatch for a rule chosen by a match with this PathPrefix (or none). */
export function routeMatchOf(rule: CompiledRule, matchedPrefix: string | undefined, services: ServicesByKey): RouteMatch {
  const backends = rule.backends;
  const out: RouteMatch = {
    route: rule.route,
    ruleIndex: rule.ruleIndex,
    filters: rule.filters,
    backends,
    totalWeight: backends.reduce((sum, b) => sum + b.weight, 0),
    timeouts: rule.timeouts,
    mirrors: mirrorsOf(rule.filters, services),
    requestHeaders: editsOf(rule.filters, 'RequestHeaderModifier'),
    responseHeaders: editsOf(rule.filters, 'ResponseHeaderModifier'),
  };
  if (rule.ruleName !== undefined) out.ruleName = rule.ruleName;
  if (matchedPrefix !== undefined) out.matchedPrefix = matchedPrefix;
  if (rule.retry !== undefined) out.retry = rule.retry;
  for (const f of rule.filters) {
    if (f.type === 'RequestRedirect') out.redirect = f.requestRedirect;
    if (f.type === 'URLRewrite') out.rewrite = f.urlRewrite;
  }
  return out;
}

function compileBackend(b: BackendRefInfo, services: ServicesByKey): RouteBackend {
  const r = resolveBackend(b, services);
  const out: RouteBackend = {
    service: r.ok ? { namespace: b.namespace, name: b.name } : undefined,
    port: b.port ?? 0,
    weight: b.weight,
    filters: b.filters,
    requestHeaders: editsOf(b.filters, 'RequestHeaderModifier'),
    responseHeaders: editsOf(b.filters, 'ResponseHeaderModifier'),
    mirrors: mirrorsOf(b.filters, services),
  };
  if (!r.ok) out.unresolved = r.message;
  return out;
}

function mirrorsOf(filters: readonly RouteFilter[], services: ServicesByKey): MirrorTarget[] {
  const out: MirrorTarget[] = [];
  for (const f of filters) {
    if (f.type !== 'RequestMirror') continue;
    const ref: BackendObjectRef = f.requestMirror.backendRef;
    const r = resolveBackend(ref, services);
    out.push({ service: r.ok ? { namespace: ref.namespace, name: ref.name } : undefined, port: ref.port ?? 0, numerator: f.requestMirror.numerator, denominator: f.requestMirror.denominator });
  }
  return out;
}

/** A HeaderModifier as edits: set, then add, then remove (names lower-cased). */
export function headerEdits(m: HeaderModifier): HeaderEdit[] {
  return [
    ...m.set.map((h): HeaderEdit => ({ op: 'set', name: h.name.toLowerCase(), value: h.value })),
    ...m.add.map((h): HeaderEdit => ({ op: 'add', name: h.name.toLowerCase(), value: h.value })),
    ...m.remove.map((name): HeaderEdit => ({ op: 'remove', name: name.toLowerCase(), value: '' })),
  ];
}

function editsOf(filters: readonly RouteFilter[], type: 'RequestHeaderModifier' | 'ResponseHeaderModifier'): HeaderEdits {
  for (const f of filters) {
    if (f.type === 'RequestHeaderModifier' && type === f.type) return headerEdits(f.requestHeaderModifier);
    if (f.type === 'ResponseHeaderModifier' && type === f.type) return headerEdits(f.responseHeaderModifier);
  }
  return [];
}

/**
 * The backend for a random number in [0, 1) by weight (weight 0 is never picked); undefined when
 * the rule has no backend. An unresolved backend picked here means: answer 500.
 */
export function pickBackend(match: RouteMatch, random: number): RouteBackend | undefined {
  let left = random * match.totalWeight;
  for (const b of match.backends) {
    if (b.weight === 0) continue;
    if (left < b.weight) return b;
    left -= b.weight;
  }
  for (let i = match.backends.length - 1; i >= 0; i--) if (match.backends[i]!.weight > 0) return match.backends[i];
  return undefined;
}
