import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { AuthenticationV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Snapshot } from '../../agent/config/objects';
import { emptySnapshot } from '../../agent/config/objects';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { addCertificateService, tlsServerCredentials } from '../../agent/controlplane/cert-service';
import { SnapshotFeed } from '../../agent/controlplane/discovery-feed';
import { addDiscoveryService } from '../../agent/controlplane/discovery-service';
import { startControlPlane, type ControlPlane } from '../../agent/controlplane/server';
import { AGENT_TOKEN_AUDIENCE, TokenReviewAuthenticator } from '../../agent/controlplane/tokenreview-auth';
import { operationalLogger } from '../../agent/core/log';
import { CertificateRequestError, requestCertificate } from '../../agent/identity/cert-client';
import { generateWorkloadKey } from '../../agent/identity/keys';
import { CREDENTIAL_MAX_AGE_MS, credentialFile, readAgentCredentials } from '../../agent/node/credential-files';
import { watchControlPlane } from '../../agent/node/discovery-client';

/**
 * The agent's token and trust bundle are files the kubelet replaces while the agent runs: the
 * projected ServiceAccount token rotates, the mounted trust-bundle ConfigMap changes when the CA
 * rotates. These tests replace them as the kubelet does (a new timestamped directory, then the
 * `..data` symlink renamed over) and check that the next request or reconnect uses the new file.
 * The control plane is real (gRPC over TLS); the API server behind TokenReview is a loopback fake.
 */

const WAIT_MS = 8000;
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const AGENT = 'system:serviceaccount:weft-system:weft-agent';
const silent = operationalLogger('credential-rotation-test', 'silent');

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-credential-rotation-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A volume as the kubelet's atomic writer lays it out: `name -> ..data/name`, `..data -> ..<timestamp>`. */
class KubeletVolume {
  private generation = 0;

  constructor(readonly dir: string, private readonly name: string) {
    mkdirSync(dir, { recursive: true });
  }

  get path(): string {
    return join(this.dir, this.name);
  }

  write(content: string): void {
    const generation = `..2030_01_01_00_00_${String(++this.generation).padStart(2, '0')}`;
    mkdirSync(join(this.dir, generation));
    writeFileSync(join(this.dir, generation, this.name), content);
    symlinkSync(generation, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (this.generation === 1) symlinkSync(join('..data', this.name), this.path);
  }
}

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** The API server's TokenReview: tokens it issued (audience weft, bound to a pod on node-a) until they expire. */
async function fakeTokenReview(t: TestContext): Promise<{ api: AuthenticationV1Api; valid: Set<string>; reviewed: string[] }> {
  const valid = new Set<string>();
  const reviewed: string[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    let raw = '';
    request.on('data', (chunk) => { raw += chunk; });
    request.on('end', () => {
      const { spec } = JSON.parse(raw) as { spec: { token: string; audiences?: string[] } };
      reviewed.push(spec.token);
      const status = valid.has(spec.token) && (spec.audiences ?? []).includes(AGENT_TOKEN_AUDIENCE)
        ? { authenticated: true, audiences: [AGENT_TOKEN_AUDIENCE], user: { username: AGENT, extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } } }
        : { authenticated: false, error: '[invalid bearer token, service account token has expired]' };
      response.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', status }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'controlplane', token: 'controlplane-token' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'controlplane' }],
    currentContext: 'fake',
  });
  return { api: kc.makeApiClient(AuthenticationV1Api), valid, reviewed };
}

async function signed(connection: Parameters<typeof requestCertificate>[0]): Promise<X509Certificate> {
  const chain = await requestCertificate(connection, (await generateWorkloadKey(WEB)).csrPem, 3600);
  return new X509Certificate(chain[0]!);
}

test('a rotated projected token is presented on the next certificate request and the next discovery reconnect', async (t) => {
  const dir = scratch(t);
  const review = await fakeTokenReview(t);
  const ca = await CertificateAuthority.loadOrCreate({ dataDir: join(dir, 'cp'), trustDomain: 'cluster.local' });
  assert.ok(ca.ok);
  const authenticator = new TokenReviewAuthenticator(review.api);
  const server = new grpc.Server();
  t.after(() => server.forceShutdown());
  addCertificateService(server, { ca: ca.value, authenticator, podsProvider: () => [{ namespace: 'shop', serviceAccount: 'web', nodeName: 'node-a' }] });
  const discovery = addDiscoveryService(server, { authenticator, feed: new SnapshotFeed(emptySnapshot()) });
  const serving = await ca.value.issueServingCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: 3600 });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', tlsServerCredentials(serving), (error, bound) => (error ? reject(error) : resolve(bound))));

