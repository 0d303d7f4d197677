/**
 * Transparent sockets for inbound plaintext capture. Node cannot set IP_TRANSPARENT, so the socket
 * is made through libc (native/libc.ts), bound there, and handed to Node by file descriptor.
 *
 *   listenTransparent    the listener the kernel hands captured SYNs to (bpf/weft_ingress.c):
 *                        accepted sockets carry the pod's address and port as localAddress/localPort
 *                        and the client's as remoteAddress/remotePort.
 *   connectTransparent   the upstream connection to the pod, bound to the CLIENT's address and port,
 *                        so the pod sees its client (source preserved); the pod's replies come back
 *                        to this socket because the ingress program assigns them to it. Used for
 *                        plaintext clients (15006) and for meshed sources on this node and on others
 *                        (source-address.ts decides). When that port is taken for this destination
 *                        it connects from the same address and a port the kernel picks.
 *
 * Both need CAP_NET_ADMIN. They are created by the proxy process, so they live in the proxy's
 * cgroup: the socket programs and STRICT enforcement treat them as the proxy's.
 *
 * Handing a bound, unconnected fd to Node (tried on Node 20.20, loopback, three variants):
 * `new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true })`, then
 * `.connect({ host, port })`. libuv adopts the fd (uv_tcp_open) and its non-blocking connect()
 * keeps the bound address: the server saw 127.0.0.2:45678, the address and port bound. With
 * `readable: false, writable: false` (the brief's first guess) the connect succeeds but nothing is
 * ever read: Node ends the readable side of a socket made from an fd that is not readable. The
 * same holds for the inbound capture lab test, where the pod reports its client's address.
 */
import net from 'node:net';
import { canonicalIp, familyOf, formatAddr, ipBytes } from '../core/ip';
import * as libc from '../../native/libc';
import { pooledSocket } from '../core/pump';
import { whenConnected } from './connect';
import { isSourceCollision, sourcePortAttempts, type SourceCollision } from './source-address';
import { listenShared } from './shared-listener';
import { explainSocketError, type SocketError } from '../core/socket-error';

export interface Endpoint { ip: string; port: number }

const BACKLOG = 511;
/**
 * linux/in.h: a bind to port 0 reserves no port; connect() picks one unique for the 4-tuple, so
 * one pod address can hold many connections to different pods (the pod's own ports go further).
 */
const IP_BIND_ADDRESS_NO_PORT = 24;

const ADVICE: Readonly<Record<string, string>> = {
  EPERM: 'IP_TRANSPARENT needs CAP_NET_ADMIN: run the agent as root or grant it NET_ADMIN',
  EACCES: 'binding needs privileges the agent lacks (CAP_NET_ADMIN, CAP_NET_BIND_SERVICE for ports below 1024)',
  EADDRINUSE: 'another socket already holds this address and port (another agent, or a leftover connection)',
  EADDRNOTAVAIL: 'the address is not usable here (IP_TRANSPARENT missing, or no route for it)',
};

function explain(e: unknown, what: string): SocketError {
  return explainSocketError(e, what, ADVICE);
}

/** A TCP socket with IP(V6)_TRANSPARENT and SO_REUSEADDR set, bound to `local`; closed again on failure. */
function boundTransparent(local: Endpoint, opts: { v6only: boolean; connecting?: boolean }): number {
  const family = familyOf(local.ip);
  const fd = libc.tcpSocket(family);
  try {
    libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_REUSEADDR, 1, 'SO_REUSEADDR');
    // port 0 on a connecting socket: the kernel chooses at connect (the IP level option holds for IPv6 sockets too)
    if (local.port === 0 && opts.connecting === true) libc.setsockoptInt(fd, libc.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1, 'IP_BIND_ADDRESS_NO_PORT');
    if (family === 4) libc.setsockoptInt(fd, libc.SOL_IP, libc.IP_TRANSPARENT, 1, 'IP_TRANSPARENT');
    else {
      libc.setsockoptInt(fd, libc.SOL_IPV6, libc.IPV6_TRANSPARENT, 1, 'IPV6_TRANSPARENT');
      libc.setsockoptInt(fd, libc.SOL_IPV6, libc.IPV6_V6ONLY, opts.v6only ? 1 : 0, 'IPV6_V6ONLY');
    }
    libc.bind(fd, ipBytes(local.ip), local.port, formatAddr(local.ip, local.port));
    return fd;
  } catch (e) {
    libc.close(fd);
    throw e;
  }
}

