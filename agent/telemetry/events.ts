/**
 * The events the proxy publishes for telemetry, on named diagnostics_channels. Metrics (and, later,
 * logs and traces) subscribe; the proxy never calls them. A publisher builds an event only when its
 * channel has subscribers (`channel.hasSubscribers`), so without metrics the data path pays one
 * property read per connection or request.
 *
 * Every event says which proxy role reports it (`reporter`) and carries the connection's two ends as
 * the access log records them; labels (workload, app, version, service, ...) are derived from these
 * by the subscriber, against the state in force (labels.ts).
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { ConnectionRecord } from '../proxy/access-log';

/** Istio's `reporter`: `source` is the client's proxy, `destination` the server's. */
export type Reporter = 'source' | 'destination';

/** Istio's `connection_security_policy` as Weft writes it: HBONE or a same-node hop between meshed pods, or plaintext. */
export type SecurityPolicy = 'mutual_tls' | 'none';

/**
 * ztunnel's `response_flags`: `-` for none, `DENY` (authorization policy), `CONNECT` (could not
 * reach the destination), `IDENTITY_ERROR` (no identity to present); and, for Service traffic,
 * Envoy's conditions spelled out: `NO_HEALTHY_UPSTREAM` (UH: no usable endpoint),
 * `UPSTREAM_OVERFLOW` (UO: circuit breaker), `UPSTREAM_TIMEOUT` (UT), `UPSTREAM_RESET` (UR),
 * `FAULT_INJECTED` (FI: an injected abort), `NO_ROUTE` (NR: routes attached, none matched).
 */
export type ResponseFlags = '-' | 'DENY' | 'CONNECT' | 'IDENTITY_ERROR'
  | 'NO_HEALTHY_UPSTREAM' | 'UPSTREAM_OVERFLOW' | 'UPSTREAM_TIMEOUT' | 'UPSTREAM_RESET' | 'FAULT_INJECTED' | 'NO_ROUTE';

/** The two ends of a connection, as its access-log lines record them. */
export type ConnectionEnds = Omit<ConnectionRecord, 'decision' | 'bytesSent' | 'bytesRecv' | 'durationMs' | 'error'>;

/** A connection the proxy took on (published once per connection and reporter, when its ends are known). */
export interface ConnectionOpenedEvent {
  reporter: Reporter;
  ends: ConnectionEnds;
  security: SecurityPolicy;
}

/** The end of a connection (every opened one ends exactly once, also when refused or failed). */
export interface ConnectionClosedEvent extends ConnectionOpenedEvent {
  /** bytes from the client towards the server (the request direction): Istio's `istio_tcp_received_bytes_total` */
  bytesFromClient: number;
  /** bytes from the server back to the client (the response direction): Istio's `istio_tcp_sent_bytes_total` */
  bytesToClient: number;
  flags: ResponseFlags;
  /** `namespace/name` of the AuthorizationPolicy that denied it (flags `DENY`); absent when none did by name (ALLOW policies in force, none matched) */
  policy?: string;
}

/** One HTTP or gRPC request, at its end (allowed, denied by policy, or refused as malformed). */
export interface RequestCompletedEvent extends ConnectionOpenedEvent {
  protocol: 'http' | 'grpc';
  /** 0 when no response was sent */
  status: number;
  /** the gRPC status code (`0`..`16`); undefined for plain HTTP */
  grpcStatus?: string;
  /** body bytes from the client */
  requestBytes: number;
  /** body bytes to the client */
  responseBytes: number;
  durationMs: number;
  flags: ResponseFlags;
  /** `namespace/name` of the AuthorizationPolicy that denied it (flags `DENY`); absent when none did by name (ALLOW policies in force, none matched) */
  policy?: string;
}

/** A connection the proxy refused to keep its pods' share fair (proxy/fairness.ts): a per-pod limit, or its pod shed under overload. */
export interface OverloadShedEvent {
  namespace: string;
  /** the pod (or, for an account that is not a pod, its identity or address) */
  pod: string;
  reason: 'max_connections' | 'max_pending' | 'overload';
}

export const CHANNELS = {
  connectionOpened: 'weft:proxy:connection-opened',
  connectionClosed: 'weft:proxy:connection-closed',
  requestCompleted: 'weft:proxy:request-completed',
  overloadShed: 'weft:proxy:overload-shed',
} as const;

export const connectionOpened = diagnostics_channel.channel(CHANNELS.connectionOpened);
export const connectionClosed = diagnostics_channel.channel(CHANNELS.connectionClosed);
export const requestCompleted = diagnostics_channel.channel(CHANNELS.requestCompleted);
export const overloadShed = diagnostics_channel.channel(CHANNELS.overloadShed);

/** Whether anyone listens: publishers check this before building an event. */
export function telemetryWanted(): boolean {
  return connectionClosed.hasSubscribers || requestCompleted.hasSubscribers || connectionOpened.hasSubscribers;
}

/** A telemetry consumer: what it does with each of the proxy's events. */
export interface TelemetryConsumer {
  opened(ev: ConnectionOpenedEvent): void;
  closed(ev: ConnectionClosedEvent): void;
  request(ev: RequestCompletedEvent): void;
}

/**
 * Subscribes a consumer to the three channels (metrics, the live view, ...); returns what
 * unsubscribes it. While nobody is subscribed the proxy builds no events.
 */
export function subscribeTelemetry(c: TelemetryConsumer): () => void {
  const onOpened = (m: unknown) => c.opened(m as ConnectionOpenedEvent);
  const onClosed = (m: unknown) => c.closed(m as ConnectionClosedEvent);
  const onRequest = (m: unknown) => c.request(m as RequestCompletedEvent);
  diagnostics_channel.subscribe(CHANNELS.connectionOpened, onOpened);
  diagnostics_channel.subscribe(CHANNELS.connectionClosed, onClosed);
  diagnostics_channel.subscribe(CHANNELS.requestCompleted, onRequest);
  return () => {
    diagnostics_channel.unsubscribe(CHANNELS.connectionOpened, onOpened);
    diagnostics_channel.unsubscribe(CHANNELS.connectionClosed, onClosed);
    diagnostics_channel.unsubscribe(CHANNELS.requestCompleted, onRequest);
  };
}
