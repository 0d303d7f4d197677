import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import {
  buildSnapshot, generateCluster, hasChangePolicy, hasPodReadiness, podReadinessChange, policyChange,
} from '../bench/controlplane-cluster';
import { AgentFleet, bytesBetween, bytesSentBy, quantile, startBenchControlPlane, type BenchControlPlane } from '../bench/controlplane-harness';
import { everyAgentMs, measureControlPlane, report } from '../bench/controlplane';

/** Generous: the machine is shared; these bound a wait, they assert nothing about speed. */
const WAIT_MS = 20_000;

let cp: BenchControlPlane | undefined;
let fleet: AgentFleet | undefined;
after(async () => {
  fleet?.close();
  await cp?.stop();
});

test('the synthetic cluster is the same for the same seed, another for another seed, and every object converts', () => {
  const a = JSON.stringify(buildSnapshot(generateCluster({ pods: 200, seed: 7 })));
  assert.equal(JSON.stringify(buildSnapshot(generateCluster({ pods: 200, seed: 7 }))), a);
  assert.notEqual(JSON.stringify(buildSnapshot(generateCluster({ pods: 200, seed: 8 }))), a);

  const s = buildSnapshot(generateCluster({ pods: 1_000 }));
  assert.equal(s.pods.length, 1_000);
  assert.equal(s.nodes.length, 100);
  assert.equal(s.services.length, 200);
  assert.equal(s.endpointSlices!.length, 200);
  assert.equal(s.namespaces.length, 20 + 2, '20 application namespaces, weft-system and kube-system');
  assert.equal(s.namespaces.filter((n) => n.labels['weft.dev/mesh'] === 'enabled').length, 19, 'every twentieth namespace is not meshed');
  assert.equal(new Set(s.pods.flatMap((p) => p.ips)).size, 1_000, 'pod IPs are unique');
  assert.equal(new Set(s.services.flatMap((x) => x.clusterIPs)).size, 200, 'cluster IPs are unique');
  const listed = s.endpointSlices!.flatMap((x) => x.endpoints.map((e) => `${x.namespace}/${e.pod}`));
  assert.deepEqual([...listed].sort(), s.pods.map((p) => `${p.namespace}/${p.name}`).sort(), 'every pod is in exactly one EndpointSlice');
  assert.ok(s.pods.every((p) => p.uid && p.containerPorts?.http === 8080 && p.serviceAccount !== 'default'));
  assert.equal(s.authorizationPolicies.length, 19 + 2);
  assert.equal(s.httpRoutes!.length, 2);
  assert.equal(s.trafficPolicies!.length, 2);
  assert.equal(s.peerAuthentications.length, 2 + 1);
});

test('a change is what the predicates see: not before it, yes after it', () => {
  const cluster = generateCluster({ pods: 200 });
  const pod = podReadinessChange(cluster, 42, true);
  assert.equal(hasPodReadiness(buildSnapshot(cluster), pod, false), false);
  podReadinessChange(cluster, 42, false);
  const changed = buildSnapshot(cluster);
  assert.equal(hasPodReadiness(changed, pod, false), true);
  assert.equal(changed.pods.find((p) => p.name === pod.name)!.ready, false, 'the pod itself says not ready too');
  assert.equal(hasChangePolicy(changed, 1), false);
  policyChange(cluster, 1);
  policyChange(cluster, 2);
  const twice = buildSnapshot(cluster);
  assert.equal(hasChangePolicy(twice, 2), true);
  assert.equal(hasChangePolicy(twice, 1), false, 'round 2 replaced round 1');
});

test('a cluster size the generator cannot lay out is refused naming the field', () => {
  assert.throws(() => generateCluster({ pods: 210 }), /pods is 210; it must be a positive multiple of 50/);
  assert.throws(() => generateCluster({ pods: 1_000, nodes: 2 }), /cluster size: 1000 pods on 2 nodes is more than 250 per node/);
});

