/**
 * Gateway API routes in a mesh (GAMMA): HTTPRoute and GRPCRoute converted at the edge, their
 * status, the per-snapshot RouteIndex the proxy looks requests up in, and the filters as pure
 * functions. No sockets here: the proxy carries out what these return.
 */
export type {
  BackendObjectRef, BackendRefInfo, GrpcMethodMatch, GrpcRouteInfo, GrpcRouteMatch, GrpcRouteRule, HeaderModifier, HttpRouteInfo,
  HttpRouteMatch, HttpRouteRule, PathMatchType, PathModifier, RequestMirror, RequestRedirect, RouteFilter, RouteInfo, RouteParentRef,
  RouteRetry, RouteTimeouts, UrlRewrite, ValueMatch, ValueMatchType,
} from './route-info';
export { convertHttpRoute } from './convert-http';
export { convertGrpcRoute } from './convert-grpc';
export { readDuration } from './duration';
export { routeStatus, type ParentStatus, type RouteCondition, type RouteStatus } from './route-status';
export { RouteIndex } from './route-index';
export type { RouteRequest, RouteTable } from './route-table';
export { pickBackend, type HeaderEdit, type HeaderEdits, type MirrorTarget, type RouteBackend, type RouteMatch, type ServiceRef } from './route-match';
export { applyHeaderEdits, replacePath, requestEdits, responseEdits, type EditRequest, type RequestEdits } from './filters';