  const tokens = new KubeletVolume(join(dir, 'tokens'), 'weft-token');
  const bundle = new KubeletVolume(join(dir, 'trust-bundle'), 'ca.pem');
  tokens.write('token-1');
  bundle.write(ca.value.trustBundlePem());
  review.valid.add('token-1');
  let clock = 1_000_000;
  const credentials = readAgentCredentials(tokens.path, bundle.path, { now: () => clock });
  const connection = { address: `127.0.0.1:${port}`, node: 'node-a', deadlineMs: WAIT_MS, ...credentials };

  assert.equal((await signed(connection)).subjectAltName, `URI:${WEB}`);
  assert.equal(review.reviewed.at(-1), 'token-1');

  // The kubelet writes a fresh token; the old one expires.
  tokens.write('token-2');
  review.valid.clear();
  review.valid.add('token-2');
  clock += CREDENTIAL_MAX_AGE_MS;
  assert.equal((await signed(connection)).subjectAltName, `URI:${WEB}`, 'signed: the new token was presented');
  assert.equal(review.reviewed.at(-1), 'token-2');

  const snapshots: Snapshot[] = [];
  const watch = watchControlPlane(connection, (s) => snapshots.push(s), silent);
  t.after(() => watch.close());
  await waitFor('the first snapshot', () => snapshots.length === 1);
  tokens.write('token-3');
  review.valid.clear();
  review.valid.add('token-3');
  clock += CREDENTIAL_MAX_AGE_MS;
  discovery.endStreams();
  await waitFor('the watch to reconnect with the new token', () => snapshots.length === 2 && watch.connected());
  assert.equal(review.reviewed.at(-1), 'token-3');

  const stale = await requestCertificate({ ...connection, token: 'token-1' }, (await generateWorkloadKey(WEB)).csrPem, 3600).then(() => undefined, (e: unknown) => e);
  assert.ok(stale instanceof CertificateRequestError && stale.code === 'UNAUTHENTICATED', 'and the control plane does refuse the expired one');
});

test('a control plane back with a new root: the refreshed trust bundle is used for the next request and the discovery reconnect', async (t) => {
  const dir = scratch(t);
  const config = join(dir, 'mesh.yaml');
  writeFileSync(config, 'apiVersion: v1\nkind: Namespace\nmetadata: { name: shop, labels: { weft.dev/mesh: enabled } }\n---\n'
    + 'apiVersion: v1\nkind: Pod\nmetadata: { name: web-1, namespace: shop }\nspec: { nodeName: node-a, serviceAccountName: web }\nstatus: { podIP: 10.0.0.1 }\n');
  const start = (dataDir: string, listen: string): Promise<ControlPlane> =>
    startControlPlane({ listen, dataDir, source: { kind: 'file', path: config }, servingNames: ['127.0.0.1'] });
  let cp = await start(join(dir, 'a'), '127.0.0.1:0');
  t.after(() => cp.close());
  const address = cp.address;

  const tokens = new KubeletVolume(join(dir, 'tokens'), 'token');
  const bundle = new KubeletVolume(join(dir, 'trust-bundle'), 'ca.pem');
  tokens.write(readFileSync(join(dir, 'a', 'bootstrap.token'), 'utf8'));
  bundle.write(readFileSync(join(dir, 'a', 'ca.pem'), 'utf8'));
  let clock = 1_000_000;
  const credentials = readAgentCredentials(tokens.path, bundle.path, { now: () => clock });
  const connection = { address, node: 'node-a', deadlineMs: WAIT_MS, ...credentials };
  const rootA = new X509Certificate(readFileSync(join(dir, 'a', 'ca.pem')));
  assert.ok((await signed(connection)).checkIssued(rootA));
  const snapshots: Snapshot[] = [];
  const watch = watchControlPlane(connection, (s) => snapshots.push(s), silent);
  t.after(() => watch.close());
  await waitFor('the first snapshot', () => snapshots.length === 1);

  // The same address, the same token, another root: only the trust bundle differs.
  await cp.close();
  mkdirSync(join(dir, 'b'), { mode: 0o700 });
  copyFileSync(join(dir, 'a', 'bootstrap.token'), join(dir, 'b', 'bootstrap.token'));
  cp = await start(join(dir, 'b'), address);
  const rootB = new X509Certificate(readFileSync(join(dir, 'b', 'ca.pem')));
  assert.notEqual(rootB.fingerprint256, rootA.fingerprint256);
  bundle.write(readFileSync(join(dir, 'b', 'ca.pem'), 'utf8'));
  clock += CREDENTIAL_MAX_AGE_MS;

  assert.ok((await signed(connection)).checkIssued(rootB), 'the request verified the new control plane with the new bundle');
  await waitFor('the watch to reconnect, verifying with the new bundle', () => snapshots.length === 2 && watch.connected());
});

