/**
 * Inbound (15008): HBONE streams from other nodes' proxies, delivered to meshed pods on this node.
 * The destination proxy answers as the destination workload (its certificate, chosen by SNI),
 * records the source principal from the verified client certificate, and hands each stream to
 * deliver(): protocol, authorization policy, then the pod. It delivers from its own sockets, the
 * only sender a STRICT pod admits.
 */
import { constants, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { wantsLine, type AccessLog } from '../core/log';
import type { PodInfo } from '../config/objects';
import type { WorkloadStore } from '../state/store';
import { HboneServer, type Credentials, type StreamRequest, type TunnelStream } from '../tunnel/hbone-server';
import { sniFor } from '../tunnel/sni';
import { splice, type SpliceResult } from '../tunnel/splice';
import { countBytes } from '../tunnel/stream-counts';
import { connectionMembers } from './access-log';
import type { RelayResult } from './relay';
import { deliver, type Arrival, type DeliveryContext, type Downstream } from './deliver';
import { arrivalAccount, type FairShare } from './fairness-share';

export interface InboundOptions {
  host: string;
  port: number;
  node: string;
  trustBundle(): string;
  store(): WorkloadStore;
  /** The workload's certificate; a promise while it is still being issued. */
  credentials(identity: string): Credentials | undefined | Promise<Credentials | undefined>;
  delivery: DeliveryContext;
  accessLog: AccessLog;
  /** per-peer limits and read budgets (fairness-share.ts): the source pod when the peer's claim is verified, else the peer identity */
  fairness?: FairShare;
}

/**
 * The pod on this node that owns `ip`, or why there is none. Pure. In the mesh or not: a connection
 * the source node's proxy tunnelled (or the kernel captured) while the pod was in the mesh reaches
 * it also when this node has seen it leave first (its namespace's label turned off, the two nodes
 * applying the change moments apart: refused, the client saw a reset). It is the connection the
 * client asked for, from an authenticated peer, and a pod out of the mesh takes plaintext from anyone.
 */
export function localTarget(ip: string, node: string, store: WorkloadStore): { pod: PodInfo } | { reason: string } {
  const pod = store.podByIp(ip);
  if (!pod) return { reason: `${ip} is not a known pod` };
  if (pod.nodeName !== node) return { reason: `pod ${pod.namespace}/${pod.name} runs on ${pod.nodeName}, not on this node (${node})` };
  return { pod };
}

/**
 * The client of a tunnelled connection as policy sees it. The source proxy states the source pod's
 * address (`Forwarded: for=`); it is believed only when that address belongs to a pod running as
 * the verified peer identity, so a proxy cannot claim another workload's address. Otherwise the
 * source is the tunnel's own peer (the source node proxy). Pure.
 */
export function tunnelSource(store: WorkloadStore, request: StreamRequest): { ip: string; port: number; pod?: PodInfo } {
  const claimed = request.forwardedFor;
  const pod = claimed && store.podByIp(claimed.ip);
  if (claimed && pod && store.identityOf(pod) === request.peerIdentity) return { ip: claimed.ip, port: claimed.port ?? 0, pod };
  return { ip: request.remoteAddress ?? '0.0.0.0', port: request.remotePort ?? 0 };
}

/** The arrival deliver() judges, for a tunnelled stream to a local pod. Pure. */
export function tunnelArrival(store: WorkloadStore, request: StreamRequest, pod: PodInfo): Arrival {
  const src = tunnelSource(store, request);
  return {
    path: 'hbone',
    pod,
    conn: { sourceIp: src.ip, sourcePort: src.port, sourcePrincipal: request.peerIdentity, destinationIp: request.target.ip, destinationPort: request.target.port },
    record: {
      direction: 'inbound', srcIp: src.ip, srcPort: src.port,
      ...(src.pod ? { src: store.workloadRef(src.pod) } : { srcIdentity: request.peerIdentity }),
      dstIp: request.target.ip, dstPort: request.target.port, dst: store.workloadRef(pod),
    },
  };
}

/** The arrival deliver() judges, for a plaintext client outside the mesh captured on 15006: no principal. Pure. */
export function plaintextArrival(store: WorkloadStore, f: { clientIp: string; clientPort: number; dstIp: string; dstPort: number }, pod: PodInfo): Arrival {
  return {
    path: 'plaintext',
    pod,
    conn: { sourceIp: f.clientIp, sourcePort: f.clientPort, destinationIp: f.dstIp, destinationPort: f.dstPort },
    record: { direction: 'inbound', srcIp: f.clientIp, srcPort: f.clientPort, dstIp: f.dstIp, dstPort: f.dstPort, dst: store.workloadRef(pod) },
  };
}

/** An HBONE stream as deliver() sees it: accepting answers 200, refusing after that resets the stream. */
export function tunnelDownstream(tunnel: TunnelStream): Downstream {
  return new TunnelDownstream(tunnel);
}

/** One object per connection, its methods shared (four closures and their context were ~0.25 KiB per open connection). */
class TunnelDownstream implements Downstream {
  private stream: ServerHttp2Stream | undefined;

  constructor(private readonly tunnel: TunnelStream) {}

  accept(): ServerHttp2Stream {
    return (this.stream = this.tunnel.accept());
  }

  countBytes(): () => { read: number; written: number } {
    return countBytes(this.stream!);
  }

  refuse(status: number, reason: string): void {
    const stream = this.stream;
    if (stream === undefined) this.tunnel.refuse(status, reason);
    else if (!stream.closed) stream.close(constants.NGHTTP2_CONNECT_ERROR);
  }

  splice(upstream: Socket): Promise<RelayResult> {
    const stream = this.stream!;
    // The promise's own resolve is the splice's callback: no closure held per open connection.
    return new Promise<SpliceResult>((resolve) => splice(stream, upstream, resolve)).then(asRelayResult);
  }
}

function asRelayResult(r: SpliceResult): RelayResult {
  return { sent: r.bytesIn, received: r.bytesOut, ...(r.error === undefined ? {} : { error: new Error(r.error) }) };
}

/** SNI name → identity of this node's workloads, built once per state snapshot, not per handshake. */
const sniTables = new WeakMap<WorkloadStore, Map<string, string>>();
function identityBySni(store: WorkloadStore, node: string): Map<string, string> {
  let table = sniTables.get(store);
  if (!table) {
    table = new Map(store.snapshot.pods.filter((p) => p.nodeName === node).map((p) => {
      const id = store.identityOf(p);
      return [sniFor(id), id];
    }));
    sniTables.set(store, table);
  }
  return table;
}

export function listenInbound(o: InboundOptions): Promise<HboneServer> {
  return HboneServer.listen({
    host: o.host,
    port: o.port,
    trustBundle: () => o.trustBundle(),
    identityFor: (name) => {
      const id = name === undefined ? undefined : identityBySni(o.store(), o.node).get(name);
      return id === undefined ? undefined : o.credentials(id);
    },
    authorize: ({ target }) => {
      const t = localTarget(target.ip, o.node, o.store());
      return 'pod' in t ? { allow: true } : { allow: false, reason: t.reason };
    },
    serve: (request, tunnel) => {
      const store = o.store();
      const t = localTarget(request.target.ip, o.node, store);
      if (!('pod' in t)) return tunnel.refuse(403, t.reason);
      const arrival = tunnelArrival(store, request, t.pod);
      if (!o.fairness) return void deliver(tunnelDownstream(tunnel), arrival, o.delivery);
      const admitted = o.fairness.admit(arrivalAccount(arrival));
      if (!admitted.ok) {
        tunnel.refuse(503, admitted.refusal.detail);
        return tunnel.report({ target: request.target, status: 503, bytesIn: 0, bytesOut: 0, error: admitted.refusal.detail });
      }
      // the stream's upstream ends its pending time (attachUpstream)
      const { ticket } = admitted;
      arrival.ticket = ticket;
      void deliver(tunnelDownstream(tunnel), arrival, o.delivery).finally(() => ticket.close());
    },
    // Streams the tunnel itself refused (not CONNECT, bad authority, no such local pod): deliver() logs the rest.
    onStream: (info) => {
      const error = info.error ?? `HTTP ${info.status}`;
      if (!wantsLine(o.accessLog, { decision: 'deny', status: info.status, error })) return;
      const store = o.store();
      const dst = store.podByIp(info.target?.ip ?? '');
      o.accessLog.write(connectionMembers({
        direction: 'inbound',
        srcIp: info.remoteAddress ?? '0.0.0.0', srcPort: info.remotePort ?? 0, srcIdentity: info.peerIdentity,
        dstIp: info.target?.ip ?? '0.0.0.0', dstPort: info.target?.port ?? 0,
        ...(dst ? { dst: store.workloadRef(dst) } : {}),
        decision: 'deny', bytesSent: info.bytesIn, bytesRecv: info.bytesOut, durationMs: info.durationMs,
        error,
      }), 'inbound stream refused');
    },
  });
}
