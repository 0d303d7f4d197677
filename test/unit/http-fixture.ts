import * as http from 'node:http';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from '../../agent/http/limits';
import type { PathNormalization } from '../../agent/http/path-normalize';
import { serveHttp, type ExchangeLog, type RequestInfo, type Verdict } from '../../agent/http/serve';
import { sniffProtocol } from '../../agent/http/sniff';

/** Shared by the http-*.test.ts files: a loopback proxy in front of a loopback application. */

export interface AppCounters { connections: number; bytesIn: number; requests: string[]; open: Set<net.Socket> }

/** Counts what reaches an application server: connections, bytes read, requests seen. */
export function countApp(server: net.Server & { on: http.Server['on'] }): AppCounters {
  const counters: AppCounters = { connections: 0, bytesIn: 0, requests: [], open: new Set() };
  server.on('connection', (s: net.Socket) => {
    counters.connections++;
    counters.open.add(s);
    s.on('close', () => { counters.bytesIn += s.bytesRead; counters.open.delete(s); });
  });
  return counters;
}

/** Closes an application server and every connection it holds, upgraded ones included. */
export function closeApp(server: net.Server, counters: AppCounters): Promise<void> {
  for (const s of counters.open) s.destroy();
  return new Promise((r) => server.close(() => r()));
}

export async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

/** Bytes read by the sockets of `server` so far, open ones included. */
export function liveBytesIn(counters: AppCounters, open: Set<net.Socket>): number {
  let n = counters.bytesIn;
  for (const s of open) n += s.bytesRead;
  return n;
}

export interface ProxyOptions {
  appPort: number;
  protocol?: 'http1' | 'http2' | 'sniff';
  decide?: (r: RequestInfo) => Verdict;
  limits?: Partial<HttpLimits>;
  /** ServeHttpOptions.draining */
  draining?: () => boolean;
  /** ServeHttpOptions.pathNormalization (absent: the proxy's default) */
  pathNormalization?: PathNormalization;
}

export interface Proxy {
  port: number;
  logs: ExchangeLog[];
  decided: RequestInfo[];
  upstreamConnections: number;
  close(): Promise<void>;
}

/** A loopback listener that hands each accepted socket to serveHttp (after sniffing, if asked). */
export async function startProxy(o: ProxyOptions): Promise<Proxy> {
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...o.limits };
  const sockets = new Set<net.Socket>();
  const proxy: Proxy = {
    port: 0, logs: [], decided: [], upstreamConnections: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const connectUpstream = (): Promise<Duplex> => new Promise((resolve, reject) => {
    proxy.upstreamConnections++;
    const s = net.connect(o.appPort, '127.0.0.1');
    s.once('connect', () => { s.off('error', reject); resolve(s); });
    s.once('error', reject);
  });
  const server = net.createServer({ allowHalfOpen: true }, async (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let protocol: 'http1' | 'http2' = o.protocol === 'http2' ? 'http2' : 'http1';
    let head: Buffer | undefined;
    if (o.protocol === 'sniff') {
      const sniffed = await sniffProtocol(socket, 1000);
      if (sniffed.protocol === 'tcp') return void socket.destroy();
      protocol = sniffed.protocol;
      head = sniffed.head;
    }
    await serveHttp(socket, {
      protocol, ...(head ? { head } : {}), limits, connectUpstream,
      decide: (r) => { proxy.decided.push(r); return o.decide ? o.decide(r) : { allow: true }; },
      onExchange: (l) => proxy.logs.push(l),
      ...(o.draining ? { draining: o.draining } : {}),
      ...(o.pathNormalization ? { pathNormalization: o.pathNormalization } : {}),
    });
  });
  proxy.port = await listen(server);
  return proxy;
}

/** Writes `request` (in the given pieces) and reads until the server closes the connection. */
export function rawExchange(port: number, ...pieces: Array<string | Buffer>): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    c.on('data', (d: Buffer) => got.push(d));
    c.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    c.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    c.once('connect', () => { for (const p of pieces) c.write(p); });
  });
}

/** Status codes of the responses in a raw HTTP/1 byte string, in order. */
export function statuses(raw: string): number[] {
  return [...raw.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
}
