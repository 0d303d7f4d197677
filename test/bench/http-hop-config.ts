/**
 * What Weft's config carries in the HTTP benchmark beside the lab's own objects: the server's
 * Service, whose ports say HTTP (appProtocol `http` / `http2`, names `http-*` / `http2-*`), and ten
 * AuthorizationPolicies in force on the server workload: ALLOW and DENY rules on principals, paths,
 * methods and headers, the way an application team writes them.
 *
 * None of them denies the benchmark's requests (GET / from the client's identity), judged either
 * way a proxy may judge them:
 * - at L7 (the port speaks HTTP), rule `server-readers` allows them and no DENY rule matches;
 * - at L4 (a proxy that does not parse the port's HTTP, as Istio does for TCP traffic: an ALLOW rule
 *   with HTTP-only fields matches nothing, a DENY rule loses its HTTP-only fields and so matches
 *   more), rule `tcp-client` allows them and every DENY rule still has a source or port condition
 *   that excludes the client.
 * So the bench runs, unchanged, before and after the proxy's HTTP layer lands.
 */

export const PORTS = { h1: 8080, h2: 8081 } as const;
export const SERVICE_IP = '10.96.0.80';

type Rule = Record<string, unknown>;
/** What the objects need of a pod (a LabPod has it). */
export interface PodRef { namespace: string; serviceAccount: string; labels: Record<string, string> }

const policy = (namespace: string, name: string, action: 'ALLOW' | 'DENY', rules: Rule[], selectApp?: string): object => ({
  apiVersion: 'security.weft.dev/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace },
  spec: { ...(selectApp ? { selector: { matchLabels: { app: selectApp } } } : {}), action, rules },
});

/** Istio's principal form (trust domain / ns / sa), without the spiffe:// scheme. */
export const principal = (p: PodRef) => `cluster.local/ns/${p.namespace}/sa/${p.serviceAccount}`;

export function httpHopObjects(client: PodRef, server: PodRef): object[] {
  const ns = server.namespace;
  const app = server.labels.app!;
  const ports = [String(PORTS.h1), String(PORTS.h2)];
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'weft-system' } },
    {
      apiVersion: 'v1', kind: 'Service', metadata: { name: app, namespace: ns },
      spec: {
        selector: { app }, clusterIP: SERVICE_IP,
        ports: [
          { name: 'http-web', port: 80, targetPort: PORTS.h1, appProtocol: 'http' },
          { name: 'http2-api', port: 81, targetPort: PORTS.h2, appProtocol: 'http2' },
        ],
      },
    },
    // ALLOW: at L7 a request must match one of these rules.
    policy(ns, 'server-readers', 'ALLOW', [{
      from: [{ source: { principals: [principal(client)] } }],
      to: [{ operation: { methods: ['GET', 'HEAD'], paths: ['/', '/api/*', '/static/*'], ports } }],
    }], app),
    policy(ns, 'server-writers', 'ALLOW', [{
      from: [{ source: { principals: [`cluster.local/ns/${ns}/sa/writer`, 'cluster.local/ns/ops/sa/*'] } }],
      to: [{ operation: { methods: ['POST', 'PUT', 'PATCH'], paths: ['/api/*'] } }],
      when: [{ key: 'request.headers[content-type]', values: ['application/json', 'application/grpc*'] }],
    }], app),
    policy(ns, 'health-probes', 'ALLOW', [{ to: [{ operation: { methods: ['GET'], paths: ['/healthz', '/ready'] } }] }]),
    policy(ns, 'monitoring-scrape', 'ALLOW', [{
      from: [{ source: { namespaces: ['monitoring'] } }],
      to: [{ operation: { methods: ['GET'], paths: ['/metrics'], ports: ['9090'] } }],
    }], app),
    // The L4 fallback. It matches the client's requests at L7 too, so it is named to come last in
    // the order a decision names its policy (namespace/name): server-readers decides at L7.
    policy(ns, 'tcp-client', 'ALLOW', [{ from: [{ source: { principals: [principal(client)] } }], to: [{ operation: { ports } }] }], app),
    // DENY: every rule pairs its HTTP conditions with a source or port the benchmark's client is not.
    policy(ns, 'deny-admin-outside', 'DENY', [{
      from: [{ source: { notNamespaces: [ns, 'ops'] } }],
      to: [{ operation: { paths: ['/admin', '/admin/*'] } }],
    }], app),
    policy(ns, 'deny-debug-from-guests', 'DENY', [{
      from: [{ source: { namespaces: ['guest', 'legacy'] } }],
      when: [{ key: 'request.headers[x-debug]', values: ['1', 'true'] }],
    }], app),
    policy('weft-system', 'deny-legacy-writes', 'DENY', [{
      from: [{ source: { principals: ['cluster.local/ns/legacy/sa/*'] } }],
      to: [{ operation: { methods: ['DELETE', 'PATCH', 'PUT'] } }],
    }]),
    policy(ns, 'deny-scanners', 'DENY', [{
      from: [{ source: { ipBlocks: ['192.0.2.0/24', '198.51.100.0/24'] } }],
      when: [{ key: 'request.headers[user-agent]', values: ['sqlmap*', 'nikto*'] }],
    }], app),
    policy(ns, 'deny-metrics-writes', 'DENY', [{
      to: [{ operation: { ports: ['9090'], methods: ['POST', 'PUT', 'DELETE'], notPaths: ['/metrics/reset'] } }],
    }], app),
  ];
}
