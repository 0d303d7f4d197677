import assert from 'node:assert/strict';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as x509 from '@peculiar/x509';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { parseSecretRef, SecretRootStore, type SecretRef } from '../../agent/controlplane/ca-store-secret';
import { generateWorkloadKey } from '../../agent/identity/keys';
import { FakeKubeObjects, kubeConfig, SECRETS, type Secret } from '../support/fake-kube-objects';

/**
 * The Kubernetes API server is a dependency here, not the thing under test: the loopback fake in
 * test/support/fake-kube-objects.ts answers GET, POST and PUT of /api/v1/namespaces/<ns>/secrets[/<name>]
 * as the real one does (base64 data checked, type Opaque by default, resourceVersion bumped on every
 * write, Status bodies with NotFound, AlreadyExists, Conflict and Forbidden).
 */

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const REF: SecretRef = { namespace: 'weft-system', name: 'weft-ca' };

class FakeApiServer extends FakeKubeObjects<Secret> {
  constructor() {
    super(SECRETS, REF);
  }
}

function dataDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-ca-secret-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A control plane's CA on the Secret, as `weft controlplane` in Kubernetes mode opens it. */
async function open(t: TestContext, kc: KubeConfig, options: { ref?: SecretRef; clock?: () => Date } = {}): Promise<{ ca: Awaited<ReturnType<typeof CertificateAuthority.loadOrCreate>>; dir: string }> {
  const dir = dataDir(t);
  const rootStore = new SecretRootStore(kc.makeApiClient(CoreV1Api), options.ref ?? REF, { bundleCopyPath: join(dir, 'ca.pem') });
  const ca = await CertificateAuthority.loadOrCreate({ dataDir: dir, trustDomain: TD, rootStore, ...(options.clock ? { clock: options.clock } : {}) });
  return { ca, dir };
}

async function openOk(t: TestContext, kc: KubeConfig, options: { ref?: SecretRef } = {}): Promise<CertificateAuthority> {
  const { ca } = await open(t, kc, options);
  if (!ca.ok) throw new Error(ca.error);
  return ca.value;
}

const decode = (value: string | undefined): string => Buffer.from(value ?? '', 'base64').toString('utf8');
const certsOf = (pem: string): X509Certificate[] => x509.PemConverter.decode(pem).map((der) => new X509Certificate(Buffer.from(der)));

async function leafFrom(ca: CertificateAuthority): Promise<X509Certificate> {
  const { csrPem } = await generateWorkloadKey(WEB);
  const chain = await ca.signWorkloadCsr(csrPem, { identity: WEB });
  if (!chain.ok) throw new Error(chain.error);
  return new X509Certificate(chain.value[0]!);
}

/** The leaf was signed by one of the bundle's roots. */
function verifiesUnder(leaf: X509Certificate, bundlePem: string): boolean {
  return certsOf(bundlePem).some((root) => leaf.checkIssued(root) && leaf.verify(root.publicKey));
}

function spkiOfKey(keyPem: string): Buffer {
  return createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
}

test('first start creates the Secret; a second control plane loads the same root from it', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const { ca: opened, dir } = await open(t, kc);
  assert.ok(opened.ok, opened.ok ? '' : opened.error);
  const first = opened.value;
  assert.deepEqual(api.requests, ['GET /api/v1/namespaces/weft-system/secrets/weft-ca', 'POST /api/v1/namespaces/weft-system/secrets'], 'read, then one create, and no further write');

  const secret = api.get()!;
  assert.equal(secret.type, 'Opaque');
  assert.deepEqual(secret.metadata.labels, { 'app.kubernetes.io/part-of': 'weft' });
  assert.deepEqual(Object.keys(secret.data ?? {}).sort(), ['ca-key.pem', 'ca.pem']);
  assert.equal(decode(secret.data!['ca.pem']), first.trustBundlePem());
  const [root] = certsOf(first.trustBundlePem());
  assert.ok(spkiOfKey(decode(secret.data!['ca-key.pem'])).equals(root!.publicKey.export({ type: 'spki', format: 'der' })), 'the stored key is the root\'s');
  assert.equal(readFileSync(join(dir, 'ca.pem'), 'utf8'), first.trustBundlePem(), 'the data directory gets a copy of the bundle');
  assert.equal(existsSync(join(dir, 'ca-key.pem')), false, 'the key never touches the disk');

  const version = secret.metadata.resourceVersion;
  const second = await openOk(t, kc);
  assert.equal(api.get()!.metadata.resourceVersion, version, 'loading writes nothing');
  assert.equal(second.trustBundlePem(), first.trustBundlePem());
  const [again] = certsOf(second.trustBundlePem());
  assert.equal(again!.subject, root!.subject);
  assert.ok(again!.publicKey.export({ type: 'spki', format: 'der' }).equals(root!.publicKey.export({ type: 'spki', format: 'der' })));
  assert.ok(verifiesUnder(await leafFrom(second), first.trustBundlePem()), 'a leaf the second signs verifies under the first\'s bundle');
  assert.ok(verifiesUnder(await leafFrom(first), second.trustBundlePem()), 'and the other way round');
});

