import { formatAddr } from '../core/ip';
import type { WorkloadRef } from '../core/workload';

export interface ConnectionRecord {
  direction: 'outbound' | 'inbound';
  srcIp: string;
  srcPort: number;
  src?: WorkloadRef;
  /** the verified peer identity when the source pod itself is not known here (inbound tunnels) */
  srcIdentity?: string;
  dstIp: string;
  dstPort: number;
  dst?: WorkloadRef;
  dstService?: { namespace: string; name: string };
  hboneAddr?: string;
  decision: 'allow' | 'deny';
  bytesSent: number;
  bytesRecv: number;
  durationMs: number;
  error?: string;
}

/** One access-log line per connection, with ztunnel's field names (DESIGN.md). Pure. */
export function connectionLogEntry(r: ConnectionRecord): Record<string, unknown> {
  const e: Record<string, unknown> = {
    'src.addr': formatAddr(r.srcIp, r.srcPort),
    'dst.addr': formatAddr(r.dstIp, r.dstPort),
    direction: r.direction,
    decision: r.decision,
    bytes_sent: r.bytesSent,
    bytes_recv: r.bytesRecv,
    duration: Math.round(r.durationMs * 1000) / 1000,
  };
  if (r.src) Object.assign(e, { 'src.workload': r.src.workload, 'src.namespace': r.src.namespace, 'src.identity': r.src.identity, 'src.pod': r.src.name });
  else if (r.srcIdentity) {
    e['src.identity'] = r.srcIdentity;
    const ns = /\/ns\/([^/]+)\/sa\//.exec(r.srcIdentity)?.[1];
    if (ns) e['src.namespace'] = ns;
  }
  if (r.dst) Object.assign(e, { 'dst.workload': r.dst.workload, 'dst.namespace': r.dst.namespace, 'dst.identity': r.dst.identity, 'dst.pod': r.dst.name });
  if (r.dstService) e['dst.service'] = `${r.dstService.name}.${r.dstService.namespace}.svc.cluster.local`;
  if (r.hboneAddr) e['dst.hbone_addr'] = r.hboneAddr;
  if (r.error) e.error = r.error;
  return e;
}
