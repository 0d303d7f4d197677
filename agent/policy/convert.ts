import { isIP } from 'node:net';
import { join, type Checker, type Fields } from '../config/checker';
import type { Metadata } from '../config/metadata';
import { canonicalIp } from '../core/ip';
import type {
  AuthorizationAction, AuthorizationPolicyInfo, AuthorizationRule, Condition, ConditionKey, OperationMatch, SourceMatch,
} from './authorization-policy';

/**
 * Checks an AuthorizationPolicy spec field by field, as Istio's validation webhook does
 * (pkg/config/validation: ValidateAuthorizationPolicy), and normalizes it for the Snapshot.
 * What Weft cannot enforce is rejected, never ignored: an ignored field would silently widen an
 * ALLOW policy or narrow a DENY one.
 */

const SPEC = new Set(['selector', 'action', 'rules', 'targetRef', 'targetRefs', 'provider']);
const SELECTOR = new Set(['matchLabels']);
const RULE = new Set(['from', 'to', 'when']);
const FROM = new Set(['source']);
const TO = new Set(['operation']);
const CONDITION = new Set(['key', 'values', 'notValues']);
const ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;

type Kind = 'pattern' | 'ip' | 'port' | 'method' | 'host' | 'path';

const SOURCE_FIELDS: Record<string, Kind> = {
  principals: 'pattern', notPrincipals: 'pattern',
  namespaces: 'pattern', notNamespaces: 'pattern',
  ipBlocks: 'ip', notIpBlocks: 'ip',
  remoteIpBlocks: 'ip', notRemoteIpBlocks: 'ip',
};
/** Fields of Istio's Source that Weft cannot evaluate: named, so the error says why. */
const SOURCE_UNSUPPORTED: Record<string, string> = {
  requestPrincipals: 'is not supported: Weft validates no JWTs (there is no RequestAuthentication); match the workload identity with principals',
  notRequestPrincipals: 'is not supported: Weft validates no JWTs (there is no RequestAuthentication); match the workload identity with notPrincipals',
  serviceAccounts: 'is not supported yet; write principals: ["cluster.local/ns/NAMESPACE/sa/NAME"]',
  notServiceAccounts: 'is not supported yet; write notPrincipals: ["cluster.local/ns/NAMESPACE/sa/NAME"]',
};
const OPERATION_FIELDS: Record<string, Kind> = {
  hosts: 'host', notHosts: 'host',
  ports: 'port', notPorts: 'port',
  methods: 'method', notMethods: 'method',
  paths: 'path', notPaths: 'path',
};

