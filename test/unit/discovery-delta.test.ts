/**
 * Discovery v2 end to end without sockets: DeltaIndex (one diff per publish) → DeltaStream (one
 * message in flight, changes folded) → protobuf bytes → decodeDeltaResponse → DiscoveryState (the
 * agent's keyed state). The key invariant, over random runs: whatever the snapshots, the points
 * where the stream drops and resumes (same control plane or another replica), and the pace of the
 * consumer, the agent's state is the node projection of the snapshot it was last told about, and
 * of the latest one once everything is delivered.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fc from 'fast-check';
import * as protobuf from 'protobufjs';
import type { NamespaceInfo, PodInfo, Snapshot } from '../../agent/config/objects';
import { DeltaIndex, sameContent } from '../../agent/controlplane/discovery-delta';
import { DeltaStream } from '../../agent/controlplane/discovery-delta-stream';
import { decodeDeltaResponse, encodeDeltaResponse, type DeltaResponse } from '../../agent/controlplane/discovery-proto';
import { DiscoveryState } from '../../agent/controlplane/discovery-state';
import { nodeView } from '../../agent/controlplane/discovery-view';
import { cluster, NODES } from './discovery-cluster';

/** A stream's sink that holds what was written until the test delivers it. */
class SlowSink {
  readonly queue: Array<{ bytes: Buffer; done: (error?: Error | null) => void }> = [];
  write(bytes: Buffer, done: (error?: Error | null) => void): boolean {
    this.queue.push({ bytes, done });
    return false;
  }
}

/** An agent: a stream to one of the replicas, its sink, its keyed state, and what it applied. */
class Agent {
  readonly state = new DiscoveryState();
  latest: Snapshot | undefined;
  readonly received: DeltaResponse[] = [];
  sink = new SlowSink();
  stream!: DeltaStream;
  private unsubscribe: () => void = () => undefined;
  resumed = false;

  constructor(private readonly node: string) {}

  connect(index: DeltaIndex): void {
    this.unsubscribe();
    this.stream?.stop();
    this.sink = new SlowSink();
    this.stream = new DeltaStream(index, this.node, this.sink);
    this.unsubscribe = index.subscribe(() => this.stream.changed());
    this.resumed = this.stream.start(this.state.resumePoint());
  }

  /** The stream drops: whatever was in flight is lost. */
  drop(): void {
    this.unsubscribe();
    this.stream.stop();
    this.sink.queue.length = 0;
  }

  /** Delivers the message in flight, if any; returns it. */
  deliver(): DeltaResponse | undefined {
    assert.ok(this.sink.queue.length <= 1, `at most one message in flight, saw ${this.sink.queue.length}`);
    const next = this.sink.queue.shift();
    if (next === undefined) return undefined;
    const decoded = decodeDeltaResponse(next.bytes);
    assert.ok(decoded.ok, decoded.ok ? '' : decoded.error);
    const applied = this.state.apply(decoded.value);
    assert.ok(applied.ok, applied.ok ? '' : applied.error);
    this.latest = applied.value;
    this.received.push(decoded.value);
    next.done();
    return decoded.value;
  }
}

type Step =
  | { op: 'publish'; snapshot: Snapshot }
  /** the previous snapshot with one pod's annotations, UID and cgroup changed: only its own node sees that */
  | { op: 'annotate'; pod: number; note: string }
  | { op: 'deliver' }
  | { op: 'drop'; to: 0 | 1 };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: cluster.map((snapshot) => ({ op: 'publish' as const, snapshot })) },
  { weight: 3, arbitrary: fc.constant({ op: 'deliver' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('annotate' as const), pod: fc.nat(20), note: fc.constantFrom('a', 'b', 'c') }) },
  { weight: 1, arbitrary: fc.constantFrom(0 as const, 1 as const).map((to) => ({ op: 'drop' as const, to })) },
);

