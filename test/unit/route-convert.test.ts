import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatConfigError, type ConfigError } from '../../agent/config/config-error';
import { parseConfig } from '../../agent/config/parse';

/** HTTPRoute and GRPCRoute through the config parser: every problem named by object and field, in one pass. */

const header = (kind: string, name = 'r', namespace = 'shop'): string =>
  `apiVersion: gateway.networking.k8s.io/v1\nkind: ${kind}\nmetadata: { name: ${name}, namespace: ${namespace} }\n`;
const PARENT = '  parentRefs: [{ group: "", kind: Service, name: web }]\n';

function errorsOf(kind: string, spec: string): ConfigError[] {
  const result = parseConfig(`${header(kind)}spec:\n${spec}`, 'test.yaml');
  assert.equal(result.ok, false, 'expected the route to be rejected');
  return result.ok ? [] : result.error;
}

/** Exactly these problems, each on `<kind> shop/r` at `field`, its message matching. */
function rejects(kind: string, spec: string, expected: [field: string, message: RegExp][]): void {
  const errors = errorsOf(kind, spec);
  const shown = errors.map(formatConfigError).join('\n');
  assert.deepEqual(errors.map((e) => [e.object, e.field]), expected.map(([field]) => [`${kind} shop/r`, field]), shown);
  expected.forEach(([, message], i) => assert.match(errors[i]!.message, message, shown));
}

