import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { BootstrapTokenAuthenticator, loadOrCreateBootstrapToken } from '../../agent/controlplane/bootstrap-token';
import { addCertificateService, tlsServerCredentials } from '../../agent/controlplane/cert-service';
import { CREATE_CERTIFICATE_PATH } from '../../agent/controlplane/istio-ca-wire';
import { CertificateRequestError, requestCertificate, type ControlPlaneConnection } from '../../agent/identity/cert-client';
import { generateWorkloadKey } from '../../agent/identity/keys';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const DB = 'spiffe://cluster.local/ns/shop/sa/db';

const dataDir = mkdtempSync(join(tmpdir(), 'weft-cert-service-test-'));
const server = new grpc.Server();
let connection: ControlPlaneConnection & { caPem: string; token: string };

before(async () => {
  const ca = await CertificateAuthority.loadOrCreate({ dataDir, trustDomain: 'cluster.local' });
  if (!ca.ok) throw new Error(ca.error);
  const token = loadOrCreateBootstrapToken(dataDir);
  addCertificateService(server, {
    ca: ca.value,
    authenticator: new BootstrapTokenAuthenticator(token),
    podsProvider: () => [
      { namespace: 'shop', serviceAccount: 'web', nodeName: 'node-a' },
      { namespace: 'shop', serviceAccount: 'db', nodeName: 'node-b' },
    ],
  });
  const serving = await ca.value.issueServingCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: 3600 });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', tlsServerCredentials(serving), (error, bound) => (error ? reject(error) : resolve(bound))));
  connection = { address: `127.0.0.1:${port}`, caPem: ca.value.trustBundlePem(), token, node: 'node-a', deadlineMs: 5000 };
});

after(() => {
  server.forceShutdown();
  rmSync(dataDir, { recursive: true, force: true });
});

async function refusal(pending: Promise<unknown>): Promise<CertificateRequestError> {
  const error = await pending.then(() => assert.fail('expected a refusal'), (e: unknown) => e);
  assert.ok(error instanceof CertificateRequestError, String(error));
  return error;
}

test('an agent on node A gets a certificate for an identity with a pod on node A', async () => {
  const { keyPem, csrPem } = await generateWorkloadKey(WEB);
  const chain = await requestCertificate(connection, csrPem, 3600);
  assert.equal(chain.length, 2);
  const leaf = new X509Certificate(chain[0]!);
  assert.equal(leaf.subjectAltName, `URI:${WEB}`);
  assert.ok(leaf.checkIssued(new X509Certificate(connection.caPem)));
  assert.ok(leaf.publicKey.equals(createPublicKey(createPrivateKey(keyPem))));
  const lifetime = new Date(leaf.validTo).getTime() - Date.now();
  assert.ok(lifetime <= 3600_000 && lifetime > 3500_000, `lifetime ${lifetime} ms`);
});

test('an identity whose pods are on node B is refused to node A, naming both', async () => {
  const error = await refusal(requestCertificate(connection, (await generateWorkloadKey(DB)).csrPem, 3600));
  assert.equal(error.code, 'PERMISSION_DENIED');
  assert.match(error.message, /node node-a may not get a certificate for spiffe:\/\/cluster.local\/ns\/shop\/sa\/db: .*its pods are on node-b/);
});

test('a wrong bootstrap token is UNAUTHENTICATED', async () => {
  const error = await refusal(requestCertificate({ ...connection, token: 'not-the-token' }, (await generateWorkloadKey(WEB)).csrPem, 3600));
  assert.equal(error.code, 'UNAUTHENTICATED');
  assert.match(error.message, /bootstrap token does not match.*--token-file/);
});

test('a garbage CSR is INVALID_ARGUMENT', async () => {
  const error = await refusal(requestCertificate(connection, 'garbage', 3600));
  assert.equal(error.code, 'INVALID_ARGUMENT');
  assert.match(error.message, /not a PEM-encoded PKCS#10/);
});

test('a CSR whose URI SAN is not a SPIFFE ID is INVALID_ARGUMENT', async () => {
  const error = await refusal(requestCertificate(connection, (await generateWorkloadKey('https://shop.example/web')).csrPem, 3600));
  assert.equal(error.code, 'INVALID_ARGUMENT');
  assert.match(error.message, /URI SAN is not a workload SPIFFE ID: .*must start with spiffe:\/\//);
});

test('a validity beyond the maximum is INVALID_ARGUMENT', async () => {
  const error = await refusal(requestCertificate(connection, (await generateWorkloadKey(WEB)).csrPem, 30 * 86_400));
  assert.equal(error.code, 'INVALID_ARGUMENT');
  assert.match(error.message, /validity_duration 2592000s is outside 1\.\.604800s/);
});

test('the agent refuses a control plane whose certificate is not from the given CA', async (t) => {
  const otherDir = mkdtempSync(join(tmpdir(), 'weft-cert-service-other-'));
  t.after(() => rmSync(otherDir, { recursive: true, force: true }));
  const other = await CertificateAuthority.loadOrCreate({ dataDir: otherDir, trustDomain: 'cluster.local' });
  assert.ok(other.ok);
  const error = await refusal(requestCertificate({ ...connection, caPem: other.value.trustBundlePem() }, (await generateWorkloadKey(WEB)).csrPem, 3600));
  assert.equal(error.code, 'UNAVAILABLE');
  assert.match(error.message, /failed TLS verification .*--ca-file/);
});

test('undecodable request bytes are INVALID_ARGUMENT, not INTERNAL', async () => {
  const client = new grpc.Client(connection.address, grpc.credentials.createSsl(Buffer.from(connection.caPem)));
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${connection.token}`);
  metadata.set('weft-node', 'node-a');
  const status = await new Promise<grpc.ServiceError | null>((resolve) =>
    client.makeUnaryRequest(CREATE_CERTIFICATE_PATH, (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, Buffer.from('0a05', 'hex'), metadata, (error) => resolve(error)));
  client.close();
  assert.equal(status?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(status?.details ?? '', /malformed IstioCertificateRequest: field runs past the end/);
});
