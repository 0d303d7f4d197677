/**
 * Two real `weft controlplane` processes (the CLI, production @kubernetes/client-node code, leader
 * election on by default) against a real kube-apiserver, etcd and controller manager
 * (test/support/kube-cluster.ts), both as the weft-controlplane ServiceAccount under
 * daemonset/rbac.yaml. They start at the same moment, so they also race to create the CA Secret.
 *
 * What must hold: exactly one holds the Lease weft-system/weft-controlplane; only it writes route
 * status (each replica's own log says every status write it made, at debug level: the follower's
 * count must stay 0 while it has seen the route; the leader's must not grow once the status is
 * current); after the leader is killed with SIGKILL (no release), the other takes the Lease once
 * it expires and writes the status of a route edited while nobody led; both replicas sign
 * certificates and serve discovery throughout, the survivor also while nobody leads.
 *
 * Durations (failover) are printed as diagnostics, not asserted.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CustomObjectsApi } from '@kubernetes/client-node';
import type { Snapshot } from '../../agent/config/objects';
import { operationalLogger } from '../../agent/core/log';
import { requestCertificate } from '../../agent/identity/cert-client';
import { generateWorkloadKey } from '../../agent/identity/keys';
import { watchControlPlane, type DiscoveryWatch } from '../../agent/node/discovery-client';
import { freePort, startKubeCluster, type KubeCluster } from '../support/kube-cluster';

const ROOT = join(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'dist', 'agent', 'cli.js');
const GATEWAY_CRDS = join(ROOT, 'test', 'fixtures', 'gateway-api-routes-crds.yaml');
/** Bounded waits; a failover takes the 15 s lease plus a follower's 2 s look, on a loaded host more. */
const WAIT_MS = 90_000;
const NS = 'lead10-shop';
const NODE = 'lead10-node';
const ROUTE = 'HTTPRoute lead10-shop/web-route';
const silent = operationalLogger('kube-leader-test', 'silent');

interface Replica {
  name: string;
  child: ChildProcess;
  output: string;
  address: string;
  caPem: string;
  bootstrap: string;
  watch: DiscoveryWatch | undefined;
  latest: Snapshot | undefined;
}

let cluster: KubeCluster;
let custom: CustomObjectsApi;
let dir: string;
const replicas: Replica[] = [];

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const r = await cluster.kubectl(args, stdin);
  if (r.code !== 0) assert.fail(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}
const apply = (obj: object): Promise<string> => kubectl(['apply', '--server-side', '--field-manager=weft-test', '-f', '-'], JSON.stringify(obj));

function outputs(): string {
  return replicas.map((r) => `--- ${r.name} (last 30 lines) ---\n${r.output.trimEnd().split('\n').slice(-30).join('\n')}`).join('\n');
}

