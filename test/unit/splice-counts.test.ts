// What splice.ts counts a direction by (docs/splice.md, "Exact accounting"): the kernel's count of
// a socket's send queue (bytesTaken, one TCP_INFO) plus what Node has not handed to the kernel yet
// (unflushed) is every byte written to the socket, also while a large write is half in the kernel.
// Real loopback sockets, no root needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { bytesTaken, socketFd, unflushed } from '../../agent/proxy/splice';

async function pair(): Promise<{ writer: Socket; reader: Socket; close(): void }> {
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const writer = connect((server.address() as { port: number }).port, '127.0.0.1');
  await new Promise<void>((resolve) => writer.once('connect', resolve));
  const reader = await accepted;
  reader.pause();
  return { writer, reader, close: () => { writer.destroy(); reader.destroy(); server.close(); } };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('bytesTaken + unflushed is every byte written, while a write is half in the kernel and after', async () => {
  const { writer, reader, close } = await pair();
  try {
    const fd = socketFd(writer)!;
    assert.equal(bytesTaken(fd) + BigInt(unflushed(writer)), 0n);
    // The reader reads nothing: the kernel takes what its buffers hold, libuv keeps the rest queued.
    writer.write(Buffer.alloc(32 * 2 ** 20, 1));
    writer.write(Buffer.alloc(1000, 2));
    await sleep(50);
    const taken = bytesTaken(fd);
    assert.ok(taken > 0n && taken < BigInt(32 * 2 ** 20), `the kernel took ${taken}: the first write must be in part in the kernel`);
    assert.ok(BigInt(writer.writableLength) + taken > BigInt(writer.bytesWritten), 'writableLength alone counts the part in the kernel again');
    assert.equal(taken + BigInt(unflushed(writer)), BigInt(writer.bytesWritten));
    // Drain: every byte ends in the kernel's count.
    let read = 0;
    reader.on('data', (c: Buffer) => { read += c.length; });
    reader.resume();
    while (writer.writableLength > 0) await sleep(5);
    assert.equal(unflushed(writer), 0);
    assert.equal(bytesTaken(fd), BigInt(writer.bytesWritten));
    while (read < writer.bytesWritten) await sleep(5);
  } finally {
    close();
  }
});
