/**
 * Delivery to a meshed pod on this node: the one path every connection into such a pod takes,
 * whether it came through an HBONE tunnel (15008), from a pod on this node (the outbound proxy's
 * `local` route) or from a plaintext client outside the mesh (15006). It decides the protocol,
 * asks authorization policy about the connection (TCP) or about each request (HTTP), and opens a
 * connection to the application only for what policy allows: the application sees nothing of
 * what is denied.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { PodInfo } from '../config/objects';
import { wantsLine, type AccessLog } from '../core/log';
import { declaredProtocol, type AppProtocol } from '../http/protocol';
import type { HttpLimits } from '../http/limits';
import type { PathNormalization } from '../http/path-normalize';
import { serveHttp, type ExchangeLog, type RequestInfo, type Verdict } from '../http/serve';
import { sniffProtocol } from '../http/sniff';
import type { AuthzDecision, ConnectionFacts, PolicySet } from '../policy';
import type { WorkloadStore } from '../state/store';
import { connectionClosed, connectionOpened, requestCompleted, type Reporter, type ResponseFlags, type SecurityPolicy } from '../telemetry/events';
import type { ActiveSpan, Tracer } from '../telemetry/tracing';
import { PROPAGATION_FIELDS } from '../telemetry/tracing-context';
import { deliveredOutcomeMembers, endsMembers, requestMembers, type ConnectionRecord } from './access-log';
import type { Ticket } from './fairness-share';
import type { LiveConnection, LiveConnections } from './live-connections';
import { relay, type RelayResult } from './relay';
import type { Splicer } from './splice';
import { chooseSplice } from './splice-decision';

/** How a connection reached this node's proxy. */
export type ArrivalPath = 'hbone' | 'local' | 'plaintext';

/** What is known of a connection into a local meshed pod when it arrives. */
export interface Arrival {
  path: ArrivalPath;
  /** the facts policy is judged on */
  conn: ConnectionFacts;
  /** the destination pod: on this node, in the mesh */
  pod: PodInfo;
  /** what its access-log lines say of the two ends */
  record: Omit<ConnectionRecord, 'decision' | 'bytesSent' | 'bytesRecv' | 'durationMs' | 'error'>;
  /**
   * The source proxy already reports this connection's traffic itself (the Service-aware source
   * path, which serves it request by request): the delivery reports the destination side only.
   */
  sourceReported?: boolean;
  /** the connection's fairness ticket (fairness-share.ts), if it has one: its first upstream ends its pending time and is charged to it */
  ticket?: Ticket;
}

/** The path-specific end of a connection: how it is accepted, refused and spliced. */
export interface Downstream {
  /** Accepts the connection (HBONE: answers 200) and returns its byte stream. Called at most once. */
  accept(): Duplex;
  /** Before accept: refuses (HBONE: `status` and `reason`; a socket: a reset). After: cuts the connection. */
  refuse(status: number, reason: string): void;
  /** Moves bytes both ways between the accepted downstream and `upstream` until both are done. */
  splice(upstream: Socket): Promise<RelayResult>;
  /**
   * Starts counting the bytes read from and written to the accepted downstream from now on (an
   * HTTP connection's totals; a spliced one is counted by the splice).
   */
  countBytes(): () => { read: number; written: number };
  /** The client's socket, when the downstream is one (the `local` and plaintext paths): what same-node splicing hands to the kernel. */
  socket?: Socket;
}

/** A client socket as deliver() sees it (the `local` and plaintext paths): a refusal is a reset. */
export function socketDownstream(client: Socket): Downstream {
  return {
    accept: () => client,
    socket: client,
    refuse: () => { if (!client.destroyed) client.resetAndDestroy(); },
    splice: (upstream) => relay(client, upstream),
    countBytes: () => {
      const [read, written] = [client.bytesRead, client.bytesWritten];
      return () => ({ read: client.bytesRead - read, written: client.bytesWritten - written });
    },
  };
}

/** The policy and settings in force; asked anew for every connection and request. */
export interface DeliveryState {
  store: WorkloadStore;
  policies: PolicySet;
  limits: HttpLimits;
  /** how request paths are normalized (ProxyConfig spec.pathNormalization) */
  pathNormalization: PathNormalization;
  /** how long a client on an undeclared port may stay silent before it is taken for TCP */
  sniffMs: number;
  /** tracing on (ProxyConfig spec.tracing): each request gets the destination hop's span */
  tracer?: Tracer;
}