test('another replica creates the Secret between our read and our create: its root is used, not ours', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const winner = await openOk(t, kc, { ref: { namespace: 'weft-system', name: 'winner' } });
  const winnerData = { ...api.get({ namespace: 'weft-system', name: 'winner' })!.data };
  api.beforeWrite = (verb) => {
    if (verb !== 'create') return;
    api.beforeWrite = undefined;
    api.put(REF, winnerData);
  };
  api.requests.length = 0;
  const loser = await openOk(t, kc);
  assert.deepEqual(api.requests, [
    'GET /api/v1/namespaces/weft-system/secrets/weft-ca',
    'POST /api/v1/namespaces/weft-system/secrets',
    'GET /api/v1/namespaces/weft-system/secrets/weft-ca',
  ], 'the create got 409 AlreadyExists, then the winner\'s Secret was read');
  assert.equal(loser.trustBundlePem(), winner.trustBundlePem());
  assert.equal(certsOf(loser.trustBundlePem()).length, 1, 'one root, the winner\'s');
  assert.deepEqual(api.get()!.data, winnerData, 'the winner\'s Secret is untouched');
  assert.ok(verifiesUnder(await leafFrom(loser), winner.trustBundlePem()));
});

test('five replicas starting at once end up with one root', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const replicas = await Promise.all([1, 2, 3, 4, 5].map(() => openOk(t, kc)));
  const bundles = new Set(replicas.map((ca) => ca.trustBundlePem()));
  assert.equal(bundles.size, 1);
  assert.equal(decode(api.get()!.data!['ca.pem']), [...bundles][0]);
  assert.equal(api.requests.filter((r) => r.startsWith('POST')).length, 5, 'every replica tried to create');
  assert.equal(api.requests.filter((r) => r.startsWith('PUT')).length, 0, 'and none overwrote the winner');
});

test('rotation writes the two-root bundle and the new key to the Secret, then retiring leaves one', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const ca = await openOk(t, kc);
  const oldLeaf = await leafFrom(ca);
  const [oldRoot] = certsOf(ca.trustBundlePem());
  const before = api.get()!.metadata.resourceVersion;

  assert.deepEqual(await ca.addRoot(), { ok: true, value: undefined });
  const rotated = api.get()!;
  assert.notEqual(rotated.metadata.resourceVersion, before);
  assert.equal(api.requests.at(-1), `PUT /api/v1/namespaces/weft-system/secrets/weft-ca @${before}`, 'a replace carrying the resourceVersion read');
  const stored = certsOf(decode(rotated.data!['ca.pem']));
  assert.equal(stored.length, 2);
  assert.equal(stored[1]!.fingerprint256, oldRoot!.fingerprint256, 'the old root stays trusted, after the new one');
  assert.ok(spkiOfKey(decode(rotated.data!['ca-key.pem'])).equals(stored[0]!.publicKey.export({ type: 'spki', format: 'der' })), 'the stored key is the new root\'s');
  assert.deepEqual(rotated.metadata.labels, { 'app.kubernetes.io/part-of': 'weft' });

  const restarted = await openOk(t, kc);
  assert.equal(restarted.trustBundlePem(), ca.trustBundlePem());
  const newLeaf = await leafFrom(restarted);
  assert.ok(newLeaf.checkIssued(stored[0]!), 'after a restart the new root signs');
  assert.ok(verifiesUnder(oldLeaf, restarted.trustBundlePem()), 'and the old root\'s leaves still verify');

  assert.deepEqual(await restarted.retireOlderRoots(), { ok: true, value: undefined });
  assert.deepEqual(certsOf(decode(api.get()!.data!['ca.pem'])).map((c) => c.fingerprint256), [stored[0]!.fingerprint256]);
  assert.equal(verifiesUnder(oldLeaf, restarted.trustBundlePem()), false);
  assert.ok(verifiesUnder(newLeaf, restarted.trustBundlePem()));
});

test('a rotation on a Secret changed since it was read is refused (409 Conflict): nothing overwritten, signing unchanged', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const a = await openOk(t, kc);
  const b = await openOk(t, kc);
  assert.ok((await a.addRoot()).ok);
  const afterA = structuredClone(api.get()!);

  const refused = await b.addRoot();
  assert.equal(refused.ok, false);
  assert.match((refused as { error: string }).error, /Secret weft-system\/weft-ca changed since this control plane read it at resourceVersion \d+ .*nothing was written\. Restart this control plane/);
  assert.deepEqual(api.get(), afterA, 'A\'s rotation stands');
  const [bRoot] = certsOf(b.trustBundlePem());
  assert.equal(certsOf(b.trustBundlePem()).length, 1);
  assert.ok((await leafFrom(b)).checkIssued(bRoot!), 'B keeps signing with the root it had');

  const retire = await b.retireOlderRoots();
  assert.equal(retire.ok, true, 'B has one root: its bundle equals what it read, so nothing is sent');
});