/**
 * A transparent listener on `host`:`port`, shared with a successor agent (SO_REUSEPORT). An IPv6 host listens for IPv6 only (IPV6_V6ONLY), so
 * '0.0.0.0' and '::' can listen on the same port side by side. The server is made with
 * allowHalfOpen and pauseOnConnect: a handler decides before any byte is read.
 */
export async function listenTransparent(host: string, port: number): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  // SO_REUSEPORT too (shared-listener.ts): a successor agent listens beside this one during an upgrade.
  await listenShared(server, { host, port, ipv6Only: true, transparent: true, backlog: BACKLOG });
  return server;
}

/**
 * Connects to `remote` from `local` (the client's own address and port) through a transparent
 * socket. Resolves with a half-open-capable socket (allowHalfOpen, noDelay) once connected; fails
 * with ETIMEDOUT after `timeoutMs`, or with the connect error (ECONNREFUSED, ...). When the port is
 * taken for this destination (EADDRINUSE at bind, EADDRNOTAVAIL at connect: the same 4-tuple is
 * still held, e.g. in TIME_WAIT) it tries again from the same address and a port the kernel picks;
 * only when that fails too does it fail, with the last error (code kept); `onMoved` is told the
 * collision's code when another port was used. A socket only pump() will read (`reader: 'pump'`)
 * reads into pooled buffers, as connectWithTimeout's does.
 */
export async function connectTransparent(local: Endpoint, remote: Endpoint, timeoutMs: number, reader: 'pump' | 'stream' = 'stream',
  onMoved?: (code: SourceCollision) => void): Promise<net.Socket> {
  const ports = sourcePortAttempts(local.port);
  let collision: SourceCollision | undefined;
  for (let i = 0; ; i++) {
    try {
      const socket = await connectTransparentOnce({ ip: local.ip, port: ports[i]! }, remote, timeoutMs, reader);
      if (collision !== undefined) onMoved?.(collision);
      return socket;
    } catch (e) {
      const code = (e as SocketError).code;
      if (i + 1 >= ports.length || !isSourceCollision(code)) throw e;
      collision = code;
    }
  }
}

function connectTransparentOnce(local: Endpoint, remote: Endpoint, timeoutMs: number, reader: 'pump' | 'stream'): Promise<net.Socket> {
  // Said only when it fails: formatting both ends for every connection cost more than the rest of this function's own work.
  const what = (): string => `transparent connect from ${formatAddr(local.ip, local.port)} to ${formatAddr(remote.ip, remote.port)}`;
  if (familyOf(local.ip) !== familyOf(remote.ip)) {
    return Promise.reject(Object.assign(new Error(`${what()}: the client and the pod address are of different families`), { code: 'EAFNOSUPPORT' }));
  }
  let fd: number;
  try {
    fd = boundTransparent(local, { v6only: true, connecting: true });
  } catch (e) {
    return Promise.reject(explain(e, what()));
  }
  let s: net.Socket;
  try {
    const options = { fd, readable: true, writable: true, allowHalfOpen: true };
    s = reader === 'pump' ? pooledSocket(options) : new net.Socket(options);
  } catch (e) {
    libc.close(fd);
    return Promise.reject(explain(e, what()));
  }
  const connected = whenConnected(s, timeoutMs,
    () => Object.assign(new Error(`${what()} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }),
    (e) => Object.assign(e, { message: `${what()}: ${e.message}` }));
  // a dotted quad net.isIPv4 accepts is already canonical
  s.connect({ host: net.isIPv4(remote.ip) ? remote.ip : canonicalIp(remote.ip), port: remote.port });
  return connected.then(noDelay);
}

function noDelay(s: net.Socket): net.Socket {
  return s.setNoDelay(true);
}