export interface DeliveryContext {
  state(): DeliveryState;
  /**
   * Opens one new connection to the application (`arrival.conn.destinationIp:Port`), to be read by
   * pump() (`'pump'`: a TCP connection, relayed or spliced; its reads are pooled) or by an HTTP
   * parser (`'stream'`).
   */
  connect(arrival: Arrival, reader: 'pump' | 'stream'): Promise<Socket>;
  live: LiveConnections<Arrival>;
  accessLog: AccessLog;
  /** the agent is draining (docs/upgrade.md): HTTP/1.1 clients are asked to reconnect after their response */
  draining?(): boolean;
  /** Same-node splicing in the kernel (splice.ts); undefined while it is off or not loaded. */
  splicer?(): Splicer | undefined;
}

/** The body Istio (Envoy's RBAC filter) answers a denied request with. */
export const DENIED_BODY = 'RBAC: access denied';

/**
 * The protocol a Service declares for the pod's `port` (appProtocol, then Istio's port-name
 * prefixes), from the Services selecting the pod whose targetPort is that port; undefined: sniff.
 * A named targetPort cannot be matched (Weft does not know container port names) and is skipped.
 */
export function protocolForPort(store: WorkloadStore, pod: PodInfo, port: number): AppProtocol | undefined {
  for (const svc of store.servicesSelecting(pod)) {
    for (const p of svc.ports) {
      if (p.protocol !== 'TCP' || p.targetPort !== port) continue;
      const declared = declaredProtocol(p);
      if (declared !== undefined) return declared;
    }
  }
  return undefined;
}

/** The decision for a connection, or for one request on it. */
export function judge(state: DeliveryState, a: Arrival, request?: RequestInfo): AuthzDecision {
  const workload = { namespace: a.pod.namespace, labels: a.pod.labels };
  return state.policies.decide(workload, a.conn, request && { method: request.method, path: request.path, host: request.host, headers: request.headers });
}

/**
 * Who reports an arrival in telemetry: its destination's proxy (this one) and, on the same-node
 * path, the source's proxy too (this one as well). Pure.
 */
export function arrivalReporters(a: Arrival): readonly Reporter[] {
  return a.path === 'local' && a.sourceReported !== true ? BOTH_REPORTERS : DESTINATION_ONLY;
}
const BOTH_REPORTERS: readonly Reporter[] = ['source', 'destination'];
const DESTINATION_ONLY: readonly Reporter[] = ['destination'];

/**
 * Istio's connection_security_policy of an arrival: mutual TLS over HBONE, and on the same-node
 * path between meshed pods where the kernel named the source pod (its identity is known as surely
 * as a certificate would prove it); plaintext otherwise. Pure.
 */
export function arrivalSecurity(a: Arrival): SecurityPolicy {
  return a.path === 'hbone' || (a.path === 'local' && a.record.src !== undefined) ? 'mutual_tls' : 'none';
}

export async function deliver(down: Downstream, a: Arrival, ctx: DeliveryContext): Promise<void> {
  const started = performance.now();
  if (connectionOpened.hasSubscribers) {
    for (const reporter of arrivalReporters(a)) connectionOpened.publish({ reporter, ends: a.record, security: arrivalSecurity(a) });
  }
  const state = ctx.state();
  let protocol = protocolForPort(state.store, a.pod, a.conn.destinationPort);
  let head: Buffer | undefined;
  let accepted: Duplex | undefined;
  if (protocol === undefined) {
    // Sniffing never fails: a connection that ends or errs before anything conclusive is TCP.
    accepted = down.accept();
    ({ protocol, head } = await sniffProtocol(accepted, state.sniffMs));
  }
  if (protocol === 'tcp') return deliverTcp(down, accepted, head, a, ctx, started);
  return deliverHttp(down, accepted ?? down.accept(), head, protocol, a, ctx, started);
}

