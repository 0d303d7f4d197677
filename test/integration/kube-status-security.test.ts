/**
 * Status and Events of AuthorizationPolicy, PeerAuthentication and ProxyConfig (issue 10, point 3),
 * written by the real `weft controlplane` (its production @kubernetes/client-node code, as the
 * weft-controlplane ServiceAccount under daemonset/rbac.yaml, so a missing permission fails here)
 * against a real kube-apiserver, etcd and controller manager (test/support/kube-cluster.ts). Each
 * object gets `Accepted` with its `observedGeneration`; an edit the CRD's schema lets through but
 * the conversion refuses gets Accepted False (reason Invalid) naming the field and a Warning Event,
 * while the others (and the broken one's last valid version) stay in the agent's snapshot; the fix
 * turns it True with the new generation.
 *
 * The schema of a PeerAuthentication and of the ProxyConfig's name refuses everything the
 * conversion refuses, so those cases are objects stored under an older, looser CRD (an upgrade
 * does not revalidate what etcd holds): the test applies such a CRD, writes the object, and puts
 * daemonset/crds.yaml back (also on failure).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import type { Snapshot } from '../../agent/config/objects';
import { operationalLogger } from '../../agent/core/log';
import { watchControlPlane, type DiscoveryWatch } from '../../agent/node/discovery-client';
import { spawnKubeControlPlane, startKubeCluster, type KubeCluster } from '../support/kube-cluster';

const ROOT = join(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'dist', 'agent', 'cli.js');
const CRDS = join(ROOT, 'daemonset', 'crds.yaml');
const WAIT_MS = 30_000;
const NS = 'shop';
const NODE = 'node-s';
const silent = operationalLogger('kube-status-security-test', 'silent');

let cluster: KubeCluster;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let dir: string;
let cp: ChildProcess | undefined;
let cpOutput = '';
let watch: DiscoveryWatch | undefined;
let latest: Snapshot | undefined;

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const r = await cluster.kubectl(args, stdin);
  if (r.code !== 0) assert.fail(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

const apply = (obj: object): Promise<string> => kubectl(['apply', '--server-side', '--field-manager=weft-test', '-f', '-'], JSON.stringify(obj));

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      assert.fail(`timed out after ${WAIT_MS / 1000} s waiting for ${what}${last !== undefined ? ` (last error: ${(last as Error).message ?? String(last)})` : ''}\n` +
        `--- control plane output (last 40 lines) ---\n${cpOutput.trimEnd().split('\n').slice(-40).join('\n')}`);
    }
    await sleep(50);
  }
}

async function snapshotWhere<T>(what: string, check: (s: Snapshot) => T | undefined | false): Promise<T> {
  return waitFor(what, () => {
    if (latest === undefined) return undefined;
    const value = check(latest);
    return value === false ? undefined : value;
  });
}

interface Accepted { type: string; status: string; reason: string; message: string; observedGeneration?: number; lastTransitionTime: string }
interface Kind { group: string; plural: string; kind: string }
const AP: Kind = { group: 'security.weft.dev', plural: 'authorizationpolicies', kind: 'AuthorizationPolicy' };
const PA: Kind = { group: 'security.weft.dev', plural: 'peerauthentications', kind: 'PeerAuthentication' };
const PC: Kind = { group: 'config.weft.dev', plural: 'proxyconfigs', kind: 'ProxyConfig' };

/** The object's generation and its Accepted condition as the API server has them. */
async function acceptedOf(kind: Kind, name: string): Promise<{ generation: number; accepted: Accepted | undefined }> {
  const obj = (kind === PC
    ? await custom.getClusterCustomObject({ group: kind.group, version: 'v1', plural: kind.plural, name })
    : await custom.getNamespacedCustomObject({ group: kind.group, version: 'v1', namespace: NS, plural: kind.plural, name })) as
    { metadata: { generation: number }; status?: { conditions?: Accepted[] } };
  return { generation: obj.metadata.generation, accepted: obj.status?.conditions?.find((c) => c.type === 'Accepted') };
}

/** Waits until the object's Accepted condition has `status` for its current generation, which must be `generation`. */
async function acceptedFor(kind: Kind, name: string, status: 'True' | 'False', generation: number): Promise<Accepted> {
  const seen = await waitFor(`${kind.kind} ${name} Accepted=${status} for generation ${generation}`, async () => {
    const got = await acceptedOf(kind, name);
    return got.accepted?.status === status && got.accepted.observedGeneration === got.generation ? got : undefined;
  });
  assert.equal(seen.generation, generation, `${kind.kind} ${name}: the generation the test wrote`);
  return seen.accepted!;
}

