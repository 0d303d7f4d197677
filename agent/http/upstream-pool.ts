import * as http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * The HTTP/1 keep-alive pool of one downstream connection: an http.Agent whose connections come
 * from connectUpstream(). One socket at most: a downstream connection carries one request at a
 * time (pipelined ones wait their turn, in order), so the application sees as many connections as
 * the clients open, and a pipelined sequence reaches it in the order it was sent.
 */
export function upstreamPool(connectUpstream: () => Promise<Duplex>): http.Agent {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1, scheduling: 'lifo' });
  (agent as unknown as { createConnection: unknown }).createConnection = (_o: unknown, done: (e: Error | null, s?: Duplex) => void) => {
    connectUpstream().then((s) => done(null, s), (e: Error) => done(e));
    return undefined;
  };
  return agent;
}
