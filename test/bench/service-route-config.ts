/**
 * What the Service-routing benchmark routes, said once for both proxies that route it: a parent
 * Service `api` (the cluster IP the client calls), two backend Services `api-v1` (three pods) and
 * `api-v2` (one pod), and an HTTPRoute on `api` that sends requests carrying `x-tenant: bench` 90/10
 * to v1/v2 with retries on 503 (Gateway API `retry.attempts` counts retries after the first try, as
 * HAProxy's `retries` does). A request without the header matches no rule: 404 from either proxy.
 *
 * weftRouteObjects() gives Weft's config; haproxySplitBackend() gives the same decision in HAProxy's
 * words (use_backend on the header, weighted servers, retry-on 503, retries 2).
 */

/** The header the route matches; the load sends it on every request. */
export const TENANT_HEADER = { name: 'x-tenant', value: 'bench' } as const;
export const SPLIT = { v1: 90, v2: 10 } as const;
export const RETRY = { attempts: 2, codes: [503] } as const;
/** the backends' port and the path a backend answers with its request count (and resets it) */
export const BACKEND_PORT = 8080;
export const COUNT_PATH = '/__count';
export const CLUSTER_IPS = { api: '10.96.0.90', v1: '10.96.0.91', v2: '10.96.0.92' } as const;
export const SERVICE_PORT = 80;

export type Version = 'v1' | 'v2';
/** What the configs need of a backend pod (a LabPod has it). */
export interface BackendRef { name: string; ip: string; labels: Record<string, string> }

/** An HTTP/1.1 server answering `ok` and counting what it answered; COUNT_PATH returns the count and starts over. */
export const COUNTING_SERVER = `
const body = Buffer.from('ok\\n');
let served = 0;
require('http').createServer((req, res) => {
  req.resume();
  if (req.url === '${COUNT_PATH}') { res.end(String(served)); served = 0; return; }
  served++;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}).listen(${BACKEND_PORT}, '0.0.0.0', () => console.log('listening'));`;

const service = (name: string, namespace: string, clusterIP: string, selector: Record<string, string>): object => ({
  apiVersion: 'v1', kind: 'Service', metadata: { name, namespace },
  spec: { clusterIP, selector, ports: [{ name: 'http', port: SERVICE_PORT, targetPort: BACKEND_PORT, appProtocol: 'http' }] },
});

/** The three Services and the HTTPRoute, in `namespace`; backends are selected by labels app=api and version=v1|v2. */
export function weftRouteObjects(namespace: string): object[] {
  return [
    service('api', namespace, CLUSTER_IPS.api, { app: 'api' }),
    service('api-v1', namespace, CLUSTER_IPS.v1, { app: 'api', version: 'v1' }),
    service('api-v2', namespace, CLUSTER_IPS.v2, { app: 'api', version: 'v2' }),
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'api-split', namespace },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'api', port: SERVICE_PORT }],
        rules: [{
          matches: [{ headers: [{ type: 'Exact', name: TENANT_HEADER.name, value: TENANT_HEADER.value }] }],
          backendRefs: [{ name: 'api-v1', port: SERVICE_PORT, weight: SPLIT.v1 }, { name: 'api-v2', port: SERVICE_PORT, weight: SPLIT.v2 }],
          retry: { attempts: RETRY.attempts, codes: [...RETRY.codes] },
        }],
      },
    },
  ];
}

/**
 * HAProxy's client side of the same route: a frontend on `listen` that picks backend `split` on the
 * header (404 otherwise), and `split` with one server per backend pod, each reached through
 * `hop(i)` (the server-side HAProxy's mTLS frontend for pod i), weighted so that v1 gets SPLIT.v1
 * shared among its pods and v2 SPLIT.v2 (30/30/30/10 for 3+1 pods). Weighted round robin: it
 * gives the split exactly; `leastconn` (closer to Weft's least-request) drifted to 92-93/7-8 under
 * this load at the same cost per request (docs/bench-service.md).
 */
export function haproxySplitFrontend(listen: string, backends: Array<BackendRef & { hop: string }>, tls: string): string {
  const weightOf = (v: Version) => SPLIT[v] / backends.filter((b) => b.labels.version === v).length;
  return [
    `frontend plain\n  bind ${listen}`,
    `  use_backend split if { req.hdr(${TENANT_HEADER.name}) -m str ${TENANT_HEADER.value} }\n  default_backend unmatched`,
    `backend unmatched\n  http-request return status 404`,
    ['backend split', '  balance roundrobin', `  retry-on ${RETRY.codes.join(' ')}`, `  retries ${RETRY.attempts}`,
      ...backends.map((b) => `  server ${b.name} ${b.hop} ${tls} alpn http/1.1 weight ${Math.round(weightOf(b.labels.version as Version))}`)].join('\n'),
    '',
  ].join('\n');
}
