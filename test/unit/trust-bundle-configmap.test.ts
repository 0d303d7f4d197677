import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as x509 from '@peculiar/x509';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { ConfigMapBundlePublisher, DEFAULT_TRUST_BUNDLE_CONFIGMAP, type ConfigMapRef } from '../../agent/controlplane/trust-bundle-configmap';
import { CONFIGMAPS, type ConfigMap, FakeKubeObjects, kubeConfig } from '../support/fake-kube-objects';

/**
 * The Kubernetes API server is a dependency here, not the thing under test: the loopback fake in
 * test/support/fake-kube-objects.ts answers GET, POST and PUT of /api/v1/namespaces/<ns>/configmaps[/<name>] as the real one does
 * (plain-text data, resourceVersion bumped on every write, a PUT carrying an old resourceVersion
 * refused, Status bodies with NotFound, AlreadyExists, Conflict and Forbidden).
 */

const TD = 'cluster.local';
const REF = DEFAULT_TRUST_BUNDLE_CONFIGMAP;
const LIST = '/api/v1/namespaces/weft-system/configmaps';
const ONE = `${LIST}/weft-trust-bundle`;

class FakeApiServer extends FakeKubeObjects<ConfigMap> {
  constructor() {
    super(CONFIGMAPS, REF);
  }

  bundle(ref: ConfigMapRef = REF): string | undefined {
    return this.get(ref)?.data?.['ca.pem'];
  }
}

function publisher(kc: KubeConfig, ref: ConfigMapRef = REF): ConfigMapBundlePublisher {
  return new ConfigMapBundlePublisher(kc.makeApiClient(CoreV1Api), ref);
}

/** A CA (root in a data directory) that publishes its bundle to the fake API server. */
async function openCa(t: TestContext, kc: KubeConfig): Promise<Awaited<ReturnType<typeof CertificateAuthority.loadOrCreate>>> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-trust-bundle-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return CertificateAuthority.loadOrCreate({ dataDir: dir, trustDomain: TD, bundlePublisher: publisher(kc) });
}

async function openCaOk(t: TestContext, kc: KubeConfig): Promise<CertificateAuthority> {
  const ca = await openCa(t, kc);
  if (!ca.ok) throw new Error(ca.error);
  return ca.value;
}

const fingerprints = (pem: string | undefined): string[] =>
  x509.PemConverter.decode(pem ?? '').map((der) => new X509Certificate(Buffer.from(der)).fingerprint256);

test('the CA publishes its bundle at start: one create, labelled, key ca.pem; loading again writes nothing', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const ca = await openCaOk(t, kc);
  assert.deepEqual(api.requests, [`GET ${ONE}`, `POST ${LIST}`]);
  const published = api.get()!;
  assert.deepEqual(published.metadata.labels, { 'app.kubernetes.io/part-of': 'weft' });
  assert.deepEqual(Object.keys(published.data ?? {}), ['ca.pem']);
  assert.equal(published.data!['ca.pem'], ca.trustBundlePem(), 'plain PEM, not base64');
  assert.equal(fingerprints(published.data!['ca.pem']).length, 1);

  api.requests.length = 0;
  assert.deepEqual(await publisher(kc).publish(ca.trustBundlePem()), { ok: true, value: undefined });
  assert.deepEqual(api.requests, [`GET ${ONE}`], 'the same bundle: read only');
  assert.equal(api.get()!.metadata.resourceVersion, published.metadata.resourceVersion);
});

