/**
 * What one request saw, as the conformance client reports it (JSON on its stdout) and the judge
 * reads it: the answer's status and headers, and, when an echo backend answered, what that backend
 * saw of the request.
 */

/** What the echo backend reports about the request it received. */
export interface EchoSeen {
  /** the answering pod's name (Kubernetes-style: `<deployment>-<hash>-<suffix>`) */
  pod: string;
  namespace: string;
  /** `http/1.1`, `h2c` or `grpc` */
  protocol: string;
  method: string;
  /** the request target as received (path and query) */
  path: string;
  /** Host header, or :authority */
  host: string;
  /** every header line in arrival order, names as received */
  headers: Array<[string, string]>;
}

export type Observation =
  | {
      ok: true;
      /** HTTP status; for gRPC 200 when the call ended OK, else the status mapped from the gRPC code */
      status: number;
      /** response header lines in arrival order */
      headers: Array<[string, string]>;
      grpcCode?: number;
      grpcDetails?: string;
      /** present when the body was an echo answer */
      echo?: EchoSeen;
      /** the body's first bytes when it was not an echo answer */
      body?: string;
    }
  | { ok: false; error: string };

/** A request as the client sends it: connection target, and what goes on the wire. */
export interface ClientRequest {
  protocol: 'http' | 'grpc';
  ip: string;
  port: number;
  authority: string;
  method: string;
  path: string;
  /** without Host (that is `authority`) */
  headers: Array<[string, string]>;
  /** number of requests (weighted cases); the client answers with one observation per request */
  count?: number;
  /** give up on a request after this long */
  timeoutMs?: number;
}

/** gRPC status codes mapped to HTTP as grpc-gateway does, so a status can be compared. */
export function httpStatusOfGrpc(code: number): number {
  const map: Record<number, number> = {
    0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
  };
  return map[code] ?? 500;
}
