import { err, ok, type Result } from '../core/result';
import type { Snapshot } from '../config/objects';

/**
 * `weft.discovery.v1.Discovery/Watch`, server-streaming, our own API: JSON in UTF-8, no protobuf.
 * Served for agents of the previous release (a rolling upgrade); current agents watch v2, their
 * node's view as deltas (discovery-proto.ts, docs/discovery.md).
 *
 *   request:  {"node":"<node name>"}
 *   response: {"version":<positive integer>,"snapshot":<Snapshot, agent/config/objects.ts>}, repeated
 *
 * Every response carries the whole desired state, never a delta: the first one as soon as the
 * stream opens, then one per change. `version` increases on every change within a control plane
 * process and, clock permitting, across its restarts (it starts from the wall clock in ms); a
 * client nonetheless treats the first message of each new stream as the state in force.
 */
export const WATCH_PATH = '/weft.discovery.v1.Discovery/Watch';

export interface WatchRequest {
  node: string;
}

export interface VersionedSnapshot {
  version: number;
  snapshot: Snapshot;
}

export function encodeJson(value: WatchRequest | VersionedSnapshot): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function parseObject(bytes: Buffer, what: string): Result<Record<string, unknown>, string> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    return err(`${what} is not JSON: ${(e as Error).message}`);
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? ok(value as Record<string, unknown>) : err(`${what} is not a JSON object`);
}

export function decodeWatchRequest(bytes: Buffer): Result<WatchRequest, string> {
  const value = parseObject(bytes, 'the Watch request');
  if (!value.ok) return value;
  const { node } = value.value;
  return typeof node === 'string' && node !== '' ? ok({ node }) : err('the Watch request must be {"node": "<node name>"}');
}

/** Checks the envelope; the snapshot itself was built by our own control plane from validated objects. */
export function decodeVersionedSnapshot(bytes: Buffer): Result<VersionedSnapshot, string> {
  const value = parseObject(bytes, 'the Watch response');
  if (!value.ok) return value;
  const { version, snapshot } = value.value;
  if (!Number.isSafeInteger(version) || (version as number) <= 0) return err('the Watch response has no positive integer "version"');
  if (typeof snapshot !== 'object' || snapshot === null) return err('the Watch response has no "snapshot" object');
  return ok({ version: version as number, snapshot: snapshot as Snapshot });
}
