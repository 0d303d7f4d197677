import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { tlsServerCredentials } from '../../agent/controlplane/cert-service';
import { frame, GrpcChannel, GrpcError, MessageReader, statusOfHttp, statusOfReset, type ChannelOptions } from '../../agent/core/grpc-client';
import { GrpcStatus, statusName } from '../../agent/core/grpc-status';
import { controlPlaneTls } from '../../agent/identity/control-plane-tls';

/**
 * The agent's own gRPC client (core/grpc-client.ts) against grpc-js' server, which the control plane
 * runs, and against a bare HTTP/2 server for what grpc-js never sends (a compressed or oversized
 * message, a reset stream, an HTTP error without a gRPC status).
 */

const identity = (b: Buffer): Buffer => b;
interface Pki { caPem: string; keyPem: string; certChainPem: string }

async function pki(t: TestContext): Promise<Pki> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-grpcc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.loadOrCreate({ dataDir: dir, trustDomain: 'cluster.local' });
  assert.ok(ca.ok);
  const serving = await ca.value.issueServingCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: 3600 });
  return { caPem: ca.value.trustBundlePem(), keyPem: serving.keyPem, certChainPem: serving.certChainPem };
}

type Handlers = Record<string, grpc.handleUnaryCall<Buffer, Buffer> | grpc.handleServerStreamingCall<Buffer, Buffer>>;

/** grpc-js' server with raw-bytes methods: `Unary` and `Stream` under /weft.test.T/. */
async function grpcServer(t: TestContext, p: Pki, handlers: Handlers): Promise<number> {
  const def = (name: string, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> => ({
    path: `/weft.test.T/${name}`, requestStream: false, responseStream,
    requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity,
  });
  const server = new grpc.Server();
  t.after(() => server.forceShutdown());
  server.addService({ Unary: def('Unary', false), Stream: def('Stream', true) }, handlers as grpc.UntypedServiceImplementation);
  return new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', tlsServerCredentials({ keyPem: p.keyPem, certChainPem: p.certChainPem }), (e, port) => (e ? reject(e) : resolve(port))));
}

/** A bare HTTP/2 server over TLS; `onStream` answers as it likes. */
async function h2Server(t: TestContext, p: Pki, onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void): Promise<{ port: number; server: http2.Http2SecureServer }> {
  const server = http2.createSecureServer({ key: p.keyPem, cert: p.certChainPem });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)); });
  server.on('stream', onStream);
  t.after(() => { for (const s of sessions) s.destroy(); server.close(); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, server };
}

function channel(t: TestContext, port: number, p: Pki, options?: ChannelOptions): GrpcChannel {
  const c = new GrpcChannel(controlPlaneTls(`127.0.0.1:${port}`, p.caPem), options);
  t.after(() => c.close());
  return c;
}

/** A server stream's messages and its one ending. */
function collect(c: GrpcChannel, path: string, request: Buffer): Promise<{ messages: string[]; error?: GrpcError }> {
  const messages: string[] = [];
  return new Promise((resolve) => {
    c.serverStream(path, request, {}, {
      message: (m) => messages.push(m.toString()),
      end: () => resolve({ messages }),
      error: (error) => resolve({ messages, error }),
    });
  });
}

const rejection = (p: Promise<unknown>): Promise<GrpcError> => p.then(() => assert.fail('expected the call to fail'), (e: unknown) => {
  assert.ok(e instanceof GrpcError, `a GrpcError, not ${String(e)}`);
  return e;
});

test("status codes and names are gRPC's, as grpc-js numbers them", () => {
  for (const [name, code] of Object.entries(GrpcStatus)) {
    assert.equal((grpc.status as unknown as Record<string, number>)[name], code, name);
    assert.equal(statusName(code), name);
  }
  assert.equal(statusName(99), '99');
  assert.equal(statusOfHttp(404), GrpcStatus.UNIMPLEMENTED);
  assert.equal(statusOfHttp(503), GrpcStatus.UNAVAILABLE);
  assert.equal(statusOfHttp(401), GrpcStatus.UNAUTHENTICATED);
  assert.equal(statusOfHttp(500), GrpcStatus.UNKNOWN);
  assert.equal(statusOfReset(http2.constants.NGHTTP2_REFUSED_STREAM), GrpcStatus.UNAVAILABLE);
  assert.equal(statusOfReset(http2.constants.NGHTTP2_CANCEL), GrpcStatus.CANCELLED);
  assert.equal(statusOfReset(http2.constants.NGHTTP2_PROTOCOL_ERROR), GrpcStatus.INTERNAL);
});

