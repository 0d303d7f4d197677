import { isMapping, join, type Checker, type Fields } from '../config/checker';
import type { Metadata } from '../config/metadata';
import type {
  BackendObjectRef, BackendRefInfo, HeaderModifier, PathModifier, RequestMirror, RequestRedirect, RouteFilter, RouteParentRef,
  UrlRewrite, ValueMatch, ValueMatchType,
} from './route-info';

/**
 * The parts HTTPRoute and GRPCRoute share (apis/v1/shared_types.go, httproute_types.go): parentRefs,
 * hostnames, backendRefs, filters, header matches; with the API server's limits and CEL rules.
 */

export const MAX_RULES = 16;
export const MAX_MATCHES_PER_RULE = 64;
export const MAX_MATCHES_PER_ROUTE = 128;
export const MAX_LIST = 16;

/** RFC 7230 token: HTTPHeaderName and the query-param name pattern of the Gateway API. */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const PRECISE_HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const CORE_GROUPS = new Set(['', 'core']);

const PARENT_REF = new Set(['group', 'kind', 'namespace', 'name', 'sectionName', 'port']);
const BACKEND_OBJECT_REF = new Set(['group', 'kind', 'namespace', 'name', 'port']);
const VALUE_MATCH = new Set(['type', 'name', 'value']);
const HEADER_MODIFIER = new Set(['set', 'add', 'remove']);
const HEADER_VALUE = new Set(['name', 'value']);
const REDIRECT = new Set(['scheme', 'hostname', 'path', 'port', 'statusCode']);
const REWRITE = new Set(['hostname', 'path']);
const PATH_MODIFIER = new Set(['type', 'replaceFullPath', 'replacePrefixMatch']);
const MIRROR = new Set(['backendRef', 'percent', 'fraction']);
const FRACTION = new Set(['numerator', 'denominator']);

/** The field of HTTPRouteFilter that goes with each `type`. */
const FILTER_FIELD: Record<string, string> = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  RequestMirror: 'requestMirror',
  ExtensionRef: 'extensionRef',
  CORS: 'cors',
  ExternalAuth: 'externalAuth',
};
const REFUSED_FILTERS: Record<string, string> = {
  ExtensionRef: 'ExtensionRef filters are not supported: Weft has no filter extensions',
  CORS: 'CORS filters are not carried out by Weft; answer CORS in the application',
  ExternalAuth: 'ExternalAuth filters are not supported: Weft has no external authorization',
};

/** Which filters a list may hold: a rule of an HTTPRoute, a backendRef, a GRPCRoute rule. */
export type FilterPlace = 'http-rule' | 'http-backend' | 'grpc-rule' | 'grpc-backend';
const ALLOWED_FILTERS: Record<FilterPlace, readonly string[]> = {
  'http-rule': ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror'],
  'http-backend': ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'],
  'grpc-rule': ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'],
  'grpc-backend': ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'],
};
/** Filters that may appear once per list (RequestMirror may repeat). */
const ONCE = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite']);

/** An optional list, at most `max` long; absent reads as empty. */
export function boundedList(c: Checker, value: unknown, field: string, max: number): unknown[] {
  if (value === undefined) return [];
  const list = c.list(value, field) ?? [];
  if (list.length > max) c.fail(field, `has ${list.length} entries; the Gateway API allows at most ${max}`);
  return list;
}

/**
 * A route's `spec.rules`, each read by `rule` (undefined: invalid, already reported): at most
 * MAX_RULES, rule names unique within the route, at most MAX_MATCHES_PER_ROUTE matches in all.
 */