async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS / 1000} s waiting for ${what}\n${outputs()}`);
    await sleep(100);
  }
}

/** The JSON log lines of a replica with this message (and, if given, this object). */
/** The replica's log lines with this message (and object), from character `from` of its output on. */
function logLines(r: Replica, msg: string, object?: string, from = 0): Record<string, unknown>[] {
  return r.output.slice(from).split('\n').filter((l) => l.startsWith('{')).map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; } })
    .filter((l) => l.msg === msg && (object === undefined || l.object === object));
}
const writes = (r: Replica, from = 0): number => logLines(r, 'status written', ROUTE, from).length;

async function holder(): Promise<string | undefined> {
  const r = await cluster.kubectl(['get', 'lease', 'weft-controlplane', '-n', 'weft-system', '-o', 'jsonpath={.spec.holderIdentity}']);
  return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
}

async function routeStatus(): Promise<{ generation: number; resourceVersion: string; accepted?: { status: string; observedGeneration?: number }; managers: string[] }> {
  const obj = await custom.getNamespacedCustomObject({ group: 'gateway.networking.k8s.io', version: 'v1', namespace: NS, plural: 'httproutes', name: 'web-route' }) as {
    metadata: { generation: number; resourceVersion: string; managedFields?: { manager: string; subresource?: string }[] };
    status?: { parents?: { controllerName: string; conditions: { type: string; status: string; observedGeneration?: number }[] }[] };
  };
  const parent = obj.status?.parents?.find((p) => p.controllerName === 'weft.dev/mesh-controller');
  const accepted = parent?.conditions.find((c) => c.type === 'Accepted');
  return {
    generation: obj.metadata.generation, resourceVersion: obj.metadata.resourceVersion, ...(accepted ? { accepted } : {}),
    managers: (obj.metadata.managedFields ?? []).filter((f) => f.subresource === 'status').map((f) => f.manager),
  };
}

/** Replaces the Lease's spec fields with the resourceVersion read, as an elector does; a 409 (a renewal in between) is tried again, at most 10 times. */
async function replaceLease(spec: Record<string, unknown>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const lease = JSON.parse(await kubectl(['get', 'lease', 'weft-controlplane', '-n', 'weft-system', '-o', 'json'])) as { spec: Record<string, unknown> };
    const r = await cluster.kubectl(['replace', '-f', '-'], JSON.stringify({ ...lease, spec: { ...lease.spec, ...spec } }));
    if (r.code === 0) return;
    if (!/Conflict|has been modified/.test(r.stderr) || attempt === 10) assert.fail(`kubectl replace of the Lease exited ${r.code}: ${r.stderr.trim()}`);
  }
}

const route = (prefix: string): object => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web-route', namespace: NS },
  spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: prefix } }], backendRefs: [{ name: 'web', port: 80 }] }] },
});

/** A certificate for the pod's identity from this replica (its own bootstrap token, as an agent outside Kubernetes). */
async function sign(r: Replica): Promise<string[]> {
  const key = await generateWorkloadKey(`spiffe://cluster.local/ns/${NS}/sa/web`);
  return requestCertificate({ address: r.address, caPem: r.caPem, token: r.bootstrap, node: NODE, deadlineMs: 30_000 }, key.csrPem, 3600);
}

