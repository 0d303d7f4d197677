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
import { ChunkAssembler, DEFAULT_CHUNK_BYTES } from '../../agent/controlplane/discovery-chunks';
import { DeltaStream, type DeltaStreamOptions } from '../../agent/controlplane/discovery-delta-stream';
import { FullStateGate } from '../../agent/controlplane/discovery-gate';
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

/**
 * An agent: a stream to one of the replicas, its sink, its keyed state, and what it applied. As
 * the real client: one ChunkAssembler per stream, the state changed only by a whole sequence.
 */
class Agent {
  readonly state = new DiscoveryState();
  latest: Snapshot | undefined;
  readonly received: DeltaResponse[] = [];
  sink = new SlowSink();
  stream!: DeltaStream;
  private chunks = new ChunkAssembler();
  private unsubscribe: () => void = () => undefined;
  resumed = false;
  /** Chunks delivered, and drops that broke a sequence in the middle. */
  chunksDelivered = 0;
  brokenSequences = 0;

  constructor(private readonly node: string, private readonly options: DeltaStreamOptions = {}) {}

  connect(index: DeltaIndex): void {
    this.unsubscribe();
    this.stream?.stop();
    this.sink = new SlowSink();
    this.chunks = new ChunkAssembler();
    this.stream = new DeltaStream(index, this.node, this.sink, this.options);
    this.unsubscribe = index.subscribe(() => this.stream.changed());
    this.resumed = this.stream.start(this.state.resumePoint());
  }

  /** The stream drops: whatever was in flight is lost, and a sequence in progress with it. */
  drop(): void {
    this.unsubscribe();
    this.stream.stop();
    this.sink.queue.length = 0;
    if (this.chunks.inProgress()) this.brokenSequences++;
  }

  /** Delivers the chunk in flight, if any; returns the whole message when it was the last of one. */
  deliver(): DeltaResponse | undefined {
    assert.ok(this.sink.queue.length <= 1, `at most one message in flight, saw ${this.sink.queue.length}`);
    const next = this.sink.queue.shift();
    if (next === undefined) return undefined;
    const decoded = decodeDeltaResponse(next.bytes);
    assert.ok(decoded.ok, decoded.ok ? '' : decoded.error);
    this.chunksDelivered++;
    const whole = this.chunks.add(decoded.value);
    assert.ok(whole.ok, whole.ok ? '' : whole.error);
    if (whole.value === undefined) {
      next.done();
      return undefined;
    }
    const applied = this.state.apply(whole.value);
    assert.ok(applied.ok, applied.ok ? '' : applied.error);
    this.latest = applied.value;
    this.received.push(whole.value);
    next.done();
    return whole.value;
  }

