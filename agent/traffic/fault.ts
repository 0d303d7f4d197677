import type { Random } from './prng';
import { GRPC_STATUS, type FaultSettings } from './traffic-policy';

/** What to inject into one request: a delay before it is sent on, then possibly an answer instead of the backend's. */
export interface InjectedFault {
  delayMs?: number;
  abortStatus?: number;
  /** For a gRPC request aborted with `grpcStatus`: answered HTTP 200 with this grpc-status (as Envoy does). */
  abortGrpcStatus?: number;
}

/**
 * Istio's fault injection for one request: the delay and the abort are drawn independently, each
 * with its own percentage (so with 10% delay and 5% abort, 0.5% of requests get both: delayed, then
 * aborted, as Envoy's fault filter does). Two draws every time, so a seeded run is repeatable.
 */
export function faultFor(fault: FaultSettings, random: Random): InjectedFault {
  const out: InjectedFault = {};
  if (fault.delay === undefined && fault.abort === undefined) return out;
  const delayDraw = random() * 100;
  const abortDraw = random() * 100;
  if (fault.delay !== undefined && delayDraw < fault.delay.percentage) out.delayMs = fault.delay.fixedDelayMs;
  const abort = fault.abort;
  if (abort !== undefined && abortDraw < abort.percentage) {
    if (abort.httpStatus !== undefined) out.abortStatus = abort.httpStatus;
    if (abort.grpcStatus !== undefined) out.abortGrpcStatus = GRPC_STATUS[abort.grpcStatus];
  }
  return out;
}
