/**
 * Opens the delivering proxy's connection to a meshed pod on this node, from the client's own
 * address where source-address.ts says the source is preserved (a transparent socket), from the
 * node's address otherwise. Source preservation never fails a connection: when the client's
 * address cannot be used (its port and an ephemeral one both taken for this destination, or the
 * agent lacks CAP_NET_ADMIN) the connection is made from the node's address and the fallback is
 * reported through `onFallback`.
 */
import type { Socket } from 'node:net';
import { connectWithTimeout } from './connect';
import type { Arrival } from './deliver';
import { isSourceCollision, upstreamSource, type SourceCollision, type SourceEnv } from './source-address';
import { connectTransparent } from './transparent-socket';
import type { HeldAddresses } from './held-addresses';

export interface UpstreamEnv extends SourceEnv {
  timeoutMs: number;
  /** the client's address could not be used for `a`; the connection comes from the node instead */
  onFallback?(a: Arrival, error: Error & { code?: string }): void;
  /** the client's port was taken for this destination (`code`: EADDRINUSE, EADDRNOTAVAIL); `a` comes from its address and another port */
  onPortMoved?(a: Arrival, code: SourceCollision): void;
  /** counts the transparent connections per pod address, so a pod leaving the mesh keeps their replies steered until they end */
  held?: HeldAddresses;
}

export async function connectToPod(a: Arrival, reader: 'pump' | 'stream', env: UpstreamEnv): Promise<Socket> {
  const dst = { ip: a.conn.destinationIp, port: a.conn.destinationPort };
  const src = upstreamSource(a, env);
  if (!src.preserve) return connectWithTimeout(dst.ip, dst.port, env.timeoutMs, reader);
  // Held from before the SYN (its SYN-ACK needs the steering too), in the same turn as the decision.
  const held = src.destination;
  env.held?.hold(held);
  try {
    const socket = await connectTransparent(src.source, dst, env.timeoutMs, reader, env.onPortMoved && ((code) => env.onPortMoved!(a, code)));
    env.held?.closeReleases(socket, held);
    return socket;
  } catch (e) {
    env.held?.release(held);
    const err = e as Error & { code?: string };
    if (!isSourceCollision(err.code) && err.code !== 'EPERM') throw e;
    env.onFallback?.(a, err);
    return connectWithTimeout(dst.ip, dst.port, env.timeoutMs, reader);
  }
}