  /** Delivers chunks until a whole message has been applied or nothing is in flight. */
  deliverWhole(): DeltaResponse | undefined {
    for (let i = 0; i < 10_000 && this.sink.queue.length > 0; i++) {
      const m = this.deliver();
      if (m !== undefined) return m;
    }
    return undefined;
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

test('for any snapshots, drops (also in the middle of a chunked message), resumes (same or another replica), chunk sizes and consumer pace, the agent holds the node projection of what it was last told, and of the latest at the end', () => {
  let broken = 0;
  // Chunk sizes from one resource per chunk to everything in one message (the random clusters' full states are 1-6 KB).
  const chunkBytes = fc.constantFrom(1, 150, 600, 2000, DEFAULT_CHUNK_BYTES);
  fc.assert(fc.property(cluster, fc.array(step, { maxLength: 25 }), fc.constantFrom(...NODES), fc.integer({ min: 1, max: 6 }), chunkBytes, (first, steps, node, maxVersions, chunk) => {
    let version = 1000;
    const byVersion = new Map<number, Snapshot>([[version, first]]);
    // Two replicas fed the same snapshots, as two control planes watching one API server (their own epochs).
    const replicas = [new DeltaIndex({ version, snapshot: first }, { epoch: 'replica-0', maxVersions }), new DeltaIndex({ version, snapshot: first }, { epoch: 'replica-1', maxVersions })];
    const agent = new Agent(node, { chunkBytes: chunk });
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
        const before = { resume: agent.state.resumePoint(), latest: agent.latest };
        agent.drop();
        const resume = agent.state.resumePoint();
        assert.deepEqual(resume, before.resume, 'a drop (mid-sequence or not) leaves the resume point as it was');
        assert.equal(agent.latest, before.latest, 'and the state');
        const index = replicas[s.to]!;
        agent.connect(index);
        on = s.to;
        const expectDelta = resume !== undefined && resume.epoch === index.epoch && index.canResumeFrom(resume.version);
        assert.equal(agent.resumed, expectDelta, 'a resume is served as a delta exactly when the same replica still has that version');
      }
    }
    for (let i = 0; i < 10_000 && agent.sink.queue.length > 0; i++) check(agent.deliver());
    assert.equal(agent.sink.queue.length, 0, 'every message delivered');
    assert.deepEqual(agent.latest, nodeView(byVersion.get(version)!, node), 'the projection of the latest snapshot');
    assert.equal(agent.state.resumePoint()?.epoch, replicas[on]!.epoch);
    broken += agent.brokenSequences;
  }), { numRuns: 300 });
  assert.ok(broken > 0, 'the runs did break chunked sequences in the middle');
  console.log(`# sequences broken mid-way over the runs: ${broken}`);
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
  const full = agent.deliverWhole()!;
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
  let full = 0;
  for (let i = 0; i < 1000 && sink.queue.length > 0; i++) {
    const chunk = sink.queue.shift()!;
    full += chunk.bytes.length;
    chunk.done();
  }
  const pods = s.pods.map((p, i) => (i === 7 ? { ...p, ready: false } : p));
  index.publish({ version: 1_733_400_000_001, snapshot: { ...s, pods } });
  const delta = sink.queue.shift()!;
  const decoded = decodeDeltaResponse(delta.bytes);
  assert.ok(decoded.ok && decoded.value.resources.length === 1 && decoded.value.removed.length === 0);
  return { delta: delta.bytes.length, full };
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

// --- Chunks and the limit on full states in flight ---

test('a full state sent in chunks is applied once, at its last chunk; a stream broken mid-sequence leaves the agent\'s state and resume point as they were', () => {
  const pods = Array.from({ length: 30 }, (_, i) => podOn(`p${i}`, i % 2 === 0 ? 'node-a' : 'node-b', i + 1));
  const first = base(pods.slice(0, 10));
  const index = new DeltaIndex({ version: 1, snapshot: first }, { epoch: 'first' });
  const agent = new Agent('node-a', { chunkBytes: 300 });
  agent.connect(index);
  const m = agent.deliverWhole()!;
  assert.equal(m.fullState, true);
  assert.ok(agent.chunksDelivered > 3, `the full state came in several chunks (${agent.chunksDelivered})`);
  assert.deepEqual(agent.latest, nodeView(first, 'node-a'));
  const held = { resume: agent.state.resumePoint(), latest: agent.latest };

  // Another replica (another epoch): the full state again, broken after two chunks.
  const second = base(pods);
  const other = new DeltaIndex({ version: 2, snapshot: second }, { epoch: 'other' });
  agent.drop();
  agent.connect(other);
  assert.equal(agent.resumed, false);
  assert.equal(agent.deliver(), undefined, 'first chunk: nothing applied');
  assert.equal(agent.deliver(), undefined, 'second chunk: nothing applied');
  assert.equal(agent.sink.queue.length, 1, 'the third chunk is in flight');
  agent.drop();
  assert.equal(agent.brokenSequences, 1);
  assert.deepEqual(agent.state.resumePoint(), held.resume, 'the resume point is the one before the broken sequence');
  assert.equal(agent.latest, held.latest, 'no half state reached the agent');

  // The first replica again: the agent resumes from what it holds, with a (chunked) delta.
  index.publish({ version: 3, snapshot: second });
  agent.connect(index);
  assert.equal(agent.resumed, true, 'the broken sequence did not move the resume point to the other replica');
  const delta = agent.deliverWhole()!;
  assert.deepEqual([delta.fullState, delta.baseVersion, delta.systemVersion], [false, 1, 3]);
  assert.deepEqual(agent.latest, nodeView(second, 'node-a'));
});

test('chunks of a delta larger than a chunk: the removals come first, and every chunk repeats the version, epoch and base', () => {
  const pods = Array.from({ length: 20 }, (_, i) => podOn(`p${i}`, 'node-b', i + 1));
  const h = harness(base(pods));
  const agent = new Agent('node-a', { chunkBytes: 120 });
  agent.connect(h.index);
  agent.deliverWhole();
  const replaced = Array.from({ length: 20 }, (_, i) => podOn(`q${i}`, 'node-b', i + 40));
  h.publish(base(replaced));
  const headers: Array<[number, number, boolean, number, number]> = [];
  for (let i = 0; i < 100 && agent.sink.queue.length > 0; i++) {
    const d = decodeDeltaResponse(agent.sink.queue[0]!.bytes);
    assert.ok(d.ok);
    headers.push([d.value.systemVersion, d.value.baseVersion, d.value.more === true, d.value.removed.length, d.value.resources.length]);
    agent.deliver();
  }
  assert.ok(headers.length > 3, `several chunks (${headers.length})`);
  assert.ok(headers.every(([v, b], i) => v === h.version() && b === 1 && headers[i]![2] === (i < headers.length - 1)), JSON.stringify(headers));
  const firstWithResources = headers.findIndex(([, , , , r]) => r > 0);
  assert.ok(headers.slice(firstWithResources + 1).every(([, , , removed]) => removed === 0), 'no removal after the first resource');
  assert.deepEqual(agent.latest, nodeView(base(replaced), 'node-a'));
});

test('with the limit at 2 and 5 streams connecting, at most 2 full states are in flight, waiting streams hold nothing, turns go in order, a cancelled waiter leaves the queue, and deltas do not wait', () => {
  const pods = Array.from({ length: 40 }, (_, i) => podOn(`p${i}`, ['node-a', 'node-b'][i % 2]!, i + 1));
  let version = 1;
  const index = new DeltaIndex({ version, snapshot: base(pods) }, { epoch: 'e' });
  const gate = new FullStateGate(2);
  const options = { chunkBytes: 500, gate };
  // One agent already has its state: its deltas must not wait behind the others' full states.
  const early = new Agent('node-b', { chunkBytes: 500 });
  early.connect(index);
  early.deliverWhole();
  const agents = Array.from({ length: 5 }, (_, i) => new Agent(i % 2 === 0 ? 'node-a' : 'node-b', options));
  for (const a of agents) a.connect(index);
  const cancelled = new Agent('node-a', options);
  cancelled.connect(index);
  assert.equal(gate.waiting(), 4);
  cancelled.drop();
  assert.equal(gate.waiting(), 3, 'a stream cancelled while waiting left the queue');

  const served: number[] = [];
  let published = false;
  const changed = base(pods.map((p, i) => (i === 1 ? { ...p, ready: false } : p)));
  for (let round = 0; round < 1000 && agents.some((a) => a.latest === undefined || a.sink.queue.length > 0); round++) {
    const sending = agents.filter((a) => a.sink.queue.length > 0);
    const fullStates = sending.filter((a) => { const d = decodeDeltaResponse(a.sink.queue[0]!.bytes); return d.ok && d.value.fullState; });
    assert.ok(fullStates.length <= 2 && gate.inFlight() <= 2, `round ${round}: ${fullStates.length} streams sending a full state, ${gate.inFlight()} turns`);
    for (const a of agents) if (a.stream.waitingForTurn()) assert.equal(a.sink.queue.length, 0, 'a waiting stream holds no bytes');
    for (const a of fullStates) if (!served.includes(agents.indexOf(a))) served.push(agents.indexOf(a));
    for (const a of sending) a.deliver();
    if (!published && gate.waiting() > 0) {
      published = true;
      index.publish({ version: ++version, snapshot: changed });
      assert.equal(early.sink.queue.length, 1, 'the delta for the agent already served is written at once, while full states wait');
      assert.equal(early.deliver()!.fullState, false);
    }
  }
  assert.ok(published, 'the delta was published while streams waited');
  assert.deepEqual(served, [0, 1, 2, 3, 4], 'turns in the order the streams asked');
  assert.equal(gate.peakInFlight(), 2);
  assert.equal(gate.inFlight(), 0);
  assert.equal(cancelled.sink.queue.length, 0, 'the cancelled stream never got a turn');
  for (const [i, a] of agents.entries()) assert.deepEqual(a.latest, nodeView(changed, i % 2 === 0 ? 'node-a' : 'node-b'), `agent ${i} has the latest state`);
});

test('a stream that ends in the middle of its full state gives its turn to the next one waiting', () => {
  const pods = Array.from({ length: 20 }, (_, i) => podOn(`p${i}`, 'node-a', i + 1));
  const index = new DeltaIndex({ version: 1, snapshot: base(pods) }, { epoch: 'e' });
  const gate = new FullStateGate(1);
  const a = new Agent('node-a', { chunkBytes: 200, gate });
  const b = new Agent('node-a', { chunkBytes: 200, gate });
  a.connect(index);
  b.connect(index);
  assert.equal(a.deliver(), undefined, 'a: first chunk of several');
  assert.deepEqual([b.sink.queue.length, b.stream.waitingForTurn()], [0, true]);
  a.drop();
  assert.equal(b.stream.waitingForTurn(), false);
  assert.equal(b.sink.queue.length, 1, 'b got the turn a gave up');
  assert.equal(b.deliverWhole()!.fullState, true);
  assert.deepEqual(b.latest, nodeView(base(pods), 'node-a'));
  assert.equal(gate.inFlight(), 0);
});
