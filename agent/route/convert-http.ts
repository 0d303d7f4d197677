import { join, type Checker, type Fields } from '../config/checker';
import type { Metadata } from '../config/metadata';
import {
  boundedList, checkRegex, MAX_MATCHES_PER_RULE, readBackendRefs, readFilters, readRouteCommon, readRules,
  readValueMatches,
} from './convert-common';
import { readDuration } from './duration';
import type { HttpRouteInfo, HttpRouteMatch, HttpRouteRule, PathMatchType, RouteRetry, RouteTimeouts } from './route-info';

/**
 * Checks an HTTPRoute (gateway.networking.k8s.io/v1) field by field with the API server's schema,
 * limits and CEL rules (apis/v1/httproute_types.go), and normalizes it with the defaults applied.
 * What Weft does not carry out (Gateway parents, sessionPersistence, ExtensionRef/CORS filters)
 * is refused by name, never ignored.
 */

const SPEC = new Set(['parentRefs', 'hostnames', 'rules']);
const RULE = new Set(['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry', 'sessionPersistence']);
const MATCH = new Set(['path', 'headers', 'queryParams', 'method']);
const PATH = new Set(['type', 'value']);
const TIMEOUTS = new Set(['request', 'backendRequest']);
const RETRY = new Set(['codes', 'attempts', 'backoff']);
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
/** What an Exact or PathPrefix value may contain (the Gateway API's HTTPPathMatch pattern). */
const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$/;

export function convertHttpRoute(c: Checker, obj: Fields, meta: Metadata): HttpRouteInfo {
  const spec = c.optionalMapping(obj.spec, 'spec');
  c.allowOnly(spec, 'spec', SPEC);
  const route: HttpRouteInfo = { kind: 'HTTPRoute', ...readRouteCommon(c, obj, spec, meta), rules: [] };
  if (spec.rules === undefined) {
    // The API server's default: one rule matching every path, with no backend (answered 500).
    route.rules.push({ matches: [defaultMatch()], filters: [], backendRefs: [], timeouts: {} });
    return route;
  }
  route.rules = readRules(c, spec, meta.namespace, rule);
  return route;
}

function defaultMatch(): HttpRouteMatch {
  return { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] };
}

function rule(c: Checker, value: unknown, field: string, namespace: string): HttpRouteRule | undefined {
  const raw = c.mapping(value, field);
  if (raw === undefined) return undefined;
  c.allowOnly(raw, field, RULE);
  if (raw.sessionPersistence !== undefined) {
    c.fail(`${field}.sessionPersistence`, 'is not supported: Weft does not pin clients to endpoints; remove it (requests are balanced per request)');
  }
  const out: HttpRouteRule = { matches: [], filters: [], backendRefs: [], timeouts: {} };
  if (raw.name !== undefined) {
    const name = c.dnsSubdomain(raw.name, `${field}.name`);
    if (name !== undefined) out.name = name;
  }
  if (raw.matches === undefined) out.matches.push(defaultMatch());
  else {
    boundedList(c, raw.matches, `${field}.matches`, MAX_MATCHES_PER_RULE).forEach((entry, i) => {
      const m = match(c, entry, join(`${field}.matches`, i));
      if (m !== undefined) out.matches.push(m);
    });
    // An empty list is the same as none: every request. (Anything else that is not a list was reported above.)
    if (Array.isArray(raw.matches) && raw.matches.length === 0) out.matches.push(defaultMatch());
  }
  out.filters = readFilters(c, raw.filters, `${field}.filters`, namespace, 'http-rule');
  out.backendRefs = readBackendRefs(c, raw.backendRefs, `${field}.backendRefs`, namespace, 'http-backend');
  const redirect = out.filters.find((f) => f.type === 'RequestRedirect');
  if (redirect !== undefined && out.backendRefs.length > 0) {
    c.fail(`${field}.backendRefs`, 'must be empty with a RequestRedirect filter: the proxy answers the redirect itself');
  }
  for (const f of out.filters) {
    const path = f.type === 'RequestRedirect' ? f.requestRedirect.path : f.type === 'URLRewrite' ? f.urlRewrite.path : undefined;
    if (path?.type !== 'ReplacePrefixMatch') continue;
    if (out.matches.length !== 1 || out.matches[0]!.path.type !== 'PathPrefix') {
      c.fail(`${field}.matches`, `${f.type} with ReplacePrefixMatch needs exactly one match, with a PathPrefix path (the prefix it replaces)`);
    }
  }
  if (raw.timeouts !== undefined) out.timeouts = timeouts(c, raw.timeouts, `${field}.timeouts`);
  if (raw.retry !== undefined) {
    const retry = readRetry(c, raw.retry, `${field}.retry`);
    if (retry !== undefined) out.retry = retry;
  }
  return out;
}

