import { objectKey, type ServiceInfo } from '../config/objects';
import { resolveParent, servicesByKey, type ServicesByKey } from './resolve';
import type { GrpcRouteInfo, HttpRouteInfo, RouteInfo } from './route-info';
import { compileRule, routeMatchOf, type ServiceRef } from './route-match';
import { routeStatus, type RouteStatus } from './route-status';
import { GrpcRouteTable, HttpRouteTable, type GrpcCandidate, type HttpCandidate, type RouteTable } from './route-table';

/**
 * Every HTTPRoute and GRPCRoute of a snapshot, compiled once (`new RouteIndex(httpRoutes,
 * grpcRoutes, services)`) and indexed per Service, so a lookup costs the same with 10 or 10,000
 * routes elsewhere in the mesh.
 *
 * GAMMA (GEP-1294) rules:
 * - a producer route (in the Service's namespace) applies to every client of the Service;
 * - a consumer route (parentRef to a Service in another namespace) applies only to clients in the
 *   route's namespace, and for them replaces the producer routes on the ports it covers;
 * - `parentRefs.port` / `sectionName` limit a route to that Service port; neither means all ports;
 * - on one Service port, GRPCRoutes win over HTTPRoutes (the HTTPRoutes are Conflicted there),
 *   so the table of a port is of one kind, whatever the request is (RouteTable.kind says which).
 */

interface Attached<C> {
  candidates: readonly C[];
  ports: ReadonlySet<number>;
}

/** The routes of one scope (the producer routes, or one namespace's consumer routes) on one Service. */
class Scope {
  readonly http: Attached<HttpCandidate>[] = [];
  readonly grpc: Attached<GrpcCandidate>[] = [];
  readonly ports = new Set<number>();
  private readonly tables = new Map<number, RouteTable | null>();

  add(kind: 'http' | 'grpc', attached: Attached<HttpCandidate> | Attached<GrpcCandidate>): void {
    if (kind === 'http') this.http.push(attached as Attached<HttpCandidate>);
    else this.grpc.push(attached as Attached<GrpcCandidate>);
    for (const p of attached.ports) this.ports.add(p);
  }

  table(port: number): RouteTable | undefined {
    let table = this.tables.get(port);
    if (table === undefined) {
      const grpc = this.grpc.filter((a) => a.ports.has(port));
      if (grpc.length > 0) table = new GrpcRouteTable(grpc.flatMap((a) => a.candidates));
      else {
        const http = this.http.filter((a) => a.ports.has(port));
        table = http.length > 0 ? new HttpRouteTable(http.flatMap((a) => a.candidates)) : null;
      }
      this.tables.set(port, table);
    }
    return table ?? undefined;
  }
}

interface ServiceRoutes {
  producer: Scope;
  consumers: Map<string, Scope>;
}

export class RouteIndex {
  /** namespace → name → the routes attached to that Service. */
  private readonly byService = new Map<string, Map<string, ServiceRoutes>>();
  private readonly services: ServicesByKey;

  constructor(
    private readonly httpRoutes: readonly HttpRouteInfo[],
    private readonly grpcRoutes: readonly GrpcRouteInfo[],
    services: readonly ServiceInfo[],
  ) {
    this.services = servicesByKey(services);
    sortByPrecedence(httpRoutes).forEach((route, order) => this.attach(route, 'http', httpCandidates(route, order, this.services)));
    sortByPrecedence(grpcRoutes).forEach((route, order) => this.attach(route, 'grpc', grpcCandidates(route, order, this.services)));
  }

  /**
   * The routes in force for a client in `clientNamespace` calling `service` on `port`, or undefined
   * when no route applies there (the proxy sends to the Service as it would without routes).
   * Tables are built on first use and kept for the life of the index.
   */
  table(clientNamespace: string, service: ServiceRef, port: number): RouteTable | undefined {
    const routes = this.byService.get(service.namespace)?.get(service.name);
    if (routes === undefined) return undefined;
    const consumer = routes.consumers.get(clientNamespace);
    if (consumer !== undefined && consumer.ports.has(port)) return consumer.table(port);
    return routes.producer.table(port);
  }

  /** A route's status against this index's Services and GRPCRoutes. */
  status(route: RouteInfo): RouteStatus {
    return routeStatus(route, this.services, this.grpcRoutes);
  }

  /** Every route of the index with its status (for `/config_dump` and `weft status`). */
  statuses(): { route: RouteInfo; status: RouteStatus }[] {
    return [...this.httpRoutes, ...this.grpcRoutes].map((route) => ({ route, status: this.status(route) }));
  }

  private attach(route: RouteInfo, kind: 'http' | 'grpc', candidates: HttpCandidate[] | GrpcCandidate[]): void {
    for (const ref of route.parentRefs) {
      const parent = resolveParent(ref, this.services);
      if (!parent.ok) continue;
      let names = this.byService.get(ref.namespace);
      if (names === undefined) this.byService.set(ref.namespace, (names = new Map()));
      let routes = names.get(ref.name);
      if (routes === undefined) names.set(ref.name, (routes = { producer: new Scope(), consumers: new Map() }));
      let scope = routes.producer;
      if (route.namespace !== ref.namespace) {
        scope = routes.consumers.get(route.namespace) ?? new Scope();
        routes.consumers.set(route.namespace, scope);
      }
      scope.add(kind, { candidates, ports: new Set(parent.ports) } as Attached<HttpCandidate> | Attached<GrpcCandidate>);
    }
  }
}

/** Older first (a route without creationTimestamp counts as newest), then `namespace/name`. */
function sortByPrecedence<T extends RouteInfo>(routes: readonly T[]): T[] {
  return [...routes].sort((a, b) => {
    const ta = a.creationTimestamp ?? Number.POSITIVE_INFINITY;
    const tb = b.creationTimestamp ?? Number.POSITIVE_INFINITY;
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ka = objectKey(a);
    const kb = objectKey(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

function httpCandidates(route: HttpRouteInfo, routeOrder: number, services: ServicesByKey): HttpCandidate[] {
  const id = { kind: route.kind, namespace: route.namespace, name: route.name };
  return route.rules.flatMap((rule, ruleIndex) => {
    const compiled = compileRule(id, ruleIndex, rule, services);
    return rule.matches.map((match, matchIndex): HttpCandidate => ({
      routeOrder, ruleIndex, matchIndex, match,
      result: routeMatchOf(compiled, match.path.type === 'PathPrefix' ? match.path.value : undefined, services),
    }));
  });
}

function grpcCandidates(route: GrpcRouteInfo, routeOrder: number, services: ServicesByKey): GrpcCandidate[] {
  const id = { kind: route.kind, namespace: route.namespace, name: route.name };
  return route.rules.flatMap((rule, ruleIndex) => {
    const result = routeMatchOf(compileRule(id, ruleIndex, rule, services), undefined, services);
    if (rule.matches.length === 0) return [{ routeOrder, ruleIndex, matchIndex: 0, match: undefined, result }];
    return rule.matches.map((match, matchIndex): GrpcCandidate => ({ routeOrder, ruleIndex, matchIndex, match, result }));
  });
}
