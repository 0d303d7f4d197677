import * as grpc from '@grpc/grpc-js';
import { operationalLogger } from '../core/log';
import type { Result } from '../core/result';
import type { Authenticator } from './authenticator';
import type { SnapshotFeed } from './discovery-feed';
import { decodeWatchRequest, encodeJson, WATCH_PATH, type VersionedSnapshot, type WatchRequest } from './discovery-wire';
import { CoalescingWriter } from './discovery-writer';

/**
 * `weft.discovery.v1.Discovery/Watch` (wire shape in discovery-wire.ts): after authentication, an
 * agent may watch only as the node its credential names; it gets the current snapshot at once and
 * then one per change.
 */

export interface DiscoveryServiceOptions {
  authenticator: Authenticator;
  feed: SnapshotFeed;
}

export interface DiscoveryService {
  /** Ends every open stream (status OK): agents reconnect, to this server or its successor. */
  endStreams(): void;
}

type WatchCall = grpc.ServerWritableStream<Result<WatchRequest, string>, VersionedSnapshot>;

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

function refuse(call: WatchCall, code: grpc.status, details: string, context: object): void {
  log.warn({ peer: call.getPeer(), ...context, code: grpc.status[code], reason: details, ...context }, 'discovery watch refused');
  call.emit('error', { code, details });
}

async function watch(options: DiscoveryServiceOptions, call: WatchCall, open: Set<WatchCall>): Promise<void> {
  const caller = await options.authenticator.authenticate(call.metadata);
  if (!caller.ok) return refuse(call, grpc.status.UNAUTHENTICATED, caller.error, {});
  const who = { peer: call.getPeer(), subject: caller.value.subject, node: caller.value.node };
  if (!call.request.ok) return refuse(call, grpc.status.INVALID_ARGUMENT, call.request.error, who);
  const requested = call.request.value.node;
  if (requested !== caller.value.node) {
    return refuse(call, grpc.status.PERMISSION_DENIED, `the credential is for node ${caller.value.node}, not ${requested}: an agent watches only its own node`, who);
  }
  if (call.cancelled) return;
  const writer = new CoalescingWriter<VersionedSnapshot>({ write: (message, callback) => call.write(message, callback) });
  const unsubscribe = options.feed.subscribe((latest) => writer.send(latest));
  open.add(call);
  const finish = (): void => {
    writer.stop();
    unsubscribe();
    if (open.delete(call)) log.info(who, 'discovery watch closed');
  };
  call.on('cancelled', finish);
  call.on('finish', finish);
  call.on('error', finish);
  log.info({ ...who, version: options.feed.current().version }, 'discovery watch opened');
  writer.send(options.feed.current());
}

export function addDiscoveryService(server: grpc.Server, options: DiscoveryServiceOptions): DiscoveryService {
  const open = new Set<WatchCall>();
  server.addService(discoveryService, {
    Watch: (call: WatchCall) => {
      watch(options, call, open).catch((error: Error) => {
        log.error({ peer: call.getPeer(), error: error.message }, 'discovery watch failed inside the control plane');
        call.emit('error', { code: grpc.status.INTERNAL, details: 'the control plane failed to handle the watch; see its log' });
      });
    },
  });
  return {
    endStreams() {
      for (const call of [...open]) call.end();
    },
  };
}