test('rotation: addRoot publishes both roots (new first), retireOlderRoots only the new one, each a replace with the resourceVersion read', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const ca = await openCaOk(t, kc);
  const [oldRoot] = fingerprints(api.bundle());

  const before = api.get()!.metadata.resourceVersion;
  api.requests.length = 0;
  assert.deepEqual(await ca.addRoot(), { ok: true, value: undefined });
  assert.deepEqual(api.requests, [`GET ${ONE}`, `PUT ${ONE} @${before}`]);
  const both = fingerprints(api.bundle());
  assert.equal(both.length, 2);
  assert.equal(both[1], oldRoot, 'the old root stays trusted, after the new one');
  assert.equal(api.bundle(), ca.trustBundlePem());

  const rotated = api.get()!.metadata.resourceVersion;
  api.requests.length = 0;
  assert.deepEqual(await ca.retireOlderRoots(), { ok: true, value: undefined });
  assert.deepEqual(api.requests, [`GET ${ONE}`, `PUT ${ONE} @${rotated}`]);
  assert.deepEqual(fingerprints(api.bundle()), [both[0]]);
  assert.deepEqual(api.get()!.metadata.labels, { 'app.kubernetes.io/part-of': 'weft' });
});

test('another replica creates the ConfigMap between our read and our create: 409, read again, then replace', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  let theirs = '';
  api.beforeWrite = (verb) => {
    if (verb !== 'create') return;
    api.beforeWrite = undefined;
    theirs = api.put(REF, { 'ca.pem': 'their bundle\n' }, { labels: { 'app.kubernetes.io/part-of': 'weft' } }).metadata.resourceVersion;
  };
  const ca = await openCaOk(t, kc);
  assert.deepEqual(api.requests, [`GET ${ONE}`, `POST ${LIST}`, `GET ${ONE}`, `PUT ${ONE} @${theirs}`]);
  assert.equal(api.bundle(), ca.trustBundlePem());
});

test('five replicas publishing the same bundle at once: one create, no replace', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const dir = mkdtempSync(join(tmpdir(), 'weft-trust-bundle-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const unpublished = await CertificateAuthority.loadOrCreate({ dataDir: dir, trustDomain: TD });
  assert.ok(unpublished.ok);
  const bundle = unpublished.value.trustBundlePem();
  const results = await Promise.all([1, 2, 3, 4, 5].map(() => publisher(kc).publish(bundle)));
  assert.ok(results.every((r) => r.ok), JSON.stringify(results));
  assert.equal(api.bundle(), bundle);
  assert.equal(api.requests.filter((r) => r.startsWith('POST')).length, 5, 'every replica tried to create');
  assert.equal(api.requests.filter((r) => r.startsWith('PUT')).length, 0, 'and none rewrote what the winner wrote');
});

test('a ConfigMap changed between our read and our replace (409 Conflict) is read again; other keys, labels and annotations are kept', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  api.put(REF, { 'ca.pem': 'stale\n', 'notes.txt': 'hello' }, { labels: { team: 'mesh' }, annotations: { 'example.com/owner': 'ops' } });
  const first = api.get()!.metadata.resourceVersion;
  let second = '';
  api.beforeWrite = (verb) => {
    if (verb !== 'update') return;
    api.beforeWrite = undefined;
    second = api.put(REF, { 'ca.pem': 'stale\n', 'notes.txt': 'edited' }, { labels: { team: 'mesh' }, annotations: { 'example.com/owner': 'ops' } }).metadata.resourceVersion;
  };
  const ca = await openCaOk(t, kc);
  assert.deepEqual(api.requests, [`GET ${ONE}`, `PUT ${ONE} @${first}`, `GET ${ONE}`, `PUT ${ONE} @${second}`]);
  const published = api.get()!;
  assert.equal(published.data!['ca.pem'], ca.trustBundlePem());
  assert.equal(published.data!['notes.txt'], 'edited', 'the other writer\'s change is kept');
  assert.deepEqual(published.metadata.labels, { team: 'mesh', 'app.kubernetes.io/part-of': 'weft' });
  assert.deepEqual(published.metadata.annotations, { 'example.com/owner': 'ops' });
});

test('a ConfigMap that changes under every attempt: the publish gives up after five, saying so', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  api.put(REF, { 'ca.pem': 'x\n' });
  api.beforeWrite = () => { api.put(REF, { 'ca.pem': `${Math.random()}\n` }); };
  const result = await publisher(kc).publish('bundle\n');
  assert.equal(result.ok, false);
  assert.match((result as { error: string }).error, /^cannot publish the trust bundle to ConfigMap weft-system\/weft-trust-bundle: it changed under every one of 5 attempts \(changed since resourceVersion \d+; .*\); check what else writes it$/);
  assert.equal(api.requests.filter((r) => r.startsWith('PUT')).length, 5);
});

