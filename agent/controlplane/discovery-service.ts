import * as grpc from '@grpc/grpc-js';
import { operationalLogger } from '../core/log';
import type { Result } from '../core/result';
import type { Authenticator } from './authenticator';
import { DeltaIndex } from './discovery-delta';
import { DeltaStream } from './discovery-delta-stream';
import { FullStateGate } from './discovery-gate';
import type { SnapshotFeed } from './discovery-feed';
import { decodeWatchRequestV2, WATCH_V2_PATH, type WatchRequestV2 } from './discovery-proto';
import { decodeWatchRequest, encodeJson, WATCH_PATH, type VersionedSnapshot, type WatchRequest } from './discovery-wire';
import { CoalescingWriter } from './discovery-writer';

/**
 * Discovery on 15012, two versions side by side so agents of the previous release keep working
 * through a rolling upgrade:
 * - `weft.discovery.v2.Discovery/Watch` (discovery-proto.ts): the node's projection
 *   (discovery-view.ts), first in full, then as versioned deltas (discovery-delta.ts); a
 *   reconnecting agent resumes from its epoch and version.
 * - `weft.discovery.v1.Discovery/Watch` (discovery-wire.ts): the whole cluster's snapshot as JSON,
 *   at once and then once per change.
 * Both authenticate the same way: an agent may watch only as the node its credential names.
 */

export interface DiscoveryServiceOptions {
  authenticator: Authenticator;
  feed: SnapshotFeed;
  /** The v2 control-plane epoch (default a random UUID per process): a different epoch means a full resend. */
  epoch?: string;
  /** Most bytes of resources per v2 message; larger messages go in chunks (default 512 KiB, discovery-chunks.ts). */
  chunkBytes?: number;
  /**
   * Most v2 full states being sent at once over all streams (default DEFAULT_MAX_CONCURRENT_FULL_STATES):
   * the streams beyond wait their turn holding nothing (discovery-gate.ts).
   */
  maxConcurrentFullStates?: number;
}

/** Measured with the control-plane bench (docs/discovery.md, "Chunks and the full-state limit"). */
export const DEFAULT_MAX_CONCURRENT_FULL_STATES = 8;

export interface DiscoveryService {
  /** Ends every open stream (status OK): agents reconnect, to this server or its successor. */
  endStreams(): void;
  /** The v2 epoch of this control plane. */
  readonly epoch: string;
  /** v2 full states being sent now, streams waiting for their turn, and the most ever sent at once. */
  fullStates(): { inFlight: number; waiting: number; peak: number };
}

type WatchCall = grpc.ServerWritableStream<Result<WatchRequest, string>, VersionedSnapshot>;
type WatchV2Call = grpc.ServerWritableStream<Result<WatchRequestV2, string>, Buffer>;
type AnyCall = WatchCall | WatchV2Call;

const log = operationalLogger('discovery');

export const discoveryService: grpc.ServiceDefinition = {
  Watch: {
    path: WATCH_PATH,
    requestStream: false,
    responseStream: true,
    requestSerialize: () => { throw new Error('the server does not send requests'); },
    requestDeserialize: (bytes: Buffer): Result<WatchRequest, string> => decodeWatchRequest(bytes),
    responseSerialize: (response: VersionedSnapshot) => encodeJson(response),
    responseDeserialize: () => { throw new Error('the server does not read responses'); },
  },
};

export const discoveryServiceV2: grpc.ServiceDefinition = {
  Watch: {
    path: WATCH_V2_PATH,
    requestStream: false,
    responseStream: true,
    requestSerialize: () => { throw new Error('the server does not send requests'); },
    requestDeserialize: (bytes: Buffer): Result<WatchRequestV2, string> => decodeWatchRequestV2(bytes),
    /** Responses are encoded by DeltaStream (encoded resources are cached and shared between streams). */
    responseSerialize: (response: Buffer) => response,
    responseDeserialize: () => { throw new Error('the server does not read responses'); },
  },
};

function refuse(call: AnyCall, code: grpc.status, details: string, context: object): void {
  log.warn({ peer: call.getPeer(), ...context, code: grpc.status[code], reason: details }, 'discovery watch refused');
  call.emit('error', { code, details });
}

interface Admitted {
  who: { peer: string; subject: string; node: string; api: string };
}

