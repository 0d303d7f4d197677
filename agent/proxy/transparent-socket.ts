/**
 * Transparent sockets for inbound plaintext capture. Node cannot set IP_TRANSPARENT, so the socket
 * is made through libc (native/libc.ts), bound there, and handed to Node by file descriptor.
 *
 *   listenTransparent    the listener the kernel hands captured SYNs to (bpf/weft_ingress.c):
 *                        accepted sockets carry the pod's address and port as localAddress/localPort
 *                        and the client's as remoteAddress/remotePort.
 *   connectTransparent   the upstream connection to the pod, bound to the CLIENT's address and port,
 *                        so the pod sees its client (source preserved); the pod's replies come back
 *                        to this socket because the ingress program assigns them to it.
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

export interface Endpoint { ip: string; port: number }

const BACKLOG = 511;

type TransparentError = Error & { code?: string };

/** Turns a LibcError into an error that says what to check. */
function explain(e: unknown, what: string): TransparentError {
  const err = e as TransparentError;
  const advice: Record<string, string> = {
    EPERM: 'IP_TRANSPARENT needs CAP_NET_ADMIN: run the agent as root or grant it NET_ADMIN',
    EACCES: 'binding needs privileges the agent lacks (CAP_NET_ADMIN, CAP_NET_BIND_SERVICE for ports below 1024)',
    EADDRINUSE: 'another socket already holds this address and port (another agent, or a leftover connection)',
    EADDRNOTAVAIL: 'the address is not usable here (IP_TRANSPARENT missing, or no route for it)',
  };
  const hint = err.code ? advice[err.code] : undefined;
  return Object.assign(new Error(`${what}: ${err.message}${hint ? `; ${hint}` : ''}`, { cause: e }), { code: err.code ?? 'EINVAL' });
}

/** A TCP socket with IP(V6)_TRANSPARENT and SO_REUSEADDR set, bound to `local`; closed again on failure. */
function boundTransparent(local: Endpoint, opts: { v6only: boolean }): number {
  const family = familyOf(local.ip);
  const fd = libc.tcpSocket(family);
  try {
    libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_REUSEADDR, 1, 'SO_REUSEADDR');
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
 * A transparent listener on `host`:`port`. An IPv6 host listens for IPv6 only (IPV6_V6ONLY), so
 * '0.0.0.0' and '::' can listen on the same port side by side. The server is made with
 * allowHalfOpen and pauseOnConnect: a handler decides before any byte is read.
 */
export async function listenTransparent(host: string, port: number): Promise<net.Server> {
  const where = `transparent listener on ${formatAddr(host, port)}`;
  let fd: number;
  try {
    fd = boundTransparent({ ip: host, port }, { v6only: true });
    try { libc.listen(fd, BACKLOG, formatAddr(host, port)); } catch (e) { libc.close(fd); throw e; }
  } catch (e) {
    throw explain(e, where);
  }
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => { libc.close(fd); reject(explain(e, where)); });
    server.listen({ fd, backlog: BACKLOG }, () => { server.removeAllListeners('error'); resolve(); });
  });
  return server;
}

/**
 * Connects to `remote` from `local` (the client's own address and port) through a transparent
 * socket. Resolves with a half-open-capable socket (allowHalfOpen, noDelay) once connected; fails
 * with ETIMEDOUT after `timeoutMs`, or with the connect error (ECONNREFUSED, ...).
 */
export function connectTransparent(local: Endpoint, remote: Endpoint, timeoutMs: number): Promise<net.Socket> {
  const what = `transparent connect from ${formatAddr(local.ip, local.port)} to ${formatAddr(remote.ip, remote.port)}`;
  if (familyOf(local.ip) !== familyOf(remote.ip)) {
    return Promise.reject(Object.assign(new Error(`${what}: the client and the pod address are of different families`), { code: 'EAFNOSUPPORT' }));
  }
  let fd: number;
  try {
    fd = boundTransparent(local, { v6only: true });
  } catch (e) {
    return Promise.reject(explain(e, what));
  }
  return new Promise((resolve, reject) => {
    let s: net.Socket;
    try {
      s = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    } catch (e) {
      libc.close(fd);
      reject(explain(e, what));
      return;
    }
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`${what} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); s.setNoDelay(true); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); s.destroy(); reject(Object.assign(e, { message: `${what}: ${e.message}` })); });
    s.connect({ host: canonicalIp(remote.ip), port: remote.port });
  });
}
