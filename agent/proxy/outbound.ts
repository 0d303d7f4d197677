/**
 * Outbound capture (15001): connections the kernel steered here from enrolled pods. The original
 * destination and the source pod come from the kernel's record of the connect (keyed by the
 * 4-tuple), never from the source address alone; a connection with no record is refused.
 */
import net, { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { wantsLine, type AccessLog, type Logger } from '../core/log';
import { unmapIp } from '../core/ip';
import { strMember } from '../core/json-text';
import type { Directory, WorkloadRef } from '../core/workload';
import type { Flow, OrigDst } from '../redirect/codec';
import { flowFromAddresses } from '../redirect/codec';
import { connectionClosed, connectionOpened, type ResponseFlags } from '../telemetry/events';
import { connectionMembers, endsMembers, outcomeMembers } from './access-log';
import { connectWithTimeout } from './connect';
import { deliver, socketDownstream, type DeliveryContext } from './deliver';
import { Drainer } from './drain';
import { podAccount, type FairShare, type Ticket } from './fairness-share';
import type { OutboundRoute } from './outbound-route';
import { relay } from './relay';
import { ignoreError } from '../core/socket-error';
import type { ServiceEnv } from './service-env';
import { handleServiceConnection } from './service-outbound';
import { serviceTarget } from './service-target';
import { listenShared } from './shared-listener';

type HboneRoute = Extract<OutboundRoute, { kind: 'hbone' }>;

export interface OutboundOptions {
  port: number;
  hosts: string[];
  lookupOrig(flow: Flow): OrigDst | null;
  directory(): Directory;
  /** where a connection to this destination goes (pure decision over the state in force) */
  route(dstIp: string): OutboundRoute;
  /** opens an HBONE stream to the destination node, presenting the source workload's identity */
  openTunnel(route: HboneRoute, source: WorkloadRef, target: { ip: string; port: number }, client: { ip: string; port: number }): Promise<Duplex>;
  /** delivery to this node's meshed pods (the `local` route): policy, protocol, then the pod */
  delivery: DeliveryContext;
  /** connections to a Service's cluster IP: resolved to its endpoints and balanced */
  services: ServiceEnv;
  accessLog: AccessLog;
  log: Logger;
  connectTimeoutMs?: number;
  /** per-pod limits, read budgets and overload shedding (fairness-share.ts); absent: none */
  fairness?: FairShare;
  /**
   * Called with a second listener on the outbound port per host, in the same reuseport group but
   * not steered (docs/capture-ports.md): the capture ports' SYNs are handed to it. Absent: none.
   */
  captureAnchor?(family: 4 | 6, fd: number): void;
}

export class OutboundProxy {
  private constructor(private readonly drainer: Drainer) {}

  static async listen(o: OutboundOptions): Promise<OutboundProxy> {
    // The anchors accept too: their group picks the steered listener, or (none in its slot) any of the group.
    const specs = o.hosts.flatMap((host) => [{ host, port: o.port, ipv6Only: host.includes(':') },
      ...(o.captureAnchor ? [{ host, port: o.port, ipv6Only: host.includes(':'), steered: false }] : [])]);
    const servers = specs.map(() => net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }));
    const proxy = new OutboundProxy(new Drainer(servers));
    const onConnection = (s: Socket) => { proxy.drainer.track(s); void handle(s, o); };
    for (const [i, srv] of servers.entries()) {
      srv.on('connection', onConnection);
      const spec = specs[i]!;
      const fd = await listenShared(srv, spec);
      if (spec.steered === false) o.captureAnchor!(spec.ipv6Only ? 6 : 4, fd);
    }
    return proxy;
  }

  get connections(): number {
    return this.drainer.connections;
  }

  close(graceMs?: number): Promise<void> {
    return this.drainer.close(graceMs);
  }

  destroy(): void {
    this.drainer.destroy();
  }
}

