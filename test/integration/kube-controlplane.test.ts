/**
 * The real `weft controlplane` (the CLI, its production @kubernetes/client-node code) against a real
 * kube-apiserver, etcd and kube-controller-manager (test/support/kube-cluster.ts). It runs as the
 * weft-controlplane ServiceAccount with a token the API server issued (TokenRequest) and the RBAC of
 * daemonset/rbac.yaml, so a missing permission fails here. The test plays the kubelet: it binds
 * pods to a Node (the Binding subresource, as the scheduler does) and writes their IPs and
 * readiness through the status subresource. The controller manager makes the EndpointSlices.
 * An agent's discovery stream (agent/node/discovery-client.ts, with the bootstrap token an agent
 * outside Kubernetes presents) must see what the API server holds.
 *
 * Latencies (status write to the agent's snapshot) are printed as diagnostics, not asserted: speed
 * belongs to benchmarks.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import type { Snapshot } from '../../agent/config/objects';
import { defaultProxyConfig } from '../../agent/config/proxy-config';
import { decodeVersionedSnapshot, encodeJson, WATCH_PATH } from '../../agent/controlplane/discovery-wire';
import { operationalLogger } from '../../agent/core/log';
import { watchControlPlane, type DiscoveryWatch } from '../../agent/node/discovery-client';
import { DEFAULT_FAIRNESS } from '../../agent/proxy/fairness';
import { spawnKubeControlPlane, startKubeCluster, type KubeCluster } from '../support/kube-cluster';

const ROOT = join(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'dist', 'agent', 'cli.js');
const GATEWAY_CRDS = join(ROOT, 'test', 'fixtures', 'gateway-api-routes-crds.yaml');
const WAIT_MS = 30_000;
const NS = 'shop';
const NODE = 'node-a';
const POD_IP = '10.244.1.5';
const silent = operationalLogger('kube-controlplane-test', 'silent');

let cluster: KubeCluster;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let dir: string;
let cp: ChildProcess | undefined;
let cpOutput = '';
let watch: DiscoveryWatch | undefined;
let latest: Snapshot | undefined;
/** When each snapshot arrived (ms), to measure how long a change takes to reach the agent. */
let latestAt = 0;
let cpAddress = '';
let cpCaPem = '';

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const r = await cluster.kubectl(args, stdin);
  if (r.code !== 0) assert.fail(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

const apply = (obj: object): Promise<string> => kubectl(['apply', '--server-side', '--field-manager=weft-test', '-f', '-'], JSON.stringify(obj));

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      assert.fail(`timed out after ${WAIT_MS / 1000} s waiting for ${what}\n--- control plane output (last 40 lines) ---\n${cpOutput.trimEnd().split('\n').slice(-40).join('\n')}`);
    }
    await sleep(20);
  }
}

/** Waits until the agent's latest snapshot satisfies `check`; resolves with the value and when that snapshot arrived. */
async function snapshotWhere<T>(what: string, check: (s: Snapshot) => T | undefined): Promise<{ value: T; at: number }> {
  return waitFor(what, () => {
    if (latest === undefined) return undefined;
    const value = check(latest);
    return value === undefined || value === false ? undefined : { value, at: latestAt };
  });
}

const sliceEndpoints = (s: Snapshot, service: string) =>
  (s.endpointSlices ?? []).filter((e) => e.namespace === NS && e.service === service).flatMap((e) => e.endpoints);

