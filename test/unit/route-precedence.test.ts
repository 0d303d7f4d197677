import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatConfigError } from '../../agent/config/config-error';
import type { Snapshot } from '../../agent/config/objects';
import { parseConfig } from '../../agent/config/parse';
import { RouteIndex, routeStatus, type HttpRouteInfo, type RouteRequest } from '../../agent/route';

/**
 * The RouteIndex: which rule takes a request, by the Gateway API's precedence across every rule of
 * every route on a Service port; GAMMA scoping (consumer vs producer routes, parentRef ports);
 * GRPCRoute over HTTPRoute; and the status conditions that go with them.
 */

const SERVICES = `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: 8080 }, { name: alt, port: 8080 }, { name: grpc, port: 7070 }] }
---
apiVersion: v1
kind: Service
metadata: { name: v1, namespace: shop }
spec: { clusterIP: 10.96.0.11, selector: { app: web, version: v1 }, ports: [{ name: http, port: 80 }, { name: grpc, port: 7070 }] }
---
apiVersion: v1
kind: Service
metadata: { name: v2, namespace: shop }
spec: { clusterIP: 10.96.0.12, selector: { app: web, version: v2 }, ports: [{ name: http, port: 80 }, { name: grpc, port: 7070 }] }
---
apiVersion: v1
kind: Service
metadata: { name: headless, namespace: shop }
spec: { clusterIP: None, selector: { app: db }, ports: [{ port: 5432 }] }
`;

function snapshot(routes: string): Snapshot {
  const result = parseConfig(`${SERVICES}---\n${routes}`, 'test.yaml');
  assert.ok(result.ok, result.ok ? '' : result.error.map(formatConfigError).join('\n'));
  return result.value;
}

function index(routes: string): RouteIndex {
  const s = snapshot(routes);
  return new RouteIndex(s.httpRoutes ?? [], s.grpcRoutes ?? [], s.services);
}

/** An HTTPRoute on Service shop/web whose rule i sends to a backend named by `to`. */
function route(name: string, rules: string, opts: { namespace?: string; created?: string; parent?: string } = {}): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ${name}, namespace: ${opts.namespace ?? 'shop'}${opts.created ? `, creationTimestamp: "${opts.created}"` : ''} }
spec:
  parentRefs: [${opts.parent ?? '{ group: "", kind: Service, name: web, namespace: shop }'}]
  rules:
${rules}
---
`;
}

const to = (backend: string): string => `backendRefs: [{ name: ${backend}, namespace: shop, port: 80 }]`;

function req(path: string, headers: Record<string, string> = {}, method = 'GET'): RouteRequest {
  return { method, path, headers };
}

/** `route-name#rule` of the rule that takes the request, or '404'. */
function winner(ix: RouteIndex, r: RouteRequest, clientNamespace = 'shop', port = 80, service = 'web'): string {
  const table = ix.table(clientNamespace, { namespace: 'shop', name: service }, port);
  assert.ok(table !== undefined, 'routes are attached');
  const m = table.match(r);
  return m === undefined ? '404' : `${m.route.name}#${m.ruleIndex}`;
}