test('a Secret holding only one of key and bundle is an error naming what is missing; the Secret is left as it was', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const full = await openOk(t, kc, { ref: { namespace: 'weft-system', name: 'full' } });
  const data = api.get({ namespace: 'weft-system', name: 'full' })!.data!;
  for (const [present, missing] of [['ca-key.pem', 'ca.pem'], ['ca.pem', 'ca-key.pem']] as const) {
    const half = structuredClone(api.put(REF, { [present]: data[present]! }));
    api.requests.length = 0;
    const { ca } = await open(t, kc);
    assert.equal(ca.ok, false);
    assert.match((ca as { error: string }).error, new RegExp(`Secret weft-system/weft-ca holds ${present} but not ${missing}: nothing was changed\\. Restore ${missing} from a backup`));
    assert.deepEqual(api.get(), half);
    assert.deepEqual(api.requests, ['GET /api/v1/namespaces/weft-system/secrets/weft-ca'], 'read only');
  }
  assert.ok(full);
});

test('a Secret whose key matches no certificate, or whose root expired, is refused as the data directory is', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  await openOk(t, kc, { ref: { namespace: 'weft-system', name: 'one' } });
  await openOk(t, kc, { ref: { namespace: 'weft-system', name: 'two' } });
  const one = api.get({ namespace: 'weft-system', name: 'one' })!.data!;
  const two = api.get({ namespace: 'weft-system', name: 'two' })!.data!;
  const mixed = structuredClone(api.put(REF, { 'ca-key.pem': one['ca-key.pem']!, 'ca.pem': two['ca.pem']! }));
  const { ca: mismatch } = await open(t, kc);
  assert.match((mismatch as { error: string }).error, /no certificate in ca.pem in Secret weft-system\/weft-ca matches the key in ca-key.pem in Secret weft-system\/weft-ca/);
  assert.deepEqual(api.get(), mixed);

  api.put(REF, one);
  const { ca: expired } = await open(t, kc, { clock: () => new Date(Date.now() + 11 * 365 * 86_400_000) });
  assert.match((expired as { error: string }).error, /ca.pem in Secret weft-system\/weft-ca: the root expired at/);
});

test('without RBAC for secrets (403) the error names the Secret and the permissions; nothing is created', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  api.forbidden.add('get');
  const { ca: noGet } = await open(t, kc);
  assert.match((noGet as { error: string }).error, /^cannot read Secret weft-system\/weft-ca \(HTTP 403 Forbidden: secrets "weft-ca" is forbidden: .*\): the control plane's ServiceAccount needs get and update on secrets named weft-ca and create on secrets, in namespace weft-system \(the Role weft-controlplane-ca in daemonset\/rbac.yaml\)\. Nothing was changed$/);

  api.forbidden.clear();
  api.forbidden.add('create');
  const { ca: noCreate } = await open(t, kc);
  assert.match((noCreate as { error: string }).error, /^cannot create Secret weft-system\/weft-ca \(HTTP 403 Forbidden: .*\): .*needs get and update on secrets named weft-ca and create on secrets/);
  assert.equal(api.get(), undefined);
});

test('an unreachable API server is an error naming the Secret, not a new root', async (t) => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const { port } = closed.address() as AddressInfo;
  await new Promise((resolve) => closed.close(resolve));
  const { ca } = await open(t, kubeConfig(`http://127.0.0.1:${port}`));
  assert.match((ca as { error: string }).error, /^cannot read Secret weft-system\/weft-ca: the request did not reach the API server \(.*ECONNREFUSED.*\); check the kubeconfig .* and that the API server is reachable/);
});

test('a Secret made ahead without data (by an operator, with labels and annotations) is filled in, keeping them', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  api.put(REF, {}, { labels: { team: 'mesh' }, annotations: { 'example.com/owner': 'ops' } });
  const ca = await openOk(t, kc);
  const secret = api.get()!;
  assert.equal(api.requests.filter((r) => r.startsWith('POST')).length, 0);
  assert.equal(decode(secret.data!['ca.pem']), ca.trustBundlePem());
  assert.deepEqual(secret.metadata.labels, { team: 'mesh', 'app.kubernetes.io/part-of': 'weft' });
  assert.deepEqual(secret.metadata.annotations, { 'example.com/owner': 'ops' });
});

test('a Secret in a namespace that does not exist: the create fails saying so', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const { ca } = await open(t, kc, { ref: { namespace: 'mesh-ca', name: 'root' } });
  assert.match((ca as { error: string }).error, /^cannot create Secret mesh-ca\/root \(HTTP 404 NotFound: namespaces "mesh-ca" not found\): does namespace mesh-ca exist\?$/);
});

test('--ca-secret takes NAMESPACE/NAME', () => {
  assert.deepEqual(parseSecretRef('weft-system/weft-ca'), { ok: true, value: { namespace: 'weft-system', name: 'weft-ca' } });
  assert.deepEqual(parseSecretRef('mesh/ca.root'), { ok: true, value: { namespace: 'mesh', name: 'ca.root' } });
  for (const bad of ['weft-ca', 'a/b/c', 'Weft/ca', 'ns/', '/ca', 'ns/Root']) assert.equal(parseSecretRef(bad).ok, false, bad);
});
