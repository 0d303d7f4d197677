/**
 * The echo backend of the conformance lab, run inside each echo pod (`pod.spawn(node, [this file,
 * '--pod', NAME, '--namespace', NS])`), in the role of upstream's echo-advanced image (Istio's echo
 * app). Every answer says what the harness compares: the answering pod and namespace, and the
 * request as it arrived (method, path, Host/:authority, every header line).
 *
 *   8080  HTTP/1.1, and h2c with prior knowledge on the same port (told apart by the preface)
 *   9090  TCP echo (bytes back as they come)
 *   7070  gRPC `proto.EchoTestService/Echo` over h2c; messages are JSON (both ends are ours), the
 *         reply is the request as seen, metadata included
 * 8443 (TLS) is not served: no mesh case sends to it.
 *
 * Prints `listening` once every port is bound.
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { frame as grpcFrame } from '../../agent/core/grpc-client';
import type { EchoSeen } from './observation';

export const ECHO_PORTS = { http: 8080, tcp: 9090, grpc: 7070 } as const;
export const GRPC_ECHO_PATH = '/proto.EchoTestService/Echo';
const H2_PREFACE = 'PRI * HTTP/2.0';

function pairs(raw: readonly string[], skipPseudo: boolean): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (!skipPseudo || !raw[i]!.startsWith(':')) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

function serve(pod: string, namespace: string, done: () => void): void {
  const seenH1 = (req: http.IncomingMessage): EchoSeen => ({
    pod, namespace, protocol: 'http/1.1', method: req.method ?? '', path: req.url ?? '', host: req.headers.host ?? '', headers: pairs(req.rawHeaders, false),
  });
  const seenH2 = (headers: http2.IncomingHttpHeaders, raw: string[], protocol: string): EchoSeen => ({
    pod, namespace, protocol, method: String(headers[':method'] ?? ''), path: String(headers[':path'] ?? ''),
    host: String(headers[':authority'] ?? headers.host ?? ''), headers: pairs(raw, true),
  });

  const h1 = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify(seenH1(req));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  const h2 = http2.createServer();
  h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
    stream.on('error', () => undefined);
    stream.resume();
    stream.on('end', () => {
      const body = JSON.stringify(seenH2(headers, raw, 'h2c'));
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(body);
    });
  });
  // One port for HTTP/1.1 and h2c: the first bytes tell which. The HTTP/2 session reads from the
  // socket's handle, not from its JS buffer, so it gets a Duplex that replays the first bytes.
  const web = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', (first: Buffer) => {
      if (first.toString('latin1', 0, H2_PREFACE.length) !== H2_PREFACE) {
        socket.pause();
        socket.unshift(first);
        h1.emit('connection', socket);
        socket.resume();
        return;
      }
      const replay = new Duplex({
        read: () => socket.resume(),
        write: (chunk: Buffer, _enc, cb) => { socket.write(chunk, cb); },
        final: (cb) => { socket.end(); cb(); },
        destroy: (e, cb) => { socket.destroy(); cb(e); },
      });
      replay.push(first);
      socket.on('data', (d: Buffer) => { if (!replay.push(d)) socket.pause(); });
      socket.on('end', () => replay.push(null));
      socket.on('close', () => replay.destroy());
      h2.emit('connection', replay);
    });
  });

  const tcp = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });

  const grpc = http2.createServer();
  grpc.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
    stream.on('error', () => undefined);
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      if (headers[':path'] !== GRPC_ECHO_PATH) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': `unknown method ${String(headers[':path'])}` }, { endStream: true });
        return;
      }
      const body = Buffer.concat(chunks);
      let message: unknown;
      try {
        message = body.length >= 5 ? JSON.parse(body.subarray(5).toString() || 'null') : null;
      } catch {
        message = null;
      }
      const reply = { ...seenH2(headers, raw, 'grpc'), message };
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(grpcFrame(Buffer.from(JSON.stringify(reply))));
    });
  });

  let pending = 3;
  const bound = () => { if (--pending === 0) done(); };
  web.listen(ECHO_PORTS.http, '::', bound);
  tcp.listen(ECHO_PORTS.tcp, '::', bound);
  grpc.listen(ECHO_PORTS.grpc, '::', bound);
}

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (!v) {
    process.stderr.write(`echo-server: --${name} is required (usage: echo-server --pod NAME --namespace NS)\n`);
    process.exit(2);
  }
  return v;
}

if (require.main === module) serve(arg('pod'), arg('namespace'), () => process.stdout.write('listening\n'));
