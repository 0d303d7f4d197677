/**
 * The pieces of discovery v2's chunking and of the limit on full states in flight, alone: the
 * sender's ChunkedSequence, the agent's ChunkAssembler, and the FullStateGate. End to end (with
 * DeltaStream and DiscoveryState) in discovery-delta.test.ts, over gRPC in discovery-grpc.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PodInfo } from '../../agent/config/objects';
import { ChunkAssembler, ChunkedSequence } from '../../agent/controlplane/discovery-chunks';
import { FullStateGate } from '../../agent/controlplane/discovery-gate';
import { decodeDeltaResponse, encodeResource, frameResource, type DeltaResponse } from '../../agent/controlplane/discovery-proto';

const pod = (name: string, note = ''): PodInfo => ({
  namespace: 'shop', name, labels: { app: name }, annotations: note === '' ? {} : { note }, nodeName: 'node-a', serviceAccount: 'default', ips: ['10.63.0.1'],
});
const entry = (p: PodInfo): Uint8Array => frameResource(encodeResource({ kind: 'Pod', key: `shop/${p.name}`, value: p }));
const header = { systemVersion: 9, epoch: 'e', fullState: true, baseVersion: 0 };

function chunksOf(sequence: ChunkedSequence): DeltaResponse[] {
  const out: DeltaResponse[] = [];
  for (let i = 0; i < 1000 && !sequence.finished(); i++) {
    const d = decodeDeltaResponse(sequence.nextChunk());
    assert.ok(d.ok, d.ok ? '' : d.error);
    out.push(d.value);
  }
  return out;
}

test('a sequence is cut at the chunk size, a resource larger than a chunk goes alone, and an empty message is one chunk', () => {
  const pods = [pod('a'), pod('b'), pod('big', 'x'.repeat(1000)), pod('c'), pod('d')];
  const sizes = pods.map((p) => entry(p).length);
  const chunks = chunksOf(new ChunkedSequence(header, [], pods.map(entry)[Symbol.iterator](), sizes[0]! * 2 + 1));
  assert.deepEqual(chunks.map((c) => c.resources.map((r) => r.key)), [['shop/a', 'shop/b'], ['shop/big'], ['shop/c', 'shop/d']]);
  assert.deepEqual(chunks.map((c) => c.more === true), [true, true, false]);
  assert.ok(chunks.every((c) => c.systemVersion === 9 && c.fullState && c.epoch === 'e'));
  const empty = chunksOf(new ChunkedSequence(header, [], [][Symbol.iterator]()));
  assert.deepEqual(empty.map((c) => [c.resources.length, c.more]), [[0, undefined]]);
  assert.throws(() => new ChunkedSequence(header, [], [][Symbol.iterator](), 0), /chunk size 0/);
});

test('entries are taken from the iterator only as chunks are produced', () => {
  let taken = 0;
  function* lazily(): Generator<Uint8Array> {
    for (let i = 0; i < 10; i++) {
      taken++;
      yield entry(pod(`p${i}`));
    }
  }
  const sequence = new ChunkedSequence(header, [], lazily(), 1);
  assert.equal(taken, 1, 'one looked ahead');
  sequence.nextChunk();
  assert.equal(taken, 2);
  assert.equal(chunksOf(sequence).length, 9);
  assert.equal(taken, 10);
});

test('the assembler gives a whole message at the last chunk, and refuses a chunk of another sequence or a resource listed twice', () => {
  const delta = { systemVersion: 9, epoch: 'e', fullState: false, baseVersion: 4 };
  const all = chunksOf(new ChunkedSequence(delta, [{ kind: 'Pod', key: 'shop/gone' }], [pod('a'), pod('b'), pod('c')].map(entry)[Symbol.iterator](), 1));
  assert.equal(all.length, 4);
  const assembler = new ChunkAssembler();
  for (const c of all.slice(0, 3)) assert.deepEqual(assembler.add(c), { ok: true, value: undefined });
  const whole = assembler.add(all[3]!);
  assert.ok(whole.ok && whole.value !== undefined);
  assert.deepEqual(whole.value.resources.map((r) => r.key), ['shop/a', 'shop/b', 'shop/c']);
  assert.deepEqual(whole.value.removed, [{ kind: 'Pod', key: 'shop/gone' }]);
  assert.equal(whole.value.more, undefined);
  assert.equal(assembler.inProgress(), false);

  assembler.add(all[0]!);
  const other = assembler.add({ ...all[1]!, systemVersion: 10 });
  assert.ok(!other.ok && /version 10 .* in the middle of the chunks of the delta from 4 at version 9 of epoch e/.test(other.error), other.ok ? '' : other.error);
  assert.equal(assembler.inProgress(), false, 'the partial sequence is dropped');
  assembler.add(all[1]!);
  const twice = assembler.add(all[1]!);
  assert.ok(!twice.ok && /Pod\/shop\/a in two chunks/.test(twice.error), twice.ok ? '' : twice.error);
  const single = { ...header, resources: [], removed: [] };
  assert.deepEqual(new ChunkAssembler().add(single), { ok: true, value: single }, 'a message without more is whole');
});

test('the gate gives turns up to its limit, then in the order asked; a waiter released leaves the queue; release is idempotent', () => {
  const gate = new FullStateGate(2);
  const turns: string[] = [];
  const tickets = new Map(['a', 'b', 'c', 'd', 'e'].map((n) => [n, gate.acquire(() => turns.push(n))]));
  assert.deepEqual(turns, ['a', 'b']);
  assert.deepEqual([gate.inFlight(), gate.waiting()], [2, 3]);
  tickets.get('c')!.release();
  assert.equal(gate.waiting(), 2);
  tickets.get('a')!.release();
  tickets.get('a')!.release();
  assert.deepEqual(turns, ['a', 'b', 'd'], 'c left the queue; a second release of a gives nothing more');
  tickets.get('b')!.release();
  tickets.get('d')!.release();
  tickets.get('e')!.release();
  assert.deepEqual(turns, ['a', 'b', 'd', 'e']);
  assert.deepEqual([gate.inFlight(), gate.waiting(), gate.peakInFlight()], [0, 0, 2]);
  assert.throws(() => new FullStateGate(0), /maxConcurrentFullStates\) must be a positive integer, not 0/);
  assert.equal(new FullStateGate(Infinity).limit, Infinity);
});