test('for any snapshots, drops, resumes (same or another replica) and consumer pace, the agent holds the node projection of what it was last told, and of the latest at the end', () => {
  fc.assert(fc.property(cluster, fc.array(step, { maxLength: 25 }), fc.constantFrom(...NODES), fc.integer({ min: 1, max: 6 }), (first, steps, node, maxVersions) => {
    let version = 1000;
    const byVersion = new Map<number, Snapshot>([[version, first]]);
    // Two replicas fed the same snapshots, as two control planes watching one API server (their own epochs).
    const replicas = [new DeltaIndex({ version, snapshot: first }, { epoch: 'replica-0', maxVersions }), new DeltaIndex({ version, snapshot: first }, { epoch: 'replica-1', maxVersions })];
    const agent = new Agent(node);
    agent.connect(replicas[0]!);
    let on = 0;
    const check = (m: DeltaResponse | undefined): void => {
      if (m === undefined) return;
      assert.deepEqual(agent.latest, nodeView(byVersion.get(m.systemVersion)!, node), `after the message for version ${m.systemVersion}`);
    };
    for (const s of steps) {
      if (s.op === 'publish' || s.op === 'annotate') {
        let snapshot: Snapshot;
        if (s.op === 'publish') snapshot = s.snapshot;
        else {
          const previous = byVersion.get(version)!;
          const i = s.pod % Math.max(1, previous.pods.length);
          snapshot = { ...previous, pods: previous.pods.map((p, j) => (j === i ? { ...p, annotations: { note: s.note }, uid: `0000000${s.note.charCodeAt(0) % 10}-1111-2222-3333-444444444444`, cgroupPath: `/sys/fs/cgroup/${s.note}` } : p)) };
        }
        version += 1 + (version % 3);
        byVersion.set(version, snapshot);
        for (const r of replicas) r.publish({ version, snapshot });
      } else if (s.op === 'deliver') {
        check(agent.deliver());
      } else {
        agent.drop();
        const resume = agent.state.resumePoint();
        const index = replicas[s.to]!;
        agent.connect(index);
        on = s.to;
        const expectDelta = resume !== undefined && resume.epoch === index.epoch && index.canResumeFrom(resume.version);
        assert.equal(agent.resumed, expectDelta, 'a resume is served as a delta exactly when the same replica still has that version');
      }
    }
    for (let i = 0; i < 100 && agent.sink.queue.length > 0; i++) check(agent.deliver());
    assert.equal(agent.sink.queue.length, 0, 'every message delivered');
    assert.deepEqual(agent.latest, nodeView(byVersion.get(version)!, node), 'the projection of the latest snapshot');
    assert.equal(agent.state.resumePoint()?.epoch, replicas[on]!.epoch);
  }), { numRuns: 300 });
});

// --- Specific cases, each a sequence the random runs could miss ---

const ns = (name: string, meshed = true): NamespaceInfo => ({ name, labels: meshed ? { 'weft.dev/mesh': 'enabled' } : {} });
const podOn = (name: string, node: string, i: number, extra: Partial<PodInfo> = {}): PodInfo => ({
  namespace: extra.namespace ?? 'shop', name, labels: { app: name }, annotations: {}, nodeName: node, serviceAccount: 'default', ips: [`10.61.${i >> 8}.${i & 255}`], ...extra,
});
const base = (pods: PodInfo[], extra: Partial<Snapshot> = {}): Snapshot => ({
  namespaces: [ns('shop'), ns('db'), ns('weft-system', false)], pods,
  nodes: [{ name: 'node-a', internalIPs: ['192.168.50.1'] }, { name: 'node-b', internalIPs: ['192.168.50.2'] }],
  services: [], peerAuthentications: [], authorizationPolicies: [], ...extra,
});
const deny = (namespace: string, name: string) => ({ namespace, name, action: 'DENY' as const, rules: [{}] });

function harness(first: Snapshot, node = 'node-a') {
  let version = 1;
  const index = new DeltaIndex({ version, snapshot: first }, { epoch: 'e' });
  const agent = new Agent(node);
  agent.connect(index);
  const full = agent.deliver()!;
  return {
    index, agent, full,
    publish(s: Snapshot) { index.publish({ version: ++version, snapshot: s }); },
    version: () => version,
  };
}