async function startReplica(name: string, kubeconfig: string): Promise<Replica> {
  const port = await freePort();
  const dataDir = join(dir, `data-${name}`);
  const child = spawn(process.execPath, [CLI, 'controlplane', `--kubeconfig=${kubeconfig}`, `--listen=127.0.0.1:${port}`, `--data-dir=${dataDir}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WEFT_LOG_LEVEL: 'debug', POD_NAME: name },
  });
  const r: Replica = { name, child, output: '', address: `127.0.0.1:${port}`, caPem: '', bootstrap: '', watch: undefined, latest: undefined };
  const collect = (c: Buffer): void => { r.output += c.toString('utf8'); };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  replicas.push(r);
  let exited: number | null | undefined;
  child.once('exit', (code) => { exited = code; });
  await waitFor(`${name} to be ready`, () => {
    if (exited !== undefined) assert.fail(`${name} exited (${exited}):\n${r.output}`);
    return r.output.includes('"control plane ready"') || undefined;
  });
  r.caPem = readFileSync(join(dataDir, 'ca.pem'), 'utf8');
  r.bootstrap = readFileSync(join(dataDir, 'bootstrap.token'), 'utf8').trim();
  r.watch = watchControlPlane({ address: r.address, caPem: r.caPem, token: r.bootstrap, node: NODE }, (s) => { r.latest = s; }, silent);
  return r;
}

async function stopReplica(r: Replica): Promise<void> {
  r.watch?.close();
  if (r.child.exitCode !== null || r.child.signalCode !== null) return;
  const gone = new Promise((resolve) => r.child.once('exit', resolve));
  r.child.kill('SIGTERM');
  if (await Promise.race([gone.then(() => true), sleep(10_000).then(() => false)]) === false) {
    r.child.kill('SIGKILL');
    await gone;
  }
}

before(async () => {
  cluster = await startKubeCluster({ name: 'lead10' });
  process.stderr.write(`kube-leader: Kubernetes ${cluster.versions.kubernetes}, etcd ${cluster.versions.etcd}; startup ${JSON.stringify(cluster.startup)}\n`);
  custom = cluster.kubeConfig().makeApiClient(CustomObjectsApi);
  dir = mkdtempSync(join(tmpdir(), 'weft-lead10-'));
  for (const file of ['namespace.yaml', 'crds.yaml', 'rbac.yaml']) await kubectl(['apply', '--server-side', '-f', join(ROOT, 'daemonset', file)]);
  await kubectl(['apply', '--server-side', '-f', GATEWAY_CRDS]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', join(ROOT, 'daemonset', 'crds.yaml'), '-f', GATEWAY_CRDS]);
  const kubeconfig = await cluster.serviceAccountKubeconfig('weft-system', 'weft-controlplane', join(dir, 'controlplane.kubeconfig'));
  // Both at once: they race to create the CA Secret and the Lease.
  await Promise.all([startReplica('cp-a', kubeconfig), startReplica('cp-b', kubeconfig)]);

  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'weft.dev/mesh': 'enabled' } } });
  await apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
  await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: NS } });
  await waitFor(`namespace ${NS} to be usable`, async () => (await cluster.kubectl(['get', 'serviceaccount', 'web', '-n', NS])).code === 0 || undefined);
  await apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: NS, labels: { app: 'web' } },
    spec: { serviceAccountName: 'web', nodeName: NODE, containers: [{ name: 'web', image: 'weft.test/web:1', ports: [{ name: 'http', containerPort: 8080 }] }] } });
  await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: NS }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } });
});

after(async () => {
  for (const r of replicas) await stopReplica(r);
  await cluster?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('two replicas started together share one CA root (the Secret create race has one winner) and exactly one holds the Lease', async () => {
  const [a, b] = replicas as [Replica, Replica];
  assert.equal(a.caPem, b.caPem, 'both replicas trust the same root');
  const name = await waitFor('a holder of Lease weft-system/weft-controlplane', holder);
  assert.ok(name === 'cp-a' || name === 'cp-b', `holder ${name}`);
  const leader = replicas.find((r) => r.name === name)!;
  await waitFor(`${name} to log that it leads`, () => logLines(leader, 'leading: this replica writes status and Events').length === 1 || undefined);
  const other = replicas.find((r) => r !== leader)!;
  assert.equal(logLines(other, 'leading: this replica writes status and Events').length, 0, `${other.name} also leads\n${outputs()}`);
  const lease = JSON.parse(await kubectl(['get', 'lease', 'weft-controlplane', '-n', 'weft-system', '-o', 'json'])) as { spec: { leaseDurationSeconds: number; renewTime: string; acquireTime: string } };
  assert.equal(lease.spec.leaseDurationSeconds, 15);
  assert.match(lease.spec.renewTime, /\.\d{6}Z$/, 'renewTime is a MicroTime');
  // Renewals keep it: the holder's resourceVersion moves, the holder stays (two renew periods).
  const rv = (await kubectl(['get', 'lease', 'weft-controlplane', '-n', 'weft-system', '-o', 'jsonpath={.metadata.resourceVersion}']));
  await waitFor('a renewal of the Lease', async () => (await kubectl(['get', 'lease', 'weft-controlplane', '-n', 'weft-system', '-o', 'jsonpath={.metadata.resourceVersion}'])) !== rv || undefined);
  assert.equal(await holder(), name);
});

test('a route\'s status is written by the leader alone: the follower, which has the route too, writes nothing; once current, the status is not written again', async (t) => {
  const name = (await holder())!;
  const leader = replicas.find((r) => r.name === name)!;
  const follower = replicas.find((r) => r !== leader)!;
  await apply(route('/'));
  const status = await waitFor('HTTPRoute status Accepted for generation 1', async () => {
    const s = await routeStatus();
    return s.accepted?.status === 'True' && s.accepted.observedGeneration === s.generation ? s : undefined;
  });
  // Both replicas have built a view with the route (what they serve to agents comes from the same build that plans status).
  for (const r of replicas) await waitFor(`${r.name} serving the route`, () => (r.latest?.httpRoutes ?? []).some((x) => x.namespace === NS && x.name === 'web-route') || undefined);
  // A change that rebuilds both replicas' views without touching the route: each plans status again.
  await kubectl(['label', 'namespace', NS, 'weft.test/rebuild=1']);
  for (const r of replicas) await waitFor(`${r.name} seeing the namespace label`, () => r.latest?.namespaces.some((n) => n.name === NS && n.labels['weft.test/rebuild'] === '1') || undefined);
  await waitFor(`${leader.name} to log its status write`, () => writes(leader) >= 1 || undefined);
  const leaderWrites = writes(leader);
  t.diagnostic(`status writes of ${ROUTE}: ${leader.name} (leader) ${leaderWrites}, ${follower.name} (follower) ${writes(follower)}`);
  assert.equal(writes(follower), 0, `the follower wrote the route's status\n${outputs()}`);
  const after = await routeStatus();
  assert.equal(after.resourceVersion, status.resourceVersion, 'the route changed again after its status was current');
  assert.deepEqual(after.managers, ['weft-controlplane'], 'status fields are owned by the control plane alone');
  assert.equal(writes(leader), leaderWrites, 'the leader wrote a status that was already current');
});

test('a leader whose Lease is taken stops writing at its next renewal: a route edited then is written by nobody until a replica holds the Lease again', async () => {
  const name = (await holder())!;
  const leader = replicas.find((r) => r.name === name)!;
  const stepDowns = (r: Replica): number => r.output.split('\n').filter((l) => l.includes('"msg":"stopped leading')).length;
  const stepped = stepDowns(leader);
  // Someone else takes the Lease (a replace with the resourceVersion read, as an elector does), for an hour.
  await replaceLease({ holderIdentity: 'lead10-thief', leaseDurationSeconds: 3600 });
  await waitFor(`${name} to log that it stopped leading`, () => stepDowns(leader) > stepped || undefined);
  const writesBefore = replicas.map(writes);
  const before = await routeStatus();
  await apply(route('/v2'));
  for (const r of replicas) await waitFor(`${r.name} serving the edit`, () => JSON.stringify(r.latest?.httpRoutes ?? []).includes('/v2') || undefined);
  assert.equal(await holder(), 'lead10-thief', 'a replica took a live Lease');
  assert.deepEqual(replicas.map(writes), writesBefore, `a replica wrote status without the Lease\n${outputs()}`);
  assert.equal((await routeStatus()).accepted?.observedGeneration, before.generation, 'the edit\'s status was written while nobody led');
  // Given back (empty holder): a replica takes it at its next look and writes the edit's status.
  await replaceLease({ holderIdentity: '', leaseDurationSeconds: 15 });
  await waitFor('a replica holding the Lease again', async () => { const h = await holder(); return h === 'cp-a' || h === 'cp-b' ? h : undefined; });
  await waitFor('the edit\'s status', async () => { const s = await routeStatus(); return s.accepted?.observedGeneration === s.generation && s.generation > before.generation || undefined; });
});

test('after the leader is killed (SIGKILL, no release), the other takes the Lease once it expires and writes the status of a route edited meanwhile; both sign certificates and serve discovery throughout', async (t) => {
  const name = (await holder())!;
  const leader = replicas.find((r) => r.name === name)!;
  const survivor = replicas.find((r) => r !== leader)!;
  // Both serve before: a certificate from each, for the pod on the node.
  for (const r of replicas) assert.ok((await sign(r)).length >= 1, `${r.name} signed nothing`);

  // The survivor may have led (and written) in an earlier test, whichever replica took the Lease
  // back there: what it logs from now on is what this test judges.
  const mark = survivor.output.length;
  const killed = Date.now();
  leader.watch?.close();
  leader.child.kill('SIGKILL');
  await new Promise((resolve) => (leader.child.exitCode !== null || leader.child.signalCode !== null ? resolve(null) : leader.child.once('exit', resolve)));
  const generation = (await routeStatus()).generation + 1;
  await apply(route('/api'));
  // Nobody leads yet (the lease has not expired): the survivor still signs and serves the edit.
  const gap = (await holder()) === name;
  assert.ok((await sign(survivor)).length >= 1, `${survivor.name} stopped signing after the leader died`);
  await waitFor(`${survivor.name} serving the edited route`, () => JSON.stringify(survivor.latest?.httpRoutes ?? []).includes('/api') || undefined);
  t.diagnostic(`${survivor.name} signed and served the edit ${gap ? 'while the dead leader still held the Lease' : 'after taking the Lease'}`);

  await waitFor(`${survivor.name} to hold the Lease`, async () => (await holder()) === survivor.name || undefined);
  const took = Date.now() - killed;
  // The API server has the new holder before this process has the survivor's log line saying so
  // (its output comes through a pipe): wait for the line, then judge it.
  await waitFor(`${survivor.name} to log that it leads`, () => logLines(survivor, 'leading: this replica writes status and Events', undefined, mark).length >= 1 || undefined);
  const led = logLines(survivor, 'leading: this replica writes status and Events', undefined, mark);
  assert.equal(led.length, 1);
  assert.equal(led[0]!.previous, name, 'the survivor took the Lease over from the dead leader');
  const status = await waitFor(`HTTPRoute status Accepted for generation ${generation}`, async () => {
    const s = await routeStatus();
    return s.generation === generation && s.accepted?.status === 'True' && s.accepted.observedGeneration === generation ? s : undefined;
  });
  t.diagnostic(`failover: SIGKILL -> ${survivor.name} holds the Lease ${took} ms, -> generation ${generation}'s status written ${Date.now() - killed} ms`);
  // The API server has the status before the writer has the answer and logs it.
  await waitFor(`${survivor.name} to log its status write`, () => writes(survivor, mark) >= 1 || undefined);
  // It had the edited route in its view since long before it took the Lease: had its writer been
  // active as a follower it would have written then. Its log, in order, says it wrote only after leading.
  const lines = survivor.output.slice(mark).split('\n');
  const ledAt = lines.findIndex((l) => l.includes('"leading: this replica writes status and Events"'));
  const firstWrite = lines.findIndex((l) => l.includes('"status written"') && l.includes(ROUTE));
  assert.ok(ledAt >= 0 && firstWrite > ledAt, `${survivor.name} wrote the route's status (log line ${firstWrite}) before it led (line ${ledAt})\n${outputs()}`);
  const lease = JSON.parse(await kubectl(['get', 'lease', 'weft-controlplane', '-n', 'weft-system', '-o', 'json'])) as { spec: { leaseTransitions: number } };
  assert.ok(lease.spec.leaseTransitions >= 1, `leaseTransitions ${lease.spec.leaseTransitions}`);
  assert.deepEqual(status.managers, ['weft-controlplane']);
  assert.ok((await sign(survivor)).length >= 1, `${survivor.name} stopped signing after it took the Lease`);
});

test('a replica stopped cleanly releases the Lease (empty holder)', async () => {
  const survivor = replicas.find((r) => r.child.exitCode === null && r.child.signalCode === null)!;
  assert.equal(await holder(), survivor.name);
  await stopReplica(survivor);
  assert.match(survivor.output, /released the Lease/);
  assert.equal(await holder(), undefined, 'the holder is empty after a clean stop');
});
