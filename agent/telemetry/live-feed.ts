/**
 * The live view's feed: what the admin port serves at `/live.json`, what the page at `/live` draws
 * and what `weft top` tabulates. Plain JSON (no bigint, no Date); times are ms since the epoch.
 */
import type { Reporter } from './events';

/** One end of an edge: a pod (known to the state), a Service, an identity without a known pod, or an address outside the mesh. */
export interface LiveVertex {
  /** `pod:<ns>/<name>`, `service:<ns>/<name>`, `identity:<spiffe id>` or `ip:<address>` */
  id: string;
  kind: 'pod' | 'service' | 'identity' | 'external';
  /** pod or Service name, the service account of an identity, or the address */
  name: string;
  namespace?: string;
  /** the pod's workload (app label, or the pod name without its hash) */
  workload?: string;
  /** the node the pod runs on */
  node?: string;
  identity?: string;
}

/** One source → destination pair, summed over the last `windowSeconds` and since the agent started. */
export interface LiveEdge {
  id: string;
  source: string;
  destination: string;
  /** the Service host the client addressed, when it addressed one */
  service?: string;
  /** `mutual_tls` or `none` for everything in the window (or, when idle, the last connection); `mixed` when both */
  mtls: 'mutual_tls' | 'none' | 'mixed';
  /** the highest protocol seen: `grpc`, `http` or `tcp` */
  protocol: 'grpc' | 'http' | 'tcp';
  requests: {
    /** whose reports these are: the destination proxy's when it reported any (it sees every request), else the source's */
    reporter: Reporter | null;
    total: number;
    perSecond: number;
    /** share of the window's requests that succeeded (0..1); null with no requests in the window */
    successRate: number | null;
    p99Ms: number | null;
    /** failed requests in the window (5xx, no response, non-OK gRPC status, refused by the proxy) */
    errors: number;
    /** requests refused by authorization policy in the window, and since start */
    denied: number;
    deniedTotal: number;
  };
  tcp: {
    reporter: Reporter | null;
    /** connections opened since start, and open now */
    opened: number;
    active: number;
    /** connections opened per second over the window */
    perSecond: number;
    /** bytes since start (counted as connections close): client → server, server → client */
    bytesFromClient: number;
    bytesToClient: number;
    /** both directions, per second over the window */
    bytesPerSecond: number;
    /** connections refused by authorization policy since start */
    deniedTotal: number;
  };
  lastSeen: number;
}

/** A request or connection refused by authorization policy. */
export interface LiveDenial {
  at: number;
  source: string;
  destination: string;
  kind: 'request' | 'connection';
  /** the HTTP status answered (403), for requests */
  status?: number;
  /** the deciding AuthorizationPolicy (`namespace/name`); absent when none denied by name (ALLOW policies in force, none matched) */
  policy?: string;
  reporter: Reporter;
}

export interface LiveFeed {
  /** the node whose agent serves this feed */
  node: string;
  at: number;
  windowSeconds: number;
  vertices: LiveVertex[];
  edges: LiveEdge[];
  /** newest first */
  denials: LiveDenial[];
}
