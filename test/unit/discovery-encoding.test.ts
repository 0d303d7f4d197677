/**
 * The sizes behind docs/discovery.md's choice of body encoding: a Pod as the protobuf message
 * versus the same Pod as JSON in the Resource's `bytes` field, in a 10,000-pod cluster shaped as
 * Deployments make them; and the full state and one-change delta a node receives. Sizes only (no
 * timing); the numbers are printed for the doc.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as protobuf from 'protobufjs';
import type { PodInfo, Snapshot } from '../../agent/config/objects';
import { DeltaIndex } from '../../agent/controlplane/discovery-delta';
import { decodeDeltaResponse, encodeDeltaResponseFramed, encodeResource } from '../../agent/controlplane/discovery-proto';
import { resourcesOf, type Resource } from '../../agent/controlplane/discovery-resources';
import { DiscoveryState } from '../../agent/controlplane/discovery-state';
import { nodeView } from '../../agent/controlplane/discovery-view';
import { encodeJson } from '../../agent/controlplane/discovery-wire';

const SAFE = 'bcdfghjklmnpqrstvwxz2456789';
const suffix = (n: number, i: number): string => Array.from({ length: n }, (_, k) => SAFE[(i * 7 + k * 13 + (i >> k)) % SAFE.length]).join('');

/** `n` pods of `services` Deployments over 100 nodes and 50 namespaces, with their Services and one policy per namespace. */
function deploymentCluster(n: number, services: number): Snapshot {
  const pods: PodInfo[] = [];
  for (let i = 0; i < n; i++) {
    const app = `app-${i % services}`;
    const hash = suffix(10, i % services);
    pods.push({
      namespace: `team-${i % 50}`, name: `${app}-${hash}-${suffix(5, i)}`,
      labels: { app, 'app.kubernetes.io/name': app, 'pod-template-hash': hash, version: 'v1' }, annotations: {},
      nodeName: `node-${i % 100}`, serviceAccount: app, ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
      uid: `0b3c${String(i).padStart(4, '0')}-1c2d-4e5f-8a9b-${String(i).padStart(12, '0')}`, containerPorts: { http: 8080 },
    });
  }
  return {
    namespaces: Array.from({ length: 50 }, (_, i) => ({ name: `team-${i}`, labels: { 'weft.dev/mesh': 'enabled' } })),
    pods,
    nodes: Array.from({ length: 100 }, (_, i) => ({ name: `node-${i}`, internalIPs: [`192.168.${i >> 8}.${(i & 255) + 1}`] })),
    services: Array.from({ length: services }, (_, j) => ({
      namespace: `team-${j % 50}`, name: `app-${j}`, labels: {}, selector: { app: `app-${j}` }, clusterIPs: [`10.96.${j >> 8}.${j & 255}`],
      ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' as const }],
    })),
    peerAuthentications: [],
    authorizationPolicies: Array.from({ length: 50 }, (_, i) => ({ namespace: `team-${i}`, name: 'allow-frontend', action: 'ALLOW' as const, rules: [{ from: [{ principals: [`cluster.local/ns/team-${i}/sa/frontend`] }] }] })),
  };
}

/** The Resource message with the body as JSON bytes (field 4) instead of the Pod message (field 3). */
function asJsonBody(r: Resource): Uint8Array {
  return protobuf.Writer.create().uint32((1 << 3) | 2).string(r.kind).uint32((2 << 3) | 2).string(r.key)
    .uint32((4 << 3) | 2).bytes(Buffer.from(JSON.stringify(r.value), 'utf8')).finish();
}

/** A repeated field entry: tag, length, bytes. */
const entry = (bytes: Uint8Array): number => 1 + protobuf.Writer.create().uint32(bytes.length).finish().length + bytes.length;

test('a Pod as a protobuf message is about a third smaller than as JSON bytes, in the full state and in a delta', () => {
  const node = 'node-1';
  const sizes: Record<string, number> = {};
  for (const n of [100, 10_000]) {
    const s = deploymentCluster(n, n === 100 ? 20 : 2000);
    const view = nodeView(s, node);
    let proto = 0;
    let json = 0;
    for (const r of resourcesOf(view)) {
      if (r.kind !== 'Pod') continue;
      proto += entry(encodeResource(r));
      json += entry(asJsonBody(r));
    }
    const index = new DeltaIndex({ version: 1_733_400_000_000, snapshot: s }, { epoch: '2f1c8a4e-7d7e-4f0e-9a51-0c6d2a3e9b11' });
    const full = index.full(node);
    const fullBytes = encodeDeltaResponseFramed(full.header, [...full.entries]);
    const decodedFull = decodeDeltaResponse(fullBytes);
    assert.ok(decodedFull.ok);
    assert.deepEqual(new DiscoveryState().apply(decodedFull.value), { ok: true, value: view }, 'the full state decodes to the node\'s view');
    index.publish({ version: 1_733_400_000_001, snapshot: { ...s, pods: s.pods.map((p, i) => (i === 7 ? { ...p, ready: false } : p)) } });
    const delta = index.next(node, 1_733_400_000_000);
    assert.ok(delta.kind === 'send' && [...delta.entries].length === 1);
    const deltaBytes = encodeDeltaResponseFramed(delta.header, [...delta.entries]).length;
    const decoded = decodeDeltaResponse(encodeDeltaResponseFramed(delta.header, [...delta.entries]));
    assert.ok(decoded.ok);
    const changed = decoded.value.resources[0]!;
    Object.assign(sizes, {
      [`${n} pods: v1 snapshot (JSON)`]: encodeJson({ version: 1_733_400_000_000, snapshot: s }).length,
      [`${n} pods: v2 full state`]: fullBytes.length,
      [`${n} pods: pods in the full state, protobuf`]: proto,
      [`${n} pods: pods in the full state, JSON bytes`]: json,
      [`${n} pods: one pod change, protobuf`]: deltaBytes,
      [`${n} pods: one pod change, JSON bytes`]: deltaBytes - entry(encodeResource(changed)) + entry(asJsonBody(changed)),
    });
    assert.ok(proto < 0.75 * json, `protobuf pods ${proto} B vs JSON ${json} B`);
  }
  assert.equal(sizes['100 pods: one pod change, protobuf'], sizes['10000 pods: one pod change, protobuf']);
  for (const [k, v] of Object.entries(sizes)) console.log(`# ${k}: ${v} B`);
});
