/**
 * Weft's install manifests (daemonset/*.yaml; monitoring/ is not part of `kubectl apply -f
 * daemonset/`) against a real kube-apiserver with its controller manager (test/support/
 * kube-cluster.ts): every object is accepted by a server-side apply, the CRDs become Established
 * with the subresources and printer columns they declare, and the TrafficPolicy schema makes the
 * API server itself refuse malformed policies, its error naming the field. Uninstalling removes
 * everything, the weft-system namespace through the namespace controller.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseAllDocuments } from 'yaml';
import { startKubeCluster, type KubeCluster } from '../support/kube-cluster';

const ROOT = join(__dirname, '..', '..', '..');
const DAEMONSET = join(ROOT, 'daemonset');
/** Bounded polls for what controllers do asynchronously (CRD establishment, namespace deletion). */
const WAIT_MS = 60_000;

interface ManifestObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
}

const files = readdirSync(DAEMONSET).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml') || f.endsWith('.json')).sort();
const objects = (file: string): ManifestObject[] =>
  parseAllDocuments(readFileSync(join(DAEMONSET, file), 'utf8')).map((d) => d.toJS() as ManifestObject | null).filter((o): o is ManifestObject => o !== null);
/** Install order as an operator would run it: the namespace and the CRDs before what lives in them. */
const ORDER = ['namespace.yaml', 'crds.yaml', 'rbac.yaml'];
const ordered = [...ORDER.filter((f) => files.includes(f)), ...files.filter((f) => !ORDER.includes(f))];