function podStatus(ready: boolean): object {
  const now = new Date().toISOString();
  return {
    status: {
      phase: 'Running',
      podIP: POD_IP,
      podIPs: [{ ip: POD_IP }],
      hostIP: '10.0.5.1',
      startTime: now,
      conditions: [
        { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
        { type: 'Initialized', status: 'True', lastTransitionTime: now },
        { type: 'ContainersReady', status: ready ? 'True' : 'False', lastTransitionTime: now },
        { type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: now },
      ],
    },
  };
}

before(async () => {
  cluster = await startKubeCluster({ name: 'k8s2' });
  process.stderr.write(`kube-controlplane: Kubernetes ${cluster.versions.kubernetes}, etcd ${cluster.versions.etcd}; startup ${JSON.stringify(cluster.startup)}\n`);
  const kc = cluster.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  dir = mkdtempSync(join(tmpdir(), 'weft-kube-controlplane-'));

  // Installed as an operator would: namespace, Weft's CRDs, RBAC. The Gateway API route CRDs come
  // later, after the control plane started (a test below).
  for (const file of ['namespace.yaml', 'crds.yaml', 'rbac.yaml']) await kubectl(['apply', '--server-side', '-f', join(ROOT, 'daemonset', file)]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', join(ROOT, 'daemonset', 'crds.yaml')]);

  // The control plane's own identity: a token for its ServiceAccount from the TokenRequest API.
  const kubeconfig = await cluster.serviceAccountKubeconfig('weft-system', 'weft-controlplane', join(dir, 'controlplane.kubeconfig'));

  const dataDir = join(dir, 'data');
  const spawned = await spawnKubeControlPlane(CLI, kubeconfig, dataDir, (text) => { cpOutput += text; });
  cp = spawned.child;
  await waitFor('the control plane to be ready', () => {
    if (spawned.exited() !== undefined) assert.fail(`weft controlplane exited (${spawned.exited()}):\n${cpOutput}`);
    return cpOutput.includes('"control plane ready"') || undefined;
  });

  const caPem = readFileSync(join(dataDir, 'ca.pem'), 'utf8');
  cpAddress = spawned.address;
  cpCaPem = caPem;
  const bootstrap = readFileSync(join(dataDir, 'bootstrap.token'), 'utf8').trim();
  watch = watchControlPlane({ address: spawned.address, caPem, token: bootstrap, node: NODE }, (s) => {
    latest = s;
    latestAt = Date.now();
  }, silent);
});

after(async () => {
  watch?.close();
  if (cp && cp.exitCode === null && cp.signalCode === null) {
    const gone = new Promise((resolve) => cp!.once('exit', resolve));
    cp.kill('SIGTERM');
    if (await Promise.race([gone.then(() => true), sleep(10_000).then(() => false)]) === false) {
      cp.kill('SIGKILL');
      await gone;
    }
  }
  await cluster?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the control plane, as its ServiceAccount under daemonset/rbac.yaml, keeps its CA root in the weft-ca Secret and publishes the trust bundle ConfigMap', async () => {
  await waitFor('the agent\'s first snapshot', () => latest);
  const secret = await core.readNamespacedSecret({ namespace: 'weft-system', name: 'weft-ca' });
  assert.ok(Object.keys(secret.data ?? {}).length > 0, 'weft-system/weft-ca is empty');
  const bundle = await core.readNamespacedConfigMap({ namespace: 'weft-system', name: 'weft-trust-bundle' });
  const pems = Object.values(bundle.data ?? {}).join('\n');
  assert.match(pems, /BEGIN CERTIFICATE/);
  assert.ok(!/PRIVATE KEY/.test(pems), 'the trust bundle ConfigMap holds a private key');
});

test('a meshed namespace, a Node, a pod bound and given its IP by the test (as the kubelet) and a Service reach the agent, with the EndpointSlice the controller manager made', async () => {
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'weft.dev/mesh': 'enabled' } } });
  await apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE } } });
  await kubectl(['patch', 'node', NODE, '--subresource=status', '--type=merge', '-p', JSON.stringify({
    status: { addresses: [{ type: 'InternalIP', address: '10.0.5.1' }, { type: 'Hostname', address: NODE }],
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'the test plays the kubelet', lastHeartbeatTime: new Date().toISOString(), lastTransitionTime: new Date().toISOString() }] },
  })]);
  // The ServiceAccount admission plugin refuses a pod whose ServiceAccount does not exist.
  await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: NS } });
  await waitFor('namespace shop to be usable', async () => (await cluster.kubectl(['get', 'serviceaccount', 'web', '-n', NS])).code === 0 || undefined);
  await apply({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: NS, labels: { app: 'web' } },
    spec: { serviceAccountName: 'web', containers: [{ name: 'web', image: 'weft.test/web:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
  });
  // Scheduling: the Binding subresource sets spec.nodeName, as kube-scheduler does.
  await core.createNamespacedPodBinding({ namespace: NS, name: 'web-1', body: { metadata: { name: 'web-1' }, target: { apiVersion: 'v1', kind: 'Node', name: NODE } } });
  await kubectl(['patch', 'pod', 'web-1', '-n', NS, '--subresource=status', '--type=merge', '-p', JSON.stringify(podStatus(true))]);
  await apply({
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: NS },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
  });

  const { value: s } = await snapshotWhere('the pod, the Service and a ready endpoint in the agent\'s snapshot', (snap) => {
    const pod = snap.pods.find((p) => p.namespace === NS && p.name === 'web-1' && p.ips.includes(POD_IP));
    const svc = snap.services.find((v) => v.namespace === NS && v.name === 'web' && v.clusterIPs.length > 0);
    const ready = sliceEndpoints(snap, 'web').some((e) => e.addresses.includes(POD_IP) && e.ready);
    return pod && svc && ready ? snap : undefined;
  });
  const pod = s.pods.find((p) => p.name === 'web-1')!;
  assert.equal(pod.nodeName, NODE);
  assert.equal(pod.serviceAccount, 'web');
  assert.deepEqual(pod.containerPorts, { http: 8080 });
  assert.ok(pod.uid && /^[0-9a-f-]{36}$/.test(pod.uid), `pod uid ${pod.uid}`);
  const svc = s.services.find((v) => v.name === 'web')!;
  assert.match(svc.clusterIPs[0]!, /^10\.96\./, 'ClusterIP from --service-cluster-ip-range');
  assert.deepEqual(svc.selector, { app: 'web' });
  const slice = (s.endpointSlices ?? []).find((e) => e.namespace === NS && e.service === 'web')!;
  assert.equal(slice.addressType, 'IPv4');
  assert.deepEqual(slice.ports.map((p) => [p.name, p.port]), [['http', 8080]], 'the controller resolved the named targetPort');
  const endpoint = slice.endpoints.find((e) => e.addresses.includes(POD_IP))!;
  assert.deepEqual({ ready: endpoint.ready, serving: endpoint.serving, terminating: endpoint.terminating, nodeName: endpoint.nodeName, pod: endpoint.pod },
    { ready: true, serving: true, terminating: false, nodeName: NODE, pod: 'web-1' });
  assert.ok(s.namespaces.some((n) => n.name === NS && n.labels['weft.dev/mesh'] === 'enabled'));
  const node = s.nodes.find((n) => n.name === NODE);
  assert.ok(node, 'the Node is in the snapshot');
});