async function handle(client: Socket, o: OutboundOptions): Promise<void> {
  const started = performance.now();
  const srcIp = unmapIp(client.remoteAddress ?? '');
  const srcPort = client.remotePort ?? 0;
  client.on('error', ignoreError); // reported through relay or below
  let orig: OrigDst | null = null;
  try {
    orig = o.lookupOrig(flowFromAddresses(srcIp, srcPort, unmapIp(client.localAddress ?? ''), client.localPort ?? 0));
  } catch (e) {
    o.log.error({ err: (e as Error).message }, 'reading the redirect record failed');
  }
  if (!orig) {
    o.log.warn({ src: `${srcIp}:${srcPort}` }, 'connection to the outbound port without a redirect record: refused (only the kernel may send connections here)');
    client.resetAndDestroy();
    return;
  }
  const dir = o.directory();
  const src = dir.sourceByCgroup(orig.cgroupId);
  let ticket: Ticket | undefined;
  if (o.fairness && src) {
    // Charged to the source pod: its limits, and both directions' reads against its budget.
    const admitted = o.fairness.admit(podAccount(src));
    if (!admitted.ok) {
      o.fairness.refuse(client, podAccount(src), admitted.refusal.reason);
      if (wantsLine(o.accessLog, { decision: 'deny', error: admitted.refusal.detail })) {
        o.accessLog.write(connectionMembers({ direction: 'outbound', srcIp, srcPort, src, dstIp: orig.ip, dstPort: orig.port, decision: 'deny', bytesSent: 0, bytesRecv: 0,
          durationMs: performance.now() - started, error: admitted.refusal.detail }), 'connection refused');
      }
      return;
    }
    ticket = admitted.ticket;
    o.fairness.gate(client, ticket.account);
    ticket.closeOn(client);
  }
  const svc = serviceTarget(o.services.store(), orig.ip, orig.port);
  if (svc.kind === 'service') {
    // Served request by request: not counted as pending while it waits for its first request.
    ticket?.ready();
    return handleServiceConnection(o.services, { client, src, clientIp: srcIp, clientPort: srcPort, target: svc.target });
  }
  if (svc.kind === 'no-port') {
    client.resetAndDestroy();
    if (wantsLine(o.accessLog, { decision: 'deny' })) {
      o.accessLog.write(connectionMembers({ direction: 'outbound', srcIp, srcPort, ...(src ? { src } : {}), dstIp: orig.ip, dstPort: orig.port,
        dstService: { namespace: svc.service.namespace, name: svc.service.name }, decision: 'deny', bytesSent: 0, bytesRecv: 0,
        durationMs: performance.now() - started, error: svc.reason }), 'connection refused');
    }
    return;
  }
  const dst = dir.podByIp(orig.ip);
  const dstService = dir.serviceByIp(orig.ip);
  const record = { direction: 'outbound' as const, srcIp, srcPort, dstIp: orig.ip, dstPort: orig.port,
    ...(src ? { src } : {}), ...(dst ? { dst } : {}), ...(dstService ? { dstService } : {}) };

  const route = o.route(orig.ip);
  // Telemetry (source side; the `local` route is reported by deliver()): mTLS exactly when tunnelled.
  const security = route.kind === 'hbone' ? 'mutual_tls' as const : 'none' as const;
  // One line and one event per connection. `fields` is handed to the log's gate as it is (no copy);
  // the line is the ends (with the tunnel's address) and the outcome, without copying the record.
  const done = (fields: { decision: 'allow' | 'deny'; bytesSent: number; bytesRecv: number; error?: string; flags?: ResponseFlags }, msg: string) => {
    if (wantsLine(o.accessLog, fields)) {
      // dst.hbone_addr is endsMembers()' last member: appended here rather than copying the record to add it
      const ends = route.kind === 'hbone' ? endsMembers(record) + strMember('dst.hbone_addr', `${route.nodeAddress}:${route.port}`) : endsMembers(record);
      o.accessLog.write(ends + outcomeMembers({ decision: fields.decision, bytesSent: fields.bytesSent, bytesRecv: fields.bytesRecv,
        durationMs: performance.now() - started, error: fields.error }), msg);
    }
    if (connectionClosed.hasSubscribers) {
      connectionClosed.publish({ reporter: 'source', ends: record, security, bytesFromClient: fields.bytesSent, bytesToClient: fields.bytesRecv, flags: fields.flags ?? '-' });
    }
  };

  if (route.kind === 'local') {
    // This proxy is the destination's proxy too: the same delivery (and policy) as a tunnelled stream.
    return deliver(socketDownstream(client), {
      path: 'local',
      pod: route.pod,
      conn: { sourceIp: srcIp, sourcePort: srcPort, ...(src ? { sourcePrincipal: src.identity } : {}), destinationIp: orig.ip, destinationPort: orig.port },
      record,
      ticket,
    }, o.delivery);
  }
  if (connectionOpened.hasSubscribers) connectionOpened.publish({ reporter: 'source', ends: record, security });
  let upstream: Duplex;
  if (route.kind === 'unreachable' || (route.kind === 'hbone' && !src)) {
    // A meshed destination is never sent plaintext; without a source identity there is no tunnel.
    client.resetAndDestroy();
    done({ decision: 'deny', bytesSent: 0, bytesRecv: 0, error: route.kind === 'unreachable' ? route.reason : 'source pod unknown: no identity to present',
      flags: route.kind === 'unreachable' ? 'CONNECT' : 'IDENTITY_ERROR' }, 'connection refused');
    return;
  }
  if (route.kind === 'hbone') {
    try {
      upstream = await o.openTunnel(route, src!, { ip: orig.ip, port: orig.port }, { ip: srcIp, port: srcPort });
      ticket?.ready();
    } catch (e) {
      client.resetAndDestroy();
      const err = e as Error & { code?: string };
      done({ decision: 'allow', bytesSent: 0, bytesRecv: 0, error: err.code ? `${err.code}: ${err.message}` : err.message, flags: err.code === 'HBONE_FORBIDDEN' ? 'DENY' : 'CONNECT' }, 'connection failed');
      return;
    }
  } else {
    try {
      upstream = await connectWithTimeout(orig.ip, orig.port, o.connectTimeoutMs ?? 10_000);
      ticket?.ready();
      if (ticket) o.fairness!.gate(upstream as Socket, ticket.account);
    } catch (e) {
      // The client's connect already succeeded (to us); a reset is the closest thing to a refusal.
      client.resetAndDestroy();
      done({ decision: 'allow', bytesSent: 0, bytesRecv: 0, error: (e as Error).message, flags: 'CONNECT' }, 'connection failed');
      return;
    }
  }
  // Not awaited: a suspended async function per open connection held about 0.3 KiB (its generator and registers).
  void relay(client, upstream).then((r) => done(r.error ? { decision: 'allow', bytesSent: r.sent, bytesRecv: r.received, error: r.error.message }
    : { decision: 'allow', bytesSent: r.sent, bytesRecv: r.received }, 'connection complete'));
}
