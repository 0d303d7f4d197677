import { join, type Checker, type Fields } from '../config/checker';
import type { Metadata } from '../config/metadata';
import {
  boundedList, checkRegex, MAX_MATCHES_PER_RULE, readBackendRefs, readFilters, readRouteCommon, readRules,
  readValueMatches,
} from './convert-common';
import type { GrpcMethodMatch, GrpcRouteInfo, GrpcRouteMatch, GrpcRouteRule, ValueMatchType } from './route-info';

/**
 * Checks a GRPCRoute (gateway.networking.k8s.io/v1) as the API server does (apis/v1/grpcroute_types.go)
 * and normalizes it. Filters: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror.
 */

const SPEC = new Set(['parentRefs', 'hostnames', 'rules']);
const RULE = new Set(['name', 'matches', 'filters', 'backendRefs', 'sessionPersistence']);
const MATCH = new Set(['method', 'headers']);
const METHOD = new Set(['type', 'service', 'method']);
const SERVICE_NAME = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const METHOD_NAME = /^[A-Za-z_][A-Za-z_0-9]*$/;

export function convertGrpcRoute(c: Checker, obj: Fields, meta: Metadata): GrpcRouteInfo {
  const spec = c.optionalMapping(obj.spec, 'spec');
  c.allowOnly(spec, 'spec', SPEC);
  const route: GrpcRouteInfo = { kind: 'GRPCRoute', ...readRouteCommon(c, obj, spec, meta), rules: readRules(c, spec, meta.namespace, rule) };
  if (spec.rules === undefined) route.rules.push({ matches: [], filters: [], backendRefs: [] });
  return route;
}

function rule(c: Checker, value: unknown, field: string, namespace: string): GrpcRouteRule | undefined {
  const raw = c.mapping(value, field);
  if (raw === undefined) return undefined;
  c.allowOnly(raw, field, RULE);
  if (raw.sessionPersistence !== undefined) {
    c.fail(`${field}.sessionPersistence`, 'is not supported: Weft does not pin clients to endpoints; remove it (requests are balanced per request)');
  }
  const out: GrpcRouteRule = { matches: [], filters: [], backendRefs: [] };
  if (raw.name !== undefined) {
    const name = c.dnsSubdomain(raw.name, `${field}.name`);
    if (name !== undefined) out.name = name;
  }
  boundedList(c, raw.matches, `${field}.matches`, MAX_MATCHES_PER_RULE).forEach((entry, i) => {
    const m = match(c, entry, join(`${field}.matches`, i));
    if (m !== undefined) out.matches.push(m);
  });
  out.filters = readFilters(c, raw.filters, `${field}.filters`, namespace, 'grpc-rule');
  out.backendRefs = readBackendRefs(c, raw.backendRefs, `${field}.backendRefs`, namespace, 'grpc-backend');
  return out;
}

function match(c: Checker, value: unknown, field: string): GrpcRouteMatch | undefined {
  const raw = c.mapping(value, field);
  if (raw === undefined) return undefined;
  c.allowOnly(raw, field, MATCH);
  const out: GrpcRouteMatch = { headers: readValueMatches(c, raw.headers, `${field}.headers`, 'header', true, 4096) };
  if (raw.method !== undefined) {
    const m = method(c, raw.method, `${field}.method`);
    if (m !== undefined) out.method = m;
  }
  return out;
}

function method(c: Checker, value: unknown, field: string): GrpcMethodMatch | undefined {
  const raw: Fields = c.mapping(value, field) ?? {};
  c.allowOnly(raw, field, METHOD);
  const type: ValueMatchType | undefined = raw.type === undefined ? 'Exact' : c.oneOf(raw.type, `${field}.type`, ['Exact', 'RegularExpression'] as const);
  if (type === undefined) return undefined;
  const out: GrpcMethodMatch = { type };
  let ok = true;
  for (const [key, pattern, example] of [['service', SERVICE_NAME, 'foo.bar.Echo'], ['method', METHOD_NAME, 'Echo']] as const) {
    const text = raw[key];
    if (text === undefined) continue;
    if (typeof text !== 'string' || text === '' || text.length > 1024) {
      c.fail(`${field}.${key}`, 'must be a non-empty string of at most 1024 characters');
      ok = false;
    } else if (type === 'Exact' && !pattern.test(text)) {
      c.fail(`${field}.${key}`, `"${text}" is not a gRPC ${key} name (e.g. ${example}); use type RegularExpression for a pattern`);
      ok = false;
    } else if (type === 'RegularExpression' && !checkRegex(c, text, `${field}.${key}`)) {
      ok = false;
    } else {
      out[key] = text;
    }
  }
  if (type === 'Exact' && raw.service === undefined && raw.method === undefined) {
    c.fail(field, 'an Exact method match needs service, method or both');
    return undefined;
  }
  return ok ? out : undefined;
}
