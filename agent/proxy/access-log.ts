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

/** What one HTTP exchange adds to its connection's fields. */
export interface ExchangeRecord {
  method: string;
  path: string;
  host: string;
  protocol: string;
  /** 0 when no response was sent */
  status: number;
  grpcStatus?: string;
}

/**
 * One access-log line per HTTP request: the connection's fields, plus `method`, `path`, `status`
 * (DESIGN.md) and, where a policy decided, which one. Pure.
 */
export function requestLogEntry(r: ConnectionRecord, x: ExchangeRecord, policy?: { policy?: string; rule?: number }): Record<string, unknown> {
  const e = connectionLogEntry(r);
  Object.assign(e, { method: x.method, path: x.path, authority: x.host, protocol: x.protocol, status: x.status });
  if (x.grpcStatus !== undefined) e.grpc_status = x.grpcStatus;
  if (policy?.policy !== undefined) e.policy = `${policy.policy}[${policy.rule}]`;
  return e;
}
