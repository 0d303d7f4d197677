/**
 * How the agent's discovery stream to the control plane is reported, in ztunnel's terms, so that
 * Istio's ztunnel dashboard reads Weft's agent unchanged: `istio_xds_connection_terminations_total`
 * by `reason` (ztunnel's four values) and `istio_xds_message_total` by `url` (the type URL of the
 * message received). Pure: discovery-client.ts classifies each end of its stream with
 * terminationReason(); node-state.ts exports the counts.
 */
import { GrpcStatus as status } from '../core/grpc-status';

/**
 * ztunnel's `ConnectionTerminationReason` label values, as its prometheus_client writes them:
 *   ConnectionError  the stream could not be set up (no connection to the control plane)
 *   Reconnect        the control plane went away in an orderly way (restart, GOAWAY, cancelled)
 *   Error            any other failure (refused token, a message the agent could not read, ...)
 *   Complete         the control plane ended the stream with OK
 */
export const TERMINATION_REASONS = ['ConnectionError', 'Error', 'Reconnect', 'Complete'] as const;
export type TerminationReason = (typeof TERMINATION_REASONS)[number];

/**
 * The type URLs messages are counted under, named as xDS names its resource types
 * (`type.googleapis.com/<message>`) after the Watch method's package. A message carrying the whole
 * desired state (every v1 message; the v2 full-state response that opens a stream or follows a
 * change of control plane) counts as a snapshot; a v2 delta (Envoy's DeltaDiscoveryResponse form,
 * controlplane/discovery-proto.ts) under its own URL.
 */
export const SNAPSHOT_TYPE_URL = 'type.weft.dev/weft.discovery.v1.VersionedSnapshot';
export const DELTA_TYPE_URL = 'type.weft.dev/weft.discovery.v2.DeltaDiscoveryResponse';

/** How one Watch stream ended, as discovery-client.ts sees it. */
export type StreamEnding =
  /** the stream failed with a gRPC status; `delivered`: it had delivered at least one message */
  | { kind: 'status'; code: number; delivered: boolean }
  /** the control plane ended the stream (status OK) */
  | { kind: 'end' }
  /** the control plane sent something the agent could not decode; the agent cancelled the stream */
  | { kind: 'unreadable' };

/**
 * ztunnel's reason for an ended stream. ztunnel counts a failure to establish the stream as
 * ConnectionError and Unknown/Cancelled/DeadlineExceeded (and Unavailable with "transport is
 * closing" or GOAWAY) as Reconnect. The agent's gRPC client (core/grpc-client.ts) reports both a
 * connect failure and a peer going away as UNAVAILABLE, so the stream's history tells them apart:
 * UNAVAILABLE before any message is a connection that never came up, after one it is the control
 * plane going away. Pure.
 */
export function terminationReason(e: StreamEnding): TerminationReason {
  if (e.kind === 'end') return 'Complete';
  if (e.kind === 'unreadable') return 'Error';
  switch (e.code) {
    case status.UNAVAILABLE: return e.delivered ? 'Reconnect' : 'ConnectionError';
    case status.UNKNOWN: case status.CANCELLED: case status.DEADLINE_EXCEEDED: return 'Reconnect';
    default: return 'Error';
  }
}
