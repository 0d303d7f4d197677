import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatConfigError } from '../../agent/config/config-error';
import { parseConfig } from '../../agent/config/parse';
import { applyHeaderEdits, replacePath, requestEdits, responseEdits, RouteIndex, type RouteMatch } from '../../agent/route';

/** The filters as pure functions: path replacement, redirect Location, header edits, mirrors. */

describe('ReplacePrefixMatch (the Gateway API table in HTTPPathModifier)', () => {
  const table: [path: string, prefix: string, replacement: string, expected: string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'],
    ['/foo', '/foo', '/', '/'],
    ['/anything', '/', '/xyz', '/xyz/anything'],
  ];
  for (const [path, prefix, replacement, expected] of table) {
    it(`${path} with prefix ${prefix} → "${replacement}" gives ${expected}`, () => {
      assert.equal(replacePath(path, { type: 'ReplacePrefixMatch', replacePrefixMatch: replacement }, prefix), expected);
    });
  }
  it('ReplaceFullPath replaces the whole path', () => {
    assert.equal(replacePath('/a/b/c', { type: 'ReplaceFullPath', replaceFullPath: '/x' }, '/a'), '/x');
  });
});

const SERVICES = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, ports: [{ name: http, port: 80 }, { name: alt, port: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: shadow, namespace: shop }
spec: { clusterIP: 10.96.0.11, ports: [{ port: 80 }] }
---
`;

/** The RouteMatch of the only rule of an HTTPRoute on shop/web with these rule fields, for a request on `port`. */
function matchOf(rule: string, path = '/x', port = 80): RouteMatch {
  const result = parseConfig(`${SERVICES}apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: r, namespace: shop }\nspec:\n  parentRefs: [{ group: "", kind: Service, name: web }]\n  rules:\n  - ${rule}\n`, 'test.yaml');
  assert.ok(result.ok, result.ok ? '' : result.error.map(formatConfigError).join('\n'));
  const ix = new RouteIndex(result.value.httpRoutes!, [], result.value.services);
  const m = ix.table('shop', { namespace: 'shop', name: 'web' }, port)!.match({ method: 'GET', path, headers: {} });
  assert.ok(m !== undefined);
  return m;
}

function location(rule: string, path: string, port: number, host = 'web.shop:8080', scheme?: 'http' | 'https'): string {
  const edits = requestEdits(matchOf(rule, path, port), { method: 'GET', path, headers: { host }, port, ...(scheme ? { scheme } : {}) });
  assert.ok('redirect' in edits);
  return `${edits.redirect.status} ${edits.redirect.location}`;
}

describe('RequestRedirect Location', () => {
  it('no port and no scheme: the Service port the client called, shown unless it is the scheme\'s default', () => {
    assert.equal(location('filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }]', '/a?b=1', 8080), '302 http://example.org:8080/a?b=1');
    assert.equal(location('filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }]', '/a', 80), '302 http://example.org/a');
  });
  it('a scheme without a port: that scheme\'s well-known port (omitted)', () => {
    assert.equal(location('filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, statusCode: 301 } }]', '/a', 8080), '301 https://web.shop/a');
    assert.equal(location('filters: [{ type: RequestRedirect, requestRedirect: { scheme: http } }]', '/a', 8080, 'web.shop:8080', 'https'), '302 http://web.shop/a');
  });
  it('an explicit port: shown unless it is the default of the resulting scheme', () => {
    assert.equal(location('filters: [{ type: RequestRedirect, requestRedirect: { port: 8443, scheme: https } }]', '/a', 80), '302 https://web.shop:8443/a');
    assert.equal(location('filters: [{ type: RequestRedirect, requestRedirect: { port: 443, scheme: https } }]', '/a', 80), '302 https://web.shop/a');
    assert.equal(location('filters: [{ type: RequestRedirect, requestRedirect: { port: 80 } }]', '/a', 8080), '302 http://web.shop/a');
  });
  it('path modifiers, query kept, IPv6 hosts bracketed', () => {
    const prefix = 'matches: [{ path: { type: PathPrefix, value: /old } }]\n    filters: [{ type: RequestRedirect, requestRedirect: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } } }]';
    assert.equal(location(prefix, '/old/page?q=1', 80), '302 http://web.shop/new/page?q=1');
    assert.equal(location(prefix, '/old/page', 80, '[fd00::1]:80'), '302 http://[fd00::1]/new/page');
    assert.equal(location('filters: [{ type: RequestRedirect, requestRedirect: { path: { type: ReplaceFullPath, replaceFullPath: /z } } }]', '/a/b', 80), '302 http://web.shop/z');
  });
});

describe('URLRewrite and header modifiers', () => {
  it('rewrites path (query kept) and host, applies the rule\'s header edits then the backend\'s', () => {
    const m = matchOf(`matches: [{ path: { type: PathPrefix, value: /api } }]
    filters:
    - { type: URLRewrite, urlRewrite: { hostname: internal.example, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } } }
    - { type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: X-Stage, value: rule }], add: [{ name: X-Trace, value: rule }], remove: [X-Drop] } }
    - { type: ResponseHeaderModifier, responseHeaderModifier: { set: [{ name: X-Served-By, value: rule }] } }
    backendRefs:
    - name: web
      port: 80
      filters:
      - { type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: X-Stage, value: backend }], add: [{ name: X-Trace, value: backend }] } }
      - { type: ResponseHeaderModifier, responseHeaderModifier: { add: [{ name: X-Served-By, value: backend }] } }`, '/api/items?page=2');
    const backend = m.backends[0]!;
    const edits = requestEdits(m, { method: 'GET', path: '/api/items?page=2', headers: {}, port: 80 }, backend);
    assert.ok(!('redirect' in edits));
    assert.equal(edits.path, '/v2/items?page=2');
    assert.equal(edits.host, 'internal.example');
    const headers = applyHeaderEdits({ 'x-stage': 'client', 'x-trace': 'client', 'x-drop': 'x', accept: '*/*' } as Record<string, string | string[]>, edits.headers);
    assert.deepEqual(headers, { 'x-stage': 'backend', 'x-trace': ['client', 'rule', 'backend'], accept: '*/*' });
    const response = applyHeaderEdits({ 'x-served-by': 'app' } as Record<string, string | string[]>, responseEdits(m, backend));
    assert.deepEqual(response, { 'x-served-by': ['rule', 'backend'] });
    // Without a backend, only the rule's edits.
    assert.equal(responseEdits(m).length, 1);
  });

  it('RequestMirror targets are exposed with their share, resolved or not', () => {
    const m = matchOf(`filters:
    - { type: RequestMirror, requestMirror: { backendRef: { name: shadow, port: 80 }, percent: 25 } }
    - { type: RequestMirror, requestMirror: { backendRef: { name: gone, port: 80 }, fraction: { numerator: 1, denominator: 3 } } }
    backendRefs: [{ name: web, port: 80 }]`);
    assert.deepEqual(m.mirrors, [
      { service: { namespace: 'shop', name: 'shadow' }, port: 80, numerator: 25, denominator: 100 },
      { service: undefined, port: 80, numerator: 1, denominator: 3 },
    ]);
  });

  it('timeouts and retry are carried to the match in milliseconds', () => {
    const m = matchOf('timeouts: { request: 2s, backendRequest: 500ms }\n    retry: { attempts: 3, codes: [503], backoff: 25ms }\n    backendRefs: [{ name: web, port: 80 }]');
    assert.deepEqual(m.timeouts, { requestMs: 2000, backendRequestMs: 500 });
    assert.deepEqual(m.retry, { attempts: 3, codes: [503], backoffMs: 25 });
  });
});
