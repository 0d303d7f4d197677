/**
 * gRPC's status codes (grpc/doc/statuscodes.md), for the agent's client (core/grpc-client.ts) and
 * what reads its errors. The control plane's server keeps @grpc/grpc-js' `status` enum, which has
 * the same numbers (test/unit/grpc-client.test.ts checks them against it).
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const NAMES: readonly string[] = Object.entries(GrpcStatus).sort((a, b) => a[1] - b[1]).map(([name]) => name);

/** The code's name (`PERMISSION_DENIED`), or its number as text for a code outside the table. */
export function statusName(code: number): string {
  return NAMES[code] ?? String(code);
}
