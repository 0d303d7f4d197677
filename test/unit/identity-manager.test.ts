import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import pino from 'pino';
import { CertificateAuthority, type ServingCertificate } from '../../agent/controlplane/ca';
import { BootstrapTokenAuthenticator, loadOrCreateBootstrapToken } from '../../agent/controlplane/bootstrap-token';
import { addCertificateService, tlsServerCredentials } from '../../agent/controlplane/cert-service';
import { requestCertificate, type ControlPlaneConnection } from '../../agent/identity/cert-client';
import { ECDSA_P256, generateKeyPair, generateWorkloadKey } from '../../agent/identity/keys';
import { IdentityManager, type CertificateRequester, type WorkloadCertificate } from '../../agent/identity/manager';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const DB = 'spiffe://cluster.local/ns/shop/sa/db';

const dataDir = mkdtempSync(join(tmpdir(), 'weft-identity-manager-test-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

interface ControlPlane {
  connection: ControlPlaneConnection;
  caPem: string;
  stop(): void;
  /** Listens again on the same port, as a restarted control plane would. */
  restart(): Promise<void>;
}

let shared: Promise<{ ca: CertificateAuthority; serving: ServingCertificate; token: string }> | undefined;

function sharedCa() {
  shared ??= (async () => {
    const ca = await CertificateAuthority.loadOrCreate({ dataDir, trustDomain: 'cluster.local' });
    if (!ca.ok) throw new Error(ca.error);
    const serving = await ca.value.issueServingCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: 3600 });
    return { ca: ca.value, serving, token: loadOrCreateBootstrapToken(dataDir) };
  })();
  return shared;
}

/** A real CA behind the real gRPC certificate service on 127.0.0.1: WEB and API run on node-a, DB on node-b. */
async function startControlPlane(t: { after(fn: () => void): void }): Promise<ControlPlane> {
  const { ca, serving, token } = await sharedCa();
  let server: grpc.Server | undefined;
  const listen = async (port: number) => {
    server = new grpc.Server();
    addCertificateService(server, {
      ca,
      authenticator: new BootstrapTokenAuthenticator(token),
      podsProvider: () => [
        { namespace: 'shop', serviceAccount: 'web', nodeName: 'node-a' },
        { namespace: 'shop', serviceAccount: 'api', nodeName: 'node-a' },
        { namespace: 'shop', serviceAccount: 'db', nodeName: 'node-b' },
      ],
    });
    const s = server;
    return new Promise<number>((resolve, reject) =>
      s.bindAsync(`127.0.0.1:${port}`, tlsServerCredentials(serving), (error, bound) => (error ? reject(error) : resolve(bound))));
  };
  const port = await listen(0);
  const stop = () => {
    server?.forceShutdown();
    server = undefined;
  };
  t.after(stop);
  return {
    connection: { address: `127.0.0.1:${port}`, caPem: ca.trustBundlePem(), token, node: 'node-a', deadlineMs: 2000 },
    caPem: ca.trustBundlePem(),
    stop,
    restart: async () => { await listen(port); },
  };
}

interface LogLine { level: number; msg: string; identity?: string; error?: string }

/** A debug-level logger whose lines the test reads back. */
function capturingLog(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line) as LogLine); } });
  return { log, lines };
}

const WARN = 40;
const ERROR = 50;

function managerFor(t: { after(fn: () => void): void }, request: CertificateRequester, validitySeconds: number, opts: { dropGraceMs?: number } = {}) {
  const { log, lines } = capturingLog();
  const manager = new IdentityManager({ request, validitySeconds, log, ...opts });
  t.after(() => manager.close());
  return { manager, lines };
}

function counting(connection: ControlPlaneConnection): { request: CertificateRequester; calls: () => number } {
  let calls = 0;
  return {
    request: (csrPem, validitySeconds) => {
      calls += 1;
      return requestCertificate(connection, csrPem, validitySeconds);
    },
    calls: () => calls,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, timeoutMs: number, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Signs the CSR's key with a throwaway issuer, for whatever identity the test says: a misbehaving control plane. */
async function signAs(csrPem: string, identity: string, lifetimeMs = 3_600_000): Promise<string[]> {
  const issuerKeys = await generateKeyPair();
  const leaf = await x509.X509CertificateGenerator.create({
    issuer: 'CN=test issuer',
    subject: '',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + lifetimeMs),
    publicKey: new x509.Pkcs10CertificateRequest(csrPem).publicKey,
    signingKey: issuerKeys.privateKey,
    signingAlgorithm: ECDSA_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }], true)],
  });
  return [leaf.toString('pem')];
}