export function readRules<R extends { name?: string; matches: readonly unknown[] }>(c: Checker, spec: Fields, namespace: string, rule: (c: Checker, raw: unknown, field: string, namespace: string) => R | undefined): R[] {
  const rules: R[] = [];
  const names = new Set<string>();
  let totalMatches = 0;
  boundedList(c, spec.rules, 'spec.rules', MAX_RULES).forEach((entry, i) => {
    const r = rule(c, entry, join('spec.rules', i), namespace);
    if (r === undefined) return;
    totalMatches += r.matches.length;
    if (r.name !== undefined) {
      if (names.has(r.name)) c.fail(`${join('spec.rules', i)}.name`, `"${r.name}" names an earlier rule too; rule names must be unique within the route`);
      names.add(r.name);
    }
    rules.push(r);
  });
  if (totalMatches > MAX_MATCHES_PER_ROUTE) c.fail('spec.rules', `has ${totalMatches} matches in all; the Gateway API allows at most ${MAX_MATCHES_PER_ROUTE} per route`);
  return rules;
}

export function readParentRefs(c: Checker, spec: Fields, meta: Metadata): RouteParentRef[] {
  const list = boundedList(c, spec.parentRefs, 'spec.parentRefs', 32);
  if (list.length === 0) {
    c.fail('spec.parentRefs', 'a mesh route needs a parentRef to a Service (group: "", kind: Service, name: ...); without one it would apply to nothing');
    return [];
  }
  const out: RouteParentRef[] = [];
  const seen = new Set<string>();
  list.forEach((entry, i) => {
    const field = join('spec.parentRefs', i);
    const raw = c.mapping(entry, field);
    if (raw === undefined) return;
    c.allowOnly(raw, field, PARENT_REF);
    const group = raw.group === undefined ? 'gateway.networking.k8s.io' : raw.group;
    const kind = raw.kind === undefined ? 'Gateway' : raw.kind;
    if (kind === 'Service' && raw.group === undefined) {
      c.fail(`${field}.group`, 'is required for a Service: left out it defaults to gateway.networking.k8s.io (no such Service kind); write group: ""');
      return;
    }
    if (kind === 'Gateway' || group === 'gateway.networking.k8s.io') {
      c.fail(field, 'refers to a Gateway (the default when group and kind are left out): Weft is a mesh and has no Gateways; attach the route to a Service with group: "" and kind: Service');
      return;
    }
    if (kind !== 'Service' || typeof group !== 'string' || !CORE_GROUPS.has(group)) {
      c.fail(field, `${JSON.stringify(group)}/${JSON.stringify(kind)} is not a parent Weft can attach to; only a Service (group: "", kind: Service) is`);
      return;
    }
    const name = c.dnsLabel(raw.name, `${field}.name`);
    const namespace = raw.namespace === undefined ? meta.namespace : c.dnsLabel(raw.namespace, `${field}.namespace`);
    const ref: RouteParentRef = { namespace: namespace ?? '', name: name ?? '' };
    if (raw.port !== undefined) {
      const port = c.port(raw.port, `${field}.port`);
      if (port !== undefined) ref.port = port;
    }
    if (raw.sectionName !== undefined) {
      const section = c.dnsLabel(raw.sectionName, `${field}.sectionName`);
      if (section !== undefined) ref.sectionName = section;
    }
    const key = `${ref.namespace}/${ref.name}:${ref.port ?? ''}:${ref.sectionName ?? ''}`;
    if (seen.has(key)) c.fail(field, `repeats an earlier parentRef (Service ${ref.namespace}/${ref.name}); parentRefs must be distinct`);
    seen.add(key);
    if (name !== undefined && namespace !== undefined) out.push(ref);
  });
  return out;
}

/** `hostnames`: checked as the Gateway API checks them; a mesh does not route by them (GEP-1294). */
export function readHostnames(c: Checker, spec: Fields): string[] {
  const out: string[] = [];
  boundedList(c, spec.hostnames, 'spec.hostnames', MAX_LIST).forEach((entry, i) => {
    const field = join('spec.hostnames', i);
    const text = c.string(entry, field);
    if (text === undefined) return;
    if (text.length <= 253 && HOSTNAME.test(text)) out.push(text);
    else c.fail(field, `"${text}" is not a hostname (lowercase RFC 1123, optionally starting with "*."; no IP addresses)`);
  });
  return out;
}

