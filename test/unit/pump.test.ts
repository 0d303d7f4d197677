import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { nextReadSize, pump, PUMP_BUDGET, READ_SIZE, SMALL_READ_SIZE, takeQueuedReads } from '../../agent/core/pump';
import { connectWithTimeout } from '../../agent/proxy/connect';

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

test('the first chunk of a turn leaves at once; the rest of that turn leave together in one write', async () => {
  const from = new PassThrough();
  const batches: number[][] = [];
  // completes every write at once, as a socket with room in its send buffer does
  const w = new Writable({
    highWaterMark: 64 * 1024,
    writev(chunks, cb) { batches.push(chunks.map((c) => (c.chunk as Buffer).length)); cb(); },
    write(chunk: Buffer, _enc, cb) { batches.push([chunk.length]); cb(); },
  });
  pump(from, w);
  for (let i = 0; i < 5; i++) from.write(Buffer.alloc(8 * 1024));
  assert.deepEqual(batches, [[8192]], 'the first chunk is not held back');
  await tick();
  await tick();
  assert.deepEqual(batches, [[8192], [8192, 8192, 8192, 8192]]);
});

test('a writer holding PUMP_BUDGET unsent bytes pauses the reader until it drains, and nothing is lost', async () => {
  const from = new PassThrough();
  const { w, batches, release } = recorder(16 * 1024);
  const total = 2 * PUMP_BUDGET;
  const chunk = 32 * 1024;
  pump(from, w);
  for (let i = 0; i < total / chunk; i++) from.write(Buffer.alloc(chunk, i));
  await tick();
  await tick();
  assert.equal(from.isPaused(), true, 'the reader is paused while the writer holds the budget');
  const accepted = w.writableLength;
  assert.ok(accepted >= PUMP_BUDGET && accepted <= PUMP_BUDGET + chunk,
    `the writer took ${accepted} bytes: the budget (${PUMP_BUDGET}), not its own 16 KiB high-water mark, bounds it`);
  const handed = () => batches.flat().reduce((a, b) => a + b, 0);
  for (let i = 0; i < 200 && handed() < total; i++) { release(); await tick(); await tick(); }
  release();
  assert.equal(handed(), total);
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

/** A loopback server that writes `bytes` (seeded pattern) as soon as a client connects, then ends. */
async function sender(bytes: number): Promise<{ port: number; sha: string; close(): void }> {
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  const server = net.createServer((c) => c.end(data));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, sha: createHash('sha256').update(data).digest('hex'), close: () => server.close() };
}

test('a pooled socket delivers every byte in order, including those read before the pump took over, reusing its buffers', { timeout: 20_000 }, async () => {
  const src = await sender(32 * 1024 * 1024);
  try {
    const socket = await connectWithTimeout('127.0.0.1', src.port, 2000);
    await sleep(50); // the server speaks first: these bytes are read before pump() is attached
    const hash = createHash('sha256');
    const backing = new Set<ArrayBufferLike>();
    let counted = 0;
    const to = new Writable({
      highWaterMark: 64 * 1024,
      writev(chunks, cb) { for (const c of chunks) { backing.add((c.chunk as Buffer).buffer); hash.update(c.chunk as Buffer); } setImmediate(cb); },
    });
    const finished = new Promise((r) => to.once('finish', r));
    pump(socket, to, (n) => { counted += n; });
    await finished;
    assert.equal(hash.digest('hex'), src.sha);
    assert.equal(counted, 32 * 1024 * 1024);
    assert.ok(backing.size < 100, `32 MiB arrived in ${backing.size} distinct buffers: they are reused, not one per read`);
    socket.destroy();
  } finally {
    src.close();
  }
});

test('a pooled socket stops reading while its writer is full', { timeout: 20_000 }, async () => {
  const src = await sender(16 * 1024 * 1024);
  try {
    const socket = await connectWithTimeout('127.0.0.1', src.port, 2000);
    const held: Array<() => void> = [];
    let taken = 0;
    const to = new Writable({ highWaterMark: 64 * 1024, writev(chunks, cb) { taken += chunks.reduce((a, c) => a + (c.chunk as Buffer).length, 0); held.push(cb); } });
    pump(socket, to);
    await sleep(200);
    assert.ok(taken <= PUMP_BUDGET + 64 * 1024, `the writer was handed ${taken} bytes while it acknowledged none`);
    assert.ok(socket.bytesRead <= PUMP_BUDGET + 4 * 64 * 1024, `the socket read ${socket.bytesRead} bytes while its writer was full`);
    const finished = new Promise((r) => to.once('finish', r));
    const release = setInterval(() => { for (const cb of held.splice(0)) cb(); }, 1);
    await finished;
    clearInterval(release);
    assert.equal(taken, 16 * 1024 * 1024);
    socket.destroy();
  } finally {
    src.close();
  }
});

test('a pooled socket that ended before the pump took over still ends the writer, with its bytes', { timeout: 10_000 }, async () => {
  const src = await sender(1000);
  try {
    const socket = await connectWithTimeout('127.0.0.1', src.port, 2000);
    await sleep(100);
    assert.equal(socket.readableEnded, true, 'the whole reply and its FIN were read before pump() was attached');
    const hash = createHash('sha256');
    const to = new Writable({ write(chunk: Buffer, _e, cb) { hash.update(chunk); cb(); }, writev(chunks, cb) { for (const c of chunks) hash.update(c.chunk as Buffer); cb(); } });
    const finished = new Promise((r) => to.once('finish', r));
    pump(socket, to);
    await finished;
    assert.equal(hash.digest('hex'), src.sha);
    socket.destroy();
  } finally {
    src.close();
  }
});

test('a stopped pump moves nothing more; its pooled socket\'s later reads go to a \'data\' listener, in order, and pause() stops them', { timeout: 20_000 }, async () => {
  const total = 8 * 1024 * 1024;
  const src = await sender(total);
  const socket = await connectWithTimeout('127.0.0.1', src.port, 2000);
  try {
    const hash = createHash('sha256');
    let written = 0;
    const to = new Writable({ write(chunk: Buffer, _e, cb) { hash.update(chunk); written += chunk.length; cb(); },
      writev(chunks, cb) { for (const c of chunks) { hash.update(c.chunk as Buffer); written += (c.chunk as Buffer).length; } cb(); } });
    let p: ReturnType<typeof pump> | undefined;
    let writtenAtStop = -1;
    const took = new Promise<void>((resolve) => {
      // stopped from its own count, as a splice's handover does: the chunk counted is already written
      p = pump(socket, to, () => {
        if (writtenAtStop >= 0 || p!.bytes < 256 * 1024) return;
        p!.stop();
        socket.pause();
        writtenAtStop = written;
        resolve();
      });
    });
    await took;
    assert.equal(writtenAtStop, p!.bytes, 'every chunk the pump counted was written by stop(), corked ones too');
    await sleep(100);
    assert.equal(written, writtenAtStop, 'nothing was written after stop()');
    assert.equal(to.writableEnded, false, 'the reader\'s end is no longer the pump\'s to pass on');
    const readWhileStopped = socket.bytesRead;
    await sleep(100);
    assert.equal(socket.bytesRead, readWhileStopped, 'a paused pooled socket reads nothing');
    let taken = 0;
    for (const c of takeQueuedReads(socket)) { hash.update(c); taken += c.length; }
    let emitted = 0;
    let readWhilePaused = -1;
    const ended = new Promise((r) => socket.once('end', r));
    socket.on('data', (c: Buffer) => {
      hash.update(c);
      emitted += c.length;
      if (emitted >= 1024 * 1024 && readWhilePaused < 0) {
        // pause() stops a pooled socket's reading too; resume() starts it again
        socket.pause();
        const at = socket.bytesRead;
        readWhilePaused = 0;
        setTimeout(() => { readWhilePaused = socket.bytesRead - at; socket.resume(); }, 50);
      }
    });
    socket.resume();
    await ended;
    assert.equal(readWhilePaused, 0, 'nothing was read while the listener had paused the socket');
    assert.equal(written + taken + emitted, total);
    assert.equal(hash.digest('hex'), src.sha, 'the pump\'s bytes, the queued reads and the emitted ones make the stream, in order');
  } finally {
    socket.destroy();
    src.close();
  }
});

test('nextReadSize: a read larger than SMALL_READ_SIZE moves a socket to buffers of its own; four small ones in a row move it back', () => {
  // On the shared buffer: stays there until a read is larger than a small one.
  assert.deepEqual(nextReadSize(false, 1, 0), { big: false, smallReads: 0 });
  assert.deepEqual(nextReadSize(false, SMALL_READ_SIZE, 0), { big: false, smallReads: 0 });
  assert.deepEqual(nextReadSize(false, SMALL_READ_SIZE + 1, 0), { big: true, smallReads: 0 });
  assert.deepEqual(nextReadSize(false, READ_SIZE, 0), { big: true, smallReads: 0 });
  // On its own buffers: a full read, or one larger than a small one, keeps them and resets the count.
  assert.deepEqual(nextReadSize(true, READ_SIZE, 3), { big: true, smallReads: 0 });
  assert.deepEqual(nextReadSize(true, SMALL_READ_SIZE + 1, 3), { big: true, smallReads: 0 });
  // Small reads into its own buffers: the fourth in a row goes back to the shared one.
  let smallReads = 0;
  for (let i = 1; i <= 3; i++) {
    const r = nextReadSize(true, 100, smallReads);
    assert.deepEqual(r, { big: true, smallReads: i });
    smallReads = r.smallReads;
  }
  assert.deepEqual(nextReadSize(true, SMALL_READ_SIZE, smallReads), { big: false, smallReads: 0 });
});

test('a pooled socket reads small messages through the shared buffer, bulk into 64 KiB ones of its own, and goes back once its reads are small again', { timeout: 20_000 }, async () => {
  const bulk = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < bulk.length; i += 4) bulk.writeUInt32LE((i * 2654435761) >>> 0, i);
  const expected = createHash('sha256');
  let peer: net.Socket | undefined;
  const server = net.createServer((c) => { peer = c; });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const socket = await connectWithTimeout('127.0.0.1', (server.address() as net.AddressInfo).port, 2000);
    // What each chunk lies in: 'own' a 64 KiB read buffer (the socket's own), 'copy' a copy out of the shared one.
    const kinds: string[] = [], sizes: number[] = [];
    const seen = (c: Buffer): void => { kinds.push(c.buffer.byteLength === READ_SIZE ? 'own' : 'copy'); sizes.push(c.length); hash.update(c); };
    const hash = createHash('sha256');
    const to = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _e, cb) { seen(chunk); cb(); },
      writev(chunks, cb) { for (const c of chunks) seen(c.chunk as Buffer); cb(); },
    });
    const finished = new Promise((r) => to.once('finish', r));
    pump(socket, to);
    for (let i = 0; i < 100 && peer === undefined; i++) await sleep(10);
    const send = async (b: Buffer): Promise<void> => {
      expected.update(b);
      const before = socket.bytesRead;
      peer!.write(b);
      for (let i = 0; i < 500 && socket.bytesRead < before + b.length; i++) await sleep(2);
      await sleep(10);
    };
    await send(Buffer.from('a'));
    assert.deepEqual(kinds, ['copy'], 'an idle socket\'s first read is copied out of the shared buffer');
    const mark = kinds.length;
    await send(bulk);
    const bulkKinds = kinds.slice(mark);
    const own = bulkKinds.filter((k) => k === 'own').length;
    assert.ok(own >= bulkKinds.length - 8, `bulk read into 64 KiB buffers: ${own} of ${bulkKinds.length} reads`);
    // Small messages, one read each: after four small reads in a row into its own buffers, the next
    // is read through the shared buffer again. The bulk's last reads may have been small already
    // (TCP delivered its tail in a short segment): they count towards the four.
    const after = kinds.length;
    let tail = 0;
    while (tail < after - mark && sizes[after - 1 - tail]! <= SMALL_READ_SIZE) tail++;
    assert.ok(tail < 4, `the bulk ended in ${tail} small reads (${sizes.slice(mark).join(', ')})`);
    for (let i = 0; i < 6; i++) await send(Buffer.from(`msg ${i}`));
    const smallKinds = kinds.slice(after);
    const ownBefore = 4 - tail;
    assert.deepEqual(smallKinds, [...Array<string>(ownBefore).fill('own'), ...Array<string>(6 - ownBefore).fill('copy')],
      `the bulk's last reads: ${sizes.slice(Math.max(mark, after - 4), after).join(', ')} bytes`);
    peer!.end();
    await finished;
    assert.equal(hash.digest('hex'), expected.digest('hex'));
    socket.destroy();
  } finally {
    peer?.destroy();
    server.close();
  }
});

test('idle pooled sockets hold no read buffer of their own', { timeout: 20_000 }, async () => {
  const SOCKETS = 300;
  const peers: net.Socket[] = [];
  const server = net.createServer((c) => { peers.push(c); c.write('x'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sockets: net.Socket[] = [];
  try {
    const port = (server.address() as net.AddressInfo).port;
    let delivered = 0;
    const sink = (): Writable => new Writable({ write(chunk: Buffer, _e, cb) { delivered += chunk.length; cb(); } });
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < SOCKETS; i++) {
      const s = await connectWithTimeout('127.0.0.1', port, 2000);
      pump(s, sink());
      sockets.push(s);
    }
    for (let i = 0; i < 500 && delivered < SOCKETS; i++) await sleep(5);
    assert.equal(delivered, SOCKETS, 'every socket read its byte');
    // Each socket has read and now waits for its next read. With a 4 KiB buffer of its own each,
    // that was 1.2 MB; through the shared buffer, nothing per socket.
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < SOCKETS * 1024, `array buffers grew ${grown} bytes for ${SOCKETS} idle sockets`);
  } finally {
    for (const s of sockets) s.destroy();
    for (const p of peers) p.destroy();
    server.close();
  }
});