test('a change that does not touch the node\'s view sends nothing; the next change that does is one delta from the version last sent', () => {
  const a = podOn('a', 'node-a', 1);
  const b = podOn('b', 'node-b', 2, { namespace: 'db' });
  const h = harness(base([a, b]));
  assert.equal(h.full.fullState, true);
  // What only node-b reads: a remote pod's cgroup, UID, annotations; a policy of a namespace with no pod on node-a.
  h.publish(base([a, { ...b, uid: '00000000-1111-2222-3333-444444444444', cgroupPath: '/x', annotations: { k: 'v' } }]));
  h.publish(base([a, { ...b, uid: '00000000-1111-2222-3333-444444444444', cgroupPath: '/x', annotations: { k: 'v' } }], { authorizationPolicies: [deny('db', 'no')] }));
  assert.equal(h.agent.sink.queue.length, 0, 'no message for node-a');
  h.publish(base([{ ...a, labels: { app: 'a2' } }, b], { authorizationPolicies: [deny('db', 'no')] }));
  const m = h.agent.deliver()!;
  assert.equal(m.fullState, false);
  assert.deepEqual(m.resources.map((r) => `${r.kind}/${r.key}`), ['Pod/shop/a'], 'only the pod that changed for node-a (b\'s UID change is gone again; the db policy is not node-a\'s)');
  assert.equal(m.systemVersion, h.version());
  assert.deepEqual(h.agent.latest, nodeView(base([{ ...a, labels: { app: 'a2' } }, b], { authorizationPolicies: [deny('db', 'no')] }), 'node-a'));
});

test('a pod arriving on the node brings its namespace\'s policies; the last one leaving takes them away; root namespace policies stay', () => {
  const a = podOn('a', 'node-a', 1);
  const policies = { authorizationPolicies: [deny('db', 'no'), deny('weft-system', 'mesh-wide')], peerAuthentications: [{ namespace: 'db', name: 'strict', mode: 'STRICT' as const, portLevel: {} }] };
  const h = harness(base([a], policies));
  assert.deepEqual(h.full.resources.filter((r) => r.kind === 'AuthorizationPolicy' || r.kind === 'PeerAuthentication').map((r) => r.key), ['weft-system/mesh-wide']);
  h.publish(base([a, podOn('d', 'node-a', 2, { namespace: 'db' })], policies));
  const arrive = h.agent.deliver()!;
  assert.deepEqual(arrive.resources.map((r) => `${r.kind}/${r.key}`).sort(), ['AuthorizationPolicy/db/no', 'PeerAuthentication/db/strict', 'Pod/db/d']);
  h.publish(base([a, podOn('d', 'node-b', 2, { namespace: 'db' })], policies));
  const leave = h.agent.deliver()!;
  assert.deepEqual(leave.resources.map((r) => `${r.kind}/${r.key}`), ['Pod/db/d'], 'the pod stays, reduced, as another node\'s');
  assert.deepEqual(leave.removed.map((r) => `${r.kind}/${r.key}`).sort(), ['AuthorizationPolicy/db/no', 'PeerAuthentication/db/strict']);
  assert.deepEqual(h.agent.latest!.authorizationPolicies.map((p) => p.name), ['mesh-wide']);
});

