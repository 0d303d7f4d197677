import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatConfigError } from '../../agent/config/config-error';
import type { ServiceInfo, Snapshot } from '../../agent/config/objects';
import { parseConfig } from '../../agent/config/parse';
import { endpointSlicesOf, serviceEndpoints, servicePortFor, usable, type Endpoint, type ResolvedEndpoints } from '../../agent/state/endpoints';
import { WorkloadStore } from '../../agent/state/store';

/**
 * The Service → endpoints resolver the source proxy calls per new connection, over snapshots read
 * by the config file's own parser (the same edge `weft local` uses), so readiness, termination and
 * container ports are the ones a user writes.
 */

function parsed(text: string): Snapshot {
  const result = parseConfig(text, 'test.yaml');
  if (!result.ok) assert.fail(result.error.map(formatConfigError).join('\n'));
  return result.value;
}

interface PodSpec {
  name: string;
  ips: string[];
  labels?: string;
  ports?: string;
  status?: string;
  meta?: string;
  namespace?: string;
  node?: string;
}

const pod = (p: PodSpec): string => `
apiVersion: v1
kind: Pod
metadata: { name: ${p.name}, namespace: ${p.namespace ?? 'shop'}, labels: ${p.labels ?? '{ app: web }'} ${p.meta ?? ''} }
spec:
  nodeName: ${p.node ?? 'node-a'}
  containers: [{ name: main${p.ports ? `, ports: ${p.ports}` : ''} }]
status: { podIPs: [${p.ips.map((ip) => `{ ip: "${ip}" }`).join(', ')}] ${p.status ?? ''} }
---`;

const WEB = `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  selector: { app: web }
  clusterIPs: [10.96.0.10, "fd00:96::a"]
  ports:
    - { name: http, port: 80, targetPort: 8080 }
    - { name: grpc, port: 9090, targetPort: grpc }
    - { name: dns, port: 53, targetPort: 5353, protocol: UDP }
---`;

function resolve(text: string, service = 'web', port = 80): { resolved: ResolvedEndpoints; store: WorkloadStore; svc: ServiceInfo } {
  const store = new WorkloadStore(parsed(text));
  const svc = store.snapshot.services.find((s) => s.name === service);
  assert.ok(svc, `Service ${service} is in the config`);
  const sp = servicePortFor(svc, port);
  assert.ok(sp, `Service ${service} has TCP port ${port}`);
  return { resolved: serviceEndpoints(store, svc, sp), store, svc };
}

/** `ip:port r/s/t` (ready, serving, terminating as 1/0) and the pod's name, comparable at a glance. */
const brief = (endpoints: readonly Endpoint[]): string[] =>
  endpoints.map((e) => `${e.ip}:${e.port} ${+e.ready}${+e.serving}${+e.terminating}${e.pod ? ` ${e.pod.name}` : ''}${e.nodeName ? `@${e.nodeName}` : ''}`);

describe('servicePortFor', () => {
  it('finds the TCP port a client connected to, never a UDP port of the same number', () => {
    const store = new WorkloadStore(parsed(`${WEB}
apiVersion: v1
kind: Service
metadata: { name: dual, namespace: shop }
spec:
  clusterIP: 10.96.0.53
  ports: [{ name: udp, port: 53, protocol: UDP }, { name: tcp, port: 53, targetPort: 5353 }]
`));
    const [web, dual] = store.snapshot.services;
    assert.equal(servicePortFor(web!, 80)?.name, 'http');
    assert.equal(servicePortFor(web!, 53), undefined, 'port 53 of web is UDP only');
    assert.equal(servicePortFor(web!, 81), undefined);
    assert.deepEqual(servicePortFor(dual!, 53), { name: 'tcp', port: 53, targetPort: 5353, protocol: 'TCP' });
  });
});

