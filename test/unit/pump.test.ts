import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { pump } from '../../agent/core/pump';

/** A writer that records each batch it is handed, and holds its callback until released. */
function recorder(highWaterMark: number) {
  const batches: number[][] = [];
  const pending: Array<() => void> = [];
  const w = new Writable({
    highWaterMark,
    writev(chunks, cb) { batches.push(chunks.map((c) => (c.chunk as Buffer).length)); pending.push(cb); },
    write(chunk: Buffer, _enc, cb) { batches.push([chunk.length]); pending.push(cb); },
  });
  const release = () => { for (const cb of pending.splice(0)) cb(); };
  return { w, batches, release };
}

test('chunks that arrive in one turn of the event loop leave in one write', async () => {
  const from = new PassThrough();
  const { w, batches, release } = recorder(64 * 1024);
  pump(from, w);
  for (let i = 0; i < 5; i++) from.write(Buffer.alloc(8 * 1024));
  await tick();
  await tick();
  release();
  assert.deepEqual(batches, [[8192, 8192, 8192, 8192, 8192]]);
});

test('a full writer pauses the reader until it drains, and nothing is lost or reordered', async () => {
  const from = new PassThrough();
  const { w, batches, release } = recorder(16 * 1024);
  pump(from, w);
  const sent = Array.from({ length: 8 }, (_, i) => Buffer.alloc(8 * 1024, i));
  for (const b of sent) from.write(b);
  await tick();
  await tick();
  assert.equal(from.isPaused(), true, 'the reader is paused while the writer is over its high-water mark');
  const written = batches.flat().reduce((a, b) => a + b, 0);
  assert.ok(written < 64 * 1024, `only part was handed to the writer (${written} bytes)`);
  for (let i = 0; i < 20 && batches.flat().reduce((a, b) => a + b, 0) < 64 * 1024; i++) { release(); await tick(); await tick(); }
  release();
  assert.equal(batches.flat().reduce((a, b) => a + b, 0), 64 * 1024);
  assert.equal(from.isPaused(), false);
});

test('the reader\'s end ends the writer after the last bytes', async () => {
  const from = new PassThrough();
  const got: Buffer[] = [];
  const to = new Writable({ write(chunk: Buffer, _e, cb) { got.push(chunk); cb(); }, writev(chunks, cb) { got.push(...chunks.map((c) => c.chunk as Buffer)); cb(); } });
  const finished = new Promise((r) => to.once('finish', r));
  pump(from, to);
  from.write('ab');
  from.end('cd');
  await finished;
  assert.equal(Buffer.concat(got).toString(), 'abcd');
});
