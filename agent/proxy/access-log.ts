import { formatAddr } from '../core/ip';
import { flattened, jsonNumber, jsonString, numMember, strMember, valueMember } from '../core/json-text';
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

/** A connection's two ends: what its lines share for as long as it lasts. */
export type ConnectionEnds = Omit<ConnectionRecord, 'decision' | 'bytesSent' | 'bytesRecv' | 'durationMs' | 'error'>;

/**
 * A connection's ends as access-log members (core/json-text.ts: `,"src.addr":"…",…`), ztunnel's
 * field names (DESIGN.md): built once per connection, then shared by each of its lines. Pure.
 */
export function endsMembers(r: ConnectionEnds): string {
  let m = strMember('src.addr', formatAddr(r.srcIp, r.srcPort)) + strMember('dst.addr', formatAddr(r.dstIp, r.dstPort)) + strMember('direction', r.direction);
  if (r.src) m += workloadMembers('src', r.src);
  else if (r.srcIdentity) {
    m += strMember('src.identity', r.srcIdentity);
    const ns = /\/ns\/([^/]+)\/sa\//.exec(r.srcIdentity)?.[1];
    if (ns) m += strMember('src.namespace', ns);
  }
  if (r.dst) m += workloadMembers('dst', r.dst);
  if (r.dstService) m += strMember('dst.service', `${r.dstService.name}.${r.dstService.namespace}.svc.cluster.local`);
  if (r.hboneAddr) m += strMember('dst.hbone_addr', r.hboneAddr);
  return flattened(m);
}

function workloadMembers(end: 'src' | 'dst', w: WorkloadRef): string {
  return strMember(`${end}.workload`, w.workload) + strMember(`${end}.namespace`, w.namespace) + strMember(`${end}.identity`, w.identity) + strMember(`${end}.pod`, w.name);
}

/** What one event on a connection (its end, or one request) reports beyond its ends. */
export interface Outcome {
  decision: 'allow' | 'deny';
  bytesSent: number;
  bytesRecv: number;
  durationMs: number;
  error?: string;
}

/** The members of one outcome (never any of endsMembers()' names). Pure. */
export function outcomeMembers(o: Outcome): string {
  const m = `,"decision":${jsonString(o.decision)},"bytes_sent":${jsonNumber(o.bytesSent)},"bytes_recv":${jsonNumber(o.bytesRecv)},"duration":${
    jsonNumber(Math.round(o.durationMs * 1000) / 1000)}`;
  return o.error ? `${m},"error":${jsonString(o.error)}` : m;
}

/** One access-log line's members per connection: its ends and its outcome. Pure. */
export function connectionMembers(r: ConnectionRecord): string {
  return endsMembers(r) + outcomeMembers(r);
}

/** What one HTTP exchange adds to its connection's fields. */
export interface ExchangeRecord {
  method: string;
  path: string;
  /** the path as the client sent it, when normalization changed it (`original_path`) */
  originalPath?: string;
  host: string;
  protocol: string;
  /** 0 when no response was sent */
  status: number;
  grpcStatus?: string;
}

/**
 * What one HTTP request's line adds to its connection's ends (endsMembers(), built once per
 * connection): the outcome, `method`, `path`, `status` (DESIGN.md) and, where a policy decided,
 * which one. Pure.
 */
export function requestMembers(o: Outcome, x: ExchangeRecord, policy?: { policy?: string; rule?: number }): string {
  let m = `${outcomeMembers(o)},"method":${jsonString(x.method)},"path":${jsonString(x.path)},"authority":${jsonString(x.host)},"protocol":${
    jsonString(x.protocol)},"status":${jsonNumber(x.status)}`;
  if (x.originalPath !== undefined) m += strMember('original_path', x.originalPath);
  if (x.grpcStatus !== undefined) m += strMember('grpc_status', x.grpcStatus);
  if (policy?.policy !== undefined) m += strMember('policy', `${policy.policy}[${policy.rule}]`);
  return m;
}

/** What the Service path (service-http.ts) knows of a request beyond its exchange. */
export interface ServiceRequestExtras {
  route?: string;
  retries: number;
  /** Istio's response flags, '-' for none (then not written) */
  flag: string;
  upstream?: { ip: string; port: number };
}

/** A Service request's line beyond its connection's ends: requestMembers(), then `route`, `retries`, `response_flags`, `upstream`. Pure. */
export function serviceRequestMembers(o: Outcome, x: ExchangeRecord, s: ServiceRequestExtras): string {
  let m = requestMembers(o, x);
  if (s.route) m += strMember('route', s.route);
  m += numMember('retries', s.retries);
  if (s.flag !== '-') m += strMember('response_flags', s.flag);
  if (s.upstream) m += strMember('upstream', `${s.upstream.ip.includes(':') ? `[${s.upstream.ip}]` : s.upstream.ip}:${s.upstream.port}`);
  return m;
}

/** What a destination's connection line (deliver.ts) adds to connectionMembers(). */
export interface DeliveredExtras {
  /** the deciding policy (`namespace/name`) and its rule */
  policy?: string;
  rule?: number;
  /** matching AUDIT policies */
  audit?: string[];
  /** set for HTTP connections, with the count of their requests */
  protocol?: string;
  requests?: number;
}

/** A destination's connection line: connectionMembers(), then `policy`, `audit`, `protocol`, `requests`. Pure. */
export function deliveredConnectionMembers(r: ConnectionRecord, e: DeliveredExtras): string {
  return endsMembers(r) + deliveredOutcomeMembers(r, e);
}

/**
 * deliveredConnectionMembers() without the ends (the caller adds endsMembers() of the ends it
 * holds, so a connection's record is not copied to add its outcome). Pure.
 */
export function deliveredOutcomeMembers(o: Outcome, e: DeliveredExtras): string {
  let m = outcomeMembers(o);
  if (e.policy !== undefined) m += strMember('policy', `${e.policy}[${e.rule}]`);
  if (e.audit?.length) m += valueMember('audit', e.audit);
  if (e.protocol !== undefined) m += strMember('protocol', e.protocol) + valueMember('requests', e.requests);
  return m;
}
