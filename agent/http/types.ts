import type { Duplex } from 'node:stream';
import type { HttpLimits } from './limits';
import type { PathNormalization } from './path-normalize';

/** What a decision sees of one request (both HTTP versions). */
export interface RequestInfo {
  method: string;
  /**
   * the request's path and query after normalization (ServeHttpOptions.pathNormalization), in
   * origin form `/a?b` (an absolute-form target's too, which the application still receives as
   * absolute form: HTTP/1 forward proxies); `*` for OPTIONS; a CONNECT's authority
   */
  path: string;
  /** the path as the client sent it, when normalization changed it (the access log keeps both) */
  originalPath?: string;
  /** Host (HTTP/1; an absolute-form target's authority instead, RFC 9112 3.2.2) or :authority (HTTP/2); '' when absent */
  host: string;
  /** lower-case names; repeated fields joined with ', ' (set-cookie: an array) */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  protocol: 'http1' | 'http2';
}

/**
 * An allowed request may name header fields to set on what the application receives
 * (`setHeaders`: lower-case name, value, name, value, ...; each replaces every field of that name
 * and of the names in `dropHeaders`): the tracer's context for the next hop.
 */
export type Verdict = { allow: true; setHeaders?: readonly string[]; dropHeaders?: readonly string[] } | { allow: false; status: number; body: string };

/** One line of the access log per request (and one per request the proxy refused as malformed). */
export interface ExchangeLog {
  /** the very object `decide` was handed (one made up for a request refused before deciding), so a caller can join its decision to the log */
  request: RequestInfo;
  method: string;
  path: string;
  /** the path as sent, when normalization changed it */
  originalPath?: string;
  host: string;
  protocol: 'http1' | 'http2';
  /** 0 when no response was sent */
  status: number;
  /** request body bytes received from the client (for a tunnel: bytes from the client) */
  requestBytes: number;
  /** response body bytes sent to the client (for a tunnel: bytes to the client) */
  responseBytes: number;
  durationMs: number;
  verdict: Verdict;
  error?: string;
  grpcStatus?: string;
}

export interface ServeHttpOptions {
  protocol: 'http1' | 'http2';
  /** bytes already read from `downstream` (from sniffing); served first */
  head?: Buffer;
  /**
   * asked once per request, before anything reaches the application; a deny is answered by the
   * proxy (HTTP/1: the connection stays usable; HTTP/2: only that stream). A decision that throws
   * is a deny with 500 (fail closed).
   */
  decide(req: RequestInfo): Verdict;
  /** opens one new connection to the application (a plain socket; the proxy pools it per downstream connection and reuses it with keep-alive) */
  connectUpstream(): Promise<Duplex>;
  onExchange?(log: ExchangeLog): void;
  limits: HttpLimits;
  /** how request paths are normalized before the decision and the application see them (path-normalize.ts); absent: BASE */
  pathNormalization?: PathNormalization;
  /**
   * The proxy is draining (an agent upgrade, docs/upgrade.md): an HTTP/1.1 response then carries
   * `Connection: close` and the connection closes after it; an HTTP/2 session gets GOAWAY (its open
   * streams finish). The client's next request opens a new connection, which reaches the successor
   * agent. Asked at every response head.
   */
  draining?(): boolean;
}
