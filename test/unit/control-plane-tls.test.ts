import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { tlsServerCredentials } from '../../agent/controlplane/cert-service';
import { GrpcChannel, type GrpcError } from '../../agent/core/grpc-client';
import { GrpcStatus } from '../../agent/core/grpc-status';
import { controlPlaneTls, IP_DIAL_SERVER_NAME, parseControlPlaneAddress, splitAddress } from '../../agent/identity/control-plane-tls';

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

/** One call through the agent's own client (core/grpc-client.ts), as the certificate and discovery clients make them. */
async function echo(address: string, caPem: string): Promise<Buffer> {
  const channel = new GrpcChannel(controlPlaneTls(address, caPem));
  try {
    return await channel.unary('/weft.test.Echo/Echo', Buffer.from('ping'), {}, 5_000);
  } finally {
    channel.close();
  }
}

test('splitAddress takes the host of host:port, [v6]:port and a bare address', () => {
  const cases: [string, string][] = [
    ['127.0.0.1:15012', '127.0.0.1'],
    ['weft-controlplane.weft-system.svc:15012', 'weft-controlplane.weft-system.svc'],
    ['[fd00::1]:15012', 'fd00::1'],
    ['[fd00::1]', 'fd00::1'],
    ['fd00::1', 'fd00::1'],
    ['localhost', 'localhost'],
  ];
  for (const [address, host] of cases) assert.equal(splitAddress(address).host, host, address);
  assert.deepEqual(splitAddress('[fd00::1]:15012'), { host: 'fd00::1', port: 15012 });
  assert.deepEqual(splitAddress('localhost'), { host: 'localhost', port: 443 });
  assert.deepEqual(splitAddress('fd00::1'), { host: 'fd00::1', port: 443 });
});

test('a --control-plane address without a valid port is refused by name', () => {
  for (const bad of ['127.0.0.1:', '127.0.0.1:0', '127.0.0.1:70000', 'host:12ab', '[fd00::1]:99999', ':15012']) {
    assert.throws(() => parseControlPlaneAddress(bad), /--control-plane .*port of 1-65535/, bad);
  }
  assert.throws(() => parseControlPlaneAddress('bad host:15012'), /"bad host" is not a host name or an IP address/);
  assert.deepEqual(parseControlPlaneAddress('weft-controlplane.weft-system.svc:15012'), { host: 'weft-controlplane.weft-system.svc', port: 15012 });
  assert.deepEqual(parseControlPlaneAddress('[fd00::1]:15012'), { host: 'fd00::1', port: 15012 });
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
  await assert.rejects(echo(`127.0.0.1:${port}`, caPem), (e: GrpcError) => {
    assert.equal(e.code, GrpcStatus.UNAVAILABLE);
    assert.match(e.details, /IP: 127\.0\.0\.1 is not in the cert's list/);
    return true;
  });
});

test('dialed by name: verified by that name as before', async (t) => {
  const { port, caPem } = await serve(t, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  assert.equal((await echo(`localhost:${port}`, caPem)).toString(), 'ping');
  const wrong = await serve(t, { dnsNames: ['elsewhere.example'], ipAddresses: [] });
  await assert.rejects(echo(`localhost:${wrong.port}`, wrong.caPem), (e: GrpcError) => e.code === GrpcStatus.UNAVAILABLE && /localhost/.test(e.details));
});