test('a pod turning not ready (its status subresource) is followed through the EndpointSlice to the agent, and back', async (t) => {
  for (const ready of [false, true]) {
    const written = Date.now();
    await kubectl(['patch', 'pod', 'web-1', '-n', NS, '--subresource=status', '--type=merge', '-p', JSON.stringify(podStatus(ready))]);
    const { at } = await snapshotWhere(`the endpoint ${POD_IP} ready=${ready} in the agent's snapshot`, (snap) =>
      sliceEndpoints(snap, 'web').some((e) => e.addresses.includes(POD_IP) && e.ready === ready && e.serving === ready) || undefined);
    t.diagnostic(`pod status ready=${ready} written -> agent snapshot with the EndpointSlice changed: ${at - written} ms`);
  }
});

test('flipping the namespace label reaches the agent', async (t) => {
  for (const value of ['disabled', 'enabled']) {
    const written = Date.now();
    await kubectl(['label', 'namespace', NS, `weft.dev/mesh=${value}`, '--overwrite']);
    const { at } = await snapshotWhere(`namespace ${NS} labelled ${value}`, (snap) => snap.namespaces.some((n) => n.name === NS && n.labels['weft.dev/mesh'] === value) || undefined);
    t.diagnostic(`namespace label ${value} -> agent snapshot: ${at - written} ms`);
  }
});

