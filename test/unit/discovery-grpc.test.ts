/**
 * Discovery v2 over the real gRPC stream (TLS on loopback): watchControlPlane against
 * addDiscoveryService, with a v1 client of the previous release on the same server; a reconnect
 * resumes with a delta; a new control plane (another epoch) sends the full state; a malformed
 * message is refused, the state kept and the stream reopened from the version held.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import type { PodInfo, Snapshot } from '../../agent/config/objects';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { tlsServerCredentials } from '../../agent/controlplane/cert-service';
import { BootstrapTokenAuthenticator } from '../../agent/controlplane/bootstrap-token';
import { SnapshotFeed } from '../../agent/controlplane/discovery-feed';
import { encodeDeltaResponse, encodeResource, type WatchRequestV2 } from '../../agent/controlplane/discovery-proto';
import { resourcesOf } from '../../agent/controlplane/discovery-resources';
import { addDiscoveryService, discoveryService, discoveryServiceV2, type DiscoveryService } from '../../agent/controlplane/discovery-service';
import { nodeView } from '../../agent/controlplane/discovery-view';
import { decodeVersionedSnapshot, encodeJson, WATCH_PATH, type VersionedSnapshot } from '../../agent/controlplane/discovery-wire';
import { operationalLogger } from '../../agent/core/log';
import type { Result } from '../../agent/core/result';
import { watchControlPlane, type DiscoveryWatch } from '../../agent/node/discovery-client';
import { DELTA_TYPE_URL, SNAPSHOT_TYPE_URL } from '../../agent/telemetry/control-plane-stream';

const WAIT_MS = 8000;
const TOKEN = 'wdelta-bootstrap-token';
const silent = operationalLogger('discovery-grpc-test', 'silent');

async function waitFor(what: string, condition: () => boolean, seen: () => unknown = () => undefined): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS} ms waiting for ${what}; saw ${JSON.stringify(seen())}`);
    await sleep(20);
  }
}

const pod = (name: string, node: string, i: number, extra: Partial<PodInfo> = {}): PodInfo => ({
  namespace: 'shop', name, labels: { app: name }, annotations: {}, nodeName: node, serviceAccount: 'default', ips: [`10.62.0.${i}`], ...extra,
});
const cluster = (pods: PodInfo[], policies: Snapshot['authorizationPolicies'] = []): Snapshot => ({
  namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }, { name: 'db', labels: {} }],
  pods,
  nodes: [{ name: 'node-a', internalIPs: ['192.168.62.1'] }, { name: 'node-b', internalIPs: ['192.168.62.2'] }],
  services: [], peerAuthentications: [], authorizationPolicies: policies,
});

interface Tls {
  caPem: string;
  credentials: grpc.ServerCredentials;
}

async function tlsFor(t: TestContext): Promise<Tls> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-wdelta-grpc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.loadOrCreate({ dataDir: dir, trustDomain: 'cluster.local' });
  assert.ok(ca.ok);
  const serving = await ca.value.issueServingCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: 3600 });
  return { caPem: ca.value.trustBundlePem(), credentials: tlsServerCredentials(serving) };
}

async function serve(t: TestContext, tls: Tls, setup: (server: grpc.Server) => void, port = 0): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  t.after(() => server.forceShutdown());
  setup(server);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, tls.credentials, (error, p) => (error ? reject(error) : resolve(p))));
  return { server, port: bound };
}

function agent(t: TestContext, tls: Tls, port: number, node: string): { w: DiscoveryWatch; latest: () => Snapshot | undefined; count: () => number } {
  let latest: Snapshot | undefined;
  let count = 0;
  const w = watchControlPlane({ address: `127.0.0.1:${port}`, caPem: tls.caPem, token: TOKEN, node }, (s) => { latest = s; count++; }, silent);
  t.after(() => w.close());
  return { w, latest: () => latest, count: () => count };
}

test('v2 brings the node\'s projection, then only what changed for it; a v1 agent of the previous release gets whole snapshots from the same server', async (t) => {
  const tls = await tlsFor(t);
  const feed = new SnapshotFeed(cluster([pod('a', 'node-a', 1), pod('b', 'node-b', 2, { uid: '00000000-1111-2222-3333-444444444444', annotations: { big: 'x'.repeat(2000) } })]));
  const { port } = await serve(t, tls, (s) => addDiscoveryService(s, { authenticator: new BootstrapTokenAuthenticator(TOKEN), feed }));
  const a = agent(t, tls, port, 'node-a');
  await waitFor('node-a\'s projection', () => a.latest() !== undefined);
  assert.deepEqual(a.latest(), nodeView(feed.current().snapshot, 'node-a'));
  assert.equal(a.latest()!.pods.find((p) => p.name === 'b')!.annotations.big, undefined, 'another node\'s pod comes without its annotations');
  const firstBytes = a.w.bytesReceived();
  assert.ok(firstBytes > 0);

  // v1, as an agent of the previous release asks.
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(tls.caPem)));
  t.after(() => client.close());
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${TOKEN}`);
  metadata.set('weft-node', 'node-a');
  const v1: VersionedSnapshot[] = [];
  const stream = client.makeServerStreamRequest(WATCH_PATH, encodeJson, decodeVersionedSnapshot, { node: 'node-a' }, metadata);
  t.after(() => stream.cancel());
  stream.on('data', (m: Result<VersionedSnapshot, string>) => { if (m.ok) v1.push(m.value); });
  stream.on('error', () => undefined);
  await waitFor('a v1 snapshot', () => v1.length === 1);
  assert.deepEqual(v1[0]!.snapshot, feed.current().snapshot, 'v1: the whole cluster as it is');

  // A change only node-b reads: nothing for node-a (v1 still gets it all).
  feed.publish(cluster([pod('a', 'node-a', 1), pod('b', 'node-b', 2, { uid: '00000000-1111-2222-3333-555555555555' })]));
  await waitFor('v1 gets the change', () => v1.length === 2);
  // A change node-a needs.
  feed.publish(cluster([pod('a', 'node-a', 1, { labels: { app: 'a', version: 'v2' } }), pod('b', 'node-b', 2, { uid: '00000000-1111-2222-3333-555555555555' })], [{ namespace: 'shop', name: 'deny', action: 'DENY', rules: [{}] }]));
  await waitFor('node-a gets the relabel and the policy', () => a.latest()?.authorizationPolicies.length === 1, () => a.w.messages());
  assert.deepEqual(a.latest(), nodeView(feed.current().snapshot, 'node-a'));
  assert.equal(a.count(), 2, 'one full state, one delta: nothing for the change node-a does not need');
  assert.deepEqual(a.w.messages(), { [SNAPSHOT_TYPE_URL]: 1, [DELTA_TYPE_URL]: 1 });
  assert.equal(a.w.lastVersion(), feed.current().version);
  assert.ok(a.w.bytesReceived() - firstBytes < 400, `the delta is small (${a.w.bytesReceived() - firstBytes} bytes)`);
});

test('a reconnect to the same control plane resumes with a delta; a new control plane sends the full state', async (t) => {
  const tls = await tlsFor(t);
  const feed = new SnapshotFeed(cluster([pod('a', 'node-a', 1)]));
  let discovery!: DiscoveryService;
  const first = await serve(t, tls, (s) => { discovery = addDiscoveryService(s, { authenticator: new BootstrapTokenAuthenticator(TOKEN), feed }); });
  const a = agent(t, tls, first.port, 'node-a');
  await waitFor('the first state', () => a.w.connected());
  discovery.endStreams();
  feed.publish(cluster([pod('a', 'node-a', 1), pod('c', 'node-b', 3)]));
  await waitFor('the resumed stream brings the change', () => a.latest()?.pods.length === 2, () => a.w.messages());
  assert.equal(a.w.resumes(), 1);
  assert.equal(a.w.messages()[SNAPSHOT_TYPE_URL], 1, 'no second full state');
  assert.deepEqual(a.latest(), nodeView(feed.current().snapshot, 'node-a'));

  // Another control plane process (a restart, or the other replica) on the same address: another epoch.
  first.server.forceShutdown();
  const feed2 = new SnapshotFeed(cluster([pod('a', 'node-a', 1), pod('d', 'node-b', 4)]));
  await serve(t, tls, (s) => addDiscoveryService(s, { authenticator: new BootstrapTokenAuthenticator(TOKEN), feed: feed2 }), first.port);
  await waitFor('the full state of the new control plane', () => a.w.messages()[SNAPSHOT_TYPE_URL] === 2, () => a.w.messages());
  assert.deepEqual(a.latest(), nodeView(feed2.current().snapshot, 'node-a'));
  assert.equal(a.w.resumes(), 1);
});

test('a malformed message is refused: the last state stays in force and the stream reopens from the version held', async (t) => {
  const tls = await tlsFor(t);
  const good = cluster([pod('a', 'node-a', 1)]);
  const requests: WatchRequestV2[] = [];
  const { port } = await serve(t, tls, (s) => s.addService(discoveryServiceV2, {
    Watch: (call: grpc.ServerWritableStream<Result<WatchRequestV2, string>, Buffer>) => {
      assert.ok(call.request.ok);
      requests.push(call.request.value);
      if (requests.length === 1) {
        call.write(encodeDeltaResponse({ systemVersion: 7, epoch: 'fake', fullState: true, baseVersion: 0, removed: [] }, [...resourcesOf(good)].map(encodeResource)));
        // A Pod keyed as another pod than its body names.
        call.write(encodeDeltaResponse({ systemVersion: 8, epoch: 'fake', fullState: false, baseVersion: 7, removed: [] }, [encodeResource({ kind: 'Pod', key: 'shop/x', value: pod('y', 'node-a', 9) })]));
      } else {
        call.write(encodeDeltaResponse({ systemVersion: 8, epoch: 'fake', fullState: false, baseVersion: 7, removed: [{ kind: 'Pod', key: 'shop/a' }] }, []));
      }
    },
  }));
  const a = agent(t, tls, port, 'node-a');
  await waitFor('the reopened stream\'s delta', () => a.latest()?.pods.length === 0, () => ({ requests, messages: a.w.messages(), terminations: a.w.terminations() }));
  assert.equal(a.count(), 2, 'the full state, then the good delta: the malformed one never reached the agent');
  assert.equal(a.w.terminations().Error, 1);
  assert.deepEqual(requests, [{ node: 'node-a' }, { node: 'node-a', resume: { epoch: 'fake', version: 7 } }]);
  assert.equal(a.w.resumes(), 1);
});

test('a control plane of the release before v2 (UNIMPLEMENTED) is watched over v1; once it is upgraded the agent is back on v2', async (t) => {
  const tls = await tlsFor(t);
  const old = cluster([pod('a', 'node-a', 1), pod('b', 'node-b', 2)]);
  // The previous release served v1 only.
  const previous = await serve(t, tls, (s) => s.addService(discoveryService, {
    Watch: (call: grpc.ServerWritableStream<unknown, VersionedSnapshot>) => { call.write({ version: 41, snapshot: old }); },
  }));
  const a = agent(t, tls, previous.port, 'node-a');
  await waitFor('the v1 snapshot', () => a.latest() !== undefined, () => ({ messages: a.w.messages(), terminations: a.w.terminations() }));
  assert.deepEqual(a.latest(), old, 'v1: the whole cluster, as the old control plane sends it');
  assert.equal(a.w.lastVersion(), 41);

  previous.server.forceShutdown();
  const feed = new SnapshotFeed(cluster([pod('a', 'node-a', 1), pod('c', 'node-b', 3)]));
  await serve(t, tls, (s) => addDiscoveryService(s, { authenticator: new BootstrapTokenAuthenticator(TOKEN), feed }), previous.port);
  await waitFor('the upgraded control plane\'s v2 full state', () => a.latest()?.pods.some((p) => p.name === 'c') === true, () => ({ messages: a.w.messages(), terminations: a.w.terminations() }));
  assert.deepEqual(a.latest(), nodeView(feed.current().snapshot, 'node-a'));
  assert.equal(a.w.lastVersion(), feed.current().version);
  assert.equal(a.w.resumes(), 0);
});

test('with a tiny chunk size a full state arrives in several messages and is applied once; a delta after it too', async (t) => {
  const tls = await tlsFor(t);
  const pods = Array.from({ length: 24 }, (_, i) => pod(`p${i}`, i % 2 === 0 ? 'node-a' : 'node-b', i + 1));
  const feed = new SnapshotFeed(cluster(pods));
  const { port } = await serve(t, tls, (s) => addDiscoveryService(s, { authenticator: new BootstrapTokenAuthenticator(TOKEN), feed, chunkBytes: 256 }));
  const a = agent(t, tls, port, 'node-a');
  await waitFor('node-a\'s projection', () => a.latest() !== undefined, () => ({ responses: a.w.responsesReceived(), terminations: a.w.terminations() }));
  assert.deepEqual(a.latest(), nodeView(feed.current().snapshot, 'node-a'));
  assert.equal(a.count(), 1, 'onSnapshot once, for the whole state');
  assert.ok(a.w.responsesReceived() >= 5, `the full state came in several messages (${a.w.responsesReceived()})`);
  assert.deepEqual(a.w.messages(), { [SNAPSHOT_TYPE_URL]: 1, [DELTA_TYPE_URL]: 0 });
  feed.publish(cluster(pods.map((p) => ({ ...p, labels: { ...p.labels, version: 'v2' } }))));
  await waitFor('the relabel of every pod', () => a.count() === 2, () => ({ responses: a.w.responsesReceived(), messages: a.w.messages() }));
  assert.deepEqual(a.latest(), nodeView(feed.current().snapshot, 'node-a'));
  assert.deepEqual(a.w.messages(), { [SNAPSHOT_TYPE_URL]: 1, [DELTA_TYPE_URL]: 1 }, 'the large delta is one message for the agent, whatever its chunks');
});

test('with the limit at 2, five agents connecting together each get their state, never more than 2 full states in flight', async (t) => {
  const tls = await tlsFor(t);
  const nodes = ['node-a', 'node-b'];
  const pods = Array.from({ length: 30 }, (_, i) => pod(`p${i}`, nodes[i % 2]!, i + 1));
  const feed = new SnapshotFeed(cluster(pods));
  let discovery!: DiscoveryService;
  const { port } = await serve(t, tls, (s) => { discovery = addDiscoveryService(s, { authenticator: new BootstrapTokenAuthenticator(TOKEN), feed, chunkBytes: 200, maxConcurrentFullStates: 2 }); });
  const agents = Array.from({ length: 5 }, (_, i) => agent(t, tls, port, nodes[i % 2]!));
  let peakSeen = 0;
  await waitFor('every agent\'s state', () => {
    peakSeen = Math.max(peakSeen, discovery.fullStates().inFlight);
    return agents.every((a) => a.latest() !== undefined);
  }, () => ({ fullStates: discovery.fullStates(), got: agents.map((a) => a.count()) }));
  for (const [i, a] of agents.entries()) {
    assert.deepEqual(a.latest(), nodeView(feed.current().snapshot, nodes[i % 2]!), `agent ${i}`);
    assert.equal(a.count(), 1);
  }
  const { inFlight, waiting, peak } = discovery.fullStates();
  assert.ok(peak <= 2 && peakSeen <= 2, `at most 2 full states in flight (peak ${peak}, seen ${peakSeen})`);
  assert.ok(peak >= 1);
  assert.equal(waiting, 0);
  await waitFor('the last turn given back', () => discovery.fullStates().inFlight === 0, () => ({ inFlight }));
});