async function deliverTcp(down: Downstream, accepted: Duplex | undefined, head: Buffer | undefined, a: Arrival, ctx: DeliveryContext, started: number): Promise<void> {
  const decision = judge(ctx.state(), a);
  if (!decision.allow) {
    down.refuse(403, decision.reason);
    logConnection(ctx, a, started, { decision: 'deny', bytesSent: 0, bytesRecv: 0, error: decision.reason, authz: decision, flags: 'DENY' });
    return;
  }
  const splicer = ctx.splicer?.();
  const spliceIt = chooseSplice({ path: a.path, protocol: 'tcp', allowed: true, available: splicer !== undefined, socket: down.socket !== undefined }).splice;
  let upstream: Socket;
  const destination = spliceIt ? `${a.conn.destinationIp}|${a.conn.destinationPort}` : '';
  // A connection that may be spliced announces the pod's address first: the kernel then enters the
  // pod's accepted socket. Not to a destination whose connections have all been short lately: they
  // paid for the pods' side and the armed server and used neither (splice-arming.ts).
  const arm = spliceIt && (splicer!.arming?.armFor(destination) ?? true);
  try {
    const withdraw = arm ? splicer!.announce?.(a.conn.destinationIp, a.conn.destinationPort) : undefined;
    try {
      // Pooled reads either way: a splicer relays through pump() too until the connection proves long-lived.
      upstream = await ctx.connect(a, 'pump');
    } finally {
      withdraw?.();
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    down.refuse(err.code === 'ETIMEDOUT' ? 504 : 503, `${err.code ?? 'error'}: ${err.message}`);
    logConnection(ctx, a, started, { decision: 'allow', bytesSent: 0, bytesRecv: 0, error: err.message, authz: decision, flags: 'CONNECT' });
    return;
  }
  if (accepted === undefined) down.accept();
  // Bytes read while sniffing go first (a splicer writes them itself, once the pod's socket is armed).
  if (!spliceIt && head !== undefined && head.length > 0) upstream.write(head);
  const live = new LiveTcp(a, down, upstream);
  ctx.live.add(live);
  const r = spliceIt ? await splicer!(down.socket!, upstream, head, arm) : await down.splice(upstream);
  if (spliceIt) splicer!.arming?.record(destination, r.received);
  ctx.live.remove(live);
  const { closedBy } = live;
  const error = closedBy !== undefined ? `closed: policy now denies it: ${closedBy}` : r.error?.message;
  // Closed by a policy change: the policy now in force is the one that denied it (telemetry names it).
  const deniedBy = closedBy === undefined ? undefined : judge(ctx.state(), a);
  logConnection(ctx, a, started, { decision: closedBy === undefined ? 'allow' : 'deny', bytesSent: r.sent + (head?.length ?? 0), bytesRecv: r.received,
    ...(error === undefined ? {} : { error }), authz: decision, flags: closedBy === undefined ? '-' : 'DENY', ...(deniedBy?.policy === undefined ? {} : { deniedBy: deniedBy.policy }) });
}

/** A TCP connection delivered into a pod, as the live set holds it: one object, no closures (docs/memory.md). */
class LiveTcp implements LiveConnection<Arrival> {
  /** the reason a policy change closed it, if one did */
  closedBy: string | undefined;

  constructor(readonly facts: Arrival, private readonly down: Downstream, private readonly upstream: Duplex) {}

  close(reason: string): void {
    this.closedBy = reason;
    this.down.refuse(403, reason);
    this.upstream.destroy();
  }
}

async function deliverHttp(down: Downstream, stream: Duplex, head: Buffer | undefined, protocol: 'http1' | 'http2', a: Arrival, ctx: DeliveryContext, started: number): Promise<void> {
  const decisions = new WeakMap<RequestInfo, AuthzDecision>();
  let spans: WeakMap<RequestInfo, ActiveSpan> | undefined;
  let requests = 0;
  let ends: string | undefined;
  let failure: string | undefined;
  const counted = down.countBytes();
  await serveHttp(stream, {
    protocol,
    ...(head === undefined ? {} : { head }),
    limits: ctx.state().limits,
    pathNormalization: ctx.state().pathNormalization,
    ...(ctx.draining ? { draining: ctx.draining } : {}),
    decide: (request): Verdict => {
      const state = ctx.state();
      const decision = judge(state, a, request);
      decisions.set(request, decision);
      const tracer = state.tracer;
      if (tracer === undefined) return decision.allow ? ALLOWED : { allow: false, status: 403, body: DENIED_BODY };
      return traced(tracer, request, decision, (spans ??= new WeakMap()));
    },
    connectUpstream: () => ctx.connect(a, 'stream'),
    onExchange: (x: ExchangeLog) => {
      requests++;
      const allow = x.verdict.allow;
      if (wantsLine(ctx.accessLog, { decision: allow ? 'allow' : 'deny', status: x.status, ...(x.error === undefined ? {} : { error: x.error }) })) {
        // The connection's ends are serialized once; a request's line adds only its own fields.
        ends ??= endsMembers(a.record);
        ctx.accessLog.write(ends + requestMembers({ decision: allow ? 'allow' : 'deny', bytesSent: x.requestBytes, bytesRecv: x.responseBytes, durationMs: x.durationMs,
          error: x.error }, x, decisions.get(x.request)), allow ? 'request complete' : 'request denied');
      }
      if (requestCompleted.hasSubscribers) publishRequest(a, x, decisions.get(x.request));
      if (spans !== undefined) endSpan(spans, a, x, decisions.get(x.request));
    },
  }).catch((e: Error) => {
    failure = e.message;
    down.refuse(400, e.message);
  });
  const bytes = counted();
  logConnection(ctx, a, started, { decision: 'allow', bytesSent: bytes.read + (head?.length ?? 0), bytesRecv: bytes.written, protocol, requests,
    ...(failure === undefined ? {} : { error: failure }) });
}

const ALLOWED: Verdict = { allow: true };

/**
 * The destination hop's span for a request (kept in `spans` until its exchange ends) and the
 * verdict that carries the span's context to the application (the application's parent is this
 * proxy's span). A request whose trace is not sampled goes on unchanged.
 */
function traced(tracer: Tracer, request: RequestInfo, decision: AuthzDecision, spans: WeakMap<RequestInfo, ActiveSpan>): Verdict {
  const span = tracer.start(request, 'destination');
  if (span !== undefined) spans.set(request, span);
  if (!decision.allow) return { allow: false, status: 403, body: DENIED_BODY };
  return span === undefined ? ALLOWED : { allow: true, setHeaders: span.outgoing, dropHeaders: PROPAGATION_FIELDS };
}

/** Ends a request's destination span with what its exchange reported. */
function endSpan(spans: WeakMap<RequestInfo, ActiveSpan>, a: Arrival, x: ExchangeLog, decision: AuthzDecision | undefined): void {
  const span = spans.get(x.request);
  if (span === undefined) return;
  spans.delete(x.request);
  const denied = decision !== undefined && !decision.allow;
  span.end({ ends: a.record, security: arrivalSecurity(a), status: x.status, flags: denied ? 'DENY' : '-',
    ...(x.grpcStatus === undefined ? {} : { grpcStatus: x.grpcStatus }), ...(denied && decision.policy !== undefined ? { policy: decision.policy } : {}),
    requestBytes: x.requestBytes, responseBytes: x.responseBytes, ...(x.error === undefined ? {} : { error: x.error }) });
}

function logConnection(ctx: DeliveryContext, a: Arrival, started: number,
  f: { decision: 'allow' | 'deny'; bytesSent: number; bytesRecv: number; error?: string; authz?: AuthzDecision; protocol?: string; requests?: number; flags?: ResponseFlags;
    /** the policy that closed an allowed connection when policy changed */
    deniedBy?: string }): void {
  if (wantsLine(ctx.accessLog, f)) {
    // The ends, then the outcome: the record is not copied to add the outcome to it.
    ctx.accessLog.write(endsMembers(a.record) + deliveredOutcomeMembers({ decision: f.decision, bytesSent: f.bytesSent, bytesRecv: f.bytesRecv,
      durationMs: performance.now() - started, error: f.error },
    { policy: f.authz?.policy, rule: f.authz?.rule, audit: f.authz?.audit, protocol: f.protocol, requests: f.requests }), f.decision === 'deny' ? 'connection denied' : 'connection complete');
  }
  if (connectionClosed.hasSubscribers) {
    // bytesSent counts what the client sent (the request direction), bytesRecv what it got back.
    const policy = f.deniedBy ?? (f.authz !== undefined && !f.authz.allow ? f.authz.policy : undefined);
    for (const reporter of arrivalReporters(a)) {
      connectionClosed.publish({ reporter, ends: a.record, security: arrivalSecurity(a), bytesFromClient: f.bytesSent, bytesToClient: f.bytesRecv, flags: f.flags ?? '-',
        ...(policy === undefined ? {} : { policy }) });
    }
  }
}

/** One request's telemetry event, for each reporter of its arrival. */
function publishRequest(a: Arrival, x: ExchangeLog, decision: AuthzDecision | undefined): void {
  const ct = x.request.headers['content-type'];
  const grpc = x.grpcStatus !== undefined || (typeof ct === 'string' && ct.startsWith('application/grpc'));
  const denied = decision !== undefined && !decision.allow;
  const flags: ResponseFlags = denied ? 'DENY' : '-';
  for (const reporter of arrivalReporters(a)) {
    requestCompleted.publish({ reporter, ends: a.record, security: arrivalSecurity(a), protocol: grpc ? 'grpc' : 'http', status: x.status,
      ...(x.grpcStatus === undefined ? {} : { grpcStatus: x.grpcStatus }), requestBytes: x.requestBytes, responseBytes: x.responseBytes, durationMs: x.durationMs, flags,
      ...(denied && decision.policy !== undefined ? { policy: decision.policy } : {}) });
  }
}