/** BackendObjectReference: group "", kind Service by default; `port` is required for a Service. */
export function readObjectRef(c: Checker, raw: Fields, field: string, routeNamespace: string, allowed = BACKEND_OBJECT_REF): BackendObjectRef | undefined {
  c.allowOnly(raw, field, allowed);
  const group = raw.group === undefined ? '' : typeof raw.group === 'string' ? raw.group : (c.fail(`${field}.group`, 'must be a string'), undefined);
  const kind = raw.kind === undefined ? 'Service' : c.string(raw.kind, `${field}.kind`);
  const name = c.string(raw.name, `${field}.name`);
  const namespace = raw.namespace === undefined ? routeNamespace : c.dnsLabel(raw.namespace, `${field}.namespace`);
  if (group === undefined || kind === undefined || name === undefined || namespace === undefined) return undefined;
  const ref: BackendObjectRef = { group: group === 'core' ? '' : group, kind, namespace, name };
  if (raw.port !== undefined) {
    const port = c.port(raw.port, `${field}.port`);
    if (port !== undefined) ref.port = port;
  } else if (ref.group === '' && ref.kind === 'Service') {
    c.fail(`${field}.port`, 'is required for a Service backend (the Service port to send to)');
  }
  return ref;
}

/**
 * backendRefs of a rule. Weights default to 1; weights that add up to 0 would send every request
 * to no backend, which is refused here (the issue asks for it to be reported by object and field).
 */
export function readBackendRefs(c: Checker, value: unknown, field: string, routeNamespace: string, place: FilterPlace): BackendRefInfo[] {
  const out: BackendRefInfo[] = [];
  const list = boundedList(c, value, field, MAX_LIST);
  list.forEach((entry, i) => {
    const at = join(field, i);
    const raw = c.mapping(entry, at);
    if (raw === undefined) return;
    const { weight, filters, ...objectFields } = raw;
    const ref = readObjectRef(c, objectFields, at, routeNamespace, new Set([...BACKEND_OBJECT_REF, 'weight', 'filters']));
    let w = 1;
    if (weight !== undefined) {
      if (Number.isInteger(weight) && (weight as number) >= 0 && (weight as number) <= 1_000_000) w = weight as number;
      else c.fail(`${at}.weight`, 'must be an integer from 0 to 1000000');
    }
    const backendFilters = readFilters(c, filters, `${at}.filters`, routeNamespace, place);
    if (ref !== undefined) out.push({ ...ref, weight: w, filters: backendFilters });
  });
  if (list.length > 0 && out.length === list.length && out.every((b) => b.weight === 0)) {
    c.fail(field, 'the weights add up to 0, so no request could be sent anywhere; give at least one backendRef a weight above 0 (the default is 1)');
  }
  return out;
}

/** Header or query-param matches; the Gateway API considers only the first entry of a name. */
export function readValueMatches(
  c: Checker, value: unknown, field: string, what: 'header' | 'query param', caseInsensitiveNames: boolean, maxValue: number,
): ValueMatch[] {
  const out: ValueMatch[] = [];
  const seen = new Set<string>();
  boundedList(c, value, field, MAX_LIST).forEach((entry, i) => {
    const at = join(field, i);
    const raw = c.mapping(entry, at);
    if (raw === undefined) return;
    c.allowOnly(raw, at, VALUE_MATCH);
    const type: ValueMatchType | undefined = raw.type === undefined ? 'Exact' : c.oneOf(raw.type, `${at}.type`, ['Exact', 'RegularExpression'] as const);
    let name = c.string(raw.name, `${at}.name`);
    if (name !== undefined && (name.length > 256 || !HEADER_NAME.test(name))) {
      c.fail(`${at}.name`, `"${name}" is not a valid ${what} name (an HTTP token of at most 256 characters)`);
      name = undefined;
    }
    if (typeof raw.value !== 'string' || raw.value.length > maxValue) {
      c.fail(`${at}.value`, `must be a string of at most ${maxValue} characters`);
      return;
    }
    if (name === undefined || type === undefined) return;
    if (type === 'RegularExpression' && !checkRegex(c, raw.value, `${at}.value`)) return;
    const key = caseInsensitiveNames ? name.toLowerCase() : name;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ type, name: key, value: raw.value });
  });
  return out;
}

