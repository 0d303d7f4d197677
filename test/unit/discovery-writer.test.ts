import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoalescingWriter } from '../../agent/controlplane/discovery-writer';

/** A sink that completes writes only when the test says so: a consumer that stopped reading. */
function stalledSink(): { written: number[]; complete(): void; write(m: number, cb: (e?: Error | null) => void): boolean } {
  const callbacks: ((e?: Error | null) => void)[] = [];
  const written: number[] = [];
  return {
    written,
    write(m, cb) { written.push(m); callbacks.push(cb); return false; },
    complete() { callbacks.shift()?.(); },
  };
}

test('a slow consumer gets the first message, then only the latest of those sent meanwhile', () => {
  const sink = stalledSink();
  const writer = new CoalescingWriter<number>(sink);
  for (let v = 1; v <= 1000; v++) writer.send(v);
  assert.deepEqual(sink.written, [1]);
  sink.complete();
  assert.deepEqual(sink.written, [1, 1000]);
  sink.complete();
  writer.send(1001);
  assert.deepEqual(sink.written, [1, 1000, 1001]);
});

test('after stop() or a failed write nothing more is written', () => {
  const sink = stalledSink();
  const writer = new CoalescingWriter<number>(sink);
  writer.send(1);
  writer.send(2);
  writer.stop();
  sink.complete();
  writer.send(3);
  assert.deepEqual(sink.written, [1]);

  const failing = new CoalescingWriter<number>({ write: (m, cb) => { sink.written.push(m); cb(new Error('stream closed')); return false; } });
  failing.send(10);
  failing.send(11);
  assert.deepEqual(sink.written, [1, 10]);
});
