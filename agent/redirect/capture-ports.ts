/**
 * Whether the capture ports are free on the node proxy's addresses (docs/capture-ports.md). The
 * sk_lookup program takes every SYN to a proxy address on a capture port before any listener
 * bound there would see it, so another program serving one of those ports on this node would
 * lose its connections to the outbound proxy, which refuses them. The agent probes each address
 * and port once, before it spreads captured connects over them, with a bind() that only a socket
 * holding the port refuses (SO_REUSEADDR: a TIME_WAIT left there is no holder).
 */
import * as libc from '../../native/libc';
import { familyOf, formatAddr, ipBytes } from '../core/ip';
import type { CapturePorts } from './codec';

/** The `address:port`s among `ips` × `ports` that a socket of this network namespace holds (bound or listening). */
export function heldCapturePorts(ips: string[], ports: CapturePorts): string[] {
  const held: string[] = [];
  for (const ip of ips) {
    for (let port = ports.base; port < ports.base + ports.count; port++) {
      const where = formatAddr(ip, port);
      const fd = libc.tcpSocket(familyOf(ip));
      try {
        libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_REUSEADDR, 1, 'SO_REUSEADDR');
        libc.bind(fd, ipBytes(ip), port, where);
      } catch (e) {
        if ((e as { code?: string }).code !== 'EADDRINUSE') throw e;
        held.push(where);
      } finally {
        libc.close(fd);
      }
    }
  }
  return held;
}