/** The regex compiles as Weft runs it (anchored, JavaScript syntax, Unicode mode). */
export function checkRegex(c: Checker, source: string, field: string): boolean {
  try {
    compileRegex(source);
    return true;
  } catch (e) {
    c.fail(field, `"${source}" is not a valid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`);
    return false;
  }
}

/** A Gateway API regular expression matches the whole value. */
export function compileRegex(source: string): RegExp {
  return new RegExp(`^(?:${source})$`, 'u');
}

export function readFilters(c: Checker, value: unknown, field: string, routeNamespace: string, place: FilterPlace): RouteFilter[] {
  const out: RouteFilter[] = [];
  const counts = new Map<string, number>();
  boundedList(c, value, field, MAX_LIST).forEach((entry, i) => {
    const at = join(field, i);
    const raw = c.mapping(entry, at);
    if (raw === undefined) return;
    c.allowOnly(raw, at, new Set(['type', ...Object.values(FILTER_FIELD)]));
    const type = c.string(raw.type, `${at}.type`);
    if (type === undefined) return;
    if (REFUSED_FILTERS[type] !== undefined) {
      c.fail(`${at}.type`, REFUSED_FILTERS[type]!);
      return;
    }
    const allowed = ALLOWED_FILTERS[place];
    if (!allowed.includes(type)) {
      const known = FILTER_FIELD[type] !== undefined;
      c.fail(`${at}.type`, known
        ? `${type} is not allowed here${place.endsWith('backend') ? ' (on a backendRef); put it on the rule' : ''}; allowed: ${allowed.join(', ')}`
        : `unknown filter type "${type}"; allowed: ${allowed.join(', ')}`);
      return;
    }
    const fieldName = FILTER_FIELD[type]!;
    for (const other of Object.values(FILTER_FIELD)) {
      if (other !== fieldName && raw[other] !== undefined) c.fail(`${at}.${other}`, `must not be set with type ${type} (it goes with its own type)`);
    }
    counts.set(type, (counts.get(type) ?? 0) + 1);
    if (ONCE.has(type) && counts.get(type) === 2) c.fail(at, `a second ${type} filter; the Gateway API allows it once per list`);
    const body = raw[fieldName];
    if (body === undefined) {
      c.fail(`${at}.${fieldName}`, `is required with type ${type}`);
      return;
    }
    const fields = c.mapping(body, `${at}.${fieldName}`);
    if (fields === undefined) return;
    const f = readFilter(c, type, fields, `${at}.${fieldName}`, routeNamespace);
    if (f !== undefined) out.push(f);
  });
  if (counts.has('RequestRedirect') && counts.has('URLRewrite')) {
    c.fail(field, 'has both RequestRedirect and URLRewrite; a request is either redirected or rewritten, so keep one');
  }
  return out;
}

function readFilter(c: Checker, type: string, fields: Fields, field: string, routeNamespace: string): RouteFilter | undefined {
  switch (type) {
    case 'RequestHeaderModifier': return { type, requestHeaderModifier: headerModifier(c, fields, field) };
    case 'ResponseHeaderModifier': return { type, responseHeaderModifier: headerModifier(c, fields, field) };
    case 'RequestRedirect': return { type, requestRedirect: redirect(c, fields, field) };
    case 'URLRewrite': return { type, urlRewrite: rewrite(c, fields, field) };
    case 'RequestMirror': {
      const m = mirror(c, fields, field, routeNamespace);
      return m === undefined ? undefined : { type, requestMirror: m };
    }
    default: return undefined;
  }
}

