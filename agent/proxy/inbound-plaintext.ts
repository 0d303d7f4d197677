/**
 * Inbound plaintext capture (15006): connections from clients outside the mesh to enrolled,
 * non-STRICT pods on this node, handed to this listener by the kernel (bpf/weft_ingress.c). The
 * listener is transparent: an accepted socket's local end is the pod's address and port, its remote
 * end the client's. What happens to a connection is the handler's decision; this module only
 * accepts, reads the facts off the socket, and drains on close.
 */
import type { Socket } from 'node:net';
import { unmapIp } from '../core/ip';
import type { Logger } from '../core/log';
import { Drainer } from './drain';
import { listenTransparent } from './transparent-socket';

/** What the kernel preserved of a captured connection: the client, and the pod it asked for. */
export interface InboundPlaintextFacts {
  clientIp: string;
  clientPort: number;
  dstIp: string;
  dstPort: number;
}

export interface InboundPlaintextOptions {
  /** addresses to listen on: '0.0.0.0' and/or '::' (IPv6-only, so both can share the port) */
  hosts: string[];
  port: number;
  /** called once per accepted connection; the socket is paused and half-open capable */
  onConnection(socket: Socket, facts: InboundPlaintextFacts): void;
  log: Logger;
}

export interface InboundPlaintextListener {
  /** stops accepting, lets live connections finish within `graceMs`, then cuts them */
  close(graceMs?: number): Promise<void>;
  /** cuts everything at once */
  destroy(): void;
}

export async function listenInboundPlaintext(o: InboundPlaintextOptions): Promise<InboundPlaintextListener> {
  const servers = [];
  try {
    for (const host of o.hosts) servers.push(await listenTransparent(host, o.port));
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  const drainer = new Drainer(servers);
  for (const srv of servers) {
    srv.on('connection', (socket: Socket) => {
      drainer.track(socket);
      // Relayed replies leave as they come: Nagle would hold each behind the client's delayed ACK (as it did on 15001).
      socket.setNoDelay(true);
      socket.on('error', () => { /* the handler reports what it relays; a socket must never throw */ });
      const facts: InboundPlaintextFacts = {
        clientIp: unmapIp(socket.remoteAddress ?? ''), clientPort: socket.remotePort ?? 0,
        dstIp: unmapIp(socket.localAddress ?? ''), dstPort: socket.localPort ?? 0,
      };
      try {
        o.onConnection(socket, facts);
      } catch (e) {
        o.log.error({ err: (e as Error).message, client: `${facts.clientIp}:${facts.clientPort}`, dst: `${facts.dstIp}:${facts.dstPort}` },
          'inbound plaintext handler failed; connection reset');
        socket.resetAndDestroy();
      }
    });
    srv.on('error', (e) => o.log.error({ err: e.message }, 'inbound plaintext listener error'));
  }
  o.log.info({ hosts: o.hosts, port: o.port }, 'inbound plaintext capture listening (transparent)');
  return { close: (graceMs) => drainer.close(graceMs), destroy: () => drainer.destroy() };
}
