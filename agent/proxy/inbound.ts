/**
 * Inbound (15008): HBONE streams from other nodes' proxies, delivered to meshed pods on this node.
 * The destination proxy answers as the destination workload (its certificate, chosen by SNI),
 * records the source principal from the verified client certificate, and delivers from its own
 * sockets, the only sender a STRICT pod admits.
 */
import type { Logger } from '../core/log';
import type { PodInfo } from '../config/objects';
import { isEnrolled } from '../state/enrollment';
import type { WorkloadStore } from '../state/store';
import { HboneServer, type Credentials } from '../tunnel/hbone-server';
import { sniFor } from '../tunnel/sni';
import { connectionLogEntry } from './access-log';
import { connectWithTimeout } from './connect';

export interface InboundOptions {
  host: string;
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
    connectTarget: (target) => connectWithTimeout(target.ip, target.port, o.connectTimeoutMs ?? 10_000),
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
  });
}