test('messages are cut from any split of the body, empty ones too', () => {
  const body = Buffer.concat([frame(Buffer.from('first')), frame(Buffer.alloc(0)), frame(Buffer.alloc(70_000, 7)), frame(Buffer.from('last'))]);
  for (const step of [1, 2, 3, 5, 7, 4096, body.length]) {
    const reader = new MessageReader(1 << 20);
    const out: Buffer[] = [];
    for (let i = 0; i < body.length; i += step) {
      reader.push(body.subarray(i, i + step));
      for (let m = reader.next(); m !== undefined; m = reader.next()) {
        assert.ok(!(m instanceof GrpcError));
        out.push(m);
      }
    }
    assert.deepEqual(out.map((m) => m.length), [5, 0, 70_000, 4], `split every ${step}`);
    assert.equal(out[0]!.toString(), 'first');
    assert.ok(out[2]!.every((b) => b === 7));
    assert.equal(reader.pending(), false);
  }
  const half = new MessageReader(100);
  half.push(frame(Buffer.from('abc')).subarray(0, 6));
  assert.equal(half.next(), undefined);
  assert.equal(half.pending(), true);
});

test('a unary call carries its metadata and deadline, and gets its answer', async (t) => {
  const p = await pki(t);
  let seen: grpc.Metadata | undefined;
  const port = await grpcServer(t, p, {
    Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      seen = call.metadata;
      cb(null, Buffer.concat([Buffer.from('echo:'), call.request]));
    },
  });
  const c = channel(t, port, p);
  const answer = await c.unary('/weft.test.T/Unary', Buffer.from('hello'), { authorization: 'Bearer abc', 'weft-node': 'n1' }, 5_000);
  assert.equal(answer.toString(), 'echo:hello');
  assert.equal(seen?.get('authorization')[0], 'Bearer abc');
  assert.equal(seen?.get('weft-node')[0], 'n1');
  // The same connection serves the next call.
  assert.equal((await c.unary('/weft.test.T/Unary', Buffer.alloc(0), {}, 5_000)).toString(), 'echo:');
});

test("the server's status and its percent-encoded message reach the caller", async (t) => {
  const p = await pki(t);
  const port = await grpcServer(t, p, {
    Unary: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb({ code: grpc.status.PERMISSION_DENIED, details: 'node n1 may not hold spiffe://x/ns/a/sa/b — 100% refused' }),
  });
  const e = await rejection(channel(t, port, p).unary('/weft.test.T/Unary', Buffer.from('x'), {}, 5_000));
  assert.equal(e.code, GrpcStatus.PERMISSION_DENIED);
  assert.equal(e.details, 'node n1 may not hold spiffe://x/ns/a/sa/b — 100% refused');
  const missing = await rejection(channel(t, port, p).unary('/weft.test.T/Nope', Buffer.from('x'), {}, 5_000));
  assert.equal(missing.code, GrpcStatus.UNIMPLEMENTED);
});

test('a server stream delivers every message in order, then its end; a failing one its status after its messages', async (t) => {
  const p = await pki(t);
  const port = await grpcServer(t, p, {
    Stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = call.request.readUInt16BE(0);
      for (let i = 0; i < n; i++) call.write(Buffer.from(`m${i}:${'x'.repeat(i * 997)}`));
      if (call.request[2] === 1) call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'too many' });
      else call.end();
    },
  });
  const c = channel(t, port, p);
  const ok = await collect(c, '/weft.test.T/Stream', Buffer.from([0, 40, 0]));
  assert.equal(ok.error, undefined);
  assert.deepEqual(ok.messages.map((m) => m.split(':')[0]), Array.from({ length: 40 }, (_, i) => `m${i}`));
  assert.equal(ok.messages[39]!.length, 'm39:'.length + 39 * 997);
  const failed = await collect(c, '/weft.test.T/Stream', Buffer.from([0, 3, 1]));
  assert.deepEqual(failed.messages.map((m) => m.split(':')[0]), ['m0', 'm1', 'm2']);
  assert.equal(failed.error?.code, GrpcStatus.RESOURCE_EXHAUSTED);
  assert.equal(failed.error?.details, 'too many');
});