function headerModifier(c: Checker, fields: Fields, field: string): HeaderModifier {
  c.allowOnly(fields, field, HEADER_MODIFIER);
  const out: HeaderModifier = { set: [], add: [], remove: [] };
  for (const op of ['set', 'add'] as const) {
    const seen = new Set<string>();
    boundedList(c, fields[op], `${field}.${op}`, MAX_LIST).forEach((entry, i) => {
      const at = join(`${field}.${op}`, i);
      const raw = c.mapping(entry, at);
      if (raw === undefined) return;
      c.allowOnly(raw, at, HEADER_VALUE);
      const name = headerName(c, raw.name, `${at}.name`);
      if (typeof raw.value !== 'string' || raw.value.length > 4096 || /[\r\n\0]/.test(raw.value)) {
        c.fail(`${at}.value`, 'must be a string of at most 4096 characters without CR, LF or NUL');
        return;
      }
      if (name === undefined) return;
      if (seen.has(name.toLowerCase())) c.fail(`${at}.name`, `"${name}" is named twice in ${op}; header names are case-insensitive`);
      seen.add(name.toLowerCase());
      out[op].push({ name, value: raw.value });
    });
  }
  const removed = new Set<string>();
  boundedList(c, fields.remove, `${field}.remove`, MAX_LIST).forEach((entry, i) => {
    const name = headerName(c, entry, join(`${field}.remove`, i));
    if (name === undefined) return;
    if (removed.has(name.toLowerCase())) c.fail(join(`${field}.remove`, i), `"${name}" is named twice; header names are case-insensitive`);
    removed.add(name.toLowerCase());
    out.remove.push(name);
  });
  return out;
}

function headerName(c: Checker, value: unknown, field: string): string | undefined {
  const name = c.string(value, field);
  if (name === undefined) return undefined;
  if (name.length <= 256 && HEADER_NAME.test(name)) return name;
  c.fail(field, `"${name}" is not a valid header name (an HTTP token of at most 256 characters)`);
  return undefined;
}

function redirect(c: Checker, fields: Fields, field: string): RequestRedirect {
  c.allowOnly(fields, field, REDIRECT);
  const out: RequestRedirect = { statusCode: 302 };
  if (fields.scheme !== undefined) {
    const scheme = c.oneOf(fields.scheme, `${field}.scheme`, ['http', 'https'] as const);
    if (scheme !== undefined) out.scheme = scheme;
  }
  if (fields.hostname !== undefined) {
    const host = preciseHostname(c, fields.hostname, `${field}.hostname`);
    if (host !== undefined) out.hostname = host;
  }
  if (fields.port !== undefined) {
    const port = c.port(fields.port, `${field}.port`);
    if (port !== undefined) out.port = port;
  }
  if (fields.statusCode !== undefined) {
    const code = fields.statusCode;
    if (code === 301 || code === 302 || code === 303 || code === 307 || code === 308) out.statusCode = code;
    else c.fail(`${field}.statusCode`, 'must be one of 301, 302, 303, 307, 308');
  }
  if (fields.path !== undefined) {
    const path = pathModifier(c, fields.path, `${field}.path`);
    if (path !== undefined) out.path = path;
  }
  return out;
}

function rewrite(c: Checker, fields: Fields, field: string): UrlRewrite {
  c.allowOnly(fields, field, REWRITE);
  const out: UrlRewrite = {};
  if (fields.hostname !== undefined) {
    const host = preciseHostname(c, fields.hostname, `${field}.hostname`);
    if (host !== undefined) out.hostname = host;
  }
  if (fields.path !== undefined) {
    const path = pathModifier(c, fields.path, `${field}.path`);
    if (path !== undefined) out.path = path;
  }
  return out;
}

function preciseHostname(c: Checker, value: unknown, field: string): string | undefined {
  const text = c.string(value, field);
  if (text === undefined) return undefined;
  if (text.length <= 253 && PRECISE_HOSTNAME.test(text)) return text;
  c.fail(field, `"${text}" is not a hostname (lowercase RFC 1123, no wildcard, no IP address)`);
  return undefined;
}