describe('HTTPRoute precedence (Gateway API, across routes)', () => {
  it('an Exact path beats a PathPrefix of the same or greater length', () => {
    const ix = index(route('p', `  - matches: [{ path: { type: PathPrefix, value: /foo } }]\n    ${to('v1')}`) + route('e', `  - matches: [{ path: { type: Exact, value: /foo } }]\n    ${to('v2')}`));
    assert.equal(winner(ix, req('/foo')), 'e#0');
    assert.equal(winner(ix, req('/foo/x')), 'p#0');
  });

  it('the longest PathPrefix wins, before method and header matches', () => {
    const ix = index(route('a', `  - matches: [{ path: { type: PathPrefix, value: /a }, method: GET, headers: [{ name: x, value: "1" }] }]\n    ${to('v1')}\n  - matches: [{ path: { type: PathPrefix, value: /a/b } }]\n    ${to('v2')}`));
    assert.equal(winner(ix, req('/a/b/c', { x: '1' })), 'a#1');
    assert.equal(winner(ix, req('/a/bc', { x: '1' })), 'a#0', 'prefixes are matched segment by segment');
  });

  it('PathPrefix is segment-wise and ignores a trailing slash', () => {
    const ix = index(route('s', `  - matches: [{ path: { type: PathPrefix, value: /v2/ } }]\n    ${to('v2')}`));
    assert.equal(winner(ix, req('/v2')), 's#0');
    assert.equal(winner(ix, req('/v2/')), 's#0');
    assert.equal(winner(ix, req('/v2/x?y=1')), 's#0');
    assert.equal(winner(ix, req('/v2example')), '404');
  });

  it('then a method match, then more header matches, then more query-param matches', () => {
    const ix = index(route('m', [
      `  - matches: [{ queryParams: [{ name: q, value: "1" }, { name: r, value: "2" }] }]\n    ${to('v1')}`,
      `  - matches: [{ headers: [{ name: h, value: "1" }], queryParams: [{ name: q, value: "1" }] }]\n    ${to('v1')}`,
      `  - matches: [{ headers: [{ name: h, value: "1" }, { name: i, value: "2" }] }]\n    ${to('v1')}`,
      `  - matches: [{ method: POST }]\n    ${to('v1')}`,
    ].join('\n')));
    const all = { h: '1', i: '2' };
    assert.equal(winner(ix, req('/?q=1&r=2', all, 'POST')), 'm#3');
    assert.equal(winner(ix, req('/?q=1&r=2', all)), 'm#2');
    assert.equal(winner(ix, req('/?q=1&r=2', { h: '1' })), 'm#1');
    assert.equal(winner(ix, req('/?q=1&r=2')), 'm#0');
    assert.equal(winner(ix, req('/?q=1')), '404');
  });

  it('on a full tie: the older route, then namespace/name, then rule order', () => {
    const rules = `  - matches: [{ path: { type: PathPrefix, value: /t } }]\n    ${to('v1')}\n  - matches: [{ path: { type: PathPrefix, value: /t } }]\n    ${to('v2')}`;
    const older = index(route('b', rules, { created: '2024-01-01T00:00:00Z' }) + route('a', rules, { created: '2024-06-01T00:00:00Z' }));
    assert.equal(winner(older, req('/t')), 'b#0');
    const named = index(route('b', rules) + route('a', rules));
    assert.equal(winner(named, req('/t')), 'a#0');
  });

  it('RegularExpression paths rank below every PathPrefix (as Istio ranks them), longer pattern first', () => {
    const ix = index(route('r', [
      `  - matches: [{ path: { type: RegularExpression, value: "/api/v[0-9]+/.*" } }]\n    ${to('v1')}`,
      `  - matches: [{ path: { type: RegularExpression, value: "/api/.*" } }]\n    ${to('v1')}`,
      `  - matches: [{ path: { type: PathPrefix, value: /static } }]\n    ${to('v2')}`,
    ].join('\n')));
    assert.equal(winner(ix, req('/api/v2/items')), 'r#0');
    assert.equal(winner(ix, req('/api/items')), 'r#1');
    assert.equal(winner(ix, req('/api')), '404', 'a regex matches the whole path');
    assert.equal(winner(ix, req('/static/app.js')), 'r#2');
  });

  it('header names are case-insensitive, values exact; regex values match whole; query values are decoded', () => {
    const ix = index(route('h', [
      `  - matches: [{ headers: [{ name: X-Env, value: Canary }] }]\n    ${to('v2')}`,
      `  - matches: [{ headers: [{ type: RegularExpression, name: x-user, value: "u[0-9]+" }] }]\n    ${to('v2')}`,
      `  - matches: [{ queryParams: [{ name: name, value: "a b/c" }] }]\n    ${to('v2')}`,
    ].join('\n')));
    assert.equal(winner(ix, req('/', { 'x-env': 'Canary' })), 'h#0');
    assert.equal(winner(ix, req('/', { 'x-env': 'canary' })), '404');
    assert.equal(winner(ix, req('/', { 'x-user': 'u42' })), 'h#1');
    assert.equal(winner(ix, req('/', { 'x-user': 'xu42' })), '404');
    assert.equal(winner(ix, req('/?name=a+b%2Fc')), 'h#2');
  });

  it('a large bucket indexed by a header gives the same answers as the precedence order checked one by one', () => {
    // 120 rules on one prefix: most match one tenant header, some add a method or a second header,
    // some match no tenant at all. The reference is computed here without the index.
    type Rule = { tenant?: string; method?: string; extra?: string };
    const spec: Rule[] = [];
    for (let i = 0; i < 120; i++) {
      if (i % 10 === 3) spec.push({ extra: `e${i % 4}` });
      else spec.push({ tenant: `t${i % 37}`, ...(i % 7 === 0 ? { method: 'POST' } : {}), ...(i % 5 === 0 ? { extra: `e${i % 4}` } : {}) });
    }
    const yaml = spec.map((r) => {
      const headers = [r.tenant ? `{ name: x-tenant, value: ${r.tenant} }` : '', r.extra ? `{ name: x-extra, value: ${r.extra} }` : ''].filter(Boolean).join(', ');
      return `  - matches: [{ path: { type: PathPrefix, value: /app }, headers: [${headers}]${r.method ? `, method: ${r.method}` : ''} }]\n    ${to('v1')}`;
    });
    // Split over 8 routes of 15 rules (the API allows 16 per route).
    let routes = '';
    for (let k = 0; k < 8; k++) routes += route(`r${k}`, yaml.slice(k * 15, k * 15 + 15).join('\n'));
    const ix = index(routes);
    const reference = (h: Record<string, string>, method: string): string => {
      const holds = (r: Rule): boolean => (!r.tenant || h['x-tenant'] === r.tenant) && (!r.extra || h['x-extra'] === r.extra) && (!r.method || r.method === method);
      const ranked = spec.map((r, i) => ({ r, i })).filter(({ r }) => holds(r)).sort((a, b) =>
        (b.r.method ? 1 : 0) - (a.r.method ? 1 : 0) || ((b.r.tenant ? 1 : 0) + (b.r.extra ? 1 : 0)) - ((a.r.tenant ? 1 : 0) + (a.r.extra ? 1 : 0)) || a.i - b.i);
      if (ranked.length === 0) return '404';
      const i = ranked[0]!.i;
      return `r${Math.floor(i / 15)}#${i % 15}`;
    };
    let checked = 0;
    for (let t = 0; t < 40; t++) {
      for (const extra of [undefined, 'e0', 'e1', 'e3']) {
        for (const method of ['GET', 'POST']) {
          const h: Record<string, string> = { 'x-tenant': `t${t}`, ...(extra ? { 'x-extra': extra } : {}) };
          assert.equal(winner(ix, req('/app/x', h, method)), reference(h, method), `tenant t${t} extra ${extra} ${method}`);
          checked++;
        }
      }
    }
    assert.equal(checked, 320);
  });
});