let cluster: KubeCluster;

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const r = await cluster.kubectl(args, stdin);
  if (r.code !== 0) assert.fail(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS / 1000} s waiting for ${what}`);
    await sleep(200);
  }
}

before(async () => {
  cluster = await startKubeCluster({ name: 'k8s' });
  process.stderr.write(`kube-manifests: Kubernetes ${cluster.versions.kubernetes}, etcd ${cluster.versions.etcd}; startup ${JSON.stringify(cluster.startup)}\n`);
});

after(async () => {
  await cluster?.close();
});

test('daemonset/ holds the install manifests (the monitoring/ folder is not among them)', () => {
  assert.ok(ORDER.every((f) => files.includes(f)), `expected ${ORDER.join(', ')} in daemonset/, found ${files.join(', ')}`);
  assert.ok(!files.some((f) => f.includes('monitoring')));
});

test('every manifest in daemonset/ is accepted by the real API server (kubectl apply --server-side), and every object it declares exists afterwards', async () => {
  for (const file of ordered) {
    const out = await kubectl(['apply', '--server-side', '--field-manager=weft-install', '-f', join(DAEMONSET, file)]);
    assert.match(out, /serverside-applied/, `${file}: ${out}`);
    if (file === 'crds.yaml') {
      // Objects of a new kind can be created once the CRD is Established.
      await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', join(DAEMONSET, file)]);
    }
  }
  const declared = ordered.flatMap(objects);
  assert.ok(declared.length >= 10, `only ${declared.length} objects in daemonset/`);
  for (const obj of declared) {
    const group = obj.apiVersion.includes('/') ? obj.apiVersion.split('/')[0] : '';
    const resource = `${obj.kind.toLowerCase()}${group ? `.${group}` : ''}`;
    const args = ['get', resource, obj.metadata.name, '-o', 'jsonpath={.metadata.name}'];
    if (obj.metadata.namespace) args.push('-n', obj.metadata.namespace);
    assert.equal(await kubectl(args), obj.metadata.name, `${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}`);
  }
  // Applying the same manifests again changes nothing and is accepted (an upgrade with no change).
  const again = await kubectl(['apply', '--server-side', '--field-manager=weft-install', '-f', join(DAEMONSET, 'crds.yaml'), '-f', join(DAEMONSET, 'rbac.yaml')]);
  assert.match(again, /serverside-applied/);
});

test('the CRDs are Established with the status subresource and printer columns they declare', async () => {
  const crds = objects('crds.yaml');
  assert.ok(crds.length >= 3);
  for (const crd of crds) {
    const live = JSON.parse(await kubectl(['get', 'crd', crd.metadata.name, '-o', 'json'])) as {
      spec: { versions: { name: string; subresources?: { status?: unknown }; additionalPrinterColumns?: { name: string }[] }[] };
      status: { conditions: { type: string; status: string }[] };
    };
    assert.ok(live.status.conditions.some((c) => c.type === 'Established' && c.status === 'True'), `${crd.metadata.name} not Established`);
    const declared = (crd.spec as { versions: { name: string; subresources?: { status?: unknown }; additionalPrinterColumns?: { name: string }[] }[] }).versions;
    for (const version of declared) {
      const served = live.spec.versions.find((v) => v.name === version.name);
      assert.ok(served, `${crd.metadata.name} ${version.name} not served`);
      assert.equal(served.subresources?.status !== undefined, version.subresources?.status !== undefined, `${crd.metadata.name} status subresource`);
      assert.deepEqual((served.additionalPrinterColumns ?? []).map((c) => c.name), (version.additionalPrinterColumns ?? []).map((c) => c.name));
    }
  }
  // A printer column is what `kubectl get` shows.
  await kubectl(['create', 'namespace', 'columns']);
  await kubectl(['apply', '-f', '-'], trafficPolicy('columns', 'ok', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }] }));
  const table = await kubectl(['get', 'trafficpolicies', '-n', 'columns']);
  assert.match(table.split('\n')[0]!, /NAME\s+ACCEPTED\s+REASON\s+AGE/);
});

function trafficPolicy(namespace: string, name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'networking.weft.dev/v1', kind: 'TrafficPolicy', metadata: { name, namespace }, spec });
}

const target = [{ group: '', kind: 'Service', name: 'web' }];

/**
 * Malformed TrafficPolicies: the spec, the field the refusal must name, and what the API server's
 * validation says about it (the `kubectl apply` message, field path first).
 */
const MALFORMED: { name: string; spec: Record<string, unknown>; field: string; error: RegExp }[] = [
  { name: 'missing-targetrefs', spec: { loadBalancer: { simple: 'ROUND_ROBIN' } }, field: 'spec.targetRefs', error: /spec\.targetRefs: Required value/ },
  { name: 'empty-targetrefs', spec: { targetRefs: [] }, field: 'spec.targetRefs', error: /spec\.targetRefs: Invalid value: .*should have at least 1 items/ },
  { name: 'targetref-without-name', spec: { targetRefs: [{ group: '', kind: 'Service' }] }, field: 'spec.targetRefs[0].name', error: /spec\.targetRefs\[0\]\.name: Required value/ },
  { name: 'targetref-to-deployment', spec: { targetRefs: [{ group: 'apps', kind: 'Deployment', name: 'web' }] }, field: 'spec.targetRefs[0].kind', error: /spec\.targetRefs\[0\]\.kind: Unsupported value: "Deployment"/ },
  { name: 'unknown-lb', spec: { targetRefs: target, loadBalancer: { simple: 'FASTEST' } }, field: 'spec.loadBalancer.simple', error: /spec\.loadBalancer\.simple: Unsupported value: "FASTEST"/ },
  { name: 'string-count', spec: { targetRefs: target, connectionPool: { tcp: { maxConnections: 'ten' } } }, field: 'spec.connectionPool.tcp.maxConnections', error: /spec\.connectionPool\.tcp\.maxConnections: Invalid value: "string": spec\.connectionPool\.tcp\.maxConnections in body must be of type integer/ },
  { name: 'zero-connections', spec: { targetRefs: target, connectionPool: { tcp: { maxConnections: 0 } } }, field: 'spec.connectionPool.tcp.maxConnections', error: /spec\.connectionPool\.tcp\.maxConnections: Invalid value: 0: .*should be greater than or equal to 1/ },
  { name: 'bad-duration', spec: { targetRefs: target, outlierDetection: { interval: 'ten seconds' } }, field: 'spec.outlierDetection.interval', error: /spec\.outlierDetection\.interval: Invalid value: "ten seconds": .*should match/ },
  { name: 'percent-over-100', spec: { targetRefs: target, outlierDetection: { maxEjectionPercent: 150 } }, field: 'spec.outlierDetection.maxEjectionPercent', error: /spec\.outlierDetection\.maxEjectionPercent: Invalid value: 150: .*should be less than or equal to 100/ },
  { name: 'abort-status-700', spec: { targetRefs: target, fault: { abort: { httpStatus: 700, percentage: { value: 10 } } } }, field: 'spec.fault.abort.httpStatus', error: /spec\.fault\.abort\.httpStatus: Invalid value: 700/ },
  { name: 'port-level-without-port', spec: { targetRefs: target, portLevelSettings: [{ loadBalancer: { simple: 'RANDOM' } }] }, field: 'spec.portLevelSettings[0].port', error: /spec\.portLevelSettings\[0\]\.port: Required value/ },
  { name: 'port-out-of-range', spec: { targetRefs: target, portLevelSettings: [{ port: { number: 70000 } }] }, field: 'spec.portLevelSettings[0].port.number', error: /spec\.portLevelSettings\[0\]\.port\.number: Invalid value: 70000/ },
];

test('the TrafficPolicy schema makes the API server refuse malformed policies at apply time (client- and server-side), its error naming the field', async () => {
  await kubectl(['create', 'namespace', 'malformed']);
  // The control: a well-formed policy using the same fields is accepted.
  await kubectl(['apply', '--server-side', '-f', '-'], trafficPolicy('malformed', 'well-formed', {
    targetRefs: target,
    loadBalancer: { simple: 'LEAST_REQUEST' },
    connectionPool: { tcp: { maxConnections: 10, connectTimeout: '1.5s' } },
    outlierDetection: { consecutive5xxErrors: 3, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 50 },
    fault: { abort: { httpStatus: 503, percentage: { value: 10 } } },
    portLevelSettings: [{ port: { number: 8080 }, loadBalancer: { simple: 'RANDOM' } }],
  }));
  for (const bad of MALFORMED) {
    // `kubectl apply` as most operators run it: the API server's validation message.
    const client = await cluster.kubectl(['apply', '-f', '-'], trafficPolicy('malformed', bad.name, bad.spec));
    assert.notEqual(client.code, 0, `${bad.name} was accepted: ${client.stdout}`);
    assert.match(client.stderr, /is invalid/, `${bad.name}: ${client.stderr}`);
    assert.match(client.stderr, bad.error, `${bad.name}: ${client.stderr}`);
    // Server-side apply: a type mismatch is refused earlier (building the typed patch), other faults by the same validation.
    const server = await cluster.kubectl(['apply', '--server-side', '-f', '-'], trafficPolicy('malformed', bad.name, bad.spec));
    assert.notEqual(server.code, 0, `${bad.name} was accepted by a server-side apply: ${server.stdout}`);
    assert.ok(server.stderr.includes(bad.field), `${bad.name}: the server-side refusal does not name ${bad.field}: ${server.stderr}`);
  }
  // Nothing malformed was stored.
  const names = (await kubectl(['get', 'trafficpolicies', '-n', 'malformed', '-o', 'jsonpath={.items[*].metadata.name}'])).split(/\s+/).filter(Boolean);
  assert.deepEqual(names, ['well-formed']);
});

test('uninstalling (kubectl delete -f on the manifests) removes every object; the namespace controller empties and removes weft-system', async () => {
  for (const file of [...ordered].reverse()) await kubectl(['delete', '--ignore-not-found', '--wait=false', '-f', join(DAEMONSET, file)]);
  await waitFor('namespace weft-system to be gone', async () => (await cluster.kubectl(['get', 'namespace', 'weft-system'])).code !== 0);
  await waitFor('the Weft CRDs to be gone', async () => (await kubectl(['get', 'crd', '-o', 'name'])).split('\n').every((n) => !n.includes('weft.dev')));
  const left = await kubectl(['get', 'clusterroles,clusterrolebindings', '-o', 'name']);
  assert.ok(!left.includes('weft-'), `left behind: ${left}`);
});
