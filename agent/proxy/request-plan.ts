/**
 * What the source proxy does with one HTTP request to a Service: the routes, filters and traffic
 * policy in force reduced to plain values (service-plan.ts decides them; service-http.ts carries
 * them out). Kept apart so the decision is tested without sockets and the carrying-out without
 * route tables.
 */
import type { ServiceInfo, ServicePort } from '../config/objects';
import type { ResponseFlags } from '../telemetry/events';

/** Header fields as Node writes them: lower-case names. */
export type HeaderMap = Record<string, string | string[]>;

/** How an attempt ended, for retries, outlier detection and the access log. */
export type AttemptOutcome =
  | { kind: 'response'; status: number }
  /** no connection to the endpoint */
  | { kind: 'connect-failure'; error: string }
  /** the connection or stream broke before a response head */
  | { kind: 'reset'; error: string }
  /** no response head within the per-try timeout */
  | { kind: 'timeout'; error: string };

export interface RetryPlan {
  /** retries after the first attempt (0: none) */
  attempts: number;
  retryable(outcome: AttemptOutcome): boolean;
  backoffMs(retry: number): number;
}

export const NO_RETRY: RetryPlan = { attempts: 0, retryable: () => false, backoffMs: () => 0 };

export interface Backend {
  service: ServiceInfo;
  port: ServicePort;
}

export type RequestPlan =
  | {
    kind: 'respond';
    status: number;
    body: string;
    headers?: Record<string, string>;
    flag: ResponseFlags;
    /** `namespace/name[rule]` of the route that decided, for the access log */
    route?: string;
    /** the delay of an injected fault, before answering */
    delayMs?: number;
    /** for a gRPC request: the grpc-status to answer with (an injected gRPC abort) */
    grpcStatus?: number;
  }
  | {
    kind: 'forward';
    backend: Backend;
    route?: string;
    /** the request-target and authority to send (after URLRewrite) */
    path: string;
    authority: string;
    editRequest(headers: HeaderMap): void;
    editResponse(headers: HeaderMap): void;
    mirror?: { backend: Backend; percent: number };
    /** whole request, retries included; undefined: none */
    requestTimeoutMs?: number;
    /** each attempt, until the response head */
    tryTimeoutMs?: number;
    retry: RetryPlan;
    /** injected fault: delay before forwarding */
    delayMs?: number;
  };