test('while a message is in flight, an add then a removal comes to nothing and a removal then a re-add to the re-added state, in one delta', () => {
  const a = podOn('a', 'node-a', 1);
  const x = podOn('x', 'node-b', 3);
  const h = harness(base([a, x]));
  h.publish(base([a, x, podOn('y', 'node-b', 4)]));
  assert.equal(h.agent.sink.queue.length, 1, 'the first change is in flight');
  h.publish(base([a, x]));                                   // y removed again
  h.publish(base([a]));                                      // x removed
  h.publish(base([a, { ...x, ips: ['10.61.9.9'] }]));        // x back, changed
  h.publish(base([a, { ...x, ips: ['10.61.9.9'] }, podOn('z', 'node-b', 5)]));
  h.publish(base([a, { ...x, ips: ['10.61.9.9'] }]));        // z added and removed
  assert.equal(h.agent.sink.queue.length, 1, 'still one message in flight, nothing queued');
  const first = h.agent.deliver()!;
  assert.deepEqual(first.resources.map((r) => r.key), ['shop/y']);
  const folded = h.agent.deliver()!;
  assert.equal(folded.baseVersion, first.systemVersion);
  assert.deepEqual(folded.resources.map((r) => r.key).sort(), ['shop/x']);
  assert.deepEqual(folded.removed.map((r) => r.key), ['shop/y']);
  assert.equal(h.agent.deliver(), undefined);
  assert.deepEqual(h.agent.latest, nodeView(base([a, { ...x, ips: ['10.61.9.9'] }]), 'node-a'));
});

test('a reconnect to the same control plane resumes with a delta (empty when nothing changed); to another replica, or past the history, gets the full state', () => {
  const a = podOn('a', 'node-a', 1);
  const h = harness(base([a]));
  h.agent.drop();
  h.agent.connect(h.index);
  assert.equal(h.agent.resumed, true);
  const empty = h.agent.deliver()!;
  assert.deepEqual([empty.fullState, empty.resources.length, empty.removed.length, empty.baseVersion, empty.systemVersion], [false, 0, 0, 1, 1]);
  h.agent.drop();
  h.publish(base([a, podOn('b', 'node-b', 2)]));
  h.agent.connect(h.index);
  assert.equal(h.agent.resumed, true);
  assert.deepEqual(h.agent.deliver()!.resources.map((r) => r.key), ['shop/b']);
  const other = new DeltaIndex({ version: h.version(), snapshot: base([a, podOn('b', 'node-b', 2)]) }, { epoch: 'other' });
  h.agent.drop();
  h.agent.connect(other);
  assert.equal(h.agent.resumed, false);
  assert.equal(h.agent.deliver()!.fullState, true);
  const short = new DeltaIndex({ version: 1, snapshot: base([a]) }, { epoch: 'short', maxVersions: 2 });
  const b = new Agent('node-a');
  b.connect(short);
  b.deliver();
  b.drop();
  for (let v = 2; v <= 5; v++) short.publish({ version: v, snapshot: base([a, podOn(`p${v}`, 'node-b', v)]) });
  b.connect(short);
  assert.equal(b.resumed, false, 'version 1 fell out of a two-publish history');
  assert.equal(b.deliver()!.fullState, true);
  assert.deepEqual(b.latest, nodeView(base([a, podOn('p5', 'node-b', 5)]), 'node-a'));
});

/** A cluster of `n` pods over 100 nodes, names and addresses of one width whatever n. */
function bigCluster(n: number): Snapshot {
  const pods: PodInfo[] = [];
  for (let i = 0; i < n; i++) {
    pods.push({
      namespace: `ns-${String(i % 50).padStart(3, '0')}`, name: `web-${String(i).padStart(6, '0')}`, labels: { app: `app-${i % 200}` }, annotations: {},
      nodeName: `node-${String(i % 100).padStart(3, '0')}`, serviceAccount: 'default', ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
    });
  }
  return {
    namespaces: Array.from({ length: 50 }, (_, i) => ns(`ns-${String(i).padStart(3, '0')}`)), pods,
    nodes: Array.from({ length: 100 }, (_, i) => ({ name: `node-${String(i).padStart(3, '0')}`, internalIPs: [`192.168.${i >> 8}.${(i & 255) + 1}`] })),
    services: [], peerAuthentications: [], authorizationPolicies: [],
  };
}