/** Authenticates the caller and checks it watches its own node; refuses the call otherwise. */
async function admit(options: DiscoveryServiceOptions, call: AnyCall, api: string): Promise<Admitted | undefined> {
  const caller = await options.authenticator.authenticate(call.metadata);
  if (!caller.ok) {
    refuse(call, grpc.status.UNAUTHENTICATED, caller.error, { api });
    return undefined;
  }
  const who = { peer: call.getPeer(), subject: caller.value.subject, node: caller.value.node, api };
  if (!call.request.ok) {
    refuse(call, grpc.status.INVALID_ARGUMENT, call.request.error, who);
    return undefined;
  }
  const requested = call.request.value.node;
  if (requested !== caller.value.node) {
    refuse(call, grpc.status.PERMISSION_DENIED, `the credential is for node ${caller.value.node}, not ${requested}: an agent watches only its own node`, who);
    return undefined;
  }
  if (call.cancelled) return undefined;
  return { who };
}

function onEnd(call: AnyCall, open: Set<AnyCall>, who: object, cleanup: () => void): void {
  const finish = (): void => {
    cleanup();
    if (open.delete(call)) log.info(who, 'discovery watch closed');
  };
  call.on('cancelled', finish);
  call.on('finish', finish);
  call.on('error', finish);
}

async function watch(options: DiscoveryServiceOptions, call: WatchCall, open: Set<AnyCall>): Promise<void> {
  const admitted = await admit(options, call, 'v1');
  if (admitted === undefined) return;
  const writer = new CoalescingWriter<VersionedSnapshot>({ write: (message, callback) => call.write(message, callback) });
  const unsubscribe = options.feed.subscribe((latest) => writer.send(latest));
  open.add(call);
  onEnd(call, open, admitted.who, () => { writer.stop(); unsubscribe(); });
  log.info({ ...admitted.who, version: options.feed.current().version }, 'discovery watch opened');
  writer.send(options.feed.current());
}

async function watchV2(options: DiscoveryServiceOptions, index: DeltaIndex, gate: FullStateGate, call: WatchV2Call, open: Set<AnyCall>): Promise<void> {
  const admitted = await admit(options, call, 'v2');
  if (admitted === undefined || !call.request.ok) return;
  const { node, resume } = call.request.value;
  const stream = new DeltaStream(index, node, { write: (message, callback) => call.write(message, callback) }, {
    gate, ...(options.chunkBytes === undefined ? {} : { chunkBytes: options.chunkBytes }),
  });
  const unsubscribe = index.subscribe(() => stream.changed());
  open.add(call);
  onEnd(call, open, admitted.who, () => { stream.stop(); unsubscribe(); });
  const resumed = stream.start(resume);
  log.info({
    ...admitted.who, version: index.currentVersion(), resumedFrom: resume?.version,
    start: resumed ? 'delta' : resume === undefined ? 'full state' : resume.epoch !== index.epoch ? 'full state (another control-plane epoch)' : 'full state (version no longer in the history)',
  }, 'discovery watch opened');
}

export function addDiscoveryService(server: grpc.Server, options: DiscoveryServiceOptions): DiscoveryService {
  const open = new Set<AnyCall>();
  // One index per control plane, fed before any stream hears of a version: the diff is computed once per publish.
  const index = new DeltaIndex(options.feed.current(), options.epoch === undefined ? {} : { epoch: options.epoch });
  options.feed.subscribe((latest) => index.publish(latest));
  // One limit over all v2 streams: a fleet reconnecting at once is served a few full states at a time.
  const gate = new FullStateGate(options.maxConcurrentFullStates ?? DEFAULT_MAX_CONCURRENT_FULL_STATES);
  const failed = (call: AnyCall) => (error: Error): void => {
    log.error({ peer: call.getPeer(), error: error.message }, 'discovery watch failed inside the control plane');
    call.emit('error', { code: grpc.status.INTERNAL, details: 'the control plane failed to handle the watch; see its log' });
  };
  server.addService(discoveryService, { Watch: (call: WatchCall) => { watch(options, call, open).catch(failed(call)); } });
  server.addService(discoveryServiceV2, { Watch: (call: WatchV2Call) => { watchV2(options, index, gate, call, open).catch(failed(call)); } });
  return {
    epoch: index.epoch,
    fullStates: () => ({ inFlight: gate.inFlight(), waiting: gate.waiting(), peak: gate.peakInFlight() }),
    endStreams() {
      for (const call of [...open]) call.end();
    },
  };
}