function match(c: Checker, value: unknown, field: string): HttpRouteMatch | undefined {
  const raw = c.mapping(value, field);
  if (raw === undefined) return undefined;
  c.allowOnly(raw, field, MATCH);
  const out = defaultMatch();
  if (raw.path !== undefined) {
    const path = c.mapping(raw.path, `${field}.path`) ?? {};
    c.allowOnly(path, `${field}.path`, PATH);
    const type: PathMatchType | undefined = path.type === undefined ? 'PathPrefix'
      : c.oneOf(path.type, `${field}.path.type`, ['Exact', 'PathPrefix', 'RegularExpression'] as const);
    const text = path.value === undefined ? '/' : path.value;
    if (typeof text !== 'string' || text === '' || text.length > 1024) {
      c.fail(`${field}.path.value`, 'must be a non-empty string of at most 1024 characters');
    } else if (type === 'RegularExpression') {
      if (checkRegex(c, text, `${field}.path.value`)) out.path = { type, value: text };
    } else if (type !== undefined) {
      const problem = pathProblem(text);
      if (problem !== undefined) c.fail(`${field}.path.value`, `"${text}" ${problem}`);
      else out.path = { type, value: text };
    }
  }
  out.headers = readValueMatches(c, raw.headers, `${field}.headers`, 'header', true, 4096);
  out.queryParams = readValueMatches(c, raw.queryParams, `${field}.queryParams`, 'query param', false, 1024);
  if (raw.method !== undefined) {
    const method = c.oneOf(raw.method, `${field}.method`, METHODS);
    if (method !== undefined) out.method = method;
  }
  return out;
}

/** The API server's checks of an Exact or PathPrefix value; undefined when it is fine. */
function pathProblem(text: string): string | undefined {
  if (!text.startsWith('/')) return 'must be an absolute path starting with "/"';
  if (!PATH_CHARS.test(text)) return 'has characters a path may not contain (percent-encode them)';
  if (/\/\/|\/\.\/|\/\.\.\/|%2f|%2F|#/.test(text) || text.endsWith('/..') || text.endsWith('/.')) {
    return 'must not contain "//", "/./", "/../", "%2f", "%2F" or "#", nor end with "/." or "/.."';
  }
  return undefined;
}

function timeouts(c: Checker, value: unknown, field: string): RouteTimeouts {
  const raw = c.mapping(value, field) ?? {};
  c.allowOnly(raw, field, TIMEOUTS);
  const out: RouteTimeouts = {};
  if (raw.request !== undefined) {
    const ms = readDuration(c, raw.request, `${field}.request`);
    if (ms !== undefined) out.requestMs = ms;
  }
  if (raw.backendRequest !== undefined) {
    const ms = readDuration(c, raw.backendRequest, `${field}.backendRequest`);
    if (ms !== undefined) out.backendRequestMs = ms;
  }
  if (out.requestMs !== undefined && out.requestMs !== 0 && out.backendRequestMs !== undefined && out.backendRequestMs > out.requestMs) {
    c.fail(`${field}.backendRequest`, `${String(raw.backendRequest)} is longer than request (${String(raw.request)}); the whole request, retries included, must fit in request`);
  }
  return out;
}

function readRetry(c: Checker, value: unknown, field: string): RouteRetry | undefined {
  const raw = c.mapping(value, field);
  if (raw === undefined) return undefined;
  c.allowOnly(raw, field, RETRY);
  const out: RouteRetry = { codes: [] };
  if (raw.attempts !== undefined) {
    if (Number.isInteger(raw.attempts) && (raw.attempts as number) >= 0) out.attempts = raw.attempts as number;
    else c.fail(`${field}.attempts`, 'must be an integer of at least 0 (the number of retries after the first try)');
  }
  boundedList(c, raw.codes, `${field}.codes`, 100).forEach((code, i) => {
    if (Number.isInteger(code) && (code as number) >= 400 && (code as number) <= 599) {
      if (!out.codes.includes(code as number)) out.codes.push(code as number);
    } else c.fail(join(`${field}.codes`, i), 'must be an HTTP status code from 400 to 599');
  });
  if (raw.backoff !== undefined) {
    const ms = readDuration(c, raw.backoff, `${field}.backoff`);
    if (ms !== undefined) out.backoffMs = ms;
  }
  return out;
}