test('first issuance: a key made here, a certificate for exactly the identity, chained to the CA', async (t) => {
  const controlPlane = await startControlPlane(t);
  const { manager, lines } = managerFor(t, counting(controlPlane.connection).request, 3600);
  manager.setWanted([WEB]);
  const before = Date.now();
  const certificate = await manager.whenReady(WEB, 5000);

  const leaf = new X509Certificate(certificate.chainPem[0]!);
  assert.equal(leaf.subjectAltName, `URI:${WEB}`);
  assert.ok(leaf.publicKey.equals(createPublicKey(createPrivateKey(certificate.keyPem))));
  assert.ok(leaf.verify(new X509Certificate(controlPlane.caPem).publicKey));
  assert.ok(Math.abs(certificate.notAfter.getTime() - (before + 3_600_000)) < 5_000, `notAfter ${certificate.notAfter.toISOString()}`);
  assert.equal(manager.get(WEB), certificate);

  const [status] = manager.status();
  assert.equal(status?.identity, WEB);
  assert.equal(status?.notAfter?.getTime(), certificate.notAfter.getTime());
  assert.equal(status?.lastError, undefined);
  assert.equal(status?.renewals, 0);
  const next = status!.nextAttempt!.getTime() - before;
  assert.ok(next > 0.39 * 3_600_000 && next < 0.61 * 3_600_000, `next renewal in ${next} ms`);
  assert.ok(lines.some((line) => line.msg === 'certificate issued' && line.identity === WEB));
});

test('an identity the control plane refuses: whenReady times out with the control plane\'s reason', async (t) => {
  const controlPlane = await startControlPlane(t);
  const { manager } = managerFor(t, counting(controlPlane.connection).request, 3600);
  manager.setWanted([DB]);
  await assert.rejects(manager.whenReady(DB, 1000), /no certificate for spiffe:\/\/cluster.local\/ns\/shop\/sa\/db after 1000 ms: .*refused to sign: node node-a may not get a certificate/);
  await assert.rejects(manager.whenReady(API, 1000), /no workload on this node runs as it/);
  assert.equal(manager.get(DB), undefined);
  assert.match(manager.status()[0]?.lastError ?? '', /PERMISSION_DENIED|refused to sign/);
});

test('renewal at about half life with a fresh key; get never returns undefined in between', async (t) => {
  const controlPlane = await startControlPlane(t);
  const { manager } = managerFor(t, counting(controlPlane.connection).request, 4);
  manager.setWanted([WEB]);
  const first = await manager.whenReady(WEB, 5000);
  const issuedAt = Date.now();
  const lifetime = first.notAfter.getTime() - issuedAt;

  const changes: { at: number; certificate: WorkloadCertificate }[] = [];
  let previous = first;
  while (Date.now() - issuedAt < 5_000) {
    const served = manager.get(WEB);
    assert.ok(served, `get returned undefined ${Date.now() - issuedAt} ms after issuance`);
    if (served !== previous) {
      changes.push({ at: Date.now() - issuedAt, certificate: served });
      previous = served;
    }
    await sleep(10);
  }
  // A renewal may land during the loop's last sleep: look once more, in the same turn as status() below.
  const last = manager.get(WEB);
  if (last && last !== previous) changes.push({ at: Date.now() - issuedAt, certificate: last });
  assert.ok(changes.length >= 2, `expected at least two renewals in 5 s of 4 s certificates, saw ${changes.length}`);
  const firstRenewal = changes[0]!;
  assert.ok(firstRenewal.at > 0.3 * lifetime && firstRenewal.at < 0.65 * lifetime, `renewed ${firstRenewal.at} ms into a ${lifetime} ms lifetime`);
  assert.notEqual(firstRenewal.certificate.chainPem[0], first.chainPem[0]);
  assert.notEqual(firstRenewal.certificate.keyPem, first.keyPem);
  assert.ok(firstRenewal.certificate.notAfter > first.notAfter);
  assert.equal(manager.status()[0]?.renewals, changes.length);
});

