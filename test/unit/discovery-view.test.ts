/**
 * The node projection (agent/controlplane/discovery-view.ts) drops nothing the agent reads: the
 * agent-side state built from a node's projection gives the same answers as the one built from
 * the whole cluster, for the node's pods as clients (routing, Service endpoints, identities of
 * peers) and as destinations (enrollment, mTLS mode, authorization, `weft explain`), over random
 * clusters. And the comparison is sharp enough to see a dropped field.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fc from 'fast-check';
import { objectKey, type PodInfo, type Snapshot } from '../../agent/config/objects';
import { canonicalSnapshot } from '../../agent/controlplane/discovery-resources';
import { nodeView, remotePod } from '../../agent/controlplane/discovery-view';
import { explain } from '../../agent/node/explain';
import { PolicySet } from '../../agent/policy';
import { protocolForPort } from '../../agent/proxy/deliver';
import { localTarget, tunnelSource } from '../../agent/proxy/inbound';
import { routeOutbound } from '../../agent/proxy/outbound-route';
import { serviceTarget } from '../../agent/proxy/service-target';
import { serviceEndpoints, usable } from '../../agent/state/endpoints';
import { desiredEnrollment, isEnrolled, mtlsModeForPort, podUidsToResolve } from '../../agent/state/enrollment';
import { WorkloadStore } from '../../agent/state/store';
import { cluster, NODES } from './discovery-cluster';

const ref = (p: PodInfo | undefined): string | undefined => (p === undefined ? undefined : objectKey(p));
const PORTS = [8080, 8081, 9090];

/**
 * Everything the agent of `node` decides from `state`, asked about the objects of `cluster` (the
 * whole snapshot): pods and Services are named by key so the answers compare by value.
 */
function answers(cluster: Snapshot, state: Snapshot, node: string): Record<string, unknown> {
  const store = new WorkloadStore(state);
  const policies = new PolicySet(state.authorizationPolicies);
  const out: Record<string, unknown> = {};
  const enrollment = desiredEnrollment(state, node);
  out.enrollment = { pods: enrollment.pods.map((p) => ({ key: p.key, cgroupPath: p.cgroupPath, mode: p.mode, ips: p.pod.ips })), pending: enrollment.pending, problems: enrollment.problems };
  out.uids = podUidsToResolve(state, node);
  const ips = [...cluster.pods.flatMap((p) => p.ips), ...cluster.services.flatMap((s) => s.clusterIPs), ...cluster.nodes.flatMap((n) => n.internalIPs), '10.99.99.99'];
  for (const ip of ips) {
    const route = routeOutbound(ip, node, store);
    out[`route ${ip}`] = { ...route, pod: 'pod' in route ? ref(route.pod) : undefined };
    const target = localTarget(ip, node, store);
    out[`local ${ip}`] = 'pod' in target ? ref(target.pod) : target.reason;
    const pod = store.podByIp(ip);
    out[`workload ${ip}`] = pod === undefined ? undefined : { ...store.workloadRef(pod), enrolled: isEnrolled(pod, store.namespace(pod.namespace)) };
    const svc = serviceTarget(store, ip, 80);
    out[`service ${ip}`] = svc.kind === 'service' ? objectKey(svc.target.service) : svc.kind;
  }
  for (const svc of cluster.services) {
    const own = state.services.find((s) => objectKey(s) === objectKey(svc));
    for (const port of own?.ports ?? []) {
      const resolved = serviceEndpoints(store, own!, port);
      const e = (list: typeof resolved.endpoints) => list.map((x) => ({ ...x, pod: ref(x.pod) }));
      out[`endpoints ${objectKey(svc)}:${port.port}`] = { source: resolved.source, headless: resolved.headless, all: e(resolved.endpoints), usable: e(usable(resolved.endpoints)) };
    }
  }
  const local = cluster.pods.filter((p) => p.nodeName === node).map((p) => store.pod(p.namespace, p.name)!);
  for (const dst of local) {
    const k = objectKey(dst);
    for (const port of PORTS) {
      out[`mtls ${k}:${port}`] = mtlsModeForPort(dst, port, state);
      out[`protocol ${k}:${port}`] = protocolForPort(store, dst, port);
    }
    for (const src of cluster.pods) {
      const s = store.pod(src.namespace, src.name)!;
      const identity = store.identityOf(s);
      for (const port of [8080, 9090]) {
        out[`authz ${objectKey(src)} -> ${k}:${port}`] = policies.decide({ namespace: dst.namespace, labels: dst.labels },
          { sourceIp: s.ips[0]!, sourcePort: 1, sourcePrincipal: identity, destinationIp: dst.ips[0]!, destinationPort: port });
        out[`plaintext ${objectKey(src)} -> ${k}:${port}`] = policies.decide({ namespace: dst.namespace, labels: dst.labels },
          { sourceIp: s.ips[0]!, sourcePort: 1, destinationIp: dst.ips[0]!, destinationPort: port });
      }
      out[`explain ${objectKey(src)} -> ${k}`] = explain(store, policies, { src: objectKey(src), dst: k, port: 8080 });
      out[`explain GET ${objectKey(src)} -> ${k}`] = explain(store, policies, { src: objectKey(src), dst: k, port: 8080, method: 'GET', path: '/' });
      const claimed = tunnelSource(store, { peerIdentity: identity, forwardedFor: { ip: s.ips[0]!, port: 2 }, target: { ip: dst.ips[0]!, port: 8080 }, remoteAddress: '192.168.50.9', remotePort: 3 });
      out[`tunnel source ${objectKey(src)} -> ${k}`] = { ...claimed, pod: ref(claimed.pod) };
    }
  }
  return out;
}