describe('HTTPRoute: rejected, by object and field', () => {
  const table: [name: string, spec: string, expected: [string, RegExp][]][] = [
    ['an invalid path regex', `${PARENT}  rules: [{ matches: [{ path: { type: RegularExpression, value: "/a(b" } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].path.value', /"\/a\(b" is not a valid regular expression/]]],
    ['an invalid header regex', `${PARENT}  rules: [{ matches: [{ headers: [{ type: RegularExpression, name: x-a, value: "[" }] }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].headers[0].value', /not a valid regular expression/]]],
    ['an invalid query-param regex', `${PARENT}  rules: [{ matches: [{ queryParams: [{ type: RegularExpression, name: q, value: "*" }] }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].queryParams[0].value', /not a valid regular expression/]]],
    ['weights that add up to 0', `${PARENT}  rules: [{ backendRefs: [{ name: a, port: 80, weight: 0 }, { name: b, port: 80, weight: 0 }] }]`,
      [['spec.rules[0].backendRefs', /weights add up to 0/]]],
    ['an unknown field with a near miss', `${PARENT}  rules: [{ backendRef: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].backendRef', /unknown field; did you mean "backendRefs"\?/]]],
    ['matches that are null (found by the config-objects fuzz target: it threw)', `${PARENT}  rules: [{ matches: null, backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches', /list/]]],
    ['an unknown match field', `${PARENT}  rules: [{ matches: [{ queryParam: [] }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].queryParam', /did you mean "queryParams"\?/]]],
    ['a Gateway parentRef (by default)', '  parentRefs: [{ name: my-gateway }]',
      [['spec.parentRefs[0]', /Weft is a mesh and has no Gateways/]]],
    ['a Gateway parentRef (explicit)', '  parentRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]',
      [['spec.parentRefs[0]', /has no Gateways; attach the route to a Service/]]],
    ['a Service parentRef without group (it defaults to the Gateway API group)', '  parentRefs: [{ kind: Service, name: web }]',
      [['spec.parentRefs[0].group', /write group: ""/]]],
    ['no parentRefs', '  rules: [{ backendRefs: [{ name: web, port: 80 }] }]',
      [['spec.parentRefs', /needs a parentRef to a Service/]]],
    ['a duplicate parentRef', '  parentRefs: [{ group: "", kind: Service, name: web }, { group: "", kind: Service, name: web }]',
      [['spec.parentRefs[1]', /parentRefs must be distinct/]]],
    ['an invalid duration', `${PARENT}  rules: [{ timeouts: { request: 10 }, backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].timeouts.request', /not a Gateway API duration \(GEP-2257\)/]]],
    ['a fractional duration', `${PARENT}  rules: [{ timeouts: { request: 1.5s }, backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].timeouts.request', /not a Gateway API duration/]]],
    ['a duration with a unit twice', `${PARENT}  rules: [{ timeouts: { backendRequest: 1s1s }, backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].timeouts.backendRequest', /gives the unit "s" twice/]]],
    ['backendRequest longer than request', `${PARENT}  rules: [{ timeouts: { request: 1s, backendRequest: 1500ms }, backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].timeouts.backendRequest', /1500ms is longer than request \(1s\)/]]],
    ['a bad retry backoff and code', `${PARENT}  rules: [{ retry: { attempts: -1, codes: [200], backoff: soon }, backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].retry.attempts', /at least 0/], ['spec.rules[0].retry.codes[0]', /400 to 599/], ['spec.rules[0].retry.backoff', /not a Gateway API duration/]]],
    ['sessionPersistence', `${PARENT}  rules: [{ sessionPersistence: { sessionName: s }, backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].sessionPersistence', /not supported/]]],
    ['an ExtensionRef filter', `${PARENT}  rules: [{ filters: [{ type: ExtensionRef, extensionRef: { group: x, kind: y, name: z } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].filters[0].type', /ExtensionRef filters are not supported/]]],
    ['a CORS filter', `${PARENT}  rules: [{ filters: [{ type: CORS, cors: {} }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].filters[0].type', /CORS filters are not carried out/]]],
    ['a Service backend without port', `${PARENT}  rules: [{ backendRefs: [{ name: web }] }]`,
      [['spec.rules[0].backendRefs[0].port', /is required for a Service backend/]]],
    ['a redirect with backendRefs', `${PARENT}  rules: [{ filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].backendRefs', /must be empty with a RequestRedirect filter/]]],
    ['redirect and rewrite together', `${PARENT}  rules: [{ filters: [{ type: RequestRedirect, requestRedirect: { port: 8080 } }, { type: URLRewrite, urlRewrite: { hostname: a } }] }]`,
      [['spec.rules[0].filters', /both RequestRedirect and URLRewrite/]]],
    ['ReplacePrefixMatch without a PathPrefix match', `${PARENT}  rules: [{ matches: [{ path: { type: Exact, value: /a } }], filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /b } } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches', /ReplacePrefixMatch needs exactly one match, with a PathPrefix path/]]],
    ['a filter body that does not match its type', `${PARENT}  rules: [{ filters: [{ type: RequestHeaderModifier, responseHeaderModifier: { set: [] } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].filters[0].responseHeaderModifier', /must not be set with type RequestHeaderModifier/], ['spec.rules[0].filters[0].requestHeaderModifier', /is required/]]],
    ['a second RequestHeaderModifier', `${PARENT}  rules: [{ filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { remove: [a] } }, { type: RequestHeaderModifier, requestHeaderModifier: { remove: [b] } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].filters[1]', /a second RequestHeaderModifier/]]],
    ['a URLRewrite on a backendRef', `${PARENT}  rules: [{ backendRefs: [{ name: web, port: 80, filters: [{ type: URLRewrite, urlRewrite: { hostname: a } }] }] }]`,
      [['spec.rules[0].backendRefs[0].filters[0].type', /not allowed here \(on a backendRef\); put it on the rule/]]],
    ['a path that is not absolute', `${PARENT}  rules: [{ matches: [{ path: { type: PathPrefix, value: api } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].path.value', /must be an absolute path/]]],
    ['a path with //', `${PARENT}  rules: [{ matches: [{ path: { type: Exact, value: "/a//b" } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].path.value', /must not contain "\/\/"/]]],
    ['an unknown method', `${PARENT}  rules: [{ matches: [{ method: FETCH }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].method', /must be one of GET, HEAD/]]],
    ['a redirect status code not in the API', `${PARENT}  rules: [{ filters: [{ type: RequestRedirect, requestRedirect: { statusCode: 304 } }] }]`,
      [['spec.rules[0].filters[0].requestRedirect.statusCode', /301, 302, 303, 307, 308/]]],
    ['mirror percent and fraction together', `${PARENT}  rules: [{ filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: m, port: 80 }, percent: 5, fraction: { numerator: 1 } } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].filters[0].requestMirror', /percent or fraction, not both/]]],
    ['a header name with a space', `${PARENT}  rules: [{ filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: "x a", value: b }] } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].filters[0].requestHeaderModifier.set[0].name', /not a valid header name/]]],
    ['two rules of the same name', `${PARENT}  rules: [{ name: a, backendRefs: [{ name: web, port: 80 }] }, { name: a, backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[1].name', /rule names must be unique/]]],
    ['more than 16 rules', `${PARENT}  rules: [${Array.from({ length: 17 }, () => '{ backendRefs: [{ name: web, port: 80 }] }').join(', ')}]`,
      [['spec.rules', /at most 16/]]],
  ];
  for (const [name, spec, expected] of table) it(name, () => rejects('HTTPRoute', spec, expected));

  it('reports every problem of a stream in one pass, each by object and field', () => {
    const text = [
      `${header('HTTPRoute', 'a')}spec:\n${PARENT}  rules: [{ matches: [{ path: { type: RegularExpression, value: "(" } }], backendRefs: [{ name: web, port: 80 }] }]`,
      `${header('HTTPRoute', 'b')}spec:\n${PARENT}  rules: [{ backendRefs: [{ name: web, port: 80, weight: 0 }] }]`,
    ].join('\n---\n');
    const result = parseConfig(text, 'test.yaml');
    assert.equal(result.ok, false);
    if (!result.ok) assert.deepEqual(result.error.map((e) => `${e.object}: ${e.field}`), ['HTTPRoute shop/a: spec.rules[0].matches[0].path.value', 'HTTPRoute shop/b: spec.rules[0].backendRefs']);
  });
});

describe('HTTPRoute: accepted and normalized', () => {
  it('applies the API defaults: PathPrefix /, weight 1, core Service backends, consumer parent namespace', () => {
    const text = `${header('HTTPRoute')}spec:\n  parentRefs: [{ group: "", kind: Service, name: web, namespace: other, port: 8080 }]\n  hostnames: [web.other.svc.cluster.local]\n  rules:\n  - name: main\n    matches: [{ headers: [{ name: X-User, value: a }, { name: x-user, value: ignored }] }]\n    backendRefs: [{ name: web-v1, namespace: other, port: 8080 }]\n    timeouts: { request: 1h2m, backendRequest: 500ms }\n    retry: { attempts: 2, codes: [503, 503, 502], backoff: 100ms }`;
    const result = parseConfig(text, 'test.yaml');
    assert.ok(result.ok, result.ok ? '' : result.error.map(formatConfigError).join('\n'));
    const route = result.value.httpRoutes![0]!;
    assert.deepEqual(route.parentRefs, [{ namespace: 'other', name: 'web', port: 8080 }]);
    assert.deepEqual(route.hostnames, ['web.other.svc.cluster.local']);
    const rule = route.rules[0]!;
    assert.equal(rule.name, 'main');
    assert.deepEqual(rule.matches, [{ path: { type: 'PathPrefix', value: '/' }, headers: [{ type: 'Exact', name: 'x-user', value: 'a' }], queryParams: [] }]);
    assert.deepEqual(rule.backendRefs, [{ group: '', kind: 'Service', namespace: 'other', name: 'web-v1', port: 8080, weight: 1, filters: [] }]);
    assert.deepEqual(rule.timeouts, { requestMs: 3_720_000, backendRequestMs: 500 });
    assert.deepEqual(rule.retry, { attempts: 2, codes: [503, 502], backoffMs: 100 });
  });

  it('a route without rules gets the default rule (every path, no backend: answered 500)', () => {
    const result = parseConfig(`${header('HTTPRoute')}spec:\n${PARENT}`, 'test.yaml');
    assert.ok(result.ok);
    assert.deepEqual(result.value.httpRoutes![0]!.rules, [{ matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], filters: [], backendRefs: [], timeouts: {} }]);
  });

  it('request timeout 0s disables it, so any backendRequest is allowed', () => {
    const result = parseConfig(`${header('HTTPRoute')}spec:\n${PARENT}  rules: [{ timeouts: { request: 0s, backendRequest: 10s }, backendRefs: [{ name: web, port: 80 }] }]`, 'test.yaml');
    assert.ok(result.ok, result.ok ? '' : result.error.map(formatConfigError).join('\n'));
  });
});

describe('GRPCRoute: rejected, by object and field', () => {
  const table: [name: string, spec: string, expected: [string, RegExp][]][] = [
    ['an Exact method match with neither service nor method', `${PARENT}  rules: [{ matches: [{ method: { type: Exact } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].method', /needs service, method or both/]]],
    ['an invalid service regex', `${PARENT}  rules: [{ matches: [{ method: { type: RegularExpression, service: "foo.(" } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].method.service', /not a valid regular expression/]]],
    ['a service name with a slash', `${PARENT}  rules: [{ matches: [{ method: { service: "foo/Bar" } }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].matches[0].method.service', /not a gRPC service name/]]],
    ['a RequestRedirect filter', `${PARENT}  rules: [{ filters: [{ type: RequestRedirect, requestRedirect: {} }], backendRefs: [{ name: web, port: 80 }] }]`,
      [['spec.rules[0].filters[0].type', /RequestRedirect is not allowed here; allowed: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror/]]],
    ['weights that add up to 0', `${PARENT}  rules: [{ backendRefs: [{ name: a, port: 7070, weight: 0 }] }]`,
      [['spec.rules[0].backendRefs', /weights add up to 0/]]],
    ['a near miss', `${PARENT}  rules: [{ filter: [] }]`, [['spec.rules[0].filter', /did you mean "filters"\?/]]],
  ];
  for (const [name, spec, expected] of table) it(name, () => rejects('GRPCRoute', spec, expected));
});

describe('rule lists, the same for both kinds', () => {
  const twoNamed = (kind: string): string => {
    const backend = kind === 'HTTPRoute' ? '{ name: web, port: 80 }' : '{ name: web, port: 7070 }';
    return `${PARENT}  rules: [{ name: a, backendRefs: [${backend}] }, { name: b, backendRefs: [${backend}] }, { name: a, backendRefs: [${backend}] }]`;
  };
  /** 17 rules of 8 matches: 136 in all, past both limits (16 rules, 128 matches). */
  const tooMany = (kind: string): string => {
    const match = kind === 'HTTPRoute' ? '{ path: { type: PathPrefix, value: /x } }' : '{ method: { service: s.S } }';
    const rule = `{ matches: [${Array(8).fill(match).join(', ')}] }`;
    return `${PARENT}  rules: [${Array(17).fill(rule).join(', ')}]`;
  };
  for (const kind of ['HTTPRoute', 'GRPCRoute']) {
    it(`${kind}: a rule name used twice is named at its second use`, () =>
      rejects(kind, twoNamed(kind), [['spec.rules[2].name', /"a" names an earlier rule too/]]));
    it(`${kind}: more rules and matches than the Gateway API allows`, () =>
      rejects(kind, tooMany(kind), [['spec.rules', /has 17 entries; the Gateway API allows at most 16/], ['spec.rules', /has 136 matches in all; the Gateway API allows at most 128 per route/]]));
  }
});
