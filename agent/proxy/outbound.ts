/**
 * Outbound capture (15001): connections the kernel steered here from enrolled pods. The original
 * destination and the source pod come from the kernel's record of the connect (keyed by the
 * 4-tuple), never from the source address alone; a connection with no record is refused.
 */
import net, { Socket } from 'node:net';
import type { Logger } from '../core/log';
import { unmapIp } from '../core/ip';
import type { Directory } from '../core/workload';
import type { Flow, OrigDst } from '../redirect/codec';
import { flowFromAddresses } from '../redirect/codec';
import { connectionLogEntry } from './access-log';
import { Drainer } from './drain';
import { relay } from './relay';

export interface OutboundOptions {
  port: number;
  hosts: string[];
  lookupOrig(flow: Flow): OrigDst | null;
  directory(): Directory;
  accessLog: Logger;
  log: Logger;
  connectTimeoutMs?: number;
}

export class OutboundProxy {
  private constructor(private readonly drainer: Drainer) {}

  static async listen(o: OutboundOptions): Promise<OutboundProxy> {
    const servers = o.hosts.map(() => net.createServer({ allowHalfOpen: true, pauseOnConnect: true }));
    const proxy = new OutboundProxy(new Drainer(servers));
    for (const [i, srv] of servers.entries()) {
      srv.on('connection', (s) => { proxy.drainer.track(s); void handle(s, o); });
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host: o.hosts[i], port: o.port, ipv6Only: o.hosts[i]!.includes(':') }, () => { srv.off('error', reject); resolve(); });
      });
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
  client.on('error', () => { /* reported through relay or below */ });
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
  const dst = dir.podByIp(orig.ip);
  const dstService = dir.serviceByIp(orig.ip);
  const record = { direction: 'outbound' as const, srcIp, srcPort, dstIp: orig.ip, dstPort: orig.port,
    ...(src ? { src } : {}), ...(dst ? { dst } : {}), ...(dstService ? { dstService } : {}) };

  const upstream = net.connect({ host: orig.ip, port: orig.port, allowHalfOpen: true, noDelay: true });
  const connected = await new Promise<Error | null>((resolve) => {
    const timer = setTimeout(() => resolve(new Error(`connect to ${orig!.ip}:${orig!.port} timed out after ${o.connectTimeoutMs ?? 10000} ms`)), o.connectTimeoutMs ?? 10000);
    upstream.once('connect', () => { clearTimeout(timer); resolve(null); });
    upstream.once('error', (e) => { clearTimeout(timer); resolve(e); });
  });
  if (connected) {
    // The client's connect already succeeded (to us); a reset is the closest thing to a refusal.
    upstream.destroy();
    client.resetAndDestroy();
    o.accessLog.info(connectionLogEntry({ ...record, decision: 'allow', bytesSent: 0, bytesRecv: 0,
      durationMs: performance.now() - started, error: connected.message }), 'connection failed');
    return;
  }
  const r = await relay(client, upstream);
  o.accessLog.info(connectionLogEntry({ ...record, decision: 'allow', bytesSent: r.sent, bytesRecv: r.received,
    durationMs: performance.now() - started, ...(r.error ? { error: r.error.message } : {}) }), 'connection complete');
}