test('a node\'s projection answers every question of its agent as the whole cluster does, for its pods as clients and as destinations', () => {
  fc.assert(fc.property(cluster, (s) => {
    const full = canonicalSnapshot(s);
    for (const node of NODES) assert.deepEqual(answers(full, nodeView(s, node), node), answers(full, full, node), `node ${node}`);
  }), { numRuns: 150 });
});

test('the projection keeps its own pods whole, reduces the others, and keeps the namespace policies of its namespaces and the root only', () => {
  fc.assert(fc.property(cluster, (s) => {
    for (const node of NODES) {
      const view = nodeView(s, node);
      const local = new Set(s.pods.filter((p) => p.nodeName === node).map((p) => p.namespace));
      assert.equal(view.pods.length, s.pods.length);
      for (const p of view.pods) {
        const original = s.pods.find((o) => objectKey(o) === objectKey(p))!;
        assert.deepEqual(p, original.nodeName === node ? original : remotePod(original));
        if (original.nodeName !== node) assert.ok(p.cgroupPath === undefined && p.uid === undefined && Object.keys(p.annotations).length === 0, 'a remote pod carries no cgroup, UID or annotations');
      }
      const relevant = (ns: string) => ns === 'weft-system' || local.has(ns);
      assert.deepEqual(view.authorizationPolicies.map(objectKey), s.authorizationPolicies.filter((p) => relevant(p.namespace)).map(objectKey).sort());
      assert.deepEqual(view.peerAuthentications.map(objectKey), s.peerAuthentications.filter((p) => relevant(p.namespace)).map(objectKey).sort());
      const full = canonicalSnapshot(s);
      for (const k of ['namespaces', 'nodes', 'services', 'endpointSlices', 'httpRoutes', 'grpcRoutes', 'trafficPolicies', 'proxyConfig'] as const) assert.deepEqual(view[k], full[k], k);
    }
  }), { numRuns: 100 });
});

test('the comparison sees a field the projection would wrongly drop (labels, service account, readiness, named ports, a namespace\'s policies)', () => {
  const s: Snapshot = {
    namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }],
    nodes: [{ name: 'node-a', internalIPs: ['192.168.50.1'] }, { name: 'node-b', internalIPs: ['192.168.50.2'] }],
    pods: [
      { namespace: 'shop', name: 'client', labels: { app: 'client' }, annotations: {}, nodeName: 'node-a', serviceAccount: 'client', ips: ['10.60.0.1'] },
      { namespace: 'shop', name: 'server', labels: { app: 'web' }, annotations: {}, nodeName: 'node-b', serviceAccount: 'web', ips: ['10.60.1.1'], ready: false, containerPorts: { http: 8080 } },
    ],
    services: [{ namespace: 'shop', name: 'web', labels: {}, selector: { app: 'web' }, clusterIPs: ['10.96.0.1'], ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] }],
    peerAuthentications: [],
    authorizationPolicies: [{ namespace: 'shop', name: 'deny-all', action: 'DENY', rules: [{}] }],
  };
  const full = canonicalSnapshot(s);
  const right = answers(full, nodeView(s, 'node-a'), 'node-a');
  assert.deepEqual(right, answers(full, full, 'node-a'));
  const broken = (edit: (server: PodInfo) => PodInfo): Snapshot => {
    const v = nodeView(s, 'node-a');
    return { ...v, pods: v.pods.map((p) => (p.name === 'server' ? edit(p) : p)) };
  };
  const drops: Array<[string, Snapshot]> = [
    ['labels', broken((p) => ({ ...p, labels: {} }))],
    ['service account', broken((p) => ({ ...p, serviceAccount: 'default' }))],
    ['readiness', broken(({ ready: _r, ...p }) => p)],
    ['named ports', broken(({ containerPorts: _c, ...p }) => p)],
    ['node', broken((p) => ({ ...p, nodeName: '' }))],
    ['the namespace\'s policies', { ...nodeView(s, 'node-a'), authorizationPolicies: [] }],
  ];
  for (const [what, state] of drops) assert.notDeepEqual(answers(full, state, 'node-a'), right, `dropping ${what} must change an answer`);
});
