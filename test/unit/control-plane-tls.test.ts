import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { tlsServerCredentials } from '../../agent/controlplane/cert-service';
import { controlPlaneTls, dialedHost, IP_DIAL_SERVER_NAME } from '../../agent/identity/control-plane-tls';

/**
 * The agent's channels to the control plane (certificates and discovery) dialed by IP: no server
 * name that is an IP address (RFC 6066; Node's DEP0123 warning), and the certificate still checked
 * against the dialed IP, never against the fixed name sent instead.
 */

const identity = (b: Buffer) => b;
const ECHO: grpc.ServiceDefinition = {
  Echo: { path: '/weft.test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};

/** A gRPC server whose certificate, from a fresh CA, names `dnsNames` and `ipAddresses`. Returns its port and the CA's bundle. */
async function serve(t: TestContext, sans: { dnsNames: string[]; ipAddresses: string[] }): Promise<{ port: number; caPem: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-cptls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.loadOrCreate({ dataDir: dir, trustDomain: 'cluster.local' });
  assert.ok(ca.ok);
  const server = new grpc.Server();
  t.after(() => server.forceShutdown());
  server.addService(ECHO, { Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) });
  const serving = await ca.value.issueServingCertificate({ ...sans, ttlSeconds: 3600 });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', tlsServerCredentials(serving), (e, p) => (e ? reject(e) : resolve(p))));
  return { port, caPem: ca.value.trustBundlePem() };
}

function echo(address: string, caPem: string): Promise<Buffer> {
  const tls = controlPlaneTls(address, caPem);
  const client = new grpc.Client(address, tls.credentials, tls.options);
  return new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest('/weft.test.Echo/Echo', identity, identity, Buffer.from('ping'), new grpc.Metadata(), { deadline: Date.now() + 5_000 },
      (e, r) => { client.close(); return e ? reject(e) : resolve(r!); });
  });
}

test('dialedHost takes the host of host:port, [v6]:port and a bare address', () => {
  const cases: [string, string][] = [
    ['127.0.0.1:15012', '127.0.0.1'],
    ['weft-controlplane.weft-system.svc:15012', 'weft-controlplane.weft-system.svc'],
    ['[fd00::1]:15012', 'fd00::1'],
    ['[fd00::1]', 'fd00::1'],
    ['fd00::1', 'fd00::1'],
    ['localhost', 'localhost'],
  ];
  for (const [address, host] of cases) assert.equal(dialedHost(address), host, address);
});

test('dialed by IP: the call succeeds against the IP SAN, with no IP address sent as server name (no DEP0123 warning)', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }) => warnings.push(`${w.code ?? w.name}: ${w.message}`);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const { port, caPem } = await serve(t, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  assert.equal((await echo(`127.0.0.1:${port}`, caPem)).toString(), 'ping');
  await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  assert.deepEqual(warnings.filter((w) => w.startsWith('DEP0123')), []);
  // The check can fail: the plain credentials grpc-js builds itself send the IP as server name.
  const plain = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(caPem)));
  await new Promise<void>((resolve, reject) => plain.makeUnaryRequest('/weft.test.Echo/Echo', identity, identity, Buffer.from('x'), new grpc.Metadata(), { deadline: Date.now() + 5_000 },
    (e) => { plain.close(); return e ? reject(e) : resolve(); }));
  await new Promise((r) => setImmediate(r));
  assert.equal(warnings.filter((w) => w.startsWith('DEP0123')).length, 1, `grpc-js' own credentials do warn: ${warnings.join('; ')}`);
});

test(`dialed by IP: a certificate without that IP is refused, even one that names ${IP_DIAL_SERVER_NAME}`, async (t) => {
  const { port, caPem } = await serve(t, { dnsNames: [IP_DIAL_SERVER_NAME, 'localhost'], ipAddresses: ['10.255.0.9'] });
  await assert.rejects(echo(`127.0.0.1:${port}`, caPem), (e: grpc.ServiceError) => {
    assert.equal(e.code, grpc.status.UNAVAILABLE);
    assert.match(e.details, /IP: 127\.0\.0\.1 is not in the cert's list/);
    return true;
  });
});

test('dialed by name: verified by that name as before', async (t) => {
  const { port, caPem } = await serve(t, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  assert.equal((await echo(`localhost:${port}`, caPem)).toString(), 'ping');
  const wrong = await serve(t, { dnsNames: ['elsewhere.example'], ipAddresses: [] });
  await assert.rejects(echo(`localhost:${wrong.port}`, wrong.caPem), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE && /localhost/.test(e.details));
});