test('the harness sees a published change at every agent, and reports a change that was never published as missing at every agent', async () => {
  cp = await startBenchControlPlane({ pods: 200 });
  const nodes = ['node-000', 'node-001', 'node-002', 'node-003', 'node-004'];
  fleet = new AgentFleet(cp, nodes);
  const first = await fleet.firstSnapshots(WAIT_MS);
  assert.ok(first.every((t) => t !== undefined && t >= 0), `first snapshots: ${JSON.stringify(first)}; streams ended: ${JSON.stringify(fleet.terminations())}`);
  assert.equal(bytesSentBy(cp.port).size, 5, 'one TCP connection per agent at the control plane');

  const before = bytesSentBy(cp.port);
  const payloadBefore = fleet.bytesReceived();
  const seen = fleet.expect('round 1', (s) => hasChangePolicy(s, 1));
  const published = await cp.policyChange(1);
  const result = await fleet.await(seen, published.at, WAIT_MS);
  assert.deepEqual(result.missing, []);
  assert.ok(result.latencyMs.every((t) => t !== undefined && t >= 0), JSON.stringify(result.latencyMs));
  const sent = bytesBetween(before, bytesSentBy(cp.port));
  assert.equal(sent.length, 5);
  const payload = fleet.bytesReceived()?.map((n, i) => n - payloadBefore![i]!);
  // The kernel's count is of TLS records: at least the message itself, whatever the protocol.
  assert.ok(sent.every((n) => n > 0), `bytes sent per agent for the change: ${sent}`);
  if (payload) assert.ok(Math.min(...sent) >= Math.max(...payload) && Math.min(...payload) > 0, `wire ${sent} vs payload ${payload}`);

  // Round 2 is looked for, round 3 is published: nobody may be reported as having round 2.
  const never = fleet.expect('round 2', (s) => hasChangePolicy(s, 2));
  const also = fleet.expect('round 3', (s) => hasChangePolicy(s, 3));
  const third = await cp.policyChange(3);
  const delivered = await fleet.await(also, third.at, WAIT_MS);
  assert.deepEqual(delivered.missing, [], 'round 3 reached every agent');
  const missed = await fleet.await(never, third.at, 1_000);
  assert.deepEqual(missed.missing, nodes);
  assert.deepEqual(missed.latencyMs, [undefined, undefined, undefined, undefined, undefined]);

  // A pod turning not ready is seen in the EndpointSlices every agent gets.
  const cluster = generateCluster({ pods: 200 });
  const pod = { namespace: cluster.pods[17]!.metadata!.namespace!, name: cluster.pods[17]!.metadata!.name! };
  const notReady = fleet.expect('pod not ready', (s) => hasPodReadiness(s, pod, false));
  const podPublished = await cp.podChange(17, false);
  assert.deepEqual((await fleet.await(notReady, podPublished.at, WAIT_MS)).missing, []);
  assert.ok(cp.memory().rss > 10, 'the control plane\'s RSS is read from its own process');
  assert.ok(cp.cpuMs() > 0);
});

test('the bench at a tiny size: every round is seen by every agent and the report says whether each target is met', async () => {
  const r = await measureControlPlane({ pods: 200, agents: 5, podRounds: 2, policyRounds: 3, budgetMs: 60_000, timeoutMs: WAIT_MS, firstSnapshotTimeoutMs: WAIT_MS });
  assert.equal(r.failure, undefined);
  assert.equal(r.podRounds.length, 2);
  assert.equal(r.policyRounds.length, 3);
  for (const round of [...r.podRounds, ...r.policyRounds]) {
    assert.deepEqual(round.missing, []);
    assert.ok(everyAgentMs(round)! >= 0);
    assert.equal(round.wireBytes.length, 5);
  }
  assert.ok(quantile(r.podRounds.flatMap((p) => p.wireBytes), 0.5) > 0);
  assert.ok(r.memory.connected!.rss > 0 && r.memory.afterRounds!.rss > 0);
  const lines = report([r]).join('\n');
  assert.match(lines, /200 pods on 100 nodes, 40 Services \+ 40 EndpointSlices/);
  assert.match(lines, /policy change to every agent \(3\/3 rounds of 3 asked\): p50 [\d.]+ ms p99 [\d.]+ ms \(target p99 < 1000 ms: (met|NOT met)\)/);
});
