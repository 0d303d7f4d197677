/**
 * Route matching per request with 1,000 HTTPRoutes in force: spread over 1,000 Services (the
 * lookup must not grow with routes on other Services), and all on one Service with one header
 * match each (the header-indexed bucket), against 10 routes on one Service. Prints ns per request
 * (table lookup + match). Numbers are written down in docs/routes.md.
 */
import { cpus } from 'node:os';
import { Checker, type Fields } from '../../agent/config/checker';
import type { ConfigError } from '../../agent/config/config-error';
import type { ServiceInfo } from '../../agent/config/objects';
import { convertHttpRoute, RouteIndex, type HttpRouteInfo, type RouteRequest } from '../../agent/route';

const WARMUP = 200_000;
const ITERATIONS = 1_000_000;

function service(name: string): ServiceInfo {
  return { namespace: 'shop', name, labels: {}, selector: { app: name }, clusterIPs: ['10.96.0.1'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] };
}

function httpRoute(name: string, spec: Fields): HttpRouteInfo {
  const errors: ConfigError[] = [];
  const r = convertHttpRoute(new Checker(name, errors), { spec }, { namespace: 'shop', name, labels: {}, annotations: {} });
  if (errors.length > 0) throw new Error(JSON.stringify(errors));
  return r;
}

/** A typical producer route: /api to a 90/10 split, /static elsewhere, retries and timeouts. */
function typical(name: string, parent: string): HttpRouteInfo {
  return httpRoute(name, {
    parentRefs: [{ group: '', kind: 'Service', name: parent }],
    rules: [
      { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-canary', value: 'true' }] }], backendRefs: [{ name: parent, port: 80 }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: parent, port: 80, weight: 90 }, { name: parent, port: 80, weight: 10 }], timeouts: { request: '5s' }, retry: { attempts: 2, codes: [503] } },
      { matches: [{ path: { type: 'PathPrefix', value: '/static' } }], backendRefs: [{ name: parent, port: 80 }] },
    ],
  });
}

/** Route i on one Service: PathPrefix / with header x-tenant: tenant-i. */
function tenant(i: number): HttpRouteInfo {
  return httpRoute(`tenant-${i}`, {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
    rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [{ name: 'x-tenant', value: `tenant-${i}` }] }], backendRefs: [{ name: 'web', port: 80 }] }],
  });
}

const headers = { host: 'web.shop', accept: 'application/json', 'user-agent': 'bench' };

function measure(index: RouteIndex, service: string, requests: RouteRequest[]): number {
  const target = { namespace: 'shop', name: service };
  let matched = 0;
  const n = requests.length;
  for (let i = 0; i < WARMUP; i++) if (index.table('client', target, 80)?.match(requests[i % n]!)) matched++;
  matched = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) if (index.table('client', target, 80)?.match(requests[i % n]!)) matched++;
  const ns = Number(process.hrtime.bigint() - start) / ITERATIONS;
  if (matched !== ITERATIONS) throw new Error(`only ${matched} of ${ITERATIONS} requests matched`);
  return ns;
}

export async function benchRoutes(): Promise<void> {
  console.log(`route matching bench on node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'unknown cpu'}; 1M lookups per row (table + match)`);
  const apiRequests: RouteRequest[] = [
    { method: 'GET', path: '/api/items?page=2', headers },
    { method: 'POST', path: '/api/cart', headers: { ...headers, 'x-canary': 'true' } },
    { method: 'GET', path: '/static/app.js', headers },
    { method: 'GET', path: '/api', headers },
  ];
  const rows: [string, number][] = [];
  const small = new RouteIndex(Array.from({ length: 10 }, (_, i) => typical(`r${i}`, `svc-${i}`)), [], Array.from({ length: 10 }, (_, i) => service(`svc-${i}`)));
  rows.push(['10 routes on 10 Services, typical request', measure(small, 'svc-5', apiRequests)]);
  const spread = new RouteIndex(Array.from({ length: 1000 }, (_, i) => typical(`r${i}`, `svc-${i}`)), [], Array.from({ length: 1000 }, (_, i) => service(`svc-${i}`)));
  rows.push(['1,000 routes on 1,000 Services, typical request', measure(spread, 'svc-500', apiRequests)]);
  const one = new RouteIndex(Array.from({ length: 1000 }, (_, i) => tenant(i)), [], [service('web')]);
  const tenantRequests = [7, 500, 999, 250].map((t): RouteRequest => ({ method: 'GET', path: '/orders/17', headers: { ...headers, 'x-tenant': `tenant-${t}` } }));
  rows.push(['1,000 routes on one Service (header match each)', measure(one, 'web', tenantRequests)]);
  const ten = new RouteIndex(Array.from({ length: 10 }, (_, i) => tenant(i)), [], [service('web')]);
  rows.push(['10 routes on one Service (header match each)', measure(ten, 'web', [1, 5, 9, 3].map((t): RouteRequest => ({ method: 'GET', path: '/orders/17', headers: { ...headers, 'x-tenant': `tenant-${t}` } })))]);
  for (const [name, ns] of rows) console.log(`${name.padEnd(50)} ${ns.toFixed(1).padStart(8)} ns/request`);
}

if (require.main === module) {
  benchRoutes().catch((error) => { console.error(error); process.exitCode = 1; });
}