test('publishes asked for at once are applied in order: the last bundle is the one left', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const one = publisher(kc);
  const results = await Promise.all(['a\n', 'b\n', 'c\n'].map((b) => one.publish(b)));
  assert.ok(results.every((r) => r.ok));
  assert.equal(api.bundle(), 'c\n');
  assert.deepEqual(api.requests.map((r) => r.split(' ')[0]), ['GET', 'POST', 'GET', 'PUT', 'GET', 'PUT'], 'one at a time: no conflicts');
});

test('without RBAC for configmaps (403) the control plane does not start: the error names the ConfigMap, the permissions and the Role', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  for (const verb of ['get', 'create'] as const) {
    api.forbidden.clear();
    api.forbidden.add(verb);
    const ca = await openCa(t, kc);
    assert.equal(ca.ok, false, verb);
    const action = verb === 'get' ? 'read' : 'create';
    assert.match((ca as { error: string }).error, new RegExp(`^cannot ${action} ConfigMap weft-system/weft-trust-bundle, where the agents read the trust bundle \\(HTTP 403 Forbidden: configmaps .*is forbidden: .*\\): `
      + 'the control plane\'s ServiceAccount needs get and update on configmaps named weft-trust-bundle and create on configmaps, in namespace weft-system '
      + '\\(the Role weft-controlplane-trust-bundle in daemonset/rbac.yaml\\)$'));
    assert.equal(api.get(), undefined);
  }
  api.forbidden.clear();
  api.put(REF, { 'ca.pem': 'old\n' });
  api.forbidden.add('update');
  const noUpdate = await openCa(t, kc);
  assert.match((noUpdate as { error: string }).error, /^cannot update ConfigMap weft-system\/weft-trust-bundle, .*needs get and update on configmaps named weft-trust-bundle/);
  assert.equal(api.bundle(), 'old\n');
});

test('a rotation whose publish is refused says the root changed but agents did not see it; publishing again once allowed fixes it', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const ca = await openCaOk(t, kc);
  const published = api.bundle();
  api.forbidden.add('update');
  const rotated = await ca.addRoot();
  assert.equal(rotated.ok, false);
  assert.match((rotated as { error: string }).error, /^the new root was added and signs from now on in data directory .*, but agents still read the previous bundle: cannot update ConfigMap weft-system\/weft-trust-bundle.*Fix that, then publish again/);
  assert.equal(api.bundle(), published, 'the ConfigMap is as it was');
  assert.equal(fingerprints(ca.trustBundlePem()).length, 2, 'the rotation stands in the store');

  api.forbidden.clear();
  assert.deepEqual(await ca.publishTrustBundle(), { ok: true, value: undefined });
  assert.equal(api.bundle(), ca.trustBundlePem());
  assert.equal(fingerprints(api.bundle()).length, 2);
});

test('a ConfigMap in a namespace that does not exist: the create fails saying so', async (t) => {
  const api = new FakeApiServer();
  const kc = await api.start(t);
  const result = await publisher(kc, { namespace: 'mesh', name: 'roots' }).publish('bundle\n');
  assert.match((result as { error: string }).error, /^cannot create ConfigMap mesh\/roots, where the agents read the trust bundle \(HTTP 404 NotFound: namespaces "mesh" not found\): does namespace mesh exist\?$/);
});

test('an unreachable API server is an error naming the ConfigMap', async (t) => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const { port } = closed.address() as AddressInfo;
  await new Promise((resolve) => closed.close(resolve));
  const ca = await openCa(t, kubeConfig(`http://127.0.0.1:${port}`));
  assert.match((ca as { error: string }).error, /^cannot read ConfigMap weft-system\/weft-trust-bundle, where the agents read the trust bundle: the request did not reach the API server \(.*ECONNREFUSED.*\)/);
});