describe('GAMMA scoping', () => {
  const producer = route('producer', `  - ${to('v1')}`);
  const consumer = route('consumer', `  - ${to('v2')}`, { namespace: 'client-a' });

  it('a consumer route applies to clients in its namespace only, and replaces the producer routes for them', () => {
    const ix = index(producer + consumer);
    assert.equal(winner(ix, req('/'), 'client-a'), 'consumer#0');
    assert.equal(winner(ix, req('/'), 'client-b'), 'producer#0');
    assert.equal(winner(ix, req('/'), 'shop'), 'producer#0');
  });

  it('a consumer route limited to a port leaves the other ports to the producer routes', () => {
    const ix = index(producer + route('consumer', `  - ${to('v2')}`, { namespace: 'client-a', parent: '{ group: "", kind: Service, name: web, namespace: shop, port: 8080 }' }));
    assert.equal(winner(ix, req('/'), 'client-a', 8080), 'consumer#0');
    assert.equal(winner(ix, req('/'), 'client-a', 80), 'producer#0');
  });

  it('parentRefs.port and sectionName limit a route to that Service port; neither means all ports', () => {
    const ix = index(
      route('port', `  - ${to('v1')}`, { parent: '{ group: "", kind: Service, name: web, port: 80 }' })
      + route('section', `  - ${to('v1')}`, { parent: '{ group: "", kind: Service, name: v1, sectionName: grpc }' })
      + route('all', `  - ${to('v1')}`, { parent: '{ group: "", kind: Service, name: v2 }' }),
    );
    assert.notEqual(ix.table('shop', { namespace: 'shop', name: 'web' }, 80), undefined);
    assert.equal(ix.table('shop', { namespace: 'shop', name: 'web' }, 8080), undefined);
    assert.equal(ix.table('shop', { namespace: 'shop', name: 'v1' }, 80), undefined);
    assert.notEqual(ix.table('shop', { namespace: 'shop', name: 'v1' }, 7070), undefined);
    assert.notEqual(ix.table('shop', { namespace: 'shop', name: 'v2' }, 80), undefined);
    assert.notEqual(ix.table('shop', { namespace: 'shop', name: 'v2' }, 7070), undefined);
    assert.equal(ix.table('shop', { namespace: 'shop', name: 'nothing' }, 80), undefined, 'no route on the Service');
  });

  it('on one Service port a GRPCRoute wins over an HTTPRoute, which is Conflicted there', () => {
    const grpc = `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 7070 }]
  rules:
  - matches: [{ method: { service: echo.Echo, method: Ping } }]
    backendRefs: [{ name: v2, port: 7070 }]
  - matches: [{ method: { service: echo.Echo } }]
    backendRefs: [{ name: v1, port: 7070 }]
  - matches: [{ method: { type: RegularExpression, method: "Get.*" } }]
    backendRefs: [{ name: v1, port: 7070 }]
---
`;
    const http7070 = route('h7070', `  - ${to('v1')}`, { parent: '{ group: "", kind: Service, name: web, port: 7070 }' });
    const s = snapshot(grpc + http7070 + route('hall', `  - ${to('v1')}`));
    const ix = new RouteIndex(s.httpRoutes!, s.grpcRoutes!, s.services);
    const table = ix.table('shop', { namespace: 'shop', name: 'web' }, 7070)!;
    assert.equal(table.kind, 'grpc');
    const grpcReq = (path: string): RouteRequest => ({ method: 'POST', path, headers: { 'content-type': 'application/grpc' } });
    assert.equal(table.match(grpcReq('/echo.Echo/Ping'))?.ruleIndex, 0, 'service and method beat service alone');
    assert.equal(table.match(grpcReq('/echo.Echo/Other'))?.ruleIndex, 1);
    assert.equal(table.match(grpcReq('/other.Svc/GetThing'))?.ruleIndex, 2);
    assert.equal(table.match(grpcReq('/other.Svc/Put')), undefined);
    assert.equal(ix.table('shop', { namespace: 'shop', name: 'web' }, 80)?.kind, 'http');
    const h7070 = s.httpRoutes!.find((r) => r.name === 'h7070')!;
    const hall = s.httpRoutes!.find((r) => r.name === 'hall')!;
    assert.equal(ix.status(h7070).accepted.reason, 'Conflicted');
    assert.equal(ix.status(hall).accepted.status, 'True');
    assert.match(ix.status(hall).accepted.message, /port 80, 8080$/);
  });
});

