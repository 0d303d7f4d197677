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

/** The fields a connection's log lines share for as long as it lasts: its two ends. Pure. */
export function connectionEnds(r: Omit<ConnectionRecord, 'decision' | 'bytesSent' | 'bytesRecv' | 'durationMs' | 'error'>): Record<string, unknown> {
  const e: Record<string, unknown> = {
    'src.addr': formatAddr(r.srcIp, r.srcPort),
    'dst.addr': formatAddr(r.dstIp, r.dstPort),
    direction: r.direction,
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
  return e;
}

/** What one event on a connection (its end, or one request) reports beyond its ends. */
export interface Outcome {
  decision: 'allow' | 'deny';
  bytesSent: number;
  bytesRecv: number;
  durationMs: number;
  error?: string;
}

/** The fields of one outcome (never any of connectionEnds()' names). Pure. */
export function outcomeFields(o: Outcome): Record<string, unknown> {
  const e: Record<string, unknown> = {
    decision: o.decision,
    bytes_sent: o.bytesSent,
    bytes_recv: o.bytesRecv,
    duration: Math.round(o.durationMs * 1000) / 1000,
  };
  if (o.error) e.error = o.error;
  return e;
}

/** One access-log line per connection, with ztunnel's field names (DESIGN.md). Pure. */
export function connectionLogEntry(r: ConnectionRecord): Record<string, unknown> {
  return Object.assign(connectionEnds(r), outcomeFields(r));
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
 * What one HTTP request's line adds to its connection's ends (connectionEnds(), logged once per
 * connection as a pino child's bindings): the outcome, `method`, `path`, `status` (DESIGN.md) and,
 * where a policy decided, which one. Pure.
 */
export function requestFields(o: Outcome, x: ExchangeRecord, policy?: { policy?: string; rule?: number }): Record<string, unknown> {
  const e = outcomeFields(o);
  e.method = x.method;
  e.path = x.path;
  e.authority = x.host;
  e.protocol = x.protocol;
  e.status = x.status;
  if (x.grpcStatus !== undefined) e.grpc_status = x.grpcStatus;
  if (policy?.policy !== undefined) e.policy = `${policy.policy}[${policy.rule}]`;
  return e;
}