test('the names agents dial (--serving-name) are in the control plane\'s serving certificate', async (t) => {
  const dir = scratch(t);
  const config = join(dir, 'mesh.yaml');
  writeFileSync(config, 'apiVersion: v1\nkind: Namespace\nmetadata: { name: shop }\n');
  const cp = await startControlPlane({ listen: '127.0.0.1:0', dataDir: join(dir, 'data'), source: { kind: 'file', path: config }, extraServingNames: ['weft-controlplane.weft-system.svc'] });
  t.after(() => cp.close());
  const port = Number(cp.address.split(':').at(-1));
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'weft-controlplane.weft-system.svc', ALPNProtocols: ['h2'], ca: readFileSync(join(dir, 'data', 'ca.pem')) });
  t.after(() => socket.destroy());
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const sans = (socket.getPeerCertificate().subjectaltname ?? '').split(', ');
  assert.ok(sans.includes('DNS:weft-controlplane.weft-system.svc'), sans.join(', '));
  assert.ok(sans.includes('IP Address:127.0.0.1'), 'the defaults stay');
});

test('a credential file is read again once its last read is older than the cache, and keeps its last good value when it goes bad', async (t) => {
  const dir = scratch(t);
  const volume = new KubeletVolume(join(dir, 'tokens'), 'token');
  assert.throws(() => credentialFile(volume.path, 'token file', (s) => ({ ok: true, value: s })), /^Error: cannot read the token file .*\/token: ENOENT/);
  volume.write('one\n');
  let clock = 0;
  const parse = (text: string) => (text.trim() === '' ? { ok: false as const, error: 'it is empty' } : { ok: true as const, value: text.trim() });
  const token = credentialFile(volume.path, 'token file', parse, { maxAgeMs: 1000, now: () => clock });
  assert.equal(token(), 'one');
  volume.write('two\n');
  clock = 999;
  assert.equal(token(), 'one', 'within the cache: not read again');
  clock = 1000;
  assert.equal(token(), 'two');
  volume.write('\n');
  clock = 2000;
  assert.equal(token(), 'two', 'an empty file keeps the last good token');
  rmSync(join(dir, 'tokens'), { recursive: true });
  clock = 3000;
  assert.equal(token(), 'two', 'so does a missing one');

  const empty = new KubeletVolume(join(dir, 'empty'), 'token');
  empty.write('  \n');
  assert.throws(() => readAgentCredentials(empty.path, volume.path), /cannot read the token file .*: it is empty/);
  const notPem = new KubeletVolume(join(dir, 'ca'), 'ca.pem');
  notPem.write('hello');
  const good = new KubeletVolume(join(dir, 'good'), 'token');
  good.write('t');
  assert.throws(() => readAgentCredentials(good.path, notPem.path), /cannot read the control plane CA file .*: it holds no PEM certificate/);
});