describe('route status and unresolved backends', () => {
  it('Accepted and ResolvedRefs when everything resolves', () => {
    const s = snapshot(route('ok', `  - ${to('v1')}`));
    const status = routeStatus(s.httpRoutes![0]!, s.services);
    assert.deepEqual([status.accepted.status, status.accepted.reason], ['True', 'Accepted']);
    assert.deepEqual([status.resolvedRefs.status, status.resolvedRefs.reason], ['True', 'ResolvedRefs']);
    assert.match(status.accepted.message, /producer route/);
  });

  it('a missing backend Service: BackendNotFound in status, its share answered 500 (service undefined), the rest still routed', () => {
    const s = snapshot(route('split', `  - backendRefs: [{ name: v1, port: 80, weight: 3 }, { name: gone, port: 80, weight: 1 }, { kind: ConfigMap, name: cm, weight: 1 }]`));
    const status = routeStatus(s.httpRoutes![0]!, s.services);
    assert.equal(status.accepted.status, 'True');
    assert.deepEqual([status.resolvedRefs.status, status.resolvedRefs.reason], ['False', 'BackendNotFound']);
    assert.match(status.resolvedRefs.message, /spec.rules\[0\].backendRefs\[1\]: Service shop\/gone does not exist; spec.rules\[0\].backendRefs\[2\]: core\/ConfigMap cm: Weft sends only to Services/);
    const ix = new RouteIndex(s.httpRoutes!, [], s.services);
    const m = ix.table('shop', { namespace: 'shop', name: 'web' }, 80)!.match(req('/'))!;
    assert.deepEqual(m.backends.map((b) => [b.service?.name, b.weight, b.unresolved !== undefined]), [['v1', 3, false], [undefined, 1, true], [undefined, 1, true]]);
    assert.equal(m.totalWeight, 5);
  });

  it('InvalidKind when the first problem is a backend that is not a Service', () => {
    const s = snapshot(route('k', `  - backendRefs: [{ group: example.com, kind: Bucket, name: b }]`));
    assert.equal(routeStatus(s.httpRoutes![0]!, s.services).resolvedRefs.reason, 'InvalidKind');
  });

  it('NoMatchingParent: a missing Service, a headless one, a port it does not have; no table for them', () => {
    const s = snapshot(
      route('missing', `  - ${to('v1')}`, { parent: '{ group: "", kind: Service, name: nope }' })
      + route('headless', `  - ${to('v1')}`, { parent: '{ group: "", kind: Service, name: headless }' })
      + route('badport', `  - ${to('v1')}`, { parent: '{ group: "", kind: Service, name: web, port: 9999 }' }),
    );
    const byName = (n: string): HttpRouteInfo => s.httpRoutes!.find((r) => r.name === n)!;
    const messages = ['missing', 'headless', 'badport'].map((n) => routeStatus(byName(n), s.services).accepted);
    assert.deepEqual(messages.map((c) => [c.status, c.reason]), [['False', 'NoMatchingParent'], ['False', 'NoMatchingParent'], ['False', 'NoMatchingParent']]);
    assert.match(messages[0]!.message, /Service shop\/nope does not exist/);
    assert.match(messages[1]!.message, /headless/);
    assert.match(messages[2]!.message, /no TCP port 9999/);
    const ix = new RouteIndex(s.httpRoutes!, [], s.services);
    assert.equal(ix.table('shop', { namespace: 'shop', name: 'headless' }, 5432), undefined);
    assert.equal(ix.table('shop', { namespace: 'shop', name: 'web' }, 80), undefined);
  });

  it('a cross-namespace backendRef needs no ReferenceGrant in a mesh (GEP-1294)', () => {
    const s = snapshot(route('c', `  - ${to('v1')}`, { namespace: 'client-a' }));
    const status = routeStatus(s.httpRoutes![0]!, s.services);
    assert.equal(status.resolvedRefs.status, 'True');
    assert.match(status.accepted.message, /consumer route \(applies to clients in client-a\)/);
  });
});
