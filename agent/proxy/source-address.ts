/**
 * Source address preservation: from which address and port the node proxy opens its connection to
 * a meshed pod, so the application sees its client as it would without the mesh (ztunnel does the
 * same). Pure decisions; transparent-socket.ts makes the socket and bpf/weft_ingress.c brings the
 * pod's replies back to it.
 *
 *   plaintext  a client outside the mesh captured on 15006: its own address and port while the
 *              destination is still captured (the same entry brings its replies back to the proxy);
 *              a pod that left the mesh since its client connected gets the node's address
 *   hbone      a pod on another node: the address and port the source proxy stated in `Forwarded:
 *              for=`, only when it was verified against the peer's identity (record.src is set)
 *   local      a pod on this node: the client socket's own address and port (a kernel fact)
 *
 * The tunnelled and same-node paths preserve the source only where the destination pod's replies
 * are steered back to the proxy (its address in weft_capture behind an interface that carries the
 * ingress program: `steered`); elsewhere the pod would answer the client directly, so the proxy
 * connects from the node's own address as before.
 */
import { isIPv4 } from 'node:net';
import { canonicalIp, familyOf } from '../core/ip';
import type { Arrival } from './deliver';

export interface SourceEndpoint { ip: string; port: number }

/** The proxy connects from `source` (transparent) to the pod at `destination` (canonical), or from the node's address, for `reason`. */
export type UpstreamSource = { preserve: true; source: SourceEndpoint; destination: string } | { preserve: false; reason: string };

export interface SourceEnv {
  /** true when the replies of the pod at `ip` reach the proxy's transparent sockets */
  steered(ip: string): boolean;
  /** true while the inbound plaintext of the pod at `ip` is captured (enrolled, not lingering): what brought a plaintext client here */
  captured(ip: string): boolean;
  /** the node's own addresses (canonical) */
  nodeIps: ReadonlySet<string>;
}

/** Where the upstream connection of `a` comes from. Pure. */
export function upstreamSource(a: Pick<Arrival, 'path' | 'conn' | 'record'>, env: SourceEnv): UpstreamSource {
  const { sourceIp, sourcePort, destinationIp } = a.conn;
  let src: string, dst: string;
  try {
    src = canonical(sourceIp);
    dst = canonical(destinationIp);
    if (familyOf(src) !== familyOf(dst)) return { preserve: false, reason: `client ${sourceIp} and pod ${destinationIp} are of different families` };
  } catch {
    return { preserve: false, reason: `client address ${JSON.stringify(sourceIp)} is not an IP address` };
  }
  if (src === '0.0.0.0' || src === '::') return { preserve: false, reason: 'client address unknown' };
  if (src === dst) return { preserve: false, reason: 'the pod is its own client: a packet from its own address would be dropped as martian' };
  if (env.nodeIps.has(src)) return { preserve: false, reason: 'the client is the node itself' };
  const port = Number.isInteger(sourcePort) && sourcePort > 0 && sourcePort <= 65535 ? sourcePort : 0;
  switch (a.path) {
    case 'plaintext':
      // Not steered() (a bridged pod's replies to a client on its own bridge are not, to remote ones they are), but
      // still captured: between the capture and this connect (protocol detection waits up to 200 ms) the pod can
      // leave the mesh, and with its entry gone its SYN-ACK would go to the client and the connect would hang.
      if (!env.captured(dst)) return { preserve: false, reason: `${destinationIp} left the mesh after its client connected: its replies are no longer brought back to the proxy` };
      return { preserve: true, source: { ip: src, port }, destination: dst };
    case 'hbone':
      if (a.record.src === undefined) return { preserve: false, reason: 'the tunnel did not state a source pod running as its peer identity' };
      break;
    case 'local':
      break;
  }
  if (!env.steered(dst)) return { preserve: false, reason: `the replies of ${destinationIp} are not steered back to the proxy (no ingress program on its interface)` };
  return { preserve: true, source: { ip: src, port }, destination: dst };
}

/**
 * canonicalIp, without its parse and format for a dotted quad: isIPv4 accepts no leading zeros, so
 * such a text is already canonical. Asked twice per delivered connection (~1 % of the destination
 * agent's CPU under a new connection per request, docs/new-connections.md).
 */
function canonical(ip: string): string {
  return isIPv4(ip) ? ip : canonicalIp(ip);
}

/**
 * The source ports to try, in order: the client's own (or the one it stated), then one the kernel
 * picks at connect time, unique for the 4-tuple (0). A preferred port can be taken by another
 * connection of the same pod address on this node (the same 4-tuple in TIME_WAIT after an earlier
 * connection, a second upstream connection for one client, or a node process bound to it). Pure.
 */
export function sourcePortAttempts(preferred: number): number[] {
  return preferred > 0 ? [preferred, 0] : [0];
}

/**
 * Whether a failed bind or connect means the source address and port are taken for this
 * destination (EADDRINUSE at bind, EADDRNOTAVAIL at connect when the 4-tuple exists), so another
 * port may work. Pure.
 */
export type SourceCollision = 'EADDRINUSE' | 'EADDRNOTAVAIL';

export function isSourceCollision(code: string | undefined): code is SourceCollision {
  return code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL';
}