test('control plane stopped: renewals retry, the cached certificate is served until expiry, then get is undefined', async (t) => {
  const controlPlane = await startControlPlane(t);
  const { request, calls } = counting(controlPlane.connection);
  const { manager, lines } = managerFor(t, request, 4);
  manager.setWanted([WEB]);
  const cached = await manager.whenReady(WEB, 5000);
  controlPlane.stop();

  while (Date.now() < cached.notAfter.getTime() - 50) {
    assert.equal(manager.get(WEB), cached, 'the cached certificate is served while it is valid');
    await sleep(10);
  }
  await waitFor('the certificate to expire', 1000, () => manager.get(WEB) === undefined);
  await waitFor('the expiry to be logged', 2000, () => lines.some((line) => line.level === ERROR));

  assert.ok(calls() >= 4, `expected several attempts, saw ${calls()}`);
  const failing = lines.filter((line) => line.level === WARN);
  assert.equal(failing.length, 1, `one warning for the failing state, not one per attempt: ${JSON.stringify(failing)}`);
  assert.match(failing[0]!.error!, /unreachable/);
  assert.equal(lines.filter((line) => line.level === ERROR).length, 1);
  const [status] = manager.status();
  assert.equal(status?.notAfter, undefined);
  assert.match(status?.lastError ?? '', /unreachable/);
  assert.ok(status?.nextAttempt, 'another attempt is scheduled');
});

test('control plane back: renewal resumes by itself and the certificate never lapses', async (t) => {
  const controlPlane = await startControlPlane(t);
  const { manager, lines } = managerFor(t, counting(controlPlane.connection).request, 6);
  manager.setWanted([WEB]);
  const first = await manager.whenReady(WEB, 5000);
  controlPlane.stop();

  let lapsed = false;
  const watch = setInterval(() => { lapsed ||= manager.get(WEB) === undefined; }, 10);
  t.after(() => clearInterval(watch));
  await waitFor('a failed renewal', 5000, () => manager.status()[0]?.lastError !== undefined);
  await controlPlane.restart();
  await waitFor('the renewal to succeed', first.notAfter.getTime() - Date.now(), () => manager.status()[0]?.renewals === 1);

  assert.equal(lapsed, false, 'get returned undefined during the outage');
  assert.notEqual(manager.get(WEB)?.chainPem[0], first.chainPem[0]);
  assert.equal(manager.status()[0]?.lastError, undefined);
  assert.ok(lines.some((line) => line.msg === 'certificate request succeeded again'));
});

test('an identity no longer wanted is dropped after the grace (served meanwhile); one without a certificate at once; the others keep theirs', async (t) => {
  const controlPlane = await startControlPlane(t);
  const { request, calls } = counting(controlPlane.connection);
  const { manager, lines } = managerFor(t, request, 3600, { dropGraceMs: 300 });
  manager.setWanted([WEB, API, DB]);
  const web = await manager.whenReady(WEB, 5000);
  const api = await manager.whenReady(API, 5000);
  const pendingDb = manager.whenReady(DB, 10_000);

  manager.setWanted([WEB]);
  await assert.rejects(pendingDb, /spiffe:\/\/cluster.local\/ns\/shop\/sa\/db is no longer used by a workload on this node/);
  assert.equal(manager.get(API), api, 'a node that has not seen the workload leave may still tunnel to it: its certificate is served for the grace');
  assert.equal(manager.get(WEB), web);
  manager.setWanted([WEB]); // a repeated change does not restart the grace
  await waitFor('the grace to end', 2000, () => manager.get(API) === undefined);
  assert.deepEqual(manager.status().map((status) => status.identity), [WEB]);
  assert.ok(lines.some((line) => line.msg === 'identity dropped: no local workload runs as it any more' && line.identity === API));

  // wanted again within the grace: the same certificate, no new request
  const requests = calls();
  manager.setWanted([]);
  manager.setWanted([WEB]);
  await sleep(500);
  assert.equal(manager.get(WEB), web);
  assert.equal(calls(), requests);
});

