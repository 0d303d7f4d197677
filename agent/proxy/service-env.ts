import type { Socket } from 'node:net';
import type { AccessLog, Logger } from '../core/log';
import type { WorkloadRef } from '../core/workload';
import type { HttpLimits } from '../http/limits';
import type { PathNormalization } from '../http/path-normalize';
import type { Tracer } from '../telemetry/tracing';
import type { WorkloadStore } from '../state/store';
import type { DeliveryContext } from './deliver';
import type { Dialer } from './dial';
import type { RequestPlan } from './request-plan';
import type { ServiceRuntime } from './service-runtime';
import type { ServiceTarget } from './service-target';
import type { UpstreamPools } from './upstream-pools';

/** What the Service-aware outbound path needs from the agent, asked anew per connection or request. */
export interface ServiceEnv {
  store(): WorkloadStore;
  /** the routes, filters and traffic policy in force for one request (service-plan.ts) */
  plan(call: PlanCall, request: PlanRequest): RequestPlan;
  dialer: Dialer;
  runtime: ServiceRuntime;
  pools: UpstreamPools;
  delivery: DeliveryContext;
  limits(): HttpLimits;
  /** how request paths are normalized before routes and logs see them (ProxyConfig spec.pathNormalization) */
  pathNormalization(): PathNormalization;
  sniffMs(): number;
  accessLog: AccessLog;
  log: Logger;
  /** spans for the source hop; undefined while tracing is off */
  tracer(): Tracer | undefined;
}

export interface PlanCall {
  /** the client pod's namespace (consumer routes) */
  clientNamespace: string;
  target: ServiceTarget;
}

export interface PlanRequest {
  method: string;
  /** request-target, query included (normalized: service-http.ts normalizeRequest) */
  path: string;
  /** the request-target as the client sent it, when normalization changed it */
  originalPath?: string;
  authority: string;
  /** lower-case names, no pseudo-headers */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  grpc: boolean;
  protocol: 'http1' | 'http2';
}

export interface ServiceConnection {
  client: Socket;
  src: WorkloadRef | undefined;
  clientIp: string;
  clientPort: number;
  target: ServiceTarget;
}