describe('serviceEndpoints: from the selector (no EndpointSlices, as in weft local)', () => {
  it('takes the pods the selector matches in the Service namespace, each address of each, at the numbered targetPort', () => {
    const { resolved } = resolve(`${WEB}
${pod({ name: 'web-b', ips: ['10.0.0.2'], node: 'node-b' })}
${pod({ name: 'web-a', ips: ['10.0.0.1', 'fd00::1'] })}
${pod({ name: 'web-other-ns', ips: ['10.0.9.1'], namespace: 'elsewhere' })}
${pod({ name: 'db', ips: ['10.0.0.3'], labels: '{ app: db }' })}
`);
    assert.equal(resolved.source, 'selector');
    assert.equal(resolved.headless, false);
    assert.deepEqual(brief(resolved.endpoints), [
      '10.0.0.1:8080 110 web-a@node-a',
      'fd00::1:8080 110 web-a@node-a',
      '10.0.0.2:8080 110 web-b@node-b',
    ], 'both families of a dual-stack pod (the caller keeps the one dialled); other namespaces and labels left out; pods by name');
  });

  it('resolves a named targetPort by each pod\'s container port, leaving out pods without that name (as Kubernetes)', () => {
    const { resolved } = resolve(`${WEB}
${pod({ name: 'web-1', ips: ['10.0.0.1'], ports: '[{ name: grpc, containerPort: 50051 }]' })}
${pod({ name: 'web-2', ips: ['10.0.0.2'], ports: '[{ name: grpc, containerPort: 50052 }, { name: http, containerPort: 8080 }]' })}
${pod({ name: 'web-3', ips: ['10.0.0.3'], ports: '[{ name: http, containerPort: 8080 }]' })}
${pod({ name: 'web-4', ips: ['10.0.0.4'], ports: '[{ name: grpc, containerPort: 50051, protocol: UDP }]' })}
${pod({ name: 'web-5', ips: ['10.0.0.5'] })}
`, 'web', 9090);
    assert.deepEqual(brief(resolved.endpoints), ['10.0.0.1:50051 110 web-1@node-a', '10.0.0.2:50052 110 web-2@node-a'],
      'web-3 has no port named grpc, web-4 only a UDP one, web-5 none at all');
  });

  it('sets ready, serving and terminating as the EndpointSlice controller does', () => {
    const { resolved } = resolve(`${WEB}
${pod({ name: 'ready', ips: ['10.0.0.1'], status: ', phase: Running, conditions: [{ type: Ready, status: "True" }]' })}
${pod({ name: 'no-conditions', ips: ['10.0.0.2'], status: ', phase: Running' })}
${pod({ name: 'not-ready', ips: ['10.0.0.3'], status: ', phase: Running, conditions: [{ type: Ready, status: "False" }]' })}
${pod({ name: 'unknown', ips: ['10.0.0.4'], status: ', conditions: [{ type: Ready, status: "Unknown" }]' })}
${pod({ name: 'pending', ips: ['10.0.0.5'], status: ', phase: Pending' })}
${pod({ name: 'draining', ips: ['10.0.0.6'], meta: ', deletionTimestamp: "2030-01-01T00:00:00Z"' })}
${pod({ name: 'dying', ips: ['10.0.0.7'], meta: ', deletionTimestamp: "2030-01-01T00:00:00Z"', status: ', conditions: [{ type: Ready, status: "False" }]' })}
${pod({ name: 'done', ips: ['10.0.0.8'], status: ', phase: Succeeded' })}
`);
    assert.deepEqual(brief(resolved.endpoints).map((e) => e.replace(/@node-a$/, '')), [
      '10.0.0.8:8080 000 done',
      '10.0.0.6:8080 011 draining',
      '10.0.0.7:8080 001 dying',
      '10.0.0.2:8080 110 no-conditions',
      '10.0.0.3:8080 000 not-ready',
      '10.0.0.5:8080 000 pending',
      '10.0.0.1:8080 110 ready',
      '10.0.0.4:8080 000 unknown',
    ]);
  });

  it('gives a Service without selector and without slices no endpoints, and says so', () => {
    const { resolved } = resolve(`
apiVersion: v1
kind: Service
metadata: { name: external, namespace: shop }
spec: { clusterIP: 10.96.0.20, ports: [{ port: 80 }] }
---
${pod({ name: 'web-1', ips: ['10.0.0.1'] })}
`, 'external');
    assert.deepEqual(resolved, { endpoints: [], source: 'none', headless: false });
  });
});

const slice = (name: string, body: string, service = 'web'): string => `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}, namespace: shop, labels: { kubernetes.io/service-name: ${service} } }
${body}
---`;

