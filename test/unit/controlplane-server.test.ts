import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import type { Snapshot } from '../../agent/config/objects';
import { decodeVersionedSnapshot, encodeJson, WATCH_PATH } from '../../agent/controlplane/discovery-wire';
import { startControlPlane, type ControlPlane } from '../../agent/controlplane/server';
import { operationalLogger } from '../../agent/core/log';
import { CertificateRequestError, requestCertificate } from '../../agent/identity/cert-client';
import { generateWorkloadKey } from '../../agent/identity/keys';
import { watchControlPlane, type DiscoveryWatch } from '../../agent/node/discovery-client';

const WAIT_MS = 8000;

const pod = (name: string, sa: string, node: string, ip: string): string =>
  `apiVersion: v1\nkind: Pod\nmetadata: { name: ${name}, namespace: shop }\nspec: { nodeName: ${node}, serviceAccountName: ${sa} }\nstatus: { podIP: ${ip} }\n`;
const config = (...pods: string[]): string =>
  ['apiVersion: v1\nkind: Namespace\nmetadata: { name: shop, labels: { weft.dev/mesh: enabled } }\n', ...pods].join('---\n');

const dir = mkdtempSync(join(tmpdir(), 'weft-controlplane-test-'));
const dataDir = join(dir, 'data');
const file = join(dir, 'mesh.yaml');
const silent = operationalLogger('discovery-client-test', 'silent');
let cp: ControlPlane | undefined;
let address: string;
let token: string;
let caPem: string;
const watches: DiscoveryWatch[] = [];

const start = (listen: string): Promise<ControlPlane> =>
  startControlPlane({ listen, dataDir, source: { kind: 'file', path: file }, servingNames: ['localhost', '127.0.0.1'] });

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await sleep(20);
  }
}

function watch(node: string): { w: DiscoveryWatch; snapshots: Snapshot[] } {
  const snapshots: Snapshot[] = [];
  const w = watchControlPlane({ address, caPem, token, node }, (s) => snapshots.push(s), silent);
  watches.push(w);
  return { w, snapshots };
}

/** A raw Watch call, to see the status the server ends it with. */
function rawWatch(headers: { token: string; node: string }, requested: string): Promise<grpc.ServiceError> {
  const client = new grpc.Client(address, grpc.credentials.createSsl(Buffer.from(caPem)));
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${headers.token}`);
  metadata.set('weft-node', headers.node);
  const stream = client.makeServerStreamRequest(WATCH_PATH, encodeJson, decodeVersionedSnapshot, { node: requested }, metadata, { deadline: Date.now() + WAIT_MS });
  return new Promise((resolve, reject) => {
    stream.on('data', () => reject(new Error('the watch was accepted')));
    stream.on('error', (e: grpc.ServiceError) => { client.close(); resolve(e); });
  });
}

const podNames = (s: Snapshot | undefined): string[] => (s?.pods ?? []).map((p) => p.name).sort();

before(async () => {
  writeFileSync(file, config(pod('web-1', 'web', 'node-a', '10.0.0.1'), pod('db-1', 'db', 'node-b', '10.0.0.2')));
  cp = await start('127.0.0.1:0');
  address = cp.address;
  token = readFileSync(join(dataDir, 'bootstrap.token'), 'utf8').trim();
  caPem = readFileSync(join(dataDir, 'ca.pem'), 'utf8');
});

after(async () => {
  for (const w of watches) w.close();
  await cp?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the first snapshot arrives as soon as the watch opens, then a file edit brings a newer version', async () => {
  const { w, snapshots } = watch('node-a');
  await waitFor('the first snapshot', () => snapshots.length === 1 && w.connected());
  assert.deepEqual(podNames(snapshots[0]), ['db-1', 'web-1']);
  const first = w.lastVersion();
  assert.ok(first > 0);
  writeFileSync(file, config(pod('web-1', 'web', 'node-a', '10.0.0.1'), pod('db-1', 'db', 'node-b', '10.0.0.2'), pod('web-2', 'web', 'node-a', '10.0.0.3')));
  await waitFor('the edited snapshot', () => snapshots.length === 2);
  assert.deepEqual(podNames(snapshots[1]), ['db-1', 'web-1', 'web-2']);
  assert.ok(w.lastVersion() > first, `version ${w.lastVersion()} after ${first}`);
  w.close();
});

test('an agent on node A asking for node B is PERMISSION_DENIED', async () => {
  const error = await rawWatch({ token, node: 'node-a' }, 'node-b');
  assert.equal(error.code, grpc.status.PERMISSION_DENIED);
  assert.match(error.details, /credential is for node node-a, not node-b/);
});

test('a bad token is UNAUTHENTICATED, and the client keeps retrying without a snapshot', async () => {
  const error = await rawWatch({ token: 'not-the-token', node: 'node-a' }, 'node-a');
  assert.equal(error.code, grpc.status.UNAUTHENTICATED);
  assert.match(error.details, /bootstrap token does not match/);
  const snapshots: Snapshot[] = [];
  const w = watchControlPlane({ address, caPem, token: 'not-the-token', node: 'node-a' }, (s) => snapshots.push(s), silent);
  watches.push(w);
  await sleep(600);
  assert.equal(w.connected(), false);
  assert.equal(snapshots.length, 0);
  w.close();
});

test('certificates are issued on the same server, authorized by the source\'s pods', async () => {
  const connection = { address, caPem, token, node: 'node-a', deadlineMs: WAIT_MS };
  const chain = await requestCertificate(connection, (await generateWorkloadKey('spiffe://cluster.local/ns/shop/sa/web')).csrPem, 3600);
  assert.equal(chain.length, 2);
  const refused = await requestCertificate(connection, (await generateWorkloadKey('spiffe://cluster.local/ns/shop/sa/db')).csrPem, 3600).then(
    () => assert.fail('expected a refusal'), (e: unknown) => e);
  assert.ok(refused instanceof CertificateRequestError);
  assert.equal(refused.code, 'PERMISSION_DENIED');
});

test('across a control plane restart the client keeps its snapshot, reconnects by itself and gets the new one; the CA persists', async () => {
  const { w, snapshots } = watch('node-a');
  await waitFor('the first snapshot', () => snapshots.length === 1);
  const before = w.lastVersion();
  await cp!.close();
  cp = undefined;
  await waitFor('the client to notice', () => !w.connected());
  assert.equal(snapshots.length, 1, 'no snapshot is delivered (or dropped) while the control plane is away');
  writeFileSync(file, config(pod('web-1', 'web', 'node-a', '10.0.0.1'), pod('api-1', 'api', 'node-a', '10.0.0.4')));
  cp = await start(address);
  assert.equal(readFileSync(join(dataDir, 'ca.pem'), 'utf8'), caPem);
  await waitFor('the reconnect', () => w.connected() && snapshots.length === 2);
  assert.deepEqual(podNames(snapshots[1]), ['api-1', 'web-1']);
  assert.ok(w.lastVersion() > before);
  w.close();
});
