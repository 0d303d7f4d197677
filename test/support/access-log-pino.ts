/**
 * The access log as it was written before the line writer (commit 7f4bd4c): an object of fields per
 * line, built by these functions and the call sites' code, serialized by pino with the
 * connection's ends as a child logger's bindings. Kept here, unchanged in what it produces, as the
 * reference the new writer's lines are compared with (access-log-lines.test.ts) and measured
 * against (test/bench/access-log-lines.ts).
 */
import pino from 'pino';
import { formatAddr } from '../../agent/core/ip';
import type { ConnectionEnds, ConnectionRecord, DeliveredExtras, ExchangeRecord, Outcome, ServiceRequestExtras } from '../../agent/proxy/access-log';

export function connectionEnds(r: ConnectionEnds): Record<string, unknown> {
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

export function connectionLogEntry(r: ConnectionRecord): Record<string, unknown> {
  return Object.assign(connectionEnds(r), outcomeFields(r));
}

export function requestFields(o: Outcome, x: ExchangeRecord, policy?: { policy?: string; rule?: number }): Record<string, unknown> {
  const e = outcomeFields(o);
  e.method = x.method;
  e.path = x.path;
  e.authority = x.host;
  e.protocol = x.protocol;
  e.status = x.status;
  if (x.originalPath !== undefined) e.original_path = x.originalPath;
  if (x.grpcStatus !== undefined) e.grpc_status = x.grpcStatus;
  if (policy?.policy !== undefined) e.policy = `${policy.policy}[${policy.rule}]`;
  return e;
}

/** service-http.ts's request line, as it was built there. */
export function serviceRequestFields(o: Outcome, x: ExchangeRecord, s: ServiceRequestExtras): Record<string, unknown> {
  const fields = requestFields(o, x);
  if (s.route) fields.route = s.route;
  fields.retries = s.retries;
  if (s.flag !== '-') fields.response_flags = s.flag;
  if (s.upstream) fields.upstream = `${s.upstream.ip.includes(':') ? `[${s.upstream.ip}]` : s.upstream.ip}:${s.upstream.port}`;
  return fields;
}

/** deliver.ts's connection line, as it was built there. */
export function deliveredConnectionEntry(r: ConnectionRecord, f: DeliveredExtras): Record<string, unknown> {
  const entry = connectionLogEntry(r);
  if (f.policy !== undefined) entry.policy = `${f.policy}[${f.rule}]`;
  if (f.audit?.length) entry.audit = f.audit;
  if (f.protocol !== undefined) Object.assign(entry, { protocol: f.protocol, requests: f.requests });
  return entry;
}

/** pino configured as the access logger was, writing each line to `write`. */
export function pinoAccessLogger(write: (line: string) => void): pino.Logger {
  return pino({ base: undefined, messageKey: 'msg' }, { write: (s: string) => { write(s); } });
}
