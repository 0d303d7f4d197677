/**
 * Inbound (15008): HBONE streams from other nodes' proxies, delivered to meshed pods on this node.
 * The destination proxy answers as the destination workload (its certificate, chosen by SNI),
 * records the source principal from the verified client certificate, and delivers from its own
 * sockets, the only sender a STRICT pod admits.
 */
import net, { Socket } from 'node:net';
import type { Logger } from '../core/log';
import type { PodInfo } from '../config/objects';
import { isEnrolled } from '../state/enrollment';
import type { WorkloadStore } from '../state/store';
import { HboneServer, type Credentials } from '../tunnel/hbone-server';
import { sniFor } from '../tunnel/sni';
import { connectionLogEntry } from './access-log';

export interface InboundOptions {
  hosts: string[];
  port: number;
  node: string;
  trustBundle(): string;
  store(): WorkloadStore;
  credentials(identity: string): Credentials | undefined;
  accessLog: Logger;
  connectTimeoutMs?: number;
}

/** The meshed pod on this node that owns `ip`, or why there is none. Pure. */
export function localTarget(ip: string, node: string, store: WorkloadStore): { pod: PodInfo } | { reason: string } {
  const pod = store.podByIp(ip);
  if (!pod) return { reason: `${ip} is not a known pod` };
  if (pod.nodeName !== node) return { reason: `pod ${pod.namespace}/${pod.name} runs on ${pod.nodeName}, not on this node (${node})` };
  if (!isEnrolled(pod, store.namespace(pod.namespace))) return { reason: `pod ${pod.namespace}/${pod.name} is not in the mesh` };
  return { pod };
}

export async function listenInbound(o: InboundOptions): Promise<HboneServer[]> {
  const byServerName = (name: string): Credentials | undefined => {
    const store = o.store();
    for (const pod of store.snapshot.pods) {
      if (pod.nodeName !== o.node) continue;
      const id = store.identityOf(pod);
      if (sniFor(id) === name) return o.credentials(id);
    }
    return undefined;
  };
  const servers: HboneServer[] = [];
  for (const host of o.hosts) {
    servers.push(await HboneServer.listen({
      host,
      port: o.port,
      trustBundle: o.trustBundle(),
      identityFor: byServerName,
      authorize: ({ target }) => {
        const t = localTarget(target.ip, o.node, o.store());
        return 'pod' in t ? { allow: true } : { allow: false, reason: t.reason };
      },
      connectTarget: (target) => connect(target.ip, target.port, o.connectTimeoutMs ?? 10_000),
      onStream: (info) => {
        const store = o.store();
        const dst = store.podByIp(info.target?.ip ?? '');
        o.accessLog.info(connectionLogEntry({
          direction: 'inbound',
          srcIp: info.remoteAddress ?? '0.0.0.0', srcPort: info.remotePort ?? 0, srcIdentity: info.peerIdentity,
          dstIp: info.target?.ip ?? '0.0.0.0', dstPort: info.target?.port ?? 0,
          ...(dst ? { dst: { namespace: dst.namespace, name: dst.name, workload: store.workloadName(dst), identity: store.identityOf(dst), node: dst.nodeName } } : {}),
          decision: info.status === 200 ? 'allow' : 'deny',
          bytesSent: info.bytesIn, bytesRecv: info.bytesOut, durationMs: info.durationMs,
          ...(info.error ? { error: info.error } : info.status !== 200 ? { error: `HTTP ${info.status}` } : {}),
        }), 'inbound stream complete');
      },
    }));
  }
  return servers;
}

function connect(ip: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: ip, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => { s.destroy(); reject(Object.assign(new Error(`connect to ${ip}:${port} timed out`), { code: 'ETIMEDOUT' })); }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}