test('a call with no answer fails DEADLINE_EXCEEDED at its deadline, and the server sees it cancelled', async (t) => {
  const p = await pki(t);
  let cancelled = false;
  const port = await grpcServer(t, p, {
    Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => { call.on('cancelled', () => { cancelled = true; }); },
  });
  const started = Date.now();
  const e = await rejection(channel(t, port, p).unary('/weft.test.T/Unary', Buffer.from('x'), {}, 300));
  const took = Date.now() - started;
  assert.equal(e.code, GrpcStatus.DEADLINE_EXCEEDED);
  assert.ok(took >= 290 && took < 3_000, `failed after ${took} ms`);
  for (let i = 0; i < 100 && !cancelled; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(cancelled, 'the server saw the call end');
});

test('cancel() ends a stream with no further report, and the server sees it', { timeout: 10_000 }, async (t) => {
  const p = await pki(t);
  let cancelled = false;
  const port = await grpcServer(t, p, {
    Stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      call.on('cancelled', () => { cancelled = true; });
      call.write(Buffer.from('one'));
    },
  });
  const events: string[] = [];
  const c = channel(t, port, p);
  await new Promise<void>((resolve) => {
    const call = c.serverStream('/weft.test.T/Stream', Buffer.alloc(0), {}, {
      message: (m) => { events.push(m.toString()); call.cancel(); resolve(); },
      end: () => events.push('end'),
      error: (e) => events.push(`error ${e.message}`),
    });
  });
  for (let i = 0; i < 100 && !cancelled; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(cancelled, 'the server saw the cancel');
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(events, ['one']);
});

test('no server: UNAVAILABLE with the reason; a server going away mid-stream: UNAVAILABLE after its messages', async (t) => {
  const p = await pki(t);
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const port = (s.address() as net.AddressInfo).port; s.close(() => resolve(port)); });
  });
  const refused = await rejection(channel(t, closedPort, p).unary('/weft.test.T/Unary', Buffer.from('x'), {}, 5_000));
  assert.equal(refused.code, GrpcStatus.UNAVAILABLE);
  assert.match(refused.details, /ECONNREFUSED/);

  const tlsSockets: net.Socket[] = [];
  const { port, server } = await h2Server(t, p, (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.write(frame(Buffer.from('before')));
    setTimeout(() => { for (const s of tlsSockets) s.destroy(); }, 50); // the process serving it dies
  });
  server.on('secureConnection', (s: net.Socket) => tlsSockets.push(s));
  const gone = await collect(channel(t, port, p), '/weft.test.T/Stream', Buffer.alloc(0));
  assert.deepEqual(gone.messages, ['before']);
  assert.equal(gone.error?.code, GrpcStatus.UNAVAILABLE);
});

test('what grpc-js never sends is refused by name: a compressed or oversized message, a reset, an HTTP error', async (t) => {
  const p = await pki(t);
  const { port } = await h2Server(t, p, (stream, headers) => {
    const path = headers[':path'];
    stream.on('error', () => {});
    if (path === '/t/compressed') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      const f = frame(Buffer.from('zz'));
      f[0] = 1;
      stream.write(f);
    } else if (path === '/t/big') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      const f = Buffer.alloc(5);
      f.writeUInt32BE(2048, 1);
      stream.write(f);
    } else if (path === '/t/refused') {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    } else if (path === '/t/404') {
      stream.respond({ ':status': 404 }, { endStream: true });
    } else if (path === '/t/no-status') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.end(frame(Buffer.from('a')));
    } else if (path === '/t/torn') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame(Buffer.from('whole')).subarray(0, 7));
    }
  });
  const c = channel(t, port, p, { maxReceiveBytes: 1024 });
  const code = async (path: string) => { const e = await rejection(c.unary(path, Buffer.alloc(0), {}, 5_000)); return [statusName(e.code), e.details]; };
  const compressed = await code('/t/compressed');
  assert.equal(compressed[0], 'INTERNAL');
  assert.match(compressed[1]!, /compressed/);
  const big = await code('/t/big');
  assert.equal(big[0], 'RESOURCE_EXHAUSTED');
  assert.match(big[1]!, /2048 bytes, more than the 1024/);
  assert.equal((await code('/t/refused'))[0], 'UNAVAILABLE');
  assert.equal((await code('/t/404'))[0], 'UNIMPLEMENTED');
  assert.deepEqual(await code('/t/no-status'), ['INTERNAL', 'the stream ended without a gRPC status']);
  assert.deepEqual(await code('/t/torn'), ['INTERNAL', 'the stream ended inside a message']);
});