/** Warning Events with reason Invalid about this object. */
async function invalidEvents(kind: Kind, name: string, namespace = NS): Promise<{ message?: string; type?: string; involvedObject: { namespace?: string } }[]> {
  const list = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.kind=${kind.kind},involvedObject.name=${name},reason=Invalid` });
  return list.items;
}

/** daemonset/crds.yaml's CRD for `kind`, as a mutable object. */
function crdOf(kind: Kind): Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  for (const doc of parseAllDocuments(readFileSync(CRDS, 'utf8'))) {
    const crd = doc.toJS();
    if (crd?.kind === 'CustomResourceDefinition' && crd.spec?.names?.kind === kind.kind) return crd;
  }
  assert.fail(`no CRD for ${kind.kind} in ${CRDS}`);
}

/**
 * Runs `body` with `kind`'s CRD loosened by `loosen` (an older CRD), then puts daemonset/crds.yaml
 * back, also when `body` fails. The API server reloads a CRD's schema asynchronously, so `write`
 * (the object only the loose schema takes) is retried until the API server takes it.
 */
async function underLooseCrd(kind: Kind, loosen: (schema: Record<string, any>) => void, write: object, body: () => Promise<void>): Promise<void> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const crd = crdOf(kind);
  loosen(crd.spec.versions[0].schema.openAPIV3Schema);
  await kubectl(['apply', '--server-side', '-f', '-'], JSON.stringify(crd));
  try {
    await waitFor(`the API server to take the object the looser ${kind.kind} CRD allows`, async () => {
      const r = await cluster.kubectl(['apply', '--server-side', '--field-manager=weft-test', '-f', '-'], JSON.stringify(write));
      return r.code === 0 || undefined;
    });
    await body();
  } finally {
    await kubectl(['apply', '--server-side', '-f', CRDS]);
  }
}

before(async () => {
  cluster = await startKubeCluster({ name: 'wstat' });
  process.stderr.write(`kube-status-security: Kubernetes ${cluster.versions.kubernetes}, etcd ${cluster.versions.etcd}; startup ${JSON.stringify(cluster.startup)}\n`);
  const kc = cluster.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  dir = mkdtempSync(join(tmpdir(), 'weft-kube-status-security-'));

  for (const file of ['namespace.yaml', 'crds.yaml', 'rbac.yaml']) await kubectl(['apply', '--server-side', '-f', join(ROOT, 'daemonset', file)]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', CRDS]);

  const kubeconfig = await cluster.serviceAccountKubeconfig('weft-system', 'weft-controlplane', join(dir, 'controlplane.kubeconfig'));

  const dataDir = join(dir, 'data');
  const spawned = await spawnKubeControlPlane(CLI, kubeconfig, dataDir, (text) => { cpOutput += text; });
  cp = spawned.child;
  await waitFor('the control plane to be ready', () => {
    if (spawned.exited() !== undefined) assert.fail(`weft controlplane exited (${spawned.exited()}):\n${cpOutput}`);
    return cpOutput.includes('"control plane ready"') || undefined;
  });
  const caPem = readFileSync(join(dataDir, 'ca.pem'), 'utf8');
  const bootstrap = readFileSync(join(dataDir, 'bootstrap.token'), 'utf8').trim();
  watch = watchControlPlane({ address: spawned.address, caPem, token: bootstrap, node: NODE }, (s) => { latest = s; }, silent);

  // A meshed namespace with a pod on the agent's node that the policies select (so a per-node
  // view of the cluster carries them in full), bound as the scheduler binds.
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'weft.dev/mesh': 'enabled' } } });
  await apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
  await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: NS } });
  await waitFor('namespace shop to be usable', async () => (await cluster.kubectl(['get', 'serviceaccount', 'web', '-n', NS])).code === 0 || undefined);
  await apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: NS, labels: { app: 'web' } },
    spec: { serviceAccountName: 'web', containers: [{ name: 'web', image: 'weft.test/web:1' }] } });
  await core.createNamespacedPodBinding({ namespace: NS, name: 'web-1', body: { metadata: { name: 'web-1' }, target: { apiVersion: 'v1', kind: 'Node', name: NODE } } });
  await snapshotWhere('the pod in the agent\'s snapshot', (s) => s.pods.some((p) => p.namespace === NS && p.name === 'web-1' && p.nodeName === NODE));
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

const authorizationPolicy = (name: string, spec: object): object => ({ apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: NS }, spec });
const denyFrom = (ipBlocks: string[]): object => ({ selector: { matchLabels: { app: 'web' } }, action: 'DENY', rules: [{ from: [{ source: { ipBlocks } }] }] });
const apIn = (s: Snapshot, name: string) => s.authorizationPolicies.find((p) => p.namespace === NS && p.name === name);
const deniedBlocks = (s: Snapshot, name: string): string[] | undefined => apIn(s, name)?.rules[0]?.from?.[0]?.ipBlocks;

test('AuthorizationPolicy: Accepted True with its observedGeneration; an edit the schema takes but the conversion refuses is Accepted False (Invalid, naming the field) with one Warning Event while the others and its last valid version stay in force; the fix is Accepted True at the new generation', async () => {
  await apply(authorizationPolicy('allow-frontend', { selector: { matchLabels: { app: 'web' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }] }));
  await apply(authorizationPolicy('deny-legacy', denyFrom(['192.0.2.0/24'])));
  const allow = await acceptedFor(AP, 'allow-frontend', 'True', 1);
  assert.equal(allow.reason, 'Accepted');
  assert.match(allow.message, /^in force: ALLOW with 1 rule on the workloads labelled app=web in namespace shop$/);
  const deny = await acceptedFor(AP, 'deny-legacy', 'True', 1);
  await snapshotWhere('both policies in the agent\'s snapshot', (s) => (apIn(s, 'allow-frontend') !== undefined && deniedBlocks(s, 'deny-legacy')?.[0] === '192.0.2.0/24') || undefined);

  // 999 is no octet: the CRD's pattern (address characters) takes it, the conversion does not.
  await apply(authorizationPolicy('deny-legacy', denyFrom(['999.0.0.1'])));
  const broken = await acceptedFor(AP, 'deny-legacy', 'False', 2);
  assert.equal(broken.reason, 'Invalid');
  assert.match(broken.message, /^spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks\[0\]: .*999\.0\.0\.1/);
  assert.match(broken.message, /its last valid version stays in force until it is fixed/);
  assert.notEqual(broken.lastTransitionTime, '', 'a transition time');
  const events = await waitFor('a Warning Event about deny-legacy', async () => {
    const list = await invalidEvents(AP, 'deny-legacy');
    return list.length > 0 ? list : undefined;
  });
  assert.equal(events[0]!.type, 'Warning');
  assert.match(events[0]!.message ?? '', /ipBlocks\[0\]/);
  const s = latest!;
  assert.ok(apIn(s, 'allow-frontend'), 'the other policy is still in the snapshot');
  assert.deepEqual(deniedBlocks(s, 'deny-legacy'), ['192.0.2.0/24'], 'the broken policy\'s last valid version is still in force');
  assert.equal((await acceptedOf(AP, 'allow-frontend')).accepted?.status, 'True', 'the other policy is still Accepted');
  // What an operator sees first: the CRD's Accepted printer column.
  const table = (await kubectl(['get', 'authorizationpolicies', '-n', NS])).trim().split('\n').map((line) => line.split(/\s+/));
  const column = table[0]!.indexOf('ACCEPTED');
  assert.ok(column > 0, `an ACCEPTED column: ${table[0]!.join(' ')}`);
  assert.deepEqual(table.slice(1).map((row) => [row[0], row[column]]), [['allow-frontend', 'True'], ['deny-legacy', 'False']]);

  await apply(authorizationPolicy('deny-legacy', denyFrom(['198.51.100.0/24'])));
  const fixed = await acceptedFor(AP, 'deny-legacy', 'True', 3);
  assert.equal(fixed.reason, 'Accepted');
  assert.ok(fixed.lastTransitionTime >= broken.lastTransitionTime && broken.lastTransitionTime >= deny.lastTransitionTime, 'each flip has a transition time of its own, moving forward');
  await snapshotWhere('the fixed policy in force', (snap) => deniedBlocks(snap, 'deny-legacy')?.[0] === '198.51.100.0/24' || undefined);
  assert.equal((await invalidEvents(AP, 'deny-legacy')).length, 1, 'one Event for the one invalid generation');
});

test('PeerAuthentication: Accepted True naming its mode; one stored under a looser CRD with a port-level mode (which Weft does not enforce) is Accepted False naming the field, with an Event, and the last valid STRICT stays in force; the fix is Accepted True', async () => {
  const pa = (spec: object): object => ({ apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'web-strict', namespace: NS }, spec });
  await apply(pa({ selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' } }));
  const ok = await acceptedFor(PA, 'web-strict', 'True', 1);
  assert.equal(ok.message, 'in force: mTLS mode STRICT on the workloads labelled app=web in namespace shop');
  const strictIn = (s: Snapshot) => s.peerAuthentications.find((p) => p.namespace === NS && p.name === 'web-strict');
  await snapshotWhere('the PeerAuthentication in the snapshot', (s) => strictIn(s)?.mode === 'STRICT' || undefined);

  const portLevel = pa({ selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { 8080: { mode: 'DISABLE' } } });
  await underLooseCrd(PA, (schema) => { delete schema.properties.spec.properties.portLevelMtls.additionalProperties['x-kubernetes-validations']; }, portLevel, async () => {
    const broken = await acceptedFor(PA, 'web-strict', 'False', 2);
    assert.equal(broken.reason, 'Invalid');
    assert.match(broken.message, /^spec\.portLevelMtls\[8080\]\.mode: DISABLE for port 8080 is not enforced by Weft/);
    assert.match(broken.message, /its last valid version stays in force until it is fixed/);
    await waitFor('a Warning Event about web-strict', async () => (await invalidEvents(PA, 'web-strict')).length === 1 || undefined);
    assert.equal(strictIn(latest!)?.mode, 'STRICT', 'the last valid STRICT is still in force (an invalid edit does not open the pod to plaintext)');
  });

  await apply(pa({ selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'PERMISSIVE' } }));
  const fixed = await acceptedFor(PA, 'web-strict', 'True', 3);
  assert.match(fixed.message, /mTLS mode PERMISSIVE/);
  await snapshotWhere('the fixed PeerAuthentication in force', (s) => strictIn(s)?.mode === 'PERMISSIVE' || undefined);
  assert.equal((await invalidEvents(PA, 'web-strict')).length, 1, 'one Event for the one invalid generation');
});

test('ProxyConfig (cluster-scoped): `default` is Accepted True; an edit the conversion refuses is Accepted False naming the field, with an Event in namespace default, the last valid one in force; the fix is Accepted True; one not named `default` (under an older CRD) is not accepted and says only `default` is read', async () => {
  const pc = (name: string, spec: object): object => ({ apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name }, spec });
  await apply(pc('default', { accessLog: { level: 'errors' } }));
  const ok = await acceptedFor(PC, 'default', 'True', 1);
  assert.equal(ok.message, 'in force on every node proxy');
  await snapshotWhere('the ProxyConfig in the snapshot', (s) => s.proxyConfig?.accessLog?.level === 'errors' || undefined);

  // The schema lets this through (http://, a host part); the URL does not parse.
  await apply(pc('default', { accessLog: { level: 'denials' }, tracing: { otlpEndpoint: 'http://[otel-collector' } }));
  const broken = await acceptedFor(PC, 'default', 'False', 2);
  assert.equal(broken.reason, 'Invalid');
  assert.match(broken.message, /^spec\.tracing\.otlpEndpoint: /);
  const events = await waitFor('a Warning Event about ProxyConfig default (in namespace default)', async () => {
    const list = await invalidEvents(PC, 'default', 'default');
    return list.length > 0 ? list : undefined;
  });
  assert.equal(events[0]!.involvedObject.namespace ?? '', '', 'a cluster-scoped object has no namespace');
  assert.equal(latest!.proxyConfig?.accessLog?.level, 'errors', 'the last valid ProxyConfig stays in force');

  await apply(pc('default', { accessLog: { level: 'denials' } }));
  await acceptedFor(PC, 'default', 'True', 3);
  await snapshotWhere('the fixed ProxyConfig in force', (s) => s.proxyConfig?.accessLog?.level === 'denials' || undefined);

  await underLooseCrd(PC, (schema) => { delete schema['x-kubernetes-validations']; }, pc('mesh', { accessLog: { level: 'all' } }), async () => {
    try {
      const other = await acceptedFor(PC, 'mesh', 'False', 1);
      assert.equal(other.reason, 'Invalid');
      assert.match(other.message, /^metadata\.name: must be "default"/);
      assert.match(other.message, /only the ProxyConfig named "default" is read: this one is ignored/);
      await waitFor('a Warning Event about ProxyConfig mesh', async () => (await invalidEvents(PC, 'mesh', 'default')).length === 1 || undefined);
      assert.equal(latest!.proxyConfig?.accessLog?.level, 'denials', '`default` is what is in force');
      assert.equal((await acceptedOf(PC, 'default')).accepted?.status, 'True', '`default` is still Accepted');
    } finally {
      await kubectl(['delete', 'proxyconfig', 'mesh', '--ignore-not-found']);
    }
  });
});
