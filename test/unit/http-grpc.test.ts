import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { test } from 'node:test';
import { startProxy } from './http-fixture';

/** A JSON-coded service, so no .proto is needed: unary Echo, server-streaming Count, unary Fail. */
const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
};
const service: grpc.ServiceDefinition = {
  Echo: { path: '/weft.test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Count: { path: '/weft.test.Echo/Count', requestStream: false, responseStream: true, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Fail: { path: '/weft.test.Echo/Fail', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
};
const Client = grpc.makeGenericClientConstructor(service, 'Echo');
type EchoClient = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

async function grpcApp(): Promise<{ port: number; close(): void }> {
  const server = new grpc.Server();
  server.addService(service, {
    Echo: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      cb(null, { text: `echo ${call.request.text}`, sawMetadata: call.metadata.get('x-client')[0] ?? null });
    },
    Count: (call: grpc.ServerWritableStream<{ n: number }, unknown>) => {
      const header = new grpc.Metadata();
      header.set('x-stream-header', 'h');
      call.sendMetadata(header);
      for (let i = 0; i < call.request.n; i++) call.write({ i });
      const trailer = new grpc.Metadata();
      trailer.set('x-count-trailer', String(call.request.n));
      call.end(trailer);
    },
    Fail: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const md = new grpc.Metadata();
      md.set('x-why', 'because');
      cb({ code: grpc.status.FAILED_PRECONDITION, details: 'the app says no', metadata: md });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { port, close: () => server.forceShutdown() };
}

test('gRPC through serveHttp: unary, server streaming with header metadata and trailers, and an error status', async () => {
  const app = await grpcApp();
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2' });
  const client = new Client(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure()) as unknown as EchoClient;
  try {
    const md = new grpc.Metadata();
    md.set('x-client', 'c1');
    const unary = await new Promise<{ text: string; sawMetadata: string }>((resolve, reject) => {
      client.Echo!({ text: 'hi' }, md, (e: Error | null, v: { text: string; sawMetadata: string }) => (e ? reject(e) : resolve(v)));
    });
    assert.deepEqual(unary, { text: 'echo hi', sawMetadata: 'c1' });

    const streamed = await new Promise<{ items: number[]; header: unknown; trailer: unknown; code: number }>((resolve, reject) => {
      const call = client.Count!({ n: 5 }) as grpc.ClientReadableStream<{ i: number }>;
      const items: number[] = [];
      let header: unknown;
      let trailer: unknown;
      call.on('metadata', (m: grpc.Metadata) => { header = m.get('x-stream-header')[0]; });
      call.on('data', (d: { i: number }) => items.push(d.i));
      call.on('status', (s: grpc.StatusObject) => { trailer = s.metadata.get('x-count-trailer')[0]; resolve({ items, header, trailer, code: s.code }); });
      call.on('error', reject);
    });
    assert.deepEqual(streamed, { items: [0, 1, 2, 3, 4], header: 'h', trailer: '5', code: grpc.status.OK });

    const failure = await new Promise<grpc.ServiceError>((resolve) => {
      client.Fail!({}, (e: grpc.ServiceError | null) => resolve(e!));
    });
    assert.equal(failure.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(failure.details, 'the app says no');
    assert.equal(failure.metadata.get('x-why')[0], 'because');

    assert.deepEqual(proxy.logs.map((l) => [l.path, l.status, l.grpcStatus]), [
      ['/weft.test.Echo/Echo', 200, '0'],
      ['/weft.test.Echo/Count', 200, '0'],
      ['/weft.test.Echo/Fail', 200, String(grpc.status.FAILED_PRECONDITION)],
    ]);
  } finally { client.close(); await proxy.close(); app.close(); }
});

test('gRPC: a denied call reaches the client as an error status and the application never sees it', async () => {
  const app = await grpcApp();
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2', decide: () => ({ allow: false, status: 403, body: 'RBAC: access denied' }) });
  const client = new Client(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure()) as unknown as EchoClient;
  try {
    const e = await new Promise<grpc.ServiceError>((resolve) => { client.Echo!({ text: 'x' }, (err: grpc.ServiceError | null) => resolve(err!)); });
    // grpc-js maps HTTP 403 without grpc-status to PERMISSION_DENIED.
    assert.equal(e.code, grpc.status.PERMISSION_DENIED);
    assert.equal(proxy.upstreamConnections, 0);
  } finally { client.close(); await proxy.close(); app.close(); }
});
