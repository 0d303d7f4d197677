/**
 * Opens a byte stream from the source proxy to one endpoint (a pod's address and port), as a source
 * workload, the way a captured connection to that pod would go: a meshed pod on another node over
 * an HBONE tunnel presenting the source's identity; a meshed pod on this node through deliver()
 * (its policy, its protocol handling) over an in-memory pair; a pod outside the mesh in plaintext,
 * as the application asked. The Service-aware proxy (service-http.ts) opens its upstream
 * connections with it.
 */
import type { Duplex } from 'node:stream';
import type { WorkloadRef } from '../core/workload';
import type { SecurityPolicy } from '../telemetry/events';
import { connectWithTimeout } from './connect';
import { deliver, type Arrival, type DeliveryContext, type Downstream } from './deliver';
import { duplexPair, type PairEnd } from './duplex-pair';
import type { OutboundRoute } from './outbound-route';
import { relay } from './relay';

type HboneRoute = Extract<OutboundRoute, { kind: 'hbone' }>;

export interface Dialer {
  route(ip: string): OutboundRoute;
  openTunnel(route: HboneRoute, source: WorkloadRef, target: { ip: string; port: number }, client: { ip: string; port: number }): Promise<Duplex>;
  delivery: DeliveryContext;
  connectTimeoutMs: number;
}

export interface DialRequest {
  source: WorkloadRef;
  client: { ip: string; port: number };
  target: { ip: string; port: number };
  service: { namespace: string; name: string };
}

export interface Dialed {
  stream: Duplex;
  security: SecurityPolicy;
  /** the destination node's proxy, when tunnelled */
  hboneAddr?: string;
}

/** Fails with a `code` the caller maps to a response flag: `UNREACHABLE` (a meshed pod the mesh cannot reach). */
export async function dial(d: Dialer, r: DialRequest): Promise<Dialed> {
  const route = d.route(r.target.ip);
  switch (route.kind) {
    case 'hbone':
      return { stream: await d.openTunnel(route, r.source, r.target, r.client), security: 'mutual_tls', hboneAddr: `${route.nodeAddress}:${route.port}` };
    case 'local': {
      const [near, far] = duplexPair();
      const arrival: Arrival = {
        path: 'local',
        pod: route.pod,
        conn: { sourceIp: r.client.ip, sourcePort: r.client.port, sourcePrincipal: r.source.identity, destinationIp: r.target.ip, destinationPort: r.target.port },
        record: { direction: 'outbound', srcIp: r.client.ip, srcPort: r.client.port, src: r.source, dstIp: r.target.ip, dstPort: r.target.port,
          dst: d.delivery.state().store.workloadRef(route.pod), dstService: r.service },
        sourceReported: true,
      };
      void deliver(pairDownstream(far), arrival, d.delivery);
      return { stream: near, security: 'mutual_tls' };
    }
    case 'passthrough':
      return { stream: await connectWithTimeout(r.target.ip, r.target.port, d.connectTimeoutMs, 'stream'), security: 'none' };
    case 'unreachable':
      throw Object.assign(new Error(route.reason), { code: 'UNREACHABLE' });
  }
}

/** The far end of an in-memory pair as deliver() sees a client: a refusal destroys it (the near end sees a reset). */
export function pairDownstream(end: PairEnd): Downstream {
  return {
    accept: () => end,
    refuse: (_status, reason) => { if (!end.destroyed) end.destroy(Object.assign(new Error(reason), { code: 'ECONNRESET' })); },
    splice: (upstream) => relay(end, upstream),
    countBytes: () => {
      const [read, written] = [end.bytesRead, end.bytesWritten];
      return () => ({ read: end.bytesRead - read, written: end.bytesWritten - written });
    },
  };
}