test('a TrafficPolicy on the Service is in the snapshot and gets Accepted with its observedGeneration', async () => {
  await apply({ apiVersion: 'networking.weft.dev/v1', kind: 'TrafficPolicy', metadata: { name: 'web-lb', namespace: NS },
    spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], loadBalancer: { simple: 'ROUND_ROBIN' } } });
  await snapshotWhere('the TrafficPolicy in the snapshot', (snap) => (snap.trafficPolicies ?? []).some((p) => p.namespace === NS && p.name === 'web-lb') || undefined);
  await waitFor('TrafficPolicy status Accepted=True', async () => {
    const obj = await custom.getNamespacedCustomObject({ group: 'networking.weft.dev', version: 'v1', namespace: NS, plural: 'trafficpolicies', name: 'web-lb' }) as
      { metadata: { generation: number }; status?: { conditions?: { type: string; status: string; observedGeneration?: number }[] } };
    const accepted = obj.status?.conditions?.find((c) => c.type === 'Accepted');
    return accepted?.status === 'True' && accepted.observedGeneration === obj.metadata.generation ? true : undefined;
  });
});

test('a ProxyConfig (cluster-scoped `default`) reaches the agent\'s snapshot; an edit the control plane refuses leaves the last valid one in force, logged naming the field; deleting it returns the defaults', async (t) => {
  const first = await waitFor('the agent\'s first snapshot', () => latest);
  assert.equal(first.proxyConfig, undefined, 'no ProxyConfig yet: the proxies run on their defaults');
  const proxyConfig = (spec: object): object => ({ apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec });

  let written = Date.now();
  await apply(proxyConfig({ accessLog: { level: 'errors' }, telemetry: { metrics: false }, fairness: { maxConnectionsPerPod: 500 } }));
  const { value: config, at } = await snapshotWhere('the ProxyConfig in the agent\'s snapshot', (snap) => snap.proxyConfig?.accessLog?.level === 'errors' ? snap.proxyConfig : undefined);
  t.diagnostic(`ProxyConfig created -> agent snapshot: ${at - written} ms`);
  assert.deepEqual(config.accessLog, { enabled: true, level: 'errors', samplingPercent: 100 });
  assert.deepEqual(config.telemetry, { metrics: false });
  assert.deepEqual(config.fairness, { ...DEFAULT_FAIRNESS, maxConnectionsPerPod: 500 });
  assert.deepEqual(config, { ...defaultProxyConfig(), accessLog: config.accessLog, telemetry: config.telemetry, fairness: config.fairness }, 'what was not set keeps its default');

  // The schema lets this through (http://, a host part); the URL does not parse, so the control plane refuses it.
  const logged = cpOutput.length;
  await apply(proxyConfig({ accessLog: { level: 'errors' }, telemetry: { metrics: false }, fairness: { maxConnectionsPerPod: 500 }, tracing: { otlpEndpoint: 'http://[otel-collector' } }));
  await waitFor('the control plane to log the refused ProxyConfig', () => {
    const since = cpOutput.slice(logged);
    return (since.includes('ProxyConfig /default is invalid') && since.includes('spec.tracing.otlpEndpoint')) || undefined;
  });
  assert.deepEqual(latest!.proxyConfig, config, 'the last valid ProxyConfig stays in force');

  written = Date.now();
  await apply(proxyConfig({ accessLog: { level: 'denials', samplingPercent: 50 }, tracing: { otlpEndpoint: 'http://otel-collector.observability:4318', samplingPercent: 5 }, sameNodeSplice: false }));
  const edited = await snapshotWhere('the edited ProxyConfig in force', (snap) => snap.proxyConfig?.accessLog?.level === 'denials' ? snap.proxyConfig : undefined);
  t.diagnostic(`ProxyConfig edited -> agent snapshot: ${edited.at - written} ms`);
  assert.deepEqual(edited.value.tracing, { otlpEndpoint: 'http://otel-collector.observability:4318', samplingPercent: 5 });
  assert.equal(edited.value.sameNodeSplice, false);
  assert.equal(edited.value.telemetry, undefined, 'a field the edit dropped is back to its default');
  assert.equal(edited.value.fairness, undefined);

  written = Date.now();
  await kubectl(['delete', 'proxyconfig.config.weft.dev', 'default']);
  const gone = await snapshotWhere('the ProxyConfig gone from the agent\'s snapshot', (snap) => snap.proxyConfig === undefined || undefined);
  t.diagnostic(`ProxyConfig deleted -> agent snapshot on defaults: ${gone.at - written} ms`);
});