test('a certificate for another identity is rejected and the request retried', async (t) => {
  const controlPlane = await startControlPlane(t);
  let calls = 0;
  const { manager, lines } = managerFor(t, async (csrPem, validitySeconds) => {
    calls += 1;
    return calls === 1 ? signAs(csrPem, API) : requestCertificate(controlPlane.connection, csrPem, validitySeconds);
  }, 3600);
  manager.setWanted([WEB]);
  const certificate = await manager.whenReady(WEB, 5000);
  assert.equal(calls, 2);
  assert.equal(new X509Certificate(certificate.chainPem[0]!).subjectAltName, `URI:${WEB}`);
  const rejection = lines.find((line) => line.level === WARN);
  assert.match(rejection?.error ?? '', /rejected the certificate the control plane sent for spiffe:\/\/cluster.local\/ns\/shop\/sa\/web: its URI SANs are \[spiffe:\/\/cluster.local\/ns\/shop\/sa\/api\]/);
});

test('a certificate for another key is rejected and the request retried', async (t) => {
  const controlPlane = await startControlPlane(t);
  let calls = 0;
  const { manager, lines } = managerFor(t, async (csrPem, validitySeconds) => {
    calls += 1;
    const csr = calls === 1 ? (await generateWorkloadKey(WEB)).csrPem : csrPem;
    return requestCertificate(controlPlane.connection, csr, validitySeconds);
  }, 3600);
  manager.setWanted([WEB]);
  await manager.whenReady(WEB, 5000);
  assert.equal(calls, 2);
  assert.match(lines.find((line) => line.level === WARN)?.error ?? '', /its public key is not the one in the CSR/);
});

test('close() leaves no timers, also with a request still in flight', async (t) => {
  // Only the manager's timers count: gRPC channels of earlier tests may still set their own.
  const live = new Set<NodeJS.Timeout>();
  const realSetTimeout = globalThis.setTimeout;
  const realClearTimeout = globalThis.clearTimeout;
  globalThis.setTimeout = ((callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const handle = realSetTimeout(() => { live.delete(handle); callback(...args); }, ms);
    if (new Error().stack?.includes(join('agent', 'identity', 'manager'))) live.add(handle);
    return handle;
  }) as unknown as typeof setTimeout;
  globalThis.clearTimeout = ((handle: NodeJS.Timeout | undefined) => {
    if (handle) live.delete(handle);
    realClearTimeout(handle);
  }) as typeof clearTimeout;
  t.after(() => {
    globalThis.setTimeout = realSetTimeout;
    globalThis.clearTimeout = realClearTimeout;
  });

  let answerApi: (chain: string[]) => void = () => {};
  const { manager } = managerFor(t, async (csrPem) => {
    const identity = new x509.Pkcs10CertificateRequest(csrPem).extensions
      .filter((extension) => extension instanceof x509.SubjectAlternativeNameExtension)[0]?.names.items[0]?.value;
    if (identity === WEB) return signAs(csrPem, WEB);
    if (identity === DB) throw new Error('refused');
    return new Promise<string[]>((resolve) => { answerApi = resolve; }).then(() => signAs(csrPem, API));
  }, 3600);
  manager.setWanted([WEB, DB, API]);
  await manager.whenReady(WEB, 5000);
  await waitFor('the refusal to be retried later', 2000, () => manager.status().find((s) => s.identity === DB)?.nextAttempt !== undefined);
  const pending = manager.whenReady(API, 60_000);
  assert.ok(live.size >= 3, `expected a renewal, a retry and a waiter timer, saw ${live.size}`);

  manager.close();
  await assert.rejects(pending, /identity manager is closed/);
  assert.equal(live.size, 0, 'close() cleared every timer');
  answerApi([]);
  await sleep(50);
  assert.equal(live.size, 0, 'an answer arriving after close() schedules nothing');
  assert.deepEqual(manager.status(), []);
});
