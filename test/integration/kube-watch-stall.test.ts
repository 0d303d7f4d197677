/**
 * The control plane's Kubernetes source against a real kube-apiserver, reached through a relay
 * that can freeze its connections: no byte passes either way and none is closed, as when a
 * middlebox loses a connection. The library's own watch has no deadline, so a frozen watch left
 * the source's view of that kind stale for good, silently (kube-watch.ts). Here every watch asks
 * the API server to end it after 2-4 s, and ends it itself 1 s past that.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Snapshot } from '../../agent/config/objects';
import { startKubeSource, type KubeSource } from '../../agent/controlplane/kube-source';
import { startKubeCluster, type KubeCluster } from '../support/kube-cluster';

const ROOT = join(__dirname, '..', '..', '..');
const NS = 'stall';
const LABEL = 'weft.test/step';
const WAIT_MS = 30_000;
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

interface Relay {
  url: string;
  /** TCP connections relayed so far. */
  connections(): number;
  /** Stops every open connection from passing anything, without closing it; later connections pass. */
  freezeOpen(): number;
  close(): Promise<void>;
}

async function relayTo(port: number): Promise<Relay> {
  const open = new Set<[Socket, Socket]>();
  const frozen: Socket[] = [];
  let count = 0;
  const server: Server = createServer((c) => {
    count++;
    const u = connect(port, '127.0.0.1');
    const pair: [Socket, Socket] = [c, u];
    open.add(pair);
    c.pipe(u).pipe(c);
    for (const [a, b] of [[c, u], [u, c]] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => { b.destroy(); open.delete(pair); });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => count,
    freezeOpen() {
      for (const [c, u] of open) {
        c.unpipe(u); u.unpipe(c);
        c.pause(); u.pause();
        // An end from either side is not passed on either: the other end keeps waiting.
        c.removeAllListeners('end'); u.removeAllListeners('end');
      }
      for (const pair of open) frozen.push(...pair);
      open.clear();
      return frozen.length / 2;
    },
    async close() {
      server.close();
      for (const [c, u] of open) { c.destroy(); u.destroy(); }
      for (const s of frozen) s.destroy();
    },
  };
}

let cluster: KubeCluster;
let core: CoreV1Api;
let relay: Relay;
let source: KubeSource | undefined;
let latest: Snapshot | undefined;

const labelSeen = (): string | undefined => latest?.namespaces.find((n) => n.name === NS)?.labels[LABEL];

async function waitFor(what: string, check: () => boolean): Promise<number> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > WAIT_MS) assert.fail(`timed out after ${WAIT_MS / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return Date.now() - start;
}

before(async () => {
  cluster = await startKubeCluster({ name: 'watch-stall' });
  const admin = cluster.kubeConfig();
  core = admin.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: NS, labels: { [LABEL]: '0' } } } });
  // Every kind's CRD installed, so the source polls for none: each connection the relay counts is a watch or a list.
  for (const file of [join(ROOT, 'daemonset', 'crds.yaml'), join(ROOT, 'test', 'fixtures', 'gateway-api-routes-crds.yaml')]) {
    const r = await cluster.kubectl(['apply', '--server-side', '-f', file]);
    assert.equal(r.code, 0, r.stderr);
    const w = await cluster.kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', file]);
    assert.equal(w.code, 0, w.stderr);
  }
  relay = await relayTo(Number(new URL(cluster.server).port));
  const viaRelay = new KubeConfig();
  const c = admin.getCurrentCluster()!;
  viaRelay.loadFromOptions({
    clusters: [{ ...c, server: relay.url }],
    users: admin.users, contexts: admin.contexts, currentContext: admin.currentContext,
  });
  source = await startKubeSource(viaRelay, (s) => { latest = s; }, undefined, { minTimeoutSeconds: 2, graceMs: 1_000, headersMs: 5_000 });
  latest = source.current();
  assert.equal(labelSeen(), '0');
});

after(async () => {
  source?.close();
  await relay?.close();
  await cluster?.close();
});

test('every watch is ended by the API server at the timeoutSeconds it was given and resumed, and changes keep arriving across the restarts', async (t) => {
  const before = relay.connections();
  await new Promise((resolve) => setTimeout(resolve, 5_000)); // past the longest timeout, 4 s
  const resumed = relay.connections() - before;
  // Namespaces, pods, nodes, services, EndpointSlices and the six custom kinds: each watch ends within 4 s, so each resumed at least once.
  assert.ok(resumed >= 11, `${resumed} new connections in 5 s`);
  await core.patchNamespace({ name: NS, body: { metadata: { labels: { [LABEL]: '1' } } } }, merge);
  const took = await waitFor(`label ${LABEL}=1 in the snapshot`, () => labelSeen() === '1');
  t.diagnostic(`${resumed} watches resumed in 5 s; a change after them arrived in ${took} ms`);
});

test('a watch whose connection freezes is ended by the source; the change made meanwhile reaches the snapshot, from the resourceVersion it had', async (t) => {
  const frozen = relay.freezeOpen();
  assert.ok(frozen >= 11, `${frozen} connections frozen`);
  await core.patchNamespace({ name: NS, body: { metadata: { labels: { [LABEL]: '2' } } } }, merge);
  const took = await waitFor(`label ${LABEL}=2 in the snapshot, with the namespace watch's connection frozen`, () => labelSeen() === '2');
  // Expected within 4 s (the longest timeout asked) + 1 s (grace) + 5 s (the source's retry).
  t.diagnostic(`${frozen} connections frozen; the change written after the freeze reached the snapshot in ${took} ms`);
});