test('a connection whose keepalive ping goes unanswered is closed, failing its stream UNAVAILABLE', { timeout: 10_000 }, async (t) => {
  const p = await pki(t);
  const port = await grpcServer(t, p, {
    Stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => { call.write(Buffer.from('hello')); },
  });
  // A TCP relay in front of the server that stops carrying bytes on demand: a peer gone silent.
  let silent = false;
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((down) => {
    const up = net.connect(port, '127.0.0.1');
    for (const s of [down, up]) { sockets.add(s); s.on('error', () => {}); s.on('close', () => sockets.delete(s)); }
    down.on('data', (d) => { if (!silent) up.write(d); });
    up.on('data', (d) => { if (!silent) down.write(d); });
  });
  t.after(() => { for (const s of sockets) s.destroy(); relay.close(); });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const c = channel(t, (relay.address() as net.AddressInfo).port, p, { keepaliveTimeMs: 100, keepaliveTimeoutMs: 200 });
  const started = Date.now();
  const result = await new Promise<{ messages: string[]; error?: GrpcError }>((resolve) => {
    const messages: string[] = [];
    c.serverStream('/weft.test.T/Stream', Buffer.alloc(0), {}, {
      message: (m) => { messages.push(m.toString()); silent = true; },
      end: () => resolve({ messages }),
      error: (error) => resolve({ messages, error }),
    });
  });
  assert.deepEqual(result.messages, ['hello']);
  assert.equal(result.error?.code, GrpcStatus.UNAVAILABLE);
  assert.match(result.error!.details, /keepalive ping within 200 ms/);
  assert.ok(Date.now() - started < 5_000);
});

test('a connection that does not come up (TCP accepted, no TLS answer) is given up at the connect timeout', { timeout: 10_000 }, async (t) => {
  const p = await pki(t);
  const sockets = new Set<net.Socket>();
  const mute = net.createServer((s) => { sockets.add(s); s.on('error', () => {}); });
  t.after(() => { for (const s of sockets) s.destroy(); mute.close(); });
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  const c = channel(t, (mute.address() as net.AddressInfo).port, p, { connectTimeoutMs: 300 });
  const started = Date.now();
  const result = await collect(c, '/weft.test.T/Stream', Buffer.alloc(0));
  const took = Date.now() - started;
  assert.equal(result.error?.code, GrpcStatus.UNAVAILABLE);
  assert.match(result.error!.details, /no connection to https:\/\/127\.0\.0\.1:\d+ within 300 ms/);
  assert.ok(took >= 290 && took < 3_000, `gave up after ${took} ms`);
});

test("after the server's GOAWAY the next call opens a new connection, and the call in flight still ends with its status", { timeout: 10_000 }, async (t) => {
  const p = await pki(t);
  let sessions = 0;
  const { server, port } = await h2Server(t, p, (stream, headers) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    if (headers[':path'] === '/t/goaway') {
      // GOAWAY (NO_ERROR) while this call is open: it may finish, new ones must go elsewhere.
      stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR);
      setTimeout(() => stream.end(frame(Buffer.from(`answered on session ${sessions}`))), 50);
    } else {
      stream.end(frame(Buffer.from(`answered on session ${sessions}`)));
    }
  });
  server.on('session', () => { sessions++; });
  const c = channel(t, port, p);
  assert.equal((await c.unary('/t/goaway', Buffer.alloc(0), {}, 5_000)).toString(), 'answered on session 1');
  assert.equal((await c.unary('/t/next', Buffer.alloc(0), {}, 5_000)).toString(), 'answered on session 2');
  assert.equal((await c.unary('/t/next', Buffer.alloc(0), {}, 5_000)).toString(), 'answered on session 2');
});

test('an address that is no URL host fails the call UNAVAILABLE, never throws', async (t) => {
  const p = await pki(t);
  const bad = new GrpcChannel({ ...controlPlaneTls('127.0.0.1:1', p.caPem), host: 'bad host' });
  t.after(() => bad.close());
  const e = await rejection(bad.unary('/weft.test.T/Unary', Buffer.alloc(0), {}, 1_000));
  assert.equal(e.code, GrpcStatus.UNAVAILABLE);
  assert.match(e.details, /Invalid URL/);
});

test('a closed channel fails new calls UNAVAILABLE', async (t) => {
  const p = await pki(t);
  const c = channel(t, 1, p);
  c.close();
  const e = await rejection(c.unary('/weft.test.T/Unary', Buffer.alloc(0), {}, 1_000));
  assert.equal(e.code, GrpcStatus.UNAVAILABLE);
});