describe('serviceEndpoints: from EndpointSlices (Kubernetes)', () => {
  it('uses the slices over the selector, the slice port named like the Service port, pods by targetRef', () => {
    const { resolved } = resolve(`${WEB}
${pod({ name: 'web-1', ips: ['10.0.0.1', 'fd00::1'] })}
${pod({ name: 'selected-but-not-in-a-slice', ips: ['10.0.0.9'] })}
${slice('web-v4', `addressType: IPv4
ports: [{ name: http, port: 8080 }, { name: grpc, port: 50051 }]
endpoints:
  - { addresses: [10.0.0.1], conditions: { ready: true }, nodeName: node-a, targetRef: { kind: Pod, name: web-1 } }
  - { addresses: [10.0.0.2], nodeName: node-b }`)}
${slice('web-v6', `addressType: IPv6
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: ["fd00::1"], targetRef: { kind: Pod, name: web-1 } }]`)}
`);
    assert.equal(resolved.source, 'endpointslices');
    assert.deepEqual(brief(resolved.endpoints), ['10.0.0.1:8080 110 web-1@node-a', '10.0.0.2:8080 110@node-b', 'fd00::1:8080 110 web-1@node-a'],
      'absent conditions are ready and serving; the node of an endpoint without one is its pod\'s');
  });

  it('takes each slice\'s own port number (a named targetPort splits pods into slices) and skips slices without the port', () => {
    const { resolved } = resolve(`${WEB}
${slice('web-a', `addressType: IPv4
ports: [{ name: grpc, port: 50051 }]
endpoints: [{ addresses: [10.0.0.1] }]`)}
${slice('web-b', `addressType: IPv4
ports: [{ name: grpc, port: 50052 }, { name: grpc-udp, port: 50052, protocol: UDP }]
endpoints: [{ addresses: [10.0.0.2] }]`)}
${slice('web-c', `addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: [10.0.0.3] }]`)}
`, 'web', 9090);
    assert.deepEqual(brief(resolved.endpoints), ['10.0.0.1:50051 110', '10.0.0.2:50052 110']);
  });

  it('matches the unnamed port of a one-port Service to the slice port without a name', () => {
    const { resolved } = resolve(`
apiVersion: v1
kind: Service
metadata: { name: one, namespace: shop }
spec: { clusterIP: 10.96.0.30, ports: [{ port: 80, targetPort: 8080 }] }
---
${slice('one-x', `addressType: IPv4
ports: [{ name: "", port: 8080 }]
endpoints: [{ addresses: [10.0.0.1] }]`, 'one')}
`, 'one');
    assert.deepEqual(brief(resolved.endpoints), ['10.0.0.1:8080 110']);
  });

  it('counts an endpoint two slices list once, the first slice by name winning; ignores FQDN slices', () => {
    const { resolved } = resolve(`${WEB}
${slice('web-b', `addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: [10.0.0.1], conditions: { ready: true } }, { addresses: [10.0.0.2] }]`)}
${slice('web-a', `addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: [10.0.0.1], conditions: { ready: false, serving: false } }]`)}
${slice('web-fqdn', `addressType: FQDN
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: [web.example.com] }]`)}
`);
    assert.deepEqual(brief(resolved.endpoints), ['10.0.0.1:8080 000', '10.0.0.2:8080 110']);
  });

  it('does not trust a targetRef whose pod no longer has the address: the pod is found by address', () => {
    const { resolved } = resolve(`${WEB}
${pod({ name: 'web-old-name', ips: ['10.0.0.7'] })}
${pod({ name: 'web-1', ips: ['10.0.0.1'] })}
${slice('web-x', `addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: [10.0.0.1], targetRef: { kind: Pod, name: web-old-name } }, { addresses: [10.0.0.2], targetRef: { kind: Pod, name: gone } }]`)}
`);
    assert.deepEqual(brief(resolved.endpoints), ['10.0.0.1:8080 110 web-1@node-a', '10.0.0.2:8080 110']);
  });

  it('gives a Service whose slices list no endpoint nothing, and does not fall back to its selector', () => {
    const { resolved } = resolve(`${WEB}
${pod({ name: 'web-1', ips: ['10.0.0.1'] })}
${slice('web-empty', 'addressType: IPv4\nports: [{ name: http, port: 8080 }]\nendpoints: null')}
`);
    assert.deepEqual(resolved, { endpoints: [], source: 'endpointslices', headless: false });
  });

  it('resolves a headless Service too, and says it is headless', () => {
    const { resolved } = resolve(`
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: None, selector: { app: db }, ports: [{ port: 5432 }] }
---
${pod({ name: 'db-0', ips: ['10.0.0.5'], labels: '{ app: db }' })}
`, 'db', 5432);
    assert.equal(resolved.headless, true);
    assert.deepEqual(brief(resolved.endpoints), ['10.0.0.5:5432 110 db-0@node-a']);
  });

  it('lists the slices of a Service by name', () => {
    const store = new WorkloadStore(parsed(`${WEB}
${slice('web-b', 'addressType: IPv4')}
${slice('web-a', 'addressType: IPv6')}
${slice('api-a', 'addressType: IPv4', 'api')}
`));
    assert.deepEqual(endpointSlicesOf(store, { namespace: 'shop', name: 'web' }).map((s) => s.name), ['web-a', 'web-b']);
    assert.deepEqual(endpointSlicesOf(store, { namespace: 'other', name: 'web' }), []);
  });
});

