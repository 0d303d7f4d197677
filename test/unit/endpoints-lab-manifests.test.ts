import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatConfigError } from '../../agent/config/config-error';
import { parseConfig } from '../../agent/config/parse';
import { manifests, toYamlStream, type PodFacts, type PodState } from '../../agent/sandbox/manifests';
import { serviceEndpoints, servicePortFor, usable } from '../../agent/state/endpoints';
import { WorkloadStore } from '../../agent/state/store';

/**
 * A lab's manifests can say a pod is not ready, terminating, or has named ports (ManifestOptions
 * podStates), and `weft local` reads that back as the resolver needs it: how Service VIP tests make
 * an endpoint go away without deleting its pod.
 */

const pod = (name: string, ip: string, ip6?: string): PodFacts => ({
  name, namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' }, nodeName: 'n1', hostIp: '192.168.0.1', ip, ip6, cgroupPath: `/sys/fs/cgroup/lab/${name}`,
});
const SERVICE = {
  apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' },
  spec: { selector: { app: 'web' }, clusterIPs: ['10.96.0.10', 'fd00:96::a'], ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
};
const PODS = [pod('web-1', '10.0.0.1', 'fd00::1'), pod('web-2', '10.0.0.2'), pod('web-3', '10.0.0.3')];

function usableEndpoints(podStates: Record<string, PodState>): string[] {
  const parsed = parseConfig(toYamlStream(manifests([], PODS, { meshNamespaces: ['shop'], extra: [SERVICE], podStates })), 'lab.yaml');
  if (!parsed.ok) assert.fail(parsed.error.map(formatConfigError).join('\n'));
  const store = new WorkloadStore(parsed.value);
  const svc = store.snapshot.services[0]!;
  return usable(serviceEndpoints(store, svc, servicePortFor(svc, 80)!).endpoints).map((e) => `${e.pod!.name} ${e.ip}:${e.port}`);
}

test('lab pod states reach the resolver: named ports, not ready, terminating', () => {
  const http = { containerPorts: { http: 8080 } };
  assert.deepEqual(usableEndpoints({ 'shop/web-1': http, 'shop/web-2': { containerPorts: { http: 8081 } } }), [
    'web-1 10.0.0.1:8080', 'web-1 fd00::1:8080', 'web-2 10.0.0.2:8081',
  ], 'web-3 has no port named http');
  assert.deepEqual(usableEndpoints({ 'shop/web-1': { ...http, ready: false }, 'shop/web-2': { ...http, ready: true }, 'shop/web-3': { ...http, terminating: true } }), [
    'web-2 10.0.0.2:8080',
  ]);
  assert.deepEqual(usableEndpoints({ 'shop/web-1': { ...http, ready: false }, 'shop/web-3': { ...http, terminating: true } }), [
    'web-3 10.0.0.3:8080',
  ], 'with none ready, the terminating pod that still serves takes new connections');
});

test('without pod states the manifests are as before: no conditions, no containers, no deletionTimestamp', () => {
  const objects = manifests([], [PODS[0]!]) as { kind: string; metadata: object; spec: object; status: object }[];
  const p = objects.find((o) => o.kind === 'Pod')!;
  assert.equal('deletionTimestamp' in p.metadata, false);
  assert.equal('containers' in p.spec, false);
  assert.equal('conditions' in p.status, false);
});