interface RouteObject {
  metadata: { generation: number };
  status?: { parents?: { controllerName: string; parentRef: { kind?: string; name: string }; conditions: { type: string; status: string; reason: string; observedGeneration?: number }[] }[] };
}

async function routeConditions(): Promise<{ generation: number; conditions: Record<string, { status: string; reason: string; observedGeneration?: number }> } | undefined> {
  const obj = await custom.getNamespacedCustomObject({ group: 'gateway.networking.k8s.io', version: 'v1', namespace: NS, plural: 'httproutes', name: 'web-route' }) as RouteObject;
  const parent = obj.status?.parents?.find((p) => p.controllerName === 'weft.dev/mesh-controller' && p.parentRef.name === 'web' && p.parentRef.kind === 'Service');
  if (!parent) return undefined;
  return { generation: obj.metadata.generation, conditions: Object.fromEntries(parent.conditions.map((c) => [c.type, c])) };
}

test('the HTTPRoute CRD installed after the control plane started is picked up without a restart; an HTTPRoute to the Service gets Accepted and ResolvedRefs with its observedGeneration', async (t) => {
  const installed = Date.now();
  await kubectl(['apply', '--server-side', '-f', GATEWAY_CRDS]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', GATEWAY_CRDS]);
  const route = (matches: object[]) => ({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web-route', namespace: NS },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ matches, backendRefs: [{ name: 'web', port: 80 }] }] },
  });
  await apply(route([{ path: { type: 'PathPrefix', value: '/' } }]));
  const { at } = await snapshotWhere('the HTTPRoute in the agent\'s snapshot', (snap) => (snap.httpRoutes ?? []).some((r) => r.namespace === NS && r.name === 'web-route') || undefined);
  t.diagnostic(`CRD installed -> route in the agent's snapshot: ${at - installed} ms`);

  for (const generation of [1, 2]) {
    if (generation === 2) await apply(route([{ path: { type: 'PathPrefix', value: '/api' } }]));
    const status = await waitFor(`HTTPRoute status for generation ${generation}`, async () => {
      const s = await routeConditions();
      return s && s.generation === generation && s.conditions.Accepted?.observedGeneration === generation && s.conditions.ResolvedRefs?.observedGeneration === generation ? s : undefined;
    });
    assert.equal(status.conditions.Accepted!.status, 'True', JSON.stringify(status));
    assert.equal(status.conditions.ResolvedRefs!.status, 'True', JSON.stringify(status));
  }
  await snapshotWhere('the edited route in force', (snap) => JSON.stringify(snap.httpRoutes ?? []).includes('/api') || undefined);
});

test('after the API server restarts, the control plane\'s watches come back: a change made then reaches the agent, and what was there stays', async (t) => {
  const before = latest!;
  const restarted = Date.now();
  await cluster.restartApiServer();
  t.diagnostic(`API server restarted (stop + /readyz) in ${Date.now() - restarted} ms`);
  const changed = Date.now();
  await kubectl(['label', 'namespace', NS, 'weft.test/after-restart=yes']);
  const { at } = await snapshotWhere('a namespace label written after the restart', (snap) => snap.namespaces.some((n) => n.name === NS && n.labels['weft.test/after-restart'] === 'yes') || undefined);
  t.diagnostic(`label written after the restart -> agent snapshot: ${at - changed} ms (the informers reconnect after their retry delay)`);
  const s = latest!;
  for (const key of ['pods', 'services', 'endpointSlices', 'httpRoutes', 'trafficPolicies'] as const) {
    assert.deepEqual((s[key] ?? []).map((o) => o.name).sort(), (before[key] ?? []).map((o) => o.name).sort(), `${key} changed across the restart`);
  }
});

/** One Watch call with this token for this node: its first snapshot's pod names, or the status it was refused with. */
function watchOnce(token: string, node: string): Promise<{ pods: string[] } | { code: grpc.status; details: string }> {
  const client = new grpc.Client(cpAddress, grpc.credentials.createSsl(Buffer.from(cpCaPem)));
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  metadata.set('weft-node', node);
  const stream = client.makeServerStreamRequest(WATCH_PATH, encodeJson, decodeVersionedSnapshot, { node }, metadata, { deadline: Date.now() + WAIT_MS });
  return new Promise((resolve) => {
    stream.on('data', (v: ReturnType<typeof decodeVersionedSnapshot>) => {
      resolve(v.ok ? { pods: v.value.snapshot.pods.map((p) => `${p.namespace}/${p.name}`) } : { code: grpc.status.INTERNAL, details: `undecodable snapshot: ${v.error}` });
      stream.cancel();
      client.close();
    });
    stream.on('error', (e: grpc.ServiceError) => { client.close(); resolve({ code: e.code, details: e.details }); });
  });
}

test('an agent authenticates with a pod-bound ServiceAccount token from the API server (TokenRequest, audience weft), TokenReview decides; another audience, another node and a deleted pod\'s token are refused', async () => {
  const agentPod = 'weft-agent-a';
  await apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: agentPod, namespace: 'weft-system', labels: { app: 'weft-agent' } },
    spec: { serviceAccountName: 'weft-agent', nodeName: NODE, containers: [{ name: 'agent', image: 'weft.test/agent:1' }] } });
  const token = async (audience: string): Promise<string> =>
    (await kubectl(['create', 'token', 'weft-agent', '-n', 'weft-system', `--audience=${audience}`, '--bound-object-kind=Pod', `--bound-object-name=${agentPod}`, '--duration=1h'])).trim();
  const weft = await token('weft');

  const accepted = await watchOnce(weft, NODE);
  assert.ok('pods' in accepted, `the agent's token was refused: ${JSON.stringify(accepted)}`);
  assert.ok(accepted.pods.includes(`${NS}/web-1`), JSON.stringify(accepted));

  const otherAudience = await watchOnce(await token('https://kubernetes.default.svc.cluster.local'), NODE);
  assert.ok('code' in otherAudience && otherAudience.code === grpc.status.UNAUTHENTICATED, JSON.stringify(otherAudience));
  assert.match(otherAudience.details, /audience weft/);

  const otherNode = await watchOnce(weft, 'node-b');
  assert.ok('code' in otherNode && otherNode.code === grpc.status.PERMISSION_DENIED, JSON.stringify(otherNode));
  assert.match(otherNode.details, new RegExp(`for node ${NODE}, not node-b`));

  // The kubelet's final delete: the pod is gone, and so is the token's validity (it was bound to that pod's UID).
  await kubectl(['delete', 'pod', agentPod, '-n', 'weft-system', '--grace-period=0', '--force']);
  const afterDelete = await waitFor('the deleted pod\'s token to be refused', async () => {
    const r = await watchOnce(weft, NODE);
    return 'code' in r ? r : undefined;
  });
  assert.equal(afterDelete.code, grpc.status.UNAUTHENTICATED, JSON.stringify(afterDelete));
  assert.match(afterDelete.details, /did not accept the token/);
});

test('deleting the pod: it turns terminating (graceful deletion of a bound pod), then the kubelet\'s final delete removes it from the snapshot and the EndpointSlice', async () => {
  await kubectl(['delete', 'pod', 'web-1', '-n', NS, '--wait=false']);
  await snapshotWhere('the pod terminating and its endpoint not ready', (snap) =>
    (snap.pods.some((p) => p.name === 'web-1' && p.terminating === true) && sliceEndpoints(snap, 'web').every((e) => !e.ready)) || undefined);
  // The kubelet confirms the containers are gone: deletion with grace period 0.
  await kubectl(['delete', 'pod', 'web-1', '-n', NS, '--grace-period=0', '--force']);
  await snapshotWhere('the pod and its endpoint gone', (snap) =>
    (!snap.pods.some((p) => p.namespace === NS && p.name === 'web-1') && !sliceEndpoints(snap, 'web').some((e) => e.addresses.includes(POD_IP))) || undefined);
});