/** Bytes node-001's agent receives for one readiness flip of pod 7 (on node-007), in a cluster of n pods; and its full state. */
function onePodChange(n: number): { delta: number; full: number } {
  const s = bigCluster(n);
  const index = new DeltaIndex({ version: 1_733_400_000_000, snapshot: s }, { epoch: '2f1c8a4e-7d7e-4f0e-9a51-0c6d2a3e9b11' });
  const sink = new SlowSink();
  const stream = new DeltaStream(index, 'node-001', sink);
  index.subscribe(() => stream.changed());
  stream.start(undefined);
  const full = sink.queue.shift()!;
  full.done();
  const pods = s.pods.map((p, i) => (i === 7 ? { ...p, ready: false } : p));
  index.publish({ version: 1_733_400_000_001, snapshot: { ...s, pods } });
  const delta = sink.queue.shift()!;
  const decoded = decodeDeltaResponse(delta.bytes);
  assert.ok(decoded.ok && decoded.value.resources.length === 1 && decoded.value.removed.length === 0);
  return { delta: delta.bytes.length, full: full.bytes.length };
}

test('the delta for one pod change is the same size in a cluster of 100 pods and of 10,000', () => {
  const small = onePodChange(100);
  const large = onePodChange(10_000);
  assert.ok(Math.abs(small.delta - large.delta) <= 4, `one pod change: ${small.delta} bytes with 100 pods, ${large.delta} with 10,000`);
  assert.ok(large.full > 20 * small.full, `the full state does grow with the cluster (${small.full} vs ${large.full} bytes)`);
  console.log(`# one pod change: ${small.delta} B (100 pods), ${large.delta} B (10,000 pods); full state ${small.full} B / ${large.full} B`);
});

test('sameContent compares as the JSON would: key order and undefined properties do not matter, types and array order do', () => {
  const same: Array<[unknown, unknown]> = [
    [{ a: 1, b: [1, { c: 'x' }] }, { b: [1, { c: 'x' }], a: 1 }],
    [{ a: 1, u: undefined }, { a: 1 }],
    [{}, {}], [[], []], ['x', 'x'], [null, null],
  ];
  const different: Array<[unknown, unknown]> = [
    [{ a: 1 }, { a: 2 }], [{ a: 1 }, { a: 1, b: 0 }], [[1, 2], [2, 1]], [[], {}], [{ 0: 1, length: 1 }, [1]],
    [{ a: null }, {}], [{ a: { b: 1 } }, { a: { b: 1, c: false } }], ['1', 1], [null, {}], [{ a: [1] }, { a: [1, 1] }],
  ];
  for (const [a, b] of same) assert.ok(sameContent(a, b) && sameContent(b, a), `${JSON.stringify(a)} = ${JSON.stringify(b)}`);
  for (const [a, b] of different) assert.ok(!sameContent(a, b) && !sameContent(b, a), `${JSON.stringify(a)} ≠ ${JSON.stringify(b)}`);
});

test('the decoder takes a Pod as JSON too, and refuses a pod body on another kind', () => {
  const p = podOn('a', 'node-a', 1, { ready: false, containerPorts: { http: 8080 } });
  const asJson = protobuf.Writer.create().uint32(10).string('Pod').uint32(18).string('shop/a').uint32(34).bytes(Buffer.from(JSON.stringify(p))).finish();
  const full = encodeDeltaResponse({ systemVersion: 3, epoch: 'e', fullState: true, baseVersion: 0, removed: [] }, [asJson]);
  const decoded = decodeDeltaResponse(full);
  assert.ok(decoded.ok);
  assert.deepEqual(decoded.value.resources, [{ kind: 'Pod', key: 'shop/a', value: p }]);
  const misplaced = protobuf.Writer.create().uint32(10).string('Node').uint32(18).string('a').uint32(26).fork().uint32(18).string('a').ldelim().finish();
  const refused = decodeDeltaResponse(encodeDeltaResponse({ systemVersion: 3, epoch: 'e', fullState: true, baseVersion: 0, removed: [] }, [misplaced]));
  assert.ok(!refused.ok && /has a pod body/.test(refused.error), refused.ok ? '' : refused.error);
});