const CONDITION_KEYS: Record<string, Kind> = {
  'source.ip': 'ip', 'remote.ip': 'ip', 'destination.ip': 'ip',
  'source.namespace': 'pattern', 'source.principal': 'pattern', 'connection.sni': 'pattern',
  'destination.port': 'port',
};
const HEADER_KEY = /^request\.headers\[(.*)\]$/;
/** RFC 9110 token: the characters a header name may contain. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const SUPPORTED_KEYS = ['request.headers[NAME]', ...Object.keys(CONDITION_KEYS)].join(', ');

export function convertAuthorizationPolicy(c: Checker, obj: Fields, meta: Metadata): AuthorizationPolicyInfo {
  const spec = c.optionalMapping(obj.spec, 'spec');
  c.allowOnly(spec, 'spec', SPEC);
  const info: AuthorizationPolicyInfo = { namespace: meta.namespace, name: meta.name, action: action(c, spec), rules: [] };
  if (spec.targetRef !== undefined) c.fail('spec.targetRef', 'is not supported yet; select the workloads with spec.selector.matchLabels');
  if (spec.targetRefs !== undefined) c.fail('spec.targetRefs', 'is not supported yet; select the workloads with spec.selector.matchLabels');
  if (spec.provider !== undefined) c.fail('spec.provider', 'is not supported: Weft has no external authorization (action CUSTOM)');
  if (spec.selector !== undefined) {
    const selector = c.mapping(spec.selector, 'spec.selector') ?? {};
    c.allowOnly(selector, 'spec.selector', SELECTOR);
    const matchLabels = c.stringMap(selector.matchLabels, 'spec.selector.matchLabels');
    // As in Istio, an empty selector is no selector: the policy is namespace-wide.
    if (Object.keys(matchLabels).length > 0) info.matchLabels = matchLabels;
  }
  if (spec.rules !== undefined) {
    (c.list(spec.rules, 'spec.rules') ?? []).forEach((entry, i) => {
      const r = rule(c, entry, join('spec.rules', i));
      if (r !== undefined) info.rules.push(r);
    });
  }
  if (info.action === 'DENY' && info.rules.length === 0 && !c.failed) {
    // Istio's webhook refuses this too: such a policy could never deny anything.
    c.fail('spec.rules', 'a DENY policy without rules never matches; add an empty rule `{}` to deny every request');
  }
  return info;
}

function action(c: Checker, spec: Fields): AuthorizationAction {
  if (spec.action === undefined) return 'ALLOW';
  const value = c.oneOf(spec.action, 'spec.action', ACTIONS);
  if (value === 'CUSTOM') {
    c.fail('spec.action', 'CUSTOM is not supported: Weft has no external authorization provider; use ALLOW, DENY or AUDIT');
    return 'ALLOW';
  }
  return value ?? 'ALLOW';
}

function rule(c: Checker, value: unknown, field: string): AuthorizationRule | undefined {
  const raw = c.mapping(value, field);
  if (raw === undefined) return undefined;
  c.allowOnly(raw, field, RULE);
  const out: AuthorizationRule = {};
  const from = entries(c, raw.from, `${field}.from`, 'source', FROM, source);
  if (from !== undefined) out.from = from;
  const to = entries(c, raw.to, `${field}.to`, 'operation', TO, operation);
  if (to !== undefined) out.to = to;
  if (raw.when !== undefined) {
    const list = c.list(raw.when, `${field}.when`) ?? [];
    const when: Condition[] = [];
    list.forEach((entry, i) => {
      const cond = condition(c, entry, join(`${field}.when`, i));
      if (cond !== undefined) when.push(cond);
    });
    if (when.length > 0) out.when = when;
  }
  return out;
}

/** `from: [{source: {...}}]` and `to: [{operation: {...}}]`: the list, when present, must not be empty, nor any entry. */
function entries<T extends object>(
  c: Checker, value: unknown, field: string, inner: string, allowed: ReadonlySet<string>,
  read: (c: Checker, fields: Fields, field: string) => T,
): T[] | undefined {
  if (value === undefined) return undefined;
  const list = c.list(value, field);
  if (list === undefined) return undefined;
  if (list.length === 0) {
    c.fail(field, `must not be empty: leave the field out to place no constraint`);
    return undefined;
  }
  const out: T[] = [];
  list.forEach((entry, i) => {
    const at = join(field, i);
    const wrapper = c.mapping(entry, at);
    if (wrapper === undefined) return;
    c.allowOnly(wrapper, at, allowed);
    if (wrapper[inner] === undefined) {
      c.fail(`${at}.${inner}`, 'is required');
      return;
    }
    const fields = c.mapping(wrapper[inner], `${at}.${inner}`);
    if (fields === undefined) return;
    const result = read(c, fields, `${at}.${inner}`);
    const nothingSet = Object.values(fields).every((v) => Array.isArray(v) && v.length === 0);
    if (nothingSet) c.fail(`${at}.${inner}`, 'must not be empty: set at least one field, or leave the entry out');
    out.push(result);
  });
  return out;
}

function source(c: Checker, fields: Fields, field: string): SourceMatch {
  const out: Record<string, string[]> = {};
  for (const [key, value] of Object.entries(fields)) {
    const kind = SOURCE_FIELDS[key];
    if (kind === undefined) {
      const why = SOURCE_UNSUPPORTED[key];
      if (why !== undefined) c.fail(join(field, key), why);
      else c.allowOnly({ [key]: value }, field, new Set(Object.keys(SOURCE_FIELDS)));
      continue;
    }
    const values = stringList(c, value, join(field, key), kind);
    if (values.length > 0) out[key] = values as string[];
  }
  return out as SourceMatch;
}

function operation(c: Checker, fields: Fields, field: string): OperationMatch {
  c.allowOnly(fields, field, new Set(Object.keys(OPERATION_FIELDS)));
  const out: Record<string, (string | number)[]> = {};
  for (const [key, value] of Object.entries(fields)) {
    const kind = OPERATION_FIELDS[key];
    if (kind === undefined) continue;
    const values = stringList(c, value, join(field, key), kind);
    if (values.length > 0) out[key] = values;
  }
  return out as OperationMatch;
}

