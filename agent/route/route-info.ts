/**
 * HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1) as Weft holds them in a Snapshot: plain
 * JSON, checked and normalized at the edge (convert-http.ts, convert-grpc.ts), defaults applied.
 * Regular expressions are kept as their source text (they were compiled once to check them);
 * route-index.ts compiles them again per snapshot.
 */

/** A parentRef: always a Service (group "" / core, kind Service); Gateways are refused at conversion. */
export interface RouteParentRef {
  namespace: string;
  name: string;
  /** `port`: the route applies to this Service port only. */
  port?: number;
  /** `sectionName`: the Service port of this name only. */
  sectionName?: string;
}

/** A backendRef or a mirror target. Only `group: ""`, `kind: Service` resolves; other kinds get 500 (status InvalidKind). */
export interface BackendObjectRef {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  /** Required for a Service (checked at conversion). */
  port?: number;
}

export interface BackendRefInfo extends BackendObjectRef {
  /** Default 1; 0 sends no traffic. */
  weight: number;
  /** Per-backend filters: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror. */
  filters: RouteFilter[];
}

export type PathMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression';
export type ValueMatchType = 'Exact' | 'RegularExpression';

/** A header (name lower-cased) or query-param (name as written: query names are case-sensitive) match. */
export interface ValueMatch {
  type: ValueMatchType;
  name: string;
  value: string;
}

export interface HttpRouteMatch {
  /** Default `PathPrefix /`. */
  path: { type: PathMatchType; value: string };
  headers: ValueMatch[];
  queryParams: ValueMatch[];
  method?: string;
}

export interface HeaderModifier {
  /** Names as written (they are matched case-insensitively). */
  set: { name: string; value: string }[];
  add: { name: string; value: string }[];
  remove: string[];
}

export type PathModifier =
  | { type: 'ReplaceFullPath'; replaceFullPath: string }
  | { type: 'ReplacePrefixMatch'; replacePrefixMatch: string };

export interface RequestRedirect {
  scheme?: 'http' | 'https';
  hostname?: string;
  path?: PathModifier;
  port?: number;
  /** Default 302. */
  statusCode: 301 | 302 | 303 | 307 | 308;
}

export interface UrlRewrite {
  hostname?: string;
  path?: PathModifier;
}

export interface RequestMirror {
  backendRef: BackendObjectRef;
  /** The share of requests mirrored: numerator/denominator (`percent: N` is N/100; neither set: 100/100). */
  numerator: number;
  denominator: number;
}

export type RouteFilter =
  | { type: 'RequestHeaderModifier'; requestHeaderModifier: HeaderModifier }
  | { type: 'ResponseHeaderModifier'; responseHeaderModifier: HeaderModifier }
  | { type: 'RequestRedirect'; requestRedirect: RequestRedirect }
  | { type: 'URLRewrite'; urlRewrite: UrlRewrite }
  | { type: 'RequestMirror'; requestMirror: RequestMirror };

/** `timeouts`, in milliseconds. Absent: not set (the proxy's default). 0: no timeout (`0s`). */
export interface RouteTimeouts {
  requestMs?: number;
  backendRequestMs?: number;
}

/** `retry` (HTTPRouteRetry). Absent fields: the proxy's defaults. */
export interface RouteRetry {
  attempts?: number;
  /** HTTP status codes (400-599) that are retried. */
  codes: number[];
  backoffMs?: number;
}

export interface HttpRouteRule {
  name?: string;
  /** Never empty: an absent `matches` is `[{path: {type: PathPrefix, value: /}}]`. */
  matches: HttpRouteMatch[];
  filters: RouteFilter[];
  /** Empty: requests are answered 500 by the proxy, unless a RequestRedirect answers them. */
  backendRefs: BackendRefInfo[];
  timeouts: RouteTimeouts;
  retry?: RouteRetry;
}

interface RouteCommon {
  namespace: string;
  name: string;
  /** `metadata.creationTimestamp` in ms since the epoch: the older route wins precedence ties. */
  creationTimestamp?: number;
  parentRefs: RouteParentRef[];
  /** Accepted and ignored in a mesh (GEP-1294: the destination Service decides, not the Host header). */
  hostnames: string[];
}

export interface HttpRouteInfo extends RouteCommon {
  kind: 'HTTPRoute';
  rules: HttpRouteRule[];
}

export interface GrpcMethodMatch {
  type: ValueMatchType;
  service?: string;
  method?: string;
}

export interface GrpcRouteMatch {
  method?: GrpcMethodMatch;
  headers: ValueMatch[];
}

export interface GrpcRouteRule {
  name?: string;
  /** Empty: every request. */
  matches: GrpcRouteMatch[];
  filters: RouteFilter[];
  backendRefs: BackendRefInfo[];
}

export interface GrpcRouteInfo extends RouteCommon {
  kind: 'GRPCRoute';
  rules: GrpcRouteRule[];
}

export type RouteInfo = HttpRouteInfo | GrpcRouteInfo;