describe('usable: the endpoints that take new connections', () => {
  const e = (ip: string, ready: boolean, serving: boolean, terminating: boolean): Endpoint => ({ ip, port: 80, ready, serving, terminating });

  it('are the ready ones, when there is one', () => {
    assert.deepEqual(usable([e('a', true, true, false), e('b', false, true, true), e('c', false, false, false)]).map((x) => x.ip), ['a']);
  });

  it('are the serving terminating ones when none is ready (ProxyTerminatingEndpoints)', () => {
    assert.deepEqual(usable([e('a', false, false, false), e('b', false, true, true), e('c', false, false, true), e('d', false, true, true)]).map((x) => x.ip), ['b', 'd']);
  });

  it('are none when nothing is ready or serving while terminating', () => {
    assert.deepEqual(usable([e('a', false, false, false), e('b', false, false, true), e('c', false, true, false)]), []);
    assert.deepEqual(usable([]), []);
  });

  it('follow a pod going not-ready, then terminating, through new snapshots', () => {
    const config = (extra: Partial<PodSpec>): string =>
      `${WEB}\n${pod({ name: 'web-1', ips: ['10.0.0.1'] })}\n${pod({ name: 'web-2', ips: ['10.0.0.2'], ...extra })}\n`;
    const names = (text: string): string[] => usable(resolve(text).resolved.endpoints).map((x) => x.pod!.name);
    assert.deepEqual(names(config({})), ['web-1', 'web-2']);
    assert.deepEqual(names(config({ status: ', conditions: [{ type: Ready, status: "False" }]' })), ['web-1'], 'a not-ready endpoint gets no new connections');
    assert.deepEqual(names(config({ meta: ', deletionTimestamp: "2030-01-01T00:00:00Z"' })), ['web-1'], 'nor does a terminating one while another is ready');
  });

  it('drain to the terminating pods of a rolling update when no pod is ready', () => {
    const { resolved } = resolve(`${WEB}
${pod({ name: 'old-1', ips: ['10.0.0.1'], meta: ', deletionTimestamp: "2030-01-01T00:00:00Z"' })}
${pod({ name: 'old-2', ips: ['10.0.0.2'], meta: ', deletionTimestamp: "2030-01-01T00:00:00Z"', status: ', conditions: [{ type: Ready, status: "False" }]' })}
${pod({ name: 'new-1', ips: ['10.0.0.3'], status: ', phase: Pending' })}
`);
    assert.deepEqual(usable(resolved.endpoints).map((x) => x.pod!.name), ['old-1'], 'old-2 has stopped serving, new-1 is not ready yet');
  });
});

describe('serviceEndpoints: computed once per snapshot', () => {
  it('answers a store\'s repeated question with the same frozen result, and a new store afresh', () => {
    const text = `${WEB}\n${pod({ name: 'web-1', ips: ['10.0.0.1'] })}\n`;
    const { resolved, store, svc } = resolve(text);
    const port = servicePortFor(svc, 80)!;
    assert.equal(serviceEndpoints(store, svc, port), resolved);
    assert.equal(usable(resolved.endpoints), usable(resolved.endpoints));
    assert.ok(Object.isFrozen(resolved) && Object.isFrozen(resolved.endpoints) && Object.isFrozen(resolved.endpoints[0]));
    assert.throws(() => { (resolved.endpoints as Endpoint[]).push(resolved.endpoints[0]!); }, TypeError);

    const next = resolve(`${text}${pod({ name: 'web-2', ips: ['10.0.0.2'] })}\n`);
    assert.notEqual(next.resolved, resolved);
    assert.deepEqual(brief(next.resolved.endpoints), ['10.0.0.1:8080 110 web-1@node-a', '10.0.0.2:8080 110 web-2@node-a']);
    assert.equal(serviceEndpoints(store, svc, port).endpoints.length, 1, 'the old store still answers for its own snapshot');
  });
});