function condition(c: Checker, value: unknown, field: string): Condition | undefined {
  const raw = c.mapping(value, field);
  if (raw === undefined) return undefined;
  c.allowOnly(raw, field, CONDITION);
  const key = c.string(raw.key, `${field}.key`);
  if (key === undefined) return undefined;
  let kind: Kind;
  let out: Condition;
  const header = HEADER_KEY.exec(key);
  if (header !== null) {
    const name = header[1]!;
    if (!HEADER_NAME.test(name)) {
      c.fail(`${field}.key`, `"${key}": the header name in request.headers[NAME] must be a non-empty HTTP token`);
      return undefined;
    }
    kind = 'pattern';
    out = { key: 'request.headers', header: name.toLowerCase() };
  } else if (CONDITION_KEYS[key] !== undefined) {
    kind = CONDITION_KEYS[key]!;
    out = { key: key as ConditionKey };
  } else {
    c.fail(`${field}.key`, unsupportedKey(key));
    return undefined;
  }
  const values = raw.values === undefined ? [] : stringList(c, raw.values, `${field}.values`, kind);
  const notValues = raw.notValues === undefined ? [] : stringList(c, raw.notValues, `${field}.notValues`, kind);
  if (raw.values === undefined && raw.notValues === undefined) {
    c.fail(field, `needs values or notValues for key ${key}`);
    return undefined;
  }
  if (values.length > 0) out.values = values.map(String);
  if (notValues.length > 0) out.notValues = notValues.map(String);
  const emptyList = (v: unknown): boolean => v === undefined || (Array.isArray(v) && v.length === 0);
  if (emptyList(raw.values) && emptyList(raw.notValues)) c.fail(field, `needs values or notValues for key ${key}`);
  return out;
}

function unsupportedKey(key: string): string {
  if (key.startsWith('request.auth.')) return `"${key}" is not supported: Weft validates no JWTs (there is no RequestAuthentication)`;
  if (key.startsWith('experimental.')) return `"${key}" is not supported: experimental keys read Envoy filter metadata, which Weft does not have`;
  if (key.startsWith('request.headers')) return `"${key}" must be written request.headers[NAME]`;
  return `unknown key "${key}"; Weft evaluates ${SUPPORTED_KEYS}`;
}

/** A list of non-empty strings, each checked and normalized for its kind. */
function stringList(c: Checker, value: unknown, field: string, kind: Kind): (string | number)[] {
  const list = c.list(value, field);
  if (list === undefined) return [];
  const out: (string | number)[] = [];
  list.forEach((entry, i) => {
    const at = join(field, i);
    if (kind === 'port' && typeof entry === 'number') {
      c.fail(at, `must be a string such as "${entry}" (quote the port, as in Istio)`);
      return;
    }
    const text = c.string(entry, at);
    if (text === undefined) return;
    const normalized = normalize(c, text, at, kind);
    if (normalized !== undefined) out.push(normalized);
  });
  return out;
}

function normalize(c: Checker, text: string, field: string, kind: Kind): string | number | undefined {
  switch (kind) {
    case 'ip': return ipBlock(c, text, field);
    case 'port': {
      const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
      if (port >= 1 && port <= 65535) return port;
      c.fail(field, `"${text}" is not a port number (1 to 65535)`);
      return undefined;
    }
    case 'path':
      if (/\{\*\*?\}/.test(text)) {
        c.fail(field, `"${text}": path templates ({*}, {**}) are not supported; use a prefix "/a/*" or a suffix "*/b"`);
        return undefined;
      }
      return pattern(c, text, field);
    case 'host': return pattern(c, text.toLowerCase(), field);
    case 'method':
    case 'pattern': return pattern(c, text, field);
  }
}

/** Istio's string match: exact, `prefix*`, `*suffix`, or `*` (present). */
function pattern(c: Checker, text: string, field: string): string | undefined {
  const inner = text.length > 1 ? text.slice(1, -1) : '';
  if (!inner.includes('*') && !(text.length > 1 && text.startsWith('*') && text.endsWith('*'))) return text;
  c.fail(field, `"${text}": "*" may only be the whole value or its first or last character (exact, prefix*, *suffix or *)`);
  return undefined;
}

/** A single address or a CIDR, IPv4 or IPv6, in canonical form (`10.0.0.0/8`, `fd00::/64`). */
function ipBlock(c: Checker, text: string, field: string): string | undefined {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  if (text.includes('%') || isIP(address) === 0) {
    c.fail(field, `"${text}" is not an IP address or CIDR (e.g. 10.1.0.0/16, fd00::/64)`);
    return undefined;
  }
  const canonical = canonicalIp(address);
  if (slash < 0) return canonical;
  const family = isIP(canonical);
  const lengthText = text.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  const length = /^\d{1,3}$/.test(lengthText) ? Number(lengthText) : NaN;
  if (!(length >= 0 && length <= max)) {
    c.fail(field, `"${text}": the prefix length must be 0 to ${max}`);
    return undefined;
  }
  return `${canonical}/${length}`;
}