function pathModifier(c: Checker, value: unknown, field: string): PathModifier | undefined {
  const raw = c.mapping(value, field);
  if (raw === undefined) return undefined;
  c.allowOnly(raw, field, PATH_MODIFIER);
  const type = c.oneOf(raw.type, `${field}.type`, ['ReplaceFullPath', 'ReplacePrefixMatch'] as const);
  if (type === undefined) return undefined;
  const key = type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
  const other = type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
  if (raw[other] !== undefined) c.fail(`${field}.${other}`, `must not be set with type ${type}`);
  const text = raw[key];
  if (typeof text !== 'string' || text.length > 1024 || (text !== '' && !text.startsWith('/')) || /[\r\n\0?#]/.test(text)) {
    c.fail(`${field}.${key}`, `is required with type ${type}: a path starting with "/" (at most 1024 characters, no "?" or "#")${type === 'ReplacePrefixMatch' ? ', or "" to strip the prefix' : ''}`);
    return undefined;
  }
  return type === 'ReplaceFullPath' ? { type, replaceFullPath: text } : { type, replacePrefixMatch: text };
}

function mirror(c: Checker, fields: Fields, field: string, routeNamespace: string): RequestMirror | undefined {
  c.allowOnly(fields, field, MIRROR);
  const refFields = fields.backendRef === undefined ? (c.fail(`${field}.backendRef`, 'is required'), undefined) : c.mapping(fields.backendRef, `${field}.backendRef`);
  const ref = refFields === undefined ? undefined : readObjectRef(c, refFields, `${field}.backendRef`, routeNamespace);
  let numerator = 100;
  let denominator = 100;
  if (fields.percent !== undefined && fields.fraction !== undefined) c.fail(field, 'set percent or fraction, not both');
  if (fields.percent !== undefined) {
    if (Number.isInteger(fields.percent) && (fields.percent as number) >= 0 && (fields.percent as number) <= 100) numerator = fields.percent as number;
    else c.fail(`${field}.percent`, 'must be an integer from 0 to 100');
  } else if (fields.fraction !== undefined) {
    const f = c.mapping(fields.fraction, `${field}.fraction`) ?? {};
    c.allowOnly(f, `${field}.fraction`, FRACTION);
    const n = f.numerator;
    const d = f.denominator === undefined ? 100 : f.denominator;
    if (!Number.isInteger(d) || (d as number) < 1) c.fail(`${field}.fraction.denominator`, 'must be an integer of at least 1 (default 100)');
    else if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > (d as number)) c.fail(`${field}.fraction.numerator`, `must be an integer from 0 to the denominator (${d as number})`);
    else [numerator, denominator] = [n as number, d as number];
  }
  return ref === undefined ? undefined : { backendRef: ref, numerator, denominator };
}

/** `metadata.creationTimestamp` (RFC 3339), used for precedence between routes. */
export function readCreationTimestamp(c: Checker, obj: Fields): number | undefined {
  const value = isMapping(obj.metadata) ? obj.metadata.creationTimestamp : undefined;
  if (value === undefined || value === null) return undefined;
  const ms = typeof value === 'string' ? Date.parse(value) : value instanceof Date ? value.getTime() : NaN;
  if (Number.isFinite(ms)) return ms;
  c.fail('metadata.creationTimestamp', `${JSON.stringify(value)} is not an RFC 3339 time such as 2024-05-01T10:00:00Z`);
  return undefined;
}

/** What HTTPRoute and GRPCRoute share above their rules: who they are, their parents, hostnames and age. */
export function readRouteCommon(c: Checker, obj: Fields, spec: Fields, meta: Metadata):
  { namespace: string; name: string; parentRefs: RouteParentRef[]; hostnames: string[]; creationTimestamp?: number } {
  const created = readCreationTimestamp(c, obj);
  return {
    namespace: meta.namespace,
    name: meta.name,
    parentRefs: readParentRefs(c, spec, meta),
    hostnames: readHostnames(c, spec),
    ...(created === undefined ? {} : { creationTimestamp: created }),
  };
}
